// The CUDA caching allocator: tensor/allocator.h's CachingAllocator (the CPU
// allocator's size classes, statistics and free lists, here per device) over
// cudaMalloc / cudaFree. A steady training step calls cudaMalloc no more. All
// kernels run on each device's default stream, so a block freed while a
// queued kernel still reads it is only reused by later work on that stream.
// When cudaMalloc is out of memory the cache is returned to the driver and the
// call retried once; a second failure is an Error naming the size and device.
#include "cuda/allocator.h"
#include "cuda/runtime.h"

namespace moegrad::cuda {

namespace {

class CudaCachingAllocator final : public CachingAllocator {
 protected:
  void check_device(int device) override { cuda::check_device(Device::cuda(device), "cuda allocator"); }

  void* system_allocate(int device, size_t size) override {
    DeviceGuard guard(device);
    void* ptr = nullptr;
    const cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return nullptr;
    }
    check_status(status, "cudaMalloc", detail::cat(" allocating ", size, " bytes on cuda:", device));
    return ptr;
  }

  // cudaFree waits for the device, so no queued kernel still uses the block.
  void system_free(int device, void* ptr) override {
    DeviceGuard guard(device);
    MG_CUDA_CHECK(cudaFree(ptr), " (returning a cached block to cuda:", device, ")");
  }

  [[noreturn]] void out_of_memory(int device, size_t size, size_t nbytes, int64_t bytes_in_use) override {
    throw Error(detail::cat("CUDA call cudaMalloc failed: cudaErrorMemoryAllocation (out of memory) allocating ",
                            size, " bytes (", nbytes, " requested) on cuda:", device, ", with ", bytes_in_use,
                            " bytes in use by moegrad and its cache returned to the driver"));
  }
};

}  // namespace

// Never destroyed: tensors may outlive main, and the driver may be gone by then.
Allocator& device_allocator() {
  static CudaCachingAllocator* allocator = new CudaCachingAllocator();
  return *allocator;
}

}  // namespace moegrad::cuda
