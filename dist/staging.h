// What the communicators share: host staging of tensors (values packed into
// one host buffer, written back in place) and the checks of their arguments.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace moegrad::dist {

// Values of float32/float64 tensors (any layout, any device), concatenated as float64.
std::vector<double> pack_values(const std::vector<Tensor>& tensors, const char* op);
// Writes values (pack_values' layout) back into the tensors, in place.
void unpack_values(const std::vector<double>& values, const std::vector<Tensor>& tensors);
// The bytes of tensors of any dtype, layout and device, concatenated.
std::vector<char> pack_bytes(const std::vector<Tensor>& tensors, const char* op);
// Writes bytes (pack_bytes' layout) back into the tensors, in place.
void unpack_bytes(const std::vector<char>& bytes, const std::vector<Tensor>& tensors);

// Error naming op unless counts has world_size non-negative entries.
void check_counts(const std::vector<int64_t>& counts, int world_size, const char* op, const char* what);
// Error unless rows has at least one dim and sum(send) rows, and send/recv are valid counts.
void check_all_to_all(const Tensor& rows, const std::vector<int64_t>& send, const std::vector<int64_t>& recv,
                      int world_size);

}  // namespace moegrad::dist
