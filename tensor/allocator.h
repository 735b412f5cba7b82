// The caching allocator behind every tensor's storage. Freed blocks go to a
// free list keyed by their rounded size and are handed out again, so that a
// steady training step (same shapes every step) asks the system for no memory
// at all. Each device type has one allocator; the CUDA backend registers its own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "tensor/dtype.h"

namespace moegrad {

struct AllocatorStats {
  int64_t system_allocs = 0;   // blocks obtained from the system (malloc / cudaMalloc)
  int64_t cache_hits = 0;      // allocations served from the free lists
  int64_t bytes_in_use = 0;    // handed out and not yet freed
  int64_t peak_bytes_in_use = 0;
  int64_t bytes_cached = 0;    // held in the free lists
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  virtual void release_cache() = 0;  // return every cached block to the system
  // The forms Storage calls: the CPU allocator has one device and ignores the
  // index; the CUDA allocator validates it and keeps its blocks per device.
  virtual void* allocate_on(int device, size_t nbytes) {
    (void)device;
    return allocate(nbytes);
  }
  virtual void deallocate_on(int device, void* ptr, size_t nbytes) {
    (void)device;
    deallocate(ptr, nbytes);
  }
};

// The caching both allocators share: free lists per (device, size class),
// the statistics, and one retry after returning the cache to the system when
// the system is out of memory. Subclasses supply the system calls.
class CachingAllocator : public Allocator {
 public:
  void* allocate(size_t nbytes) override { return allocate_on(0, nbytes); }
  void deallocate(void* ptr, size_t nbytes) override { deallocate_on(0, ptr, nbytes); }
  void* allocate_on(int device, size_t nbytes) override;
  void deallocate_on(int device, void* ptr, size_t nbytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  void release_cache() override;

 protected:
  // Error unless `device` is valid for this allocator.
  virtual void check_device(int device) = 0;
  // A new block of `size` bytes, nullptr when the system is out of memory
  // (any other failure throws).
  virtual void* system_allocate(int device, size_t size) = 0;
  virtual void system_free(int device, void* ptr) = 0;
  // The Error for an allocation that failed again after the retry.
  [[noreturn]] virtual void out_of_memory(int device, size_t size, size_t nbytes, int64_t bytes_in_use) = 0;

 private:
  void release_locked();

  mutable std::mutex mutex_;
  std::map<std::pair<int, size_t>, std::vector<void*>> free_;  // (device, size class) -> blocks
  AllocatorStats stats_;
};

// The allocator for a device type; throws Error if none is registered (CUDA
// without the CUDA backend, which registers its allocator when first used).
Allocator& allocator_for(DeviceType type);
void register_allocator(DeviceType type, Allocator* allocator);

// Size classes: multiples of 64 bytes up to 4 KiB, then four classes per
// doubling, so at most 25% of a block is slack.
size_t allocation_size_class(size_t nbytes);

}  // namespace moegrad
