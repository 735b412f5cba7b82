// The CUDA runtime layer: device count and validation (also without a GPU,
// where every CUDA request must be an Error, never an abort), the caching and
// the exact device allocators, to() between host and device for every dtype
// and layout, and copy_ / fill_ / contiguous / clone / concat on the device.
#include <cstdio>

#include "test_cuda_helpers.h"
#ifdef MOEGRAD_WITH_CUDA
#include "cuda/allocator.h"
#endif

using namespace moegrad;
using namespace moegrad::testing;

TEST(WithoutCudaDevice, EveryRequestIsAnError) {
  MG_SKIP_WITH_CUDA();
  Tensor x = Tensor::ones({2, 3});
  const char* why = cuda_backend() ? "no CUDA device is visible" : "needs the CUDA backend";
  EXPECT_MG_ERROR(x.to(Device::cuda(0)), why);
  EXPECT_MG_ERROR(x.to(Device::cuda(3)), why);
  EXPECT_MG_ERROR(Tensor::zeros({4}, DType::Float32, Device::cuda(0)), why);
  EXPECT_MG_ERROR(Tensor::empty({4}, DType::Int64, Device::cuda(0)), why);
  EXPECT_EQ(cuda_device_count(), 0);  // asking again is still no exception
}

#ifdef MOEGRAD_WITH_CUDA

// The first check of the GPU verification: fails (under MOEGRAD_REQUIRE_CUDA)
// with the reason when no device is usable, else names the device and the
// versions in the log.
TEST(CudaRuntime, DeviceIsUsable) {
  MG_SKIP_WITHOUT_CUDA();
  cudaDeviceProp p{};
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("cuda:0 of %d: %s, compute capability %d.%d, %.1f GiB, %d SMs; driver %s, runtime %s\n",
              cuda_device_count(), p.name, p.major, p.minor, static_cast<double>(p.totalGlobalMem) / (1 << 30),
              p.multiProcessorCount, cuda_version_str(driver).c_str(), cuda_version_str(runtime).c_str());
  EXPECT_GE(driver, runtime);
}

#endif  // MOEGRAD_WITH_CUDA

TEST(CudaRuntime, DeviceIndexIsValidated) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = Tensor::ones({2});
  EXPECT_MG_ERROR(x.to(Device::cuda(99)), "cuda:99 is not available");
  EXPECT_MG_ERROR(x.to(Device::cuda(cuda_device_count())), "is not available");
  EXPECT_MG_ERROR(x.to(Device::cuda(-1)), "cuda:-1 is not available");
  EXPECT_MG_ERROR(Tensor::zeros({2}, DType::Float32, Device::cuda(99)), "Tensor::empty: cuda:99");
  EXPECT_MG_ERROR(x.to(Device{DeviceType::CPU, 1}), "the CPU is device index 0");
  EXPECT_EQ(x.to(Device::cuda(0)).device(), Device::cuda(0));
}

TEST(CudaRuntime, OutOfMemoryIsAnErrorNamingTheSize) {
  MG_SKIP_WITHOUT_CUDA();
  const int64_t n = int64_t{1} << 42;  // 16 TiB of float32
  try {
    Tensor::empty({n}, DType::Float32, Device::cuda(0));
    ADD_FAILURE() << "a 16 TiB allocation succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cudaMalloc"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(n * 4) + " bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cudaErrorMemoryAllocation"), std::string::npos) << msg;
  }
  // the error was cleared: the device still works
  EXPECT_EQ(Tensor::full({3}, 2.0, DType::Float32, Device::cuda(0)).to_vector(), (std::vector<double>{2, 2, 2}));
}

#ifdef MOEGRAD_WITH_CUDA

TEST(CudaRuntime, CachingAllocatorReusesBlocks) {
  MG_SKIP_WITHOUT_CUDA();
  Allocator& a = cuda::caching_device_allocator();
  a.deallocate_on(0, a.allocate_on(0, 148000), 148000);  // warm: one block of the size class cached
  const AllocatorStats before = a.stats();
  for (int i = 0; i < 10; ++i) a.deallocate_on(0, a.allocate_on(0, 148000), 148000);
  const AllocatorStats after = a.stats();
  EXPECT_EQ(after.system_allocs, before.system_allocs);
  EXPECT_EQ(after.cache_hits, before.cache_hits + 10);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  void* p = a.allocate_on(0, 148000);
  EXPECT_EQ(a.stats().bytes_in_use, before.bytes_in_use + static_cast<int64_t>(allocation_size_class(148000)));
  EXPECT_GE(a.stats().peak_bytes_in_use, a.stats().bytes_in_use);
  a.deallocate_on(0, p, 148000);
  a.release_cache();
  EXPECT_EQ(a.stats().bytes_cached, 0);
}

TEST(CudaRuntime, ExactAllocatorAllocatesEachTensorAlone) {
  MG_SKIP_WITHOUT_CUDA();
  Allocator& a = cuda::exact_device_allocator();
  const AllocatorStats before = a.stats();
  void* p = a.allocate_on(0, 148001);
  void* q = a.allocate_on(0, 0);  // empty: still a distinct address
  EXPECT_NE(p, q);
  EXPECT_EQ(a.stats().bytes_in_use, before.bytes_in_use + 148002);  // no size class: the bytes asked for
  a.deallocate_on(0, p, 148001);
  a.deallocate_on(0, q, 0);
  for (int i = 0; i < 10; ++i) a.deallocate_on(0, a.allocate_on(0, 4096), 4096);
  const AllocatorStats after = a.stats();
  EXPECT_EQ(after.system_allocs, before.system_allocs + 12);  // every allocation from cudaMalloc
  EXPECT_EQ(after.cache_hits, before.cache_hits);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_EQ(after.bytes_cached, 0);
  EXPECT_MG_ERROR(a.allocate_on(0, size_t{1} << 44), "cudaErrorMemoryAllocation (out of memory) allocating 17592186044416");
  EXPECT_MG_ERROR(a.allocate_on(cuda_device_count(), 8), "is not available");
}

TEST(CudaRuntime, AllocatorFromTheEnvironment) {
  EXPECT_EQ(cuda::allocator_kind_from(nullptr), cuda::AllocatorKind::Caching);
  EXPECT_EQ(cuda::allocator_kind_from(""), cuda::AllocatorKind::Caching);
  EXPECT_EQ(cuda::allocator_kind_from("caching"), cuda::AllocatorKind::Caching);
  EXPECT_EQ(cuda::allocator_kind_from("exact"), cuda::AllocatorKind::Exact);
  EXPECT_MG_ERROR(cuda::allocator_kind_from("Exact"), "MOEGRAD_CUDA_ALLOCATOR must be caching or exact, got 'Exact'");
  MG_SKIP_WITHOUT_CUDA();
  // tensors come from the allocator that this process's MOEGRAD_CUDA_ALLOCATOR selects
  Allocator& selected = cuda::allocator_kind_from(std::getenv("MOEGRAD_CUDA_ALLOCATOR")) == cuda::AllocatorKind::Exact
                            ? cuda::exact_device_allocator()
                            : cuda::caching_device_allocator();
  const int64_t in_use = selected.stats().bytes_in_use;
  Tensor t = Tensor::empty({1000, 37}, DType::Float32, Device::cuda(0));
  EXPECT_GE(selected.stats().bytes_in_use, in_use + 148000);
  EXPECT_EQ(allocator_for(DeviceType::CUDA).stats().bytes_in_use, selected.stats().bytes_in_use);
  EXPECT_NE(&allocator_for(DeviceType::CUDA), &allocator_for(DeviceType::CPU));
}

#endif  // MOEGRAD_WITH_CUDA

namespace {

// The layouts a copy must handle: contiguous, permuted, strided, broadcast
// (stride 0), offset, 0-d and empty.
std::vector<Tensor> layouts(const Tensor& x) {
  return {x,
          transpose(x, 0, 2),
          slice(x, 1, 1, 4, 2),
          expand(slice(x, 0, 0, 1), {6, 4, 5}),
          narrow(x, 2, 1, 3),
          x.as_strided({}, {}, 7),
          slice(x, 0, 3, 3)};
}

}  // namespace

TEST(CudaRuntime, RoundTripEveryDtypeAndLayout) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor base = uniform({3, 4, 5}, DType::Float64, 1, -5, 5);
  for (DType dtype : {DType::Float32, DType::Float64, DType::Int64, DType::Bool}) {
    int k = 0;
    for (const Tensor& v : layouts(base.to(dtype))) {
      const std::string what = std::string(dtype_name(dtype)) + " layout " + std::to_string(k++);
      Tensor d = v.to(Device::cuda(0));
      EXPECT_EQ(d.device(), Device::cuda(0)) << what;
      EXPECT_EQ(d.dtype(), dtype) << what;
      EXPECT_EQ(d.shape(), v.shape()) << what;
      EXPECT_TRUE(d.is_contiguous()) << what;
      Tensor h = d.to(Device::cpu());
      EXPECT_EQ(h.device(), Device::cpu()) << what;
      EXPECT_EQ(h.to_vector(), v.to_vector()) << what;  // exact: a copy
      EXPECT_EQ(d.to_vector(), v.to_vector()) << what;  // to_vector reads device tensors too
    }
  }
  Tensor x = on_cuda(base);
  EXPECT_TRUE(x.to(Device::cuda(0)).same(x));  // already there: the same tensor
}

TEST(CudaRuntime, CopyIntoNonContiguousHostAndDeviceViews) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor src = uniform({4, 3}, DType::Float64, 2);
  // device -> strided host view, with a dtype change
  Tensor host = Tensor::zeros({3, 4}, DType::Float32);
  transpose(host, 0, 1).copy_(on_cuda(src));
  EXPECT_EQ(host.to_vector(), transpose(src, 0, 1).to(DType::Float32).to_vector());
  // host -> strided device view, broadcast from a row
  Tensor dev = Tensor::zeros({4, 6}, DType::Float64, Device::cuda(0));
  Tensor row = Tensor::from_vector({1, 2, 3}, {3}, DType::Float64);
  slice(dev, 1, 0, 6, 2).copy_(row);
  std::vector<double> want(24, 0.0);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) want[r * 6 + 2 * c] = c + 1;
  EXPECT_EQ(dev.to_vector(), want);
}

TEST(CudaRuntime, CopyOnTheDeviceBroadcastsAndConverts) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor a = uniform({2, 1, 5}, DType::Float64, 3, -3, 3);
  for (DType to : {DType::Float32, DType::Float64, DType::Int64, DType::Bool}) {
    for (DType from : {DType::Float32, DType::Float64, DType::Int64, DType::Bool}) {
      Tensor src = a.to(from);
      Tensor want = Tensor::zeros({2, 4, 5}, to);
      want.copy_(src);
      Tensor got = Tensor::zeros({2, 4, 5}, to, Device::cuda(0));
      got.copy_(on_cuda(src));
      EXPECT_EQ(got.to_vector(), want.to_vector()) << dtype_name(from) << " -> " << dtype_name(to);
      // into a permuted destination
      Tensor got_t = Tensor::zeros({5, 4, 2}, to, Device::cuda(0));
      permute(got_t, {2, 1, 0}).copy_(on_cuda(src));
      EXPECT_EQ(permute(got_t, {2, 1, 0}).to_vector(), want.to_vector());
    }
  }
  Tensor d = on_cuda(a);
  EXPECT_MG_ERROR(d.copy_(on_cuda(Tensor::zeros({3}))), "does not broadcast");
}

TEST(CudaRuntime, OverlappingCopyOnTheDevice) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor h = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7}, {8}, DType::Float64);
  Tensor d = on_cuda(h);
  narrow(d, 0, 2, 6).copy_(narrow(d, 0, 0, 6));  // shifted within one buffer
  narrow(h, 0, 2, 6).copy_(clone(narrow(h, 0, 0, 6)));
  EXPECT_EQ(d.to_vector(), h.to_vector());
  d.copy_(d);  // onto itself: unchanged
  EXPECT_EQ(d.to_vector(), h.to_vector());
}

TEST(CudaRuntime, FillAnyLayoutAndDtype) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float32, DType::Float64, DType::Int64, DType::Bool}) {
    Tensor d = Tensor::zeros({3, 4}, dtype, Device::cuda(0));
    slice(d, 1, 1, 4, 2).fill_(7.0);
    Tensor h = Tensor::zeros({3, 4}, dtype);
    slice(h, 1, 1, 4, 2).fill_(7.0);
    EXPECT_EQ(d.to_vector(), h.to_vector()) << dtype_name(dtype);
  }
  // saturation as on the CPU
  EXPECT_EQ(Tensor::full({1}, 1e300, DType::Float32, Device::cuda(0)).to_vector()[0], INFINITY);
  EXPECT_EQ(Tensor::full({1}, 1e300, DType::Int64, Device::cuda(0)).to_indices()[0],
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Tensor::ones({0, 3}, DType::Float32, Device::cuda(0)).numel(), 0);
}

TEST(CudaRuntime, ContiguousCloneConcatOnTheDevice) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor h = uniform({3, 4}, DType::Float64, 4);
  Tensor d = on_cuda(h);
  Tensor t = contiguous(transpose(d, 0, 1));
  EXPECT_EQ(t.device(), Device::cuda(0));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.to_vector(), contiguous(transpose(h, 0, 1)).to_vector());
  Tensor c = clone(d);
  EXPECT_NE(c.storage(), d.storage());
  EXPECT_EQ(c.to_vector(), h.to_vector());
  Tensor j = concat({d, transpose(on_cuda(uniform({4, 2}, DType::Float64, 5)), 0, 1)}, 0);
  EXPECT_EQ(j.device(), Device::cuda(0));
  EXPECT_EQ(j.to_vector(), concat({h, transpose(uniform({4, 2}, DType::Float64, 5), 0, 1)}, 0).to_vector());
  std::ostringstream os;
  os << d;
  EXPECT_NE(os.str().find("cuda:0"), std::string::npos);
}

TEST(CudaRuntime, ElementAccess) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor d = Tensor::full({2, 2}, 3.5, DType::Float32, Device::cuda(0));
  EXPECT_MG_ERROR(d.at({0, 0}), "needs a CPU tensor");
  EXPECT_EQ(narrow(narrow(d, 0, 1, 1), 1, 1, 1).item(), 3.5);  // item copies one element back
  EXPECT_EQ(Tensor::full({3}, 4, DType::Int64, Device::cuda(0)).to_indices(), (std::vector<int64_t>{4, 4, 4}));
}
