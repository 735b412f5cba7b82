// The CUDA allocators of allocator.h. All kernels run on each device's
// default stream, so a block freed while a queued kernel still reads it is
// only reused by later work on that stream (caching), and cudaFree waits for
// the device (exact). When cudaMalloc is out of memory the caching allocator
// returns its cache to the driver and retries once; a failure that remains is
// an Error naming the size and device, from either allocator.
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda/allocator.h"
#include "cuda/runtime.h"

namespace moegrad::cuda {

namespace {

// cudaMalloc of size bytes on device; nullptr when the device is out of
// memory (any other failure throws).
void* malloc_on(int device, size_t size) {
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

[[noreturn]] void throw_out_of_memory(int device, size_t size, size_t nbytes, int64_t bytes_in_use,
                                      const char* cache) {
  throw Error(detail::cat("CUDA call cudaMalloc failed: cudaErrorMemoryAllocation (out of memory) allocating ", size,
                          " bytes (", nbytes, " requested) on cuda:", device, ", with ", bytes_in_use,
                          " bytes in use by moegrad", cache));
}

class CudaCachingAllocator final : public CachingAllocator {
 protected:
  void check_device(int device) override { cuda::check_device(Device::cuda(device), "cuda allocator"); }
  void* system_allocate(int device, size_t size) override { return malloc_on(device, size); }

  // cudaFree waits for the device, so no queued kernel still uses the block.
  void system_free(int device, void* ptr) override {
    DeviceGuard guard(device);
    MG_CUDA_CHECK(cudaFree(ptr), " (returning a cached block to cuda:", device, ")");
  }

  [[noreturn]] void out_of_memory(int device, size_t size, size_t nbytes, int64_t bytes_in_use) override {
    throw_out_of_memory(device, size, nbytes, bytes_in_use, " and its cache returned to the driver");
  }
};

// Exactly the bytes asked for, straight from cudaMalloc, back to cudaFree.
class CudaExactAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override { return allocate_on(0, nbytes); }
  void deallocate(void* ptr, size_t nbytes) override { deallocate_on(0, ptr, nbytes); }

  void* allocate_on(int device, size_t nbytes) override {
    check_device(Device::cuda(device), "cuda allocator");
    const size_t size = nbytes > 0 ? nbytes : 1;  // a real, distinct address for an empty tensor too
    void* ptr = malloc_on(device, size);
    std::lock_guard<std::mutex> lock(mutex_);
    if (!ptr) throw_out_of_memory(device, size, nbytes, stats_.bytes_in_use, " (exact allocator: nothing cached)");
    stats_.system_allocs++;
    stats_.bytes_in_use += static_cast<int64_t>(size);
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return ptr;
  }

  // Called from Storage's destructor, so it must not throw: a failing
  // cudaFree (the device already broken by an earlier fault, which the next
  // checked call reports) is printed and cleared.
  void deallocate_on(int device, void* ptr, size_t nbytes) override {
    if (!ptr) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.bytes_in_use -= static_cast<int64_t>(nbytes > 0 ? nbytes : 1);
    }
    int previous = -1;
    cudaGetDevice(&previous);
    if (previous != device) cudaSetDevice(device);
    const cudaError_t status = cudaFree(ptr);
    if (previous >= 0 && previous != device) cudaSetDevice(previous);
    if (status != cudaSuccess) {
      std::fprintf(stderr, "moegrad: cudaFree of %zu bytes on cuda:%d failed: %s (%s)\n", nbytes, device,
                   cudaGetErrorName(status), cudaGetErrorString(status));
      cudaGetLastError();
    }
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  void release_cache() override {}  // nothing is cached

 private:
  mutable std::mutex mutex_;
  AllocatorStats stats_;
};

}  // namespace

AllocatorKind allocator_kind_from(const char* value) {
  const std::string v = value ? value : "";
  if (v.empty() || v == "caching") return AllocatorKind::Caching;
  if (v == "exact") return AllocatorKind::Exact;
  throw Error(detail::cat("MOEGRAD_CUDA_ALLOCATOR must be caching or exact, got '", v, "'"));
}

// Never destroyed: tensors may outlive main, and the driver may be gone by then.
Allocator& caching_device_allocator() {
  static CudaCachingAllocator* allocator = new CudaCachingAllocator();
  return *allocator;
}

Allocator& exact_device_allocator() {
  static CudaExactAllocator* allocator = new CudaExactAllocator();
  return *allocator;
}

namespace {

// The allocator MOEGRAD_CUDA_ALLOCATOR names, read at the first use.
Allocator& selected_allocator() {
  static Allocator& selected = allocator_kind_from(std::getenv("MOEGRAD_CUDA_ALLOCATOR")) == AllocatorKind::Exact
                                   ? exact_device_allocator()
                                   : caching_device_allocator();
  return selected;
}

// Forwards to selected_allocator(), so that registering it (which
// cuda_device_count does, and that never throws) does not read the variable:
// a bad value is an Error at the first allocation instead.
class SelectedAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override { return selected_allocator().allocate(nbytes); }
  void deallocate(void* ptr, size_t nbytes) override { selected_allocator().deallocate(ptr, nbytes); }
  void* allocate_on(int device, size_t nbytes) override { return selected_allocator().allocate_on(device, nbytes); }
  void deallocate_on(int device, void* ptr, size_t nbytes) override {
    selected_allocator().deallocate_on(device, ptr, nbytes);
  }
  AllocatorStats stats() const override { return selected_allocator().stats(); }
  void reset_peak() override { selected_allocator().reset_peak(); }
  void release_cache() override { selected_allocator().release_cache(); }
};

}  // namespace

Allocator& device_allocator() {
  static SelectedAllocator* allocator = new SelectedAllocator();
  return *allocator;
}

}  // namespace moegrad::cuda
