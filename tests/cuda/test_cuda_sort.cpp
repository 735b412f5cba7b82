// The stable counting sort of cuda/sort.h against std::stable_sort on the
// CPU: key orders that span many chunks, empty buckets, one bucket, an empty
// input, and the errors (keys out of range, wrong dtype, keys on the CPU).
#include <algorithm>
#include <numeric>

#include "test_cuda_helpers.h"

#ifdef MOEGRAD_WITH_CUDA
#include "cuda/sort.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

std::vector<int64_t> to_int64(const Tensor& t) { return t.to_indices(); }

void expect_sorted_like_cpu(const std::vector<int64_t>& keys, int64_t buckets) {
  Tensor t = Tensor::empty({static_cast<int64_t>(keys.size())}, DType::Int64);
  std::copy(keys.begin(), keys.end(), t.data<int64_t>());
  CudaCountingSort s = cuda_counting_sort(on_cuda(t), buckets, "test");
  std::vector<int64_t> want(keys.size());
  std::iota(want.begin(), want.end(), 0);
  std::stable_sort(want.begin(), want.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  EXPECT_EQ(to_int64(s.order), want);
  std::vector<int64_t> offsets(buckets + 1, 0);
  for (int64_t k : keys) ++offsets[k + 1];
  std::partial_sum(offsets.begin(), offsets.end(), offsets.begin());
  EXPECT_EQ(to_int64(s.offsets), offsets);
}

}  // namespace

TEST(CudaCountingSort, MatchesStableSortAcrossChunks) {
  MG_SKIP_WITHOUT_CUDA();
  uint64_t counter = 0;
  for (int64_t m : {1, 255, 256, 257, 5000, 70000}) {
    for (int64_t buckets : {1, 3, 16, 300}) {
      std::vector<int64_t> keys(m);
      for (auto& k : keys) k = static_cast<int64_t>(random_bits(3, counter++) % buckets);
      expect_sorted_like_cpu(keys, buckets);
    }
  }
}

TEST(CudaCountingSort, SkewedKeysAndEmptyBuckets) {
  MG_SKIP_WITHOUT_CUDA();
  std::vector<int64_t> keys(3000, 5);
  for (size_t i = 0; i < keys.size(); i += 7) keys[i] = 0;
  expect_sorted_like_cpu(keys, 9);  // buckets 1-4 and 6-8 empty
}

TEST(CudaCountingSort, EmptyInput) {
  MG_SKIP_WITHOUT_CUDA();
  CudaCountingSort s = cuda_counting_sort(on_cuda(Tensor::empty({0}, DType::Int64)), 4, "test");
  EXPECT_EQ(s.order.numel(), 0);
  EXPECT_EQ(to_int64(s.offsets), std::vector<int64_t>(5, 0));
}

TEST(CudaCountingSort, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor keys = Tensor::zeros({10}, DType::Int64);
  keys.data<int64_t>()[7] = 4;
  EXPECT_MG_ERROR(cuda_counting_sort(on_cuda(keys), 4, "route"), "outside [0, 4)");
  keys.data<int64_t>()[7] = -1;
  EXPECT_MG_ERROR(cuda_counting_sort(on_cuda(keys), 4, "route"), "outside [0, 4)");
  EXPECT_MG_ERROR(cuda_counting_sort(keys, 4, "route"), "CUDA device");
  EXPECT_MG_ERROR(cuda_counting_sort(on_cuda(Tensor::zeros({3})), 4, "route"), "int64");
  EXPECT_MG_ERROR(cuda_counting_sort(on_cuda(Tensor::zeros({3}, DType::Int64)), 0, "route"), "bucket");
}

#else

TEST(CudaCountingSort, NotBuilt) { MG_SKIP_WITHOUT_CUDA(); }

#endif
