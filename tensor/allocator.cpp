// The caching allocator shared by the devices (free lists per device and size
// class) and the CPU allocator on top of it: 64-byte aligned blocks.
#include "tensor/allocator.h"

#include <cstdlib>

#include "tensor/backend.h"

namespace moegrad {

size_t allocation_size_class(size_t nbytes) {
  // far beyond any machine; also keeps the doubling below from overflowing
  MG_CHECK(nbytes <= (size_t(1) << 48), "allocator: a request of ", nbytes, " bytes is more than 2^48");
  if (nbytes == 0) nbytes = 1;
  if (nbytes <= 4096) return (nbytes + 63) / 64 * 64;
  size_t pow2 = 4096;
  while (pow2 * 2 < nbytes) pow2 *= 2;  // pow2 < nbytes <= 2*pow2
  size_t step = pow2 / 4;
  return (nbytes + step - 1) / step * step;
}

void* CachingAllocator::allocate_on(int device, size_t nbytes) {
  check_device(device);
  const size_t size = allocation_size_class(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  auto it = free_.find({device, size});
  if (it != free_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    stats_.cache_hits++;
    stats_.bytes_cached -= static_cast<int64_t>(size);
  } else {
    ptr = system_allocate(device, size);
    if (!ptr) {
      release_locked();
      ptr = system_allocate(device, size);
    }
    if (!ptr) out_of_memory(device, size, nbytes, stats_.bytes_in_use);
    stats_.system_allocs++;
  }
  stats_.bytes_in_use += static_cast<int64_t>(size);
  if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  return ptr;
}

void CachingAllocator::deallocate_on(int device, void* ptr, size_t nbytes) {
  if (!ptr) return;
  const size_t size = allocation_size_class(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  free_[{device, size}].push_back(ptr);
  stats_.bytes_in_use -= static_cast<int64_t>(size);
  stats_.bytes_cached += static_cast<int64_t>(size);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

void CachingAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_locked();
}

void CachingAllocator::release_locked() {
  for (auto it = free_.begin(); it != free_.end(); it = free_.erase(it)) {
    const auto [device, size] = it->first;
    std::vector<void*>& blocks = it->second;
    while (!blocks.empty()) {  // popped first, so a throwing system_free leaves the lists consistent
      void* p = blocks.back();
      blocks.pop_back();
      stats_.bytes_cached -= static_cast<int64_t>(size);
      system_free(device, p);
    }
  }
}

namespace {

// 64-byte aligned blocks from aligned_alloc; one device.
class CpuCachingAllocator final : public CachingAllocator {
 public:
  ~CpuCachingAllocator() override { release_cache(); }

 protected:
  void check_device(int) override {}
  void* system_allocate(int, size_t size) override { return std::aligned_alloc(64, size); }
  void system_free(int, void* ptr) override { std::free(ptr); }
  [[noreturn]] void out_of_memory(int, size_t size, size_t, int64_t) override {
    throw Error(detail::cat("cpu allocator: out of memory allocating ", size, " bytes"));
  }
};

Allocator* registry[2] = {nullptr, nullptr};

}  // namespace

Allocator& allocator_for(DeviceType type) {
  static CpuCachingAllocator* cpu = new CpuCachingAllocator();  // never destroyed: tensors may outlive main
  if (type == DeviceType::CPU) return registry[0] ? *registry[0] : *cpu;
  if (!registry[1]) cuda_backend();  // the backend registers its allocator on first use
  MG_CHECK(registry[1], "allocator: the CUDA backend is not built into this moegrad");
  return *registry[1];
}

void register_allocator(DeviceType type, Allocator* allocator) {
  registry[type == DeviceType::CPU ? 0 : 1] = allocator;
}

}  // namespace moegrad
