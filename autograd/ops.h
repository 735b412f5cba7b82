// The differentiable operations. Each is a free function that validates its
// input (wrong shape/dtype/device -> moegrad::Error naming the op and the
// shapes), computes the forward, and, when an input requires grad, attaches a
// Node whose hand-written backward sits beside the forward in the same file
// under autograd/ops/. Broadcasting follows NumPy's rules.
#pragma once
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace moegrad {

// ---- pointwise binary, broadcasting (ops/binary.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// with a scalar (ops/binary.cpp)
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor rsub(double a, const Tensor& b);  // a - b
Tensor rdiv(double a, const Tensor& b);  // a / b
// In place and not recorded: acc += x (x broadcast to acc). For gradient
// accumulation and optimizers.
void add_(const Tensor& acc, const Tensor& x, double alpha = 1.0);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator-(double a, const Tensor& b) { return rsub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator/(double a, const Tensor& b) { return rdiv(a, b); }

// ---- pointwise unary (ops/unary.cpp) ----
enum class GeluApprox { Tanh, Erf };
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::Tanh);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
inline Tensor operator-(const Tensor& x) { return neg(x); }

// ---- comparisons, not differentiable, bool result (ops/compare.cpp) ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);

// ---- selection (ops/select.cpp) ----
// x where mask is false, value where it is true (mask: bool, broadcast to x).
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
// a where cond is true, b elsewhere (all three broadcast together).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// min(max(x, low), high); the gradient passes where low <= x <= high.
Tensor clamp(const Tensor& x, double low, double high);

// ---- reductions (ops/reduce.cpp) ----
// dims may be negative; an empty dims list reduces every dimension.
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over dims; the gradient goes to the first maximal element.
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // int64, not differentiable
// Sums x down to `shape` (the reverse of broadcasting `shape` to x's shape).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- shape and views (ops/views.cpp, ops/join.cpp) ----
// Views share storage with x where the layout allows it.
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 allowed
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor expand(const Tensor& x, const Shape& shape);  // -1 keeps a size
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);  // x itself when already contiguous
Tensor clone(const Tensor& x);       // always a new buffer
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);

// ---- linear algebra (ops/matmul.cpp) ----
// 2-d [m,k]x[k,n]; batched [...,m,k]x[...,k,n] with broadcast batch dims;
// 1-d operands are promoted as in NumPy.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- neural-network functions ----
Tensor softmax(const Tensor& x, int64_t dim);      // ops/softmax.cpp
Tensor log_softmax(const Tensor& x, int64_t dim);  // ops/softmax.cpp
// Mean over targets != ignore_index of -log softmax(logits)[target];
// logits [N, C], targets int64 [N]. Zero when every target is ignored.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);  // ops/loss.cpp
// Normalises over the last dimension; weight and bias ([D]) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);  // ops/layer_norm.cpp
// weight [V, D], indices int64 of any shape -> [..., D].
Tensor embedding(const Tensor& weight, const Tensor& indices);  // ops/index.cpp
// Zeroes each element with probability p and scales the rest by 1/(1-p);
// identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);  // ops/dropout.cpp

// ---- indexing (ops/index.cpp) ----
// out[i][j] = x[index[i][j]][j] for dim 0, etc.; index int64, same rank as x.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// Rows (along dim) of x picked by a 1-d int64 index.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// x with src's slices added at positions index (1-d) along dim.
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// x with src scattered and added: out[index[i][j]][j] += src[i][j] for dim 0.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

// ---- top-k (ops/topk.cpp) ----
struct TopK {
  Tensor values;   // differentiable: the gradient flows to the selected entries
  Tensor indices;  // int64
};
// The k largest (or smallest) entries along dim, sorted (column 0 is the
// extreme); ties go to the lower index.
TopK topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);

}  // namespace moegrad
