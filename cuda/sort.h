// A stable counting sort of small integer keys on a CUDA device (sort.cu):
// the histogram, exclusive scan and scatter that the routing plan (slots by
// expert) and the AC cluster statistics (tokens by cluster) are built on.
// Deterministic: the keys are cut into fixed chunks of 256, each chunk is
// counted and scattered by one thread in input order, and the chunk counts
// are scanned in (key, chunk) order, so equal keys keep their input order.
// Plain C++: callers include it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

struct CudaCountingSort {
  Tensor order;    // int64 [m]: input positions sorted by key, equal keys in input order
  Tensor offsets;  // int64 [buckets + 1]: key b occupies order[offsets[b], offsets[b + 1])
};

// keys: int64 [m] on a CUDA device (any layout), values in [0, buckets). Both
// results live on keys' device. Error naming op for another dtype or device,
// buckets < 1, or a key out of range (found on the device and read back, so
// this call waits for the device).
CudaCountingSort cuda_counting_sort(const Tensor& keys, int64_t buckets, const char* op);

}  // namespace moegrad
