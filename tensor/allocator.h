// The caching allocator behind every tensor's storage. Freed blocks go to a
// free list keyed by their rounded size and are handed out again, so that a
// steady training step (same shapes every step) asks the system for no memory
// at all. Each device type has one allocator; the CUDA backend registers its own.
#pragma once
#include <cstddef>
#include <cstdint>

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
};

// The allocator for a device type; throws Error if none is registered (CUDA
// without the CUDA backend).
Allocator& allocator_for(DeviceType type);
void register_allocator(DeviceType type, Allocator* allocator);

// Size classes: multiples of 64 bytes up to 4 KiB, then four classes per
// doubling, so at most 25% of a block is slack.
size_t allocation_size_class(size_t nbytes);

}  // namespace moegrad
