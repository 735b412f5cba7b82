// CPU caching allocator: 64-byte aligned blocks, free lists per size class.
#include "tensor/allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace moegrad {

size_t allocation_size_class(size_t nbytes) {
  if (nbytes == 0) nbytes = 1;
  if (nbytes <= 4096) return (nbytes + 63) / 64 * 64;
  size_t pow2 = 4096;
  while (pow2 * 2 < nbytes) pow2 *= 2;  // pow2 < nbytes <= 2*pow2
  size_t step = pow2 / 4;
  return (nbytes + step - 1) / step * step;
}

namespace {

class CpuCachingAllocator final : public Allocator {
 public:
  ~CpuCachingAllocator() override { release_cache(); }

  void* allocate(size_t nbytes) override {
    size_t size = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
      stats_.cache_hits++;
      stats_.bytes_cached -= static_cast<int64_t>(size);
    } else {
      ptr = std::aligned_alloc(64, size);
      if (!ptr) {
        release_locked();
        ptr = std::aligned_alloc(64, size);
      }
      MG_CHECK(ptr, "cpu allocator: out of memory allocating ", size, " bytes");
      stats_.system_allocs++;
    }
    stats_.bytes_in_use += static_cast<int64_t>(size);
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return ptr;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (!ptr) return;
    size_t size = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    free_[size].push_back(ptr);
    stats_.bytes_in_use -= static_cast<int64_t>(size);
    stats_.bytes_cached += static_cast<int64_t>(size);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  void release_cache() override {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked();
  }

 private:
  void release_locked() {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    stats_.bytes_cached = 0;
  }

  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

Allocator* registry[2] = {nullptr, nullptr};

}  // namespace

Allocator& allocator_for(DeviceType type) {
  static CpuCachingAllocator* cpu = new CpuCachingAllocator();  // never destroyed: tensors may outlive main
  if (type == DeviceType::CPU) return registry[0] ? *registry[0] : *cpu;
  MG_CHECK(registry[1], "allocator: the CUDA backend is not built into this moegrad");
  return *registry[1];
}

void register_allocator(DeviceType type, Allocator* allocator) {
  registry[type == DeviceType::CPU ? 0 : 1] = allocator;
}

}  // namespace moegrad
