// The CUDA device allocators (allocator.cu); the backend registers the one
// that MOEGRAD_CUDA_ALLOCATOR selects for DeviceType::CUDA when it is first
// used:
//   caching (default): tensor/allocator.h's CachingAllocator over cudaMalloc /
//     cudaFree; sizes rounded up to a size class and freed blocks reused, so a
//     steady training step calls cudaMalloc no more.
//   exact: one cudaMalloc of exactly the tensor's bytes per tensor (1 for an
//     empty one) and cudaFree when it goes; nothing cached. Slow, but a read
//     or write past a tensor's end lands outside every allocation, where
//     compute-sanitizer's memcheck (or, often, the GPU itself) catches it;
//     the caching allocator's slack and reuse hide it.
#pragma once
#include "tensor/allocator.h"

namespace moegrad::cuda {

enum class AllocatorKind { Caching, Exact };

// The kind that the value of MOEGRAD_CUDA_ALLOCATOR names: null or "" or
// "caching" -> Caching, "exact" -> Exact; Error for anything else.
AllocatorKind allocator_kind_from(const char* value);

// The allocator of each kind (both exist in every process; tests use them
// directly), and the one registered for DeviceType::CUDA: it forwards to the
// kind MOEGRAD_CUDA_ALLOCATOR selects, read at the first allocation (a bad
// value is an Error there).
Allocator& caching_device_allocator();
Allocator& exact_device_allocator();
Allocator& device_allocator();

}  // namespace moegrad::cuda
