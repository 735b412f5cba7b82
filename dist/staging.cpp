// Host staging and argument checks shared by the communicators (staging.h).
#include "dist/staging.h"

#include <cstring>
#include <numeric>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/error.h"

namespace moegrad::dist {

namespace {
// A contiguous host copy of t (t itself when it already is one).
Tensor host_contiguous(const Tensor& t) {
  MG_CHECK(t.defined(), "dist: an undefined tensor cannot be communicated");
  NoGradGuard no_grad;
  return contiguous(t.detach().to(Device::cpu()));
}
// The number of elements (or bytes, with `bytes`) the tensors hold, which a
// buffer unpacked into them must give exactly.
void check_fills(size_t have, const std::vector<Tensor>& tensors, bool bytes, const char* op) {
  size_t want = 0;
  for (const Tensor& t : tensors) {
    MG_CHECK(t.defined(), op, ": an undefined tensor cannot receive values");
    want += static_cast<size_t>(t.numel()) * (bytes ? dtype_size(t.dtype()) : 1);
  }
  MG_CHECK(have == want, op, ": ", have, bytes ? " bytes" : " values", " for tensors holding ", want);
}
}  // namespace

std::vector<double> pack_values(const std::vector<Tensor>& tensors, const char* op) {
  std::vector<double> values;
  for (const Tensor& t : tensors) {
    MG_CHECK(t.defined() && (t.dtype() == DType::Float32 || t.dtype() == DType::Float64), op,
             ": tensors must be float32 or float64, got ", t.defined() ? dtype_name(t.dtype()) : "undefined");
    const std::vector<double> v = t.to_vector();
    values.insert(values.end(), v.begin(), v.end());
  }
  return values;
}

void unpack_values(const std::vector<double>& values, const std::vector<Tensor>& tensors) {
  check_fills(values.size(), tensors, false, "unpack_values");
  NoGradGuard no_grad;
  size_t at = 0;
  for (const Tensor& t : tensors) {
    const size_t n = static_cast<size_t>(t.numel());
    std::vector<double> part(values.begin() + at, values.begin() + at + n);
    t.copy_(Tensor::from_vector(part, t.shape(), t.dtype()).to(t.device()));
    at += n;
  }
}

std::vector<char> pack_bytes(const std::vector<Tensor>& tensors, const char* op) {
  std::vector<char> bytes;
  for (const Tensor& t : tensors) {
    MG_CHECK(t.defined(), op, ": an undefined tensor cannot be communicated");
    const Tensor h = host_contiguous(t);
    const char* p = static_cast<const char*>(h.raw_data());
    bytes.insert(bytes.end(), p, p + h.numel() * dtype_size(h.dtype()));
  }
  return bytes;
}

void unpack_bytes(const std::vector<char>& bytes, const std::vector<Tensor>& tensors) {
  check_fills(bytes.size(), tensors, true, "unpack_bytes");
  NoGradGuard no_grad;
  size_t at = 0;
  for (const Tensor& t : tensors) {
    Tensor h = Tensor::empty(t.shape(), t.dtype());
    const size_t n = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
    if (n > 0) std::memcpy(h.raw_data(), bytes.data() + at, n);
    t.copy_(h.to(t.device()));
    at += n;
  }
}

void check_counts(const std::vector<int64_t>& counts, int world_size, const char* op, const char* what) {
  MG_CHECK(static_cast<int64_t>(counts.size()) == world_size, op, ": ", what, " needs one count per rank (",
           world_size, "), got ", counts.size());
  for (int64_t c : counts) MG_CHECK(c >= 0, op, ": ", what, " counts must be non-negative, got ", c);
}

void check_all_to_all(const Tensor& rows, const std::vector<int64_t>& send, const std::vector<int64_t>& recv,
                      int world_size) {
  check_counts(send, world_size, "all_to_all", "send");
  check_counts(recv, world_size, "all_to_all", "recv");
  MG_CHECK(rows.defined() && rows.dim() >= 1, "all_to_all: rows must have at least one dim");
  const int64_t total = std::accumulate(send.begin(), send.end(), int64_t{0});
  MG_CHECK(rows.size(0) == total, "all_to_all: rows has ", rows.size(0), " rows, the send counts add up to ", total);
}

}  // namespace moegrad::dist
