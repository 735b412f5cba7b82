// The stable counting sort of sort.h. Three kernels over chunks of kSortChunk
// keys: one thread per chunk counts its keys into counts[key, chunk]; one
// block scans counts in that (key-major) order into each (key, chunk)'s first
// output slot; one thread per chunk walks its keys again in order and writes
// each position to its key's next slot. Every step has a fixed order, so the
// result is the same on every run.
#include "cuda/launch.cuh"
#include "cuda/sort.h"

namespace moegrad {

namespace {

constexpr int64_t kSortChunk = 256;
constexpr int kScanThreads = 1024;

// counts [buckets, chunks] starts at zero; *bad becomes 1 on a key out of range.
__global__ void chunk_histograms(const int64_t* keys, int64_t m, int64_t buckets, int64_t chunks, int64_t* counts,
                                 int64_t* bad) {
  MG_GRID_STRIDE(c, chunks) {
    const int64_t end = min(m, (c + 1) * kSortChunk);
    for (int64_t i = c * kSortChunk; i < end; ++i) {
      const int64_t key = keys[i];
      if (key < 0 || key >= buckets) {
        *bad = 1;
        continue;
      }
      ++counts[key * chunks + c];
    }
  }
}

// out = exclusive prefix sum of in [n], by one block of kScanThreads: each
// thread sums a contiguous stretch, thread 0 scans the stretch totals, each
// thread writes its stretch. __launch_bounds__ makes the compiler keep the
// registers per thread within what 1024 threads may use (without it, a build
// for some GPU could need more and the launch would fail).
__global__ void __launch_bounds__(kScanThreads) exclusive_scan_one_block(const int64_t* in, int64_t n, int64_t* out) {
  __shared__ int64_t stretch_start[kScanThreads];
  const int64_t per = (n + kScanThreads - 1) / kScanThreads;
  const int64_t begin = min(n, threadIdx.x * per), end = min(n, begin + per);
  int64_t s = 0;
  for (int64_t i = begin; i < end; ++i) s += in[i];
  stretch_start[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t run = 0;
    for (int t = 0; t < kScanThreads; ++t) {
      const int64_t v = stretch_start[t];
      stretch_start[t] = run;
      run += v;
    }
  }
  __syncthreads();
  s = stretch_start[threadIdx.x];
  for (int64_t i = begin; i < end; ++i) {
    const int64_t v = in[i];
    out[i] = s;
    s += v;
  }
}

// offsets[b] = the first slot of key b (starts[b, chunk 0]); offsets[buckets] = m.
__global__ void bucket_offsets(const int64_t* starts, int64_t buckets, int64_t chunks, int64_t m, int64_t* offsets) {
  MG_GRID_STRIDE(b, buckets + 1) offsets[b] = b < buckets ? starts[b * chunks] : m;
}

// order[next slot of key] = i for each i of the chunk, in order; starts is
// advanced as slots are used.
__global__ void chunk_scatter(const int64_t* keys, int64_t m, int64_t buckets, int64_t chunks, int64_t* starts,
                              int64_t* order) {
  MG_GRID_STRIDE(c, chunks) {
    const int64_t end = min(m, (c + 1) * kSortChunk);
    for (int64_t i = c * kSortChunk; i < end; ++i) {
      const int64_t key = keys[i];
      if (key >= 0 && key < buckets) order[starts[key * chunks + c]++] = i;
    }
  }
}

}  // namespace

CudaCountingSort cuda_counting_sort(const Tensor& keys_in, int64_t buckets, const char* op) {
  MG_CHECK(keys_in.defined(), op, ": the keys are an undefined tensor");
  MG_CHECK(keys_in.device().is_cuda(), op, ": the keys must be on a CUDA device, not ", keys_in.device().str());
  MG_CHECK(keys_in.dtype() == DType::Int64, op, ": the keys must be int64, not ", dtype_name(keys_in.dtype()));
  MG_CHECK(keys_in.dim() == 1, op, ": the keys must be 1-D, got shape ", shape_str(keys_in.shape()));
  MG_CHECK(buckets >= 1, op, ": needs at least one bucket, got ", buckets);
  const Device device = keys_in.device();
  const int64_t m = keys_in.numel();
  CudaCountingSort result{Tensor::empty({m}, DType::Int64, device), Tensor::zeros({buckets + 1}, DType::Int64, device)};
  if (m == 0) return result;
  Tensor keys = keys_in;
  if (!keys.is_contiguous()) {
    keys = Tensor::empty({m}, DType::Int64, device);
    keys.copy_(keys_in);
  }
  cuda::DeviceGuard guard(device.index);
  const int64_t chunks = (m + kSortChunk - 1) / kSortChunk;
  Tensor counts = Tensor::zeros({buckets, chunks}, DType::Int64, device);
  Tensor starts = Tensor::empty({buckets, chunks}, DType::Int64, device);
  Tensor bad = Tensor::zeros({1}, DType::Int64, device);
  chunk_histograms<<<cuda::grid_for(chunks), cuda::kThreads>>>(keys.data<int64_t>(), m, buckets, chunks,
                                                               counts.data<int64_t>(), bad.data<int64_t>());
  cuda::check_launch("chunk_histograms");
  exclusive_scan_one_block<<<1, kScanThreads>>>(counts.data<int64_t>(), buckets * chunks, starts.data<int64_t>());
  cuda::check_launch("exclusive_scan_one_block");
  bucket_offsets<<<cuda::grid_for(buckets + 1), cuda::kThreads>>>(starts.data<int64_t>(), buckets, chunks, m,
                                                                  result.offsets.data<int64_t>());
  cuda::check_launch("bucket_offsets");
  chunk_scatter<<<cuda::grid_for(chunks), cuda::kThreads>>>(keys.data<int64_t>(), m, buckets, chunks,
                                                            starts.data<int64_t>(), result.order.data<int64_t>());
  cuda::check_launch("chunk_scatter");
  MG_CHECK(bad.to(Device::cpu()).data<int64_t>()[0] == 0, op, ": a key is outside [0, ", buckets, ")");
  return result;
}

}  // namespace moegrad
