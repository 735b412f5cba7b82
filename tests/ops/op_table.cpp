// The entries of the op table (op_table.h), one function per op family.
// Inputs that a case reads through a view (transpose, slice) are given in
// the view's source shape, and the view is taken inside the case, so the op
// sees a non-contiguous tensor on every device.
#include "ops/op_table.h"

#include <functional>
#include <utility>

#include "autograd/ops.h"
#include "moe/ac_weights.h"
#include "moe/dispatch.h"
#include "moe/ac_variants.h"
#include "moe/router.h"
#include "nn/attention.h"

namespace moegrad::testing {

OpInput uniform_in(const Shape& shape, double low, double high) {
  OpInput in;
  in.shape = shape, in.low = low, in.high = high, in.grad = true;
  return in;
}

OpInput signed_in(const Shape& shape) {
  OpInput in = uniform_in(shape);
  in.kind = OpInput::Kind::Signed;
  return in;
}

OpInput constant_in(const Shape& shape) {
  OpInput in = uniform_in(shape);
  in.grad = false;
  return in;
}

OpInput index_in(const std::vector<int64_t>& values, const Shape& shape) {
  OpInput in;
  in.kind = OpInput::Kind::Fixed, in.shape = shape, in.dtype = DType::Int64;
  in.values.assign(values.begin(), values.end());
  return in;
}

OpInput index_in(const std::vector<int64_t>& values) {
  return index_in(values, {static_cast<int64_t>(values.size())});
}

OpInput mask_in(const Shape& shape) {
  OpInput in;
  in.kind = OpInput::Kind::Mask, in.shape = shape;
  return in;
}

OpInput fixed_in(const std::vector<double>& values, const Shape& shape) {
  OpInput in;
  in.kind = OpInput::Kind::Fixed, in.shape = shape, in.values = values, in.grad = true;
  return in;
}

OpInput mask_in(const std::vector<double>& values, const Shape& shape) {
  OpInput in;
  in.kind = OpInput::Kind::Fixed, in.shape = shape, in.values = values, in.dtype = DType::Bool;
  return in;
}

Tensor make_input(const OpInput& input, DType float_dtype, uint64_t seed) {
  Generator gen(seed);
  Tensor t;
  switch (input.kind) {
    case OpInput::Kind::Uniform:
      t = Tensor::rand(input.shape, input.low, input.high, float_dtype, &gen);
      break;
    case OpInput::Kind::Signed: {
      std::vector<double> v = Tensor::rand(input.shape, 0.1, 1.0, DType::Float64, &gen).to_vector();
      for (size_t i = 1; i < v.size(); i += 3) v[i] = -v[i];
      t = Tensor::from_vector(v, input.shape, float_dtype);
      break;
    }
    case OpInput::Kind::Fixed:
      t = Tensor::from_vector(input.values, input.shape, input.grad ? float_dtype : input.dtype);
      break;
    case OpInput::Kind::Mask:
      t = gt(Tensor::rand(input.shape, -1.0, 1.0, DType::Float64, &gen), 0.0);
      break;
  }
  if (input.grad) t.requires_grad_();
  return t;
}

namespace {

// "softmax dim -1 2x3" -> "softmax_dim_m1_2x3": letters, digits and '_'.
std::string test_name(const std::string& text) {
  std::string out;
  for (char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
      out += c;
    else if (c == '-')
      out += 'm';
    else if (!out.empty() && out.back() != '_')
      out += '_';
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

// "3x4" for [3, 4], "0d" for a 0-d shape.
std::string dims(const Shape& s) {
  if (s.empty()) return "0d";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

using Table = std::vector<OpCase>;
using Binary = Tensor (*)(const Tensor&, const Tensor&);

void binary_ops(Table& t) {
  // (a, b, a shape for one of them that does not broadcast)
  struct Pair {
    Shape a, b;
    BadShape bad;
  };
  const std::vector<Pair> pairs = {
      {{3, 4}, {3, 4}, {1, {7}}},      {{3, 4}, {4}, {1, {7}}},    {{2, 1, 4}, {3, 1}, {1, {7}}},
      {{}, {2, 3}, {0, {7}}},          {{5}, {}, {1, {3}}},        {{3, 1}, {1, 4}, {1, {2, 4}}},
      {{2, 3, 4}, {3, 1}, {1, {7}}},   {{2, 1, 3, 1, 2}, {3, 4, 2}, {1, {7}}}, {{0, 3}, {3}, {1, {7}}}};
  const std::pair<const char*, Binary> ops[] = {{"add", add}, {"sub", sub}, {"mul", mul}, {"div", div}};
  for (const auto& op : ops)
    for (const Pair& p : pairs) {
      Binary f = op.second;
      // b away from 0 for div
      t.push_back(OpCase(op.first, std::string(op.first) + " " + dims(p.a) + " " + dims(p.b),
                         {uniform_in(p.a), uniform_in(p.b, 0.5, 2.0)},
                         [f](const std::vector<Tensor>& in) { return f(in[0], in[1]); })
                      .bad_shape(p.bad.input, p.bad.shape));
    }
  t.push_back(OpCase("mul", "mul transposed by narrowed", {uniform_in({4, 3}), uniform_in({3, 8}, 0.5, 2.0)},
                     [](const std::vector<Tensor>& in) { return mul(transpose(in[0], 0, 1), narrow(in[1], 1, 2, 4)); })
                  .bad_shape(0, {4, 5}));
  t.push_back(OpCase("div", "div transposed by sliced", {uniform_in({4, 3}), uniform_in({3, 8}, 0.5, 2.0)},
                     [](const std::vector<Tensor>& in) { return div(transpose(in[0], 0, 1), slice(in[1], 1, 0, 8, 2)); })
                  .bad_shape(0, {4, 5}));
  // the scalar forms
  t.push_back(OpCase("mul", "mul add scalar", {uniform_in({3, 2}, 0.5, 2.0)},
                     [](const std::vector<Tensor>& in) { return in[0] * 3.0 + 2.0; }));
  t.push_back(OpCase("add", "add scalar", {uniform_in({3, 4}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return add(in[0], 1.25); }));
  t.push_back(OpCase("mul", "mul scalar", {uniform_in({3, 4}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return mul(in[0], -0.75); }));
  t.push_back(OpCase("rsub", "rsub 3x2", {uniform_in({3, 2}, 0.5, 2.0)},
                     [](const std::vector<Tensor>& in) { return 1.0 - in[0]; }));
  t.push_back(OpCase("rsub", "rsub 3x4", {uniform_in({3, 4}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return rsub(3.0, in[0]); }));
  t.push_back(OpCase("rdiv", "rdiv 3x2", {uniform_in({3, 2}, 0.5, 2.0)},
                     [](const std::vector<Tensor>& in) { return 2.0 / in[0]; }));
  t.push_back(OpCase("rdiv", "rdiv 3x4", {uniform_in({3, 4}, 0.2, 2.0)},
                     [](const std::vector<Tensor>& in) { return rdiv(2.0, in[0]); }));
}

void unary_ops(Table& t) {
  using Unary = Tensor (*)(const Tensor&);
  struct Op {
    const char* op;
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    double low, high;  // where the op is smooth; kinked ops (low == 0) get signed inputs
  };
  const std::vector<Op> ops = {
      {"neg", "neg", Unary(neg), -2, 2},
      {"exp", "exp", Unary(exp), -2, 2},
      {"log", "log", Unary(log), 0.1, 3},
      {"sqrt", "sqrt", Unary(sqrt), 0.1, 3},
      {"pow", "pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, 0.1, 3},
      {"pow", "pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, 0.1, 3},
      {"pow", "pow 0", [](const Tensor& x) { return pow(x, 0.0); }, 0.1, 3},
      {"abs", "abs", Unary(abs), 0, 0},
      {"relu", "relu", Unary(relu), 0, 0},
      {"gelu", "gelu tanh", [](const Tensor& x) { return gelu(x, GeluApprox::Tanh); }, -3, 3},
      {"gelu", "gelu erf", [](const Tensor& x) { return gelu(x, GeluApprox::Erf); }, -3, 3},
      {"tanh", "tanh", Unary(tanh), -2, 2},
      {"sigmoid", "sigmoid", Unary(sigmoid), -4, 4},
  };
  for (const Op& op : ops) {
    auto input = [&op](const Shape& s) { return op.low == 0 ? signed_in(s) : uniform_in(s, op.low, op.high); };
    const std::function<Tensor(const Tensor&)> f = op.f;
    for (const Shape& s : std::vector<Shape>{{}, {5}, {3, 4}, {2, 3, 2}})
      t.push_back(OpCase(op.op, std::string(op.name) + " " + dims(s), {input(s)},
                         [f](const std::vector<Tensor>& in) { return f(in[0]); }));
    t.push_back(OpCase(op.op, std::string(op.name) + " transposed", {input({4, 6})},
                       [f](const std::vector<Tensor>& in) { return f(transpose(in[0], 0, 1)); }));
    t.push_back(OpCase(op.op, std::string(op.name) + " sliced", {input({4, 6})},
                       [f](const std::vector<Tensor>& in) { return f(slice(in[0], 1, 1, 6, 2)); }));
  }
  // integer exponents are defined for negative inputs
  for (double p : {2.0, 3.0, -1.0})
    t.push_back(OpCase("pow", "pow " + std::to_string(static_cast<int>(p)) + " signed", {signed_in({3, 4})},
                       [p](const std::vector<Tensor>& in) { return pow(in[0], p); }));
  // a graph that reuses intermediate results
  t.push_back(OpCase("sigmoid", "unary composed", {uniform_in({3, 5}, 0.2, 2.0)},
                     [](const std::vector<Tensor>& in) {
                       Tensor y = sigmoid(in[0]);
                       return log(y) * tanh(y) + sqrt(exp(-in[0])) + gelu(y, GeluApprox::Erf);
                     }));
  // a reduction of a transposed input through reused intermediates
  t.push_back(OpCase("tanh", "pointwise composed", {uniform_in({4, 3})},
                     [](const std::vector<Tensor>& in) {
                       Tensor x = transpose(in[0], 0, 1);
                       Tensor h = tanh(x) * x + sigmoid(x);
                       return sum(h * h, {1});
                     })
                  .errors_from("sigmoid"));
}

void reductions(Table& t) {
  using Reduce = Tensor (*)(const Tensor&, const std::vector<int64_t>&, bool);
  const std::pair<const char*, Reduce> ops[] = {{"sum", sum}, {"mean", mean}, {"max", max}};
  struct Dims {
    std::vector<int64_t> dims;
    bool keepdim;
  };
  // a few on [3, 4, 2]; every set of dims of [4, 5, 6], with and without keepdim
  std::vector<std::pair<Shape, Dims>> cases = {
      {{3, 4, 2}, {{0}, false}}, {{3, 4, 2}, {{1}, true}}, {{3, 4, 2}, {{-1}, false}},
      {{3, 4, 2}, {{0, 2}, true}}, {{3, 4, 2}, {{}, false}}};
  for (const std::vector<int64_t>& d : std::vector<std::vector<int64_t>>{
           {}, {0}, {1}, {2}, {-1}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2}})
    for (bool keep : {false, true}) cases.push_back({{4, 5, 6}, {d, keep}});
  for (const auto& op : ops)
    for (const auto& c : cases) {
      Reduce f = op.second;
      const std::vector<int64_t> d = c.second.dims;
      const bool keep = c.second.keepdim;
      OpCase entry(op.first,
                   std::string(op.first) + " " + dims(c.first) + " dims " + (d.empty() ? "all" : dims(d)) +
                       (keep ? " keepdim" : ""),
                   {uniform_in(c.first)}, [f, d, keep](const std::vector<Tensor>& in) { return f(in[0], d, keep); });
      if (!d.empty() && d.back() > 0) entry.bad_shape(0, {3});  // dimension out of range
      t.push_back(entry);
    }
  t.push_back(OpCase("sum", "sum transposed", {uniform_in({4, 3, 5})},
                     [](const std::vector<Tensor>& in) { return sum(transpose(in[0], 0, 2), {1}); }));
  t.push_back(OpCase("max", "max sliced", {uniform_in({4, 3, 5})},
                     [](const std::vector<Tensor>& in) { return max(slice(in[0], 2, 0, 5, 2), {0, 1}, true); }));
  t.push_back(OpCase("mean", "mean permuted", {uniform_in({4, 3, 5})},
                     [](const std::vector<Tensor>& in) { return mean(permute(in[0], {1, 2, 0}), {0}); }));
  t.push_back(OpCase("sum_to", "sum_to 4x1", {uniform_in({3, 4, 2})},
                     [](const std::vector<Tensor>& in) { return sum_to(in[0], {4, 1}); })
                  .bad_shape(0, {3, 5, 2}));
  for (const Shape& to : std::vector<Shape>{{3, 1}, {4}, {}}) {
    OpCase entry("sum_to", "sum_to " + dims(to), {uniform_in({2, 3, 4})},
                 [to](const std::vector<Tensor>& in) { return sum_to(in[0], to); });
    if (!to.empty()) entry.bad_shape(0, {2, 5, 7});  // every shape sums to a 0-d one
    t.push_back(entry);
  }
}

void views(Table& t) {
  using View = std::function<Tensor(const Tensor&)>;
  // the view's output weighted by fixed non-uniform constants, so that
  // gradients differ per element
  auto weighted = [](const View& f) {
    return [f](const std::vector<Tensor>& in) {
      Tensor y = f(in[0]);
      Generator g(5);
      return y * Tensor::rand(y.shape(), 0.5, 1.5, y.dtype(), &g).to(y.device());
    };
  };
  struct Case {
    const char* op;
    const char* name;
    View f;
    std::vector<BadShape> bad;
  };
  const std::vector<Case> cases = {
      {"reshape", "reshape", [](const Tensor& x) { return reshape(x, {4, -1}); }, {{0, {2, 3, 5}}}},
      {"reshape", "reshape non-contiguous", [](const Tensor& x) { return reshape(transpose(x, 0, 2), {-1}); }, {}},
      {"permute", "permute", [](const Tensor& x) { return permute(x, {2, 0, 1}); }, {{0, {2, 3}}}},
      {"transpose", "transpose", [](const Tensor& x) { return transpose(x, -1, 0); }, {}},
      {"narrow", "narrow", [](const Tensor& x) { return narrow(x, 2, 1, 2); }, {{0, {2, 3, 2}}}},
      {"slice", "slice step", [](const Tensor& x) { return slice(x, 1, 0, 3, 2); }, {{0, {2}}}},
      {"slice", "slice negative", [](const Tensor& x) { return slice(x, -1, -3, -1); }, {}},
      {"expand", "expand", [](const Tensor& x) { return expand(unsqueeze(x, 0), {3, 2, 3, 4}); }, {{0, {2, 3, 5}}}},
      {"expand", "expand size-1 dim", [](const Tensor& x) { return expand(narrow(x, 1, 0, 1), {2, 5, 4}); }, {}},
      {"squeeze", "squeeze", [](const Tensor& x) { return squeeze(narrow(x, 1, 1, 1), 1); }, {}},
      {"unsqueeze", "unsqueeze", [](const Tensor& x) { return unsqueeze(x, -1); }, {}},
      {"contiguous", "contiguous", [](const Tensor& x) { return contiguous(transpose(x, 0, 1)); }, {}},
      {"clone", "clone", [](const Tensor& x) { return clone(x); }, {}},
  };
  for (const Case& c : cases) {
    OpCase entry(c.op, c.name, {uniform_in({2, 3, 4})}, weighted(c.f));
    entry.any_dtype();
    entry.bad_shapes = c.bad;
    t.push_back(entry);
  }
}

void joins(Table& t) {
  t.push_back(OpCase("concat", "concat dim 0", {uniform_in({2, 3}), uniform_in({4, 3})},
                     [](const std::vector<Tensor>& in) { return concat({in[0], in[1], in[0]}, 0); })
                  .any_dtype()
                  .bad_shape(1, {4, 5}));
  t.push_back(OpCase("concat", "concat dim 1", {uniform_in({2, 3}), uniform_in({2, 5})},
                     [](const std::vector<Tensor>& in) { return concat({in[0], in[1]}, 1); })
                  .any_dtype()
                  .bad_shape(1, {3, 5}));
  // non-contiguous inputs; one input that does not require grad
  t.push_back(OpCase("concat", "concat views and a constant", {uniform_in({3, 2}), constant_in({2, 2}), uniform_in({2, 5})},
                     [](const std::vector<Tensor>& in) {
                       return concat({transpose(in[0], 0, 1), in[1], slice(in[2], 1, 0, 5, 2)}, -1);
                     })
                  .any_dtype()
                  .bad_shape(1, {3, 2}));
  for (int64_t d : {0, 1, 2, -1})
    t.push_back(OpCase("stack", "stack dim " + std::to_string(d), {uniform_in({2, 3}), uniform_in({2, 3})},
                       [d](const std::vector<Tensor>& in) { return stack({in[0], in[1], in[0]}, d); })
                    .any_dtype()
                    .bad_shape(1, {3, 2}));
  t.push_back(OpCase("stack", "stack transposed", {uniform_in({3, 2}), uniform_in({2, 3})},
                     [](const std::vector<Tensor>& in) { return stack({transpose(in[0], 0, 1), in[1]}, 1); })
                  .any_dtype()
                  .bad_shape(1, {3, 2}));
}

void matmuls(Table& t) {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 4}, {4, 2}},       {{2, 3, 4}, {4, 5}},       {{2, 3, 4}, {2, 4, 2}},    {{2, 1, 3, 4}, {3, 4, 2}},
      {{4}, {4, 3}},          {{3, 4}, {4}},             {{1, 4}, {4, 1}},          {{2, 3, 4}, {4, 2}},
      {{5, 7}, {7, 3}},       {{7}, {7, 3}},             {{5, 7}, {7}},             {{2, 3, 5, 7}, {7, 4}},
      {{4, 5, 7}, {4, 7, 3}}, {{4, 5, 7}, {7, 3}},       {{1, 5, 7}, {4, 7, 3}},    {{2, 1, 5, 7}, {1, 3, 7, 2}},
      {{3, 2, 5, 7}, {2, 7, 6}}, {{6, 1, 1}, {6, 1, 9}}};
  for (const auto& [sa, sb] : shapes) {
    Shape wrong = sb;
    wrong[sb.size() == 1 ? 0 : sb.size() - 2] += 1;  // inner dimensions differ
    t.push_back(OpCase("matmul", "matmul " + dims(sa) + " " + dims(sb), {uniform_in(sa), uniform_in(sb)},
                       [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); })
                    .gemm()
                    .bad_shape(1, wrong));
  }
  t.push_back(OpCase("matmul", "matmul transposed by itself", {uniform_in({4, 3})},
                     [](const std::vector<Tensor>& in) { return matmul(transpose(in[0], 0, 1), in[0]); })
                  .gemm());
  t.push_back(OpCase("matmul", "matmul transposed by sliced", {uniform_in({2, 5, 4})},
                     [](const std::vector<Tensor>& in) {
                       return matmul(transpose(in[0], 1, 2), slice(in[0], 2, 0, 4, 2));
                     })
                  .gemm());
  t.push_back(OpCase("matmul", "matmul transposed views", {uniform_in({3, 8, 5}), uniform_in({3, 6, 8})},
                     [](const std::vector<Tensor>& in) {
                       return matmul(transpose(in[0], 1, 2), transpose(in[1], 1, 2));
                     })
                  .gemm()
                  .bad_shape(1, {3, 6, 7}));
}

void softmaxes(Table& t) {
  using Softmax = Tensor (*)(const Tensor&, int64_t);
  const std::pair<const char*, Softmax> ops[] = {{"softmax", softmax}, {"log_softmax", log_softmax}};
  for (const auto& op : ops) {
    const std::string name = op.first;
    Softmax f = op.second;
    auto along = [&t, &name, f](const Shape& s, int64_t dim, const std::string& what) {
      OpCase entry(name, name + " dim " + std::to_string(dim) + " " + what, {uniform_in(s, -2, 2)},
                   [f, dim](const std::vector<Tensor>& in) { return f(in[0], dim); });
      if (dim > 0) entry.bad_shape(0, {3});  // dimension out of range
      t.push_back(entry);
    };
    for (const Shape& s : std::vector<Shape>{{5}, {3, 4}, {2, 3, 4}, {4, 5, 6}, {3, 4, 5}})
      for (int64_t dim = 0; dim < static_cast<int64_t>(s.size()); ++dim) along(s, dim, dims(s));
    along({4, 5, 6}, -1, dims({4, 5, 6}));
    along({2, 300}, 1, "long rows");
    // transposed and strided inputs: no contiguous row anywhere
    for (int64_t dim : {0, 1, 2, -1})
      t.push_back(OpCase(name, name + " dim " + std::to_string(dim) + " transposed", {uniform_in({2, 3, 4}, -2, 2)},
                         [f, dim](const std::vector<Tensor>& in) { return f(transpose(in[0], 0, 2), dim); }));
    t.push_back(OpCase(name, name + " transposed 6x5x4", {uniform_in({6, 5, 4}, -2, 2)},
                       [f](const std::vector<Tensor>& in) { return f(transpose(in[0], 0, 2), 1); }));
    t.push_back(OpCase(name, name + " sliced last dim", {uniform_in({2, 3, 4}, -2, 2)},
                       [f](const std::vector<Tensor>& in) { return f(slice(in[0], 2, 0, 4, 2), -1); }));
    for (int64_t dim : {0, 1})
      t.push_back(OpCase(name, name + " dim " + std::to_string(dim) + " sliced 3x40", {uniform_in({3, 40}, -2, 2)},
                         [f, dim](const std::vector<Tensor>& in) { return f(slice(in[0], 1, 1, 40, 3), dim); }));
  }
  // the output feeds another op, so dout is not the gradcheck projection alone
  t.push_back(OpCase("softmax", "softmax times input", {uniform_in({3, 5}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return sum(mul(softmax(in[0], 1), in[0])); }));
  t.push_back(OpCase("log_softmax", "log_softmax summed", {uniform_in({3, 5}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return sum(log_softmax(in[0], 0), {0}); }));
}

void layer_norms(Table& t) {
  auto ln = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); };
  for (const Shape& s : std::vector<Shape>{{6}, {4, 5}, {2, 3, 4}}) {
    const int64_t D = s.back();
    t.push_back(OpCase("layer_norm", "layer_norm " + dims(s), {uniform_in(s), uniform_in({D}), uniform_in({D})}, ln)
                    .bad_shape(1, {D + 1})
                    .bad_shape(2, {D, 1}));
  }
  t.push_back(OpCase("layer_norm", "layer_norm without weight and bias", {uniform_in({3, 5})},
                     [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor()); }));
  t.push_back(OpCase("layer_norm", "layer_norm without bias eps 0.01", {uniform_in({3, 5}), uniform_in({5})},
                     [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor(), 0.01); })
                  .bad_shape(1, {4}));
  t.push_back(OpCase("layer_norm", "layer_norm without weight", {uniform_in({3, 5}), uniform_in({5})},
                     [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), in[1]); })
                  .bad_shape(1, {4}));
  // only some inputs require grad
  t.push_back(OpCase("layer_norm", "layer_norm constant input", {constant_in({3, 4}), uniform_in({4}), uniform_in({4})},
                     ln));
  t.push_back(OpCase("layer_norm", "layer_norm constant weight", {uniform_in({3, 4}), constant_in({4}), uniform_in({4})},
                     ln));
  // a row longer than one block of the device kernel
  t.push_back(OpCase("layer_norm", "layer_norm long rows without bias", {uniform_in({2, 300}), uniform_in({300})},
                     [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); })
                  .bad_shape(1, {299}));
  t.push_back(OpCase("layer_norm", "layer_norm views", {uniform_in({5, 3}), uniform_in({10}), uniform_in({5})},
                     [](const std::vector<Tensor>& in) {
                       return layer_norm(transpose(in[0], 0, 1), slice(in[1], 0, 0, 10, 2), in[2]);
                     })
                  .bad_shape(2, {3}));
}

void cross_entropies(Table& t) {
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
      {{1, 2}, {1}},          {{4, 5}, {0, 4, 2, 2}}, {{5, 3}, {1, -100, 2, -100, 0}},
      {{2, 3}, {-100, -100}}, {{2, 300}, {299, 7}}};
  for (const auto& [shape, targets] : cases)
    t.push_back(OpCase("cross_entropy", "cross_entropy " + dims(shape), {uniform_in(shape, -3, 3), index_in(targets)},
                       [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); })
                    .bad_shape(1, {shape[0] + 1}));
  // transposed logits; the loss scaled afterwards, so dout != 1
  t.push_back(OpCase("cross_entropy", "cross_entropy transposed and scaled",
                     {uniform_in({6, 4}, -3, 3), index_in({2, 0, -100, 5})},
                     [](const std::vector<Tensor>& in) { return mul(cross_entropy(transpose(in[0], 0, 1), in[1]), 3.0); })
                  .bad_shape(1, {6}));
  t.push_back(OpCase("cross_entropy", "cross_entropy long rows transposed and scaled",
                     {uniform_in({300, 2}, -3, 3), index_in({299, 7})},
                     [](const std::vector<Tensor>& in) { return mul(cross_entropy(transpose(in[0], 0, 1), in[1]), 3.0); })
                  .bad_shape(1, {3}));
  t.push_back(OpCase("cross_entropy", "cross_entropy sliced",
                     {uniform_in({6, 4}, -3, 3), index_in({1, 0, 1, 1, 0, -100})},
                     [](const std::vector<Tensor>& in) { return cross_entropy(slice(in[0], 1, 0, 4, 2), in[1]); })
                  .bad_shape(1, {4}));
}

void indexing(Table& t) {
  // repeated indices: the gradient accumulates
  for (int64_t d : {0, 1, 2})
    t.push_back(OpCase("index_select", "index_select dim " + std::to_string(d), {uniform_in({4, 3, 2}), index_in({1, 0, 1, 1})},
                       [d](const std::vector<Tensor>& in) { return index_select(in[0], d, in[1]); })
                    .bad_shape(1, {2, 2}));
  t.push_back(OpCase("index_select", "index_select transposed", {uniform_in({4, 3, 2}), index_in({2, 2, 0})},
                     [](const std::vector<Tensor>& in) { return index_select(transpose(in[0], 0, 2), 1, in[1]); })
                  .bad_shape(1, {3, 1}));
  auto index_add_fn = [](int64_t dim, bool transposed) {
    return [dim, transposed](const std::vector<Tensor>& in) {
      return index_add(transposed ? transpose(in[0], 0, 2) : in[0], dim, in[2], in[1]);
    };
  };
  t.push_back(OpCase("index_add", "index_add dim 0", {uniform_in({3, 4, 2}), uniform_in({5, 4, 2}), index_in({2, 0, 2, 1, 2})},
                     index_add_fn(0, false))
                  .bad_shape(1, {5, 3, 2}));
  t.push_back(OpCase("index_add", "index_add dim 1",
                     {uniform_in({3, 4, 2}), uniform_in({3, 6, 2}), index_in({3, 3, 0, 1, 3, 2})}, index_add_fn(1, false))
                  .bad_shape(2, {5}));
  t.push_back(OpCase("index_add", "index_add transposed",
                     {uniform_in({2, 4, 3}), uniform_in({5, 4, 2}), index_in({2, 0, 2, 1, 2})}, index_add_fn(0, true))
                  .bad_shape(1, {5, 4, 3}));
  t.push_back(OpCase("gather", "gather dim 0", {uniform_in({3, 4}), index_in({2, 2, 0, 1, 2, 2, 2, 0}, {2, 4})},
                     [](const std::vector<Tensor>& in) { return gather(in[0], 0, in[1]); })
                  .bad_shape(1, {8}));
  t.push_back(OpCase("gather", "gather dim -1", {uniform_in({3, 4}), index_in({3, 3, 3, 0, 1, 1}, {3, 2})},
                     [](const std::vector<Tensor>& in) { return gather(in[0], -1, in[1]); })
                  .bad_shape(1, {3, 2, 1}));
  t.push_back(OpCase("gather", "gather transposed", {uniform_in({4, 3}), index_in({3, 3, 3, 0, 1, 1}, {3, 2})},
                     [](const std::vector<Tensor>& in) { return gather(transpose(in[0], 0, 1), 1, in[1]); })
                  .bad_shape(1, {6}));
  auto scatter_fn = [](int64_t dim, bool transposed) {
    return [dim, transposed](const std::vector<Tensor>& in) {
      return scatter_add(transposed ? transpose(in[0], 0, 1) : in[0], dim, in[2], in[1]);
    };
  };
  t.push_back(OpCase("scatter_add", "scatter_add dim 0",
                     {uniform_in({3, 4}), uniform_in({2, 4}), index_in({2, 2, 0, 2, 2, 0, 0, 1}, {2, 4})}, scatter_fn(0, false))
                  .bad_shape(1, {8}));
  t.push_back(OpCase("scatter_add", "scatter_add dim 1",
                     {uniform_in({3, 4}), uniform_in({3, 5}), index_in({3, 3, 0, 1, 1, 1, 3, 2, 2}, {3, 3})},
                     scatter_fn(1, false))
                  .bad_shape(2, {9}));
  t.push_back(OpCase("scatter_add", "scatter_add transposed",
                     {uniform_in({4, 3}), uniform_in({2, 4}), index_in({2, 2, 0, 2, 2, 0, 0, 1}, {2, 4})}, scatter_fn(0, true))
                  .bad_shape(1, {2, 4, 1}));
  t.push_back(OpCase("embedding", "embedding", {uniform_in({5, 3}), index_in({4, 0, 4, 1, 4, 0}, {2, 3})},
                     [](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); })
                  .bad_shape(0, {5}));
  t.push_back(OpCase("embedding", "embedding transposed indices", {uniform_in({5, 3}), index_in({4, 0, 4, 1, 4, 0}, {2, 3})},
                     [](const std::vector<Tensor>& in) { return embedding(in[0], transpose(in[1], 0, 1)); })
                  .bad_shape(0, {5, 3, 1}));
  t.push_back(OpCase("embedding", "embedding transposed weight", {uniform_in({3, 5}), index_in({4, 0, 4, 1, 4, 0}, {2, 3})},
                     [](const std::vector<Tensor>& in) { return embedding(transpose(in[0], 0, 1), in[1]); })
                  .bad_shape(0, {3, 5, 1}));
}

void selections(Table& t) {
  const std::vector<std::pair<Shape, Shape>> fills = {
      {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 3, 2}, {3, 1}}, {{}, {}}, {{5}, {}}};
  // a 0-d mask is one bool for the whole tensor: an entry for each value, so both branches run
  auto masks = [](const Shape& s) {
    return s.empty() ? std::vector<std::pair<std::string, OpInput>>{{" true", mask_in({1}, {})}, {" false", mask_in({0}, {})}}
                     : std::vector<std::pair<std::string, OpInput>>{{"", mask_in(s)}};
  };
  for (const auto& [sx, sm] : fills)
    for (const auto& [value, mask] : masks(sm)) {
      OpCase entry("masked_fill", "masked_fill " + dims(sx) + " " + dims(sm) + value, {uniform_in(sx), mask},
                   [](const std::vector<Tensor>& in) { return masked_fill(in[0], in[1], 3.0); });
      if (!sx.empty()) entry.bad_shape(1, {7});
      t.push_back(entry);
    }
  t.push_back(OpCase("masked_fill", "masked_fill transposed", {uniform_in({4, 3}), mask_in({1, 0, 0, 1}, {4})},
                     [](const std::vector<Tensor>& in) { return masked_fill(transpose(in[0], 0, 1), in[1], -1.0); })
                  .bad_shape(1, {3}));
  t.push_back(OpCase("masked_fill", "masked_fill sliced", {uniform_in({4, 3}), mask_in({0, 1}, {2, 1})},
                     [](const std::vector<Tensor>& in) { return masked_fill(slice(in[0], 0, 0, 4, 2), in[1], 0.0); })
                  .bad_shape(1, {4, 1}));
  struct Where {
    Shape c, a, b;
  };
  const std::vector<Where> wheres = {{{3, 4}, {3, 4}, {3, 4}}, {{3, 4}, {4}, {3, 1}}, {{2, 1, 3}, {4, 1}, {3}},
                                     {{4}, {}, {2, 4}},         {{}, {2, 3}, {2, 3}},  {{3, 4}, {3, 4}, {4}}};
  for (const Where& w : wheres)
    for (const auto& [value, mask] : masks(w.c))
      t.push_back(OpCase("where", "where " + dims(w.c) + " " + dims(w.a) + " " + dims(w.b) + value,
                         {mask, uniform_in(w.a), uniform_in(w.b)},
                         [](const std::vector<Tensor>& in) { return where(in[0], in[1], in[2]); })
                      .bad_shape(0, {7}));
  const std::vector<double> cond = {1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0};
  t.push_back(OpCase("where", "where transposed and sliced", {mask_in(cond, {3, 4}), uniform_in({4, 3}), uniform_in({3, 8})},
                     [](const std::vector<Tensor>& in) {
                       return where(in[0], transpose(in[1], 0, 1), slice(in[2], 1, 0, 8, 2));
                     })
                  .bad_shape(0, {4, 3}));
  t.push_back(OpCase("where", "where transposed condition", {mask_in(cond, {3, 4}), uniform_in({4, 3}), uniform_in({3, 8})},
                     [](const std::vector<Tensor>& in) {
                       return where(transpose(in[0], 0, 1), in[1], narrow(transpose(in[2], 0, 1), 0, 3, 4));
                     })
                  .bad_shape(0, {3, 3}));
  // some entries inside, some outside the bounds
  for (const Shape& s : std::vector<Shape>{{}, {7}, {3, 4}, {2, 3, 2}})
    t.push_back(OpCase("clamp", "clamp " + dims(s), {uniform_in(s, -2, 2)},
                       [](const std::vector<Tensor>& in) { return clamp(in[0], -0.7, 0.9); }));
  t.push_back(OpCase("clamp", "clamp transposed", {uniform_in({4, 6}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return clamp(transpose(in[0], 0, 1), -1.0, 0.5); }));
  t.push_back(OpCase("clamp", "clamp sliced", {uniform_in({4, 6}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return clamp(slice(in[0], 1, 1, 6, 2), -0.3, 1.0); }));
}

void topks(Table& t) {
  t.push_back(OpCase("topk", "topk 2 of 5", {uniform_in({3, 5})},
                     [](const std::vector<Tensor>& in) { return topk(in[0], 2).values; })
                  .bad_shape(0, {3, 1}));
  t.push_back(OpCase("topk", "topk smallest 5 of 5", {uniform_in({3, 5})},
                     [](const std::vector<Tensor>& in) { return topk(in[0], 5, -1, false).values; })
                  .bad_shape(0, {3, 4}));
  t.push_back(OpCase("topk", "topk 3 of 7", {uniform_in({4, 7})},
                     [](const std::vector<Tensor>& in) { return topk(in[0], 3, -1).values; })
                  .bad_shape(0, {4, 2}));
  t.push_back(OpCase("topk", "topk smallest dim 0", {uniform_in({4, 7})},
                     [](const std::vector<Tensor>& in) { return topk(in[0], 2, 0, false).values; })
                  .bad_shape(0, {1, 7}));
  t.push_back(OpCase("topk", "topk dim 1", {uniform_in({2, 4, 3})},
                     [](const std::vector<Tensor>& in) { return topk(in[0], 2, 1).values; })
                  .bad_shape(0, {2, 1, 3}));
  t.push_back(OpCase("topk", "topk smallest transposed", {uniform_in({2, 4, 3})},
                     [](const std::vector<Tensor>& in) { return topk(transpose(in[0], 0, 2), 2, 1, false).values; })
                  .bad_shape(0, {2, 1, 3}));
}

void dropouts(Table& t) {
  // a fresh generator on every call: the checks call the function many times
  t.push_back(OpCase("dropout", "dropout 0.4", {uniform_in({4, 5})}, [](const std::vector<Tensor>& in) {
    Generator gen(42);
    return dropout(in[0], 0.4, true, &gen);
  }));
  t.push_back(OpCase("dropout", "dropout 0.6 transposed", {uniform_in({3, 6})}, [](const std::vector<Tensor>& in) {
    Generator gen(43);
    return dropout(transpose(in[0], 0, 1), 0.6, true, &gen) * 2.0;
  }));
}

void dispatches(Table& t) {
  const int64_t n = 6, d = 3, o = 2, E = 4, k = 2;
  // expert 3 receives nothing: its weight gradient must be exactly zero
  const OpInput idx = index_in({0, 1, 1, 2, 2, 0, 0, 2, 1, 0, 2, 1}, {n, k});
  for (double cf : {0.0, 0.7}) {
    const std::string capacity = cf > 0 ? " capacity 0.7" : "";
    t.push_back(OpCase("moe_permute", "moe dispatch" + capacity,
                       {uniform_in({n, d}), uniform_in({E, o, d}), uniform_in({E, o}), uniform_in({n, k}), idx},
                       [cf](const std::vector<Tensor>& in) {
                         PlanPtr p = make_routing_plan(in[4], E, cf);
                         return moe_combine(grouped_linear(moe_permute(in[0], p), in[1], in[2], p), in[3], p);
                       })
                    .gemm()
                    .errors_from("grouped_linear")
                    .errors_from("moe_combine")
                    .errors_from("make_routing_plan")
                    .bad_shape(0, {n + 1, d})
                    .bad_shape(1, {E + 1, o, d})
                    .bad_shape(2, {E, o + 1})
                    .bad_shape(3, {n, k + 1}));
    t.push_back(OpCase("moe_permute", "moe dispatch without bias transposed" + capacity,
                       {uniform_in({d, n}), uniform_in({E, o, d}), uniform_in({n, k}), idx},
                       [cf](const std::vector<Tensor>& in) {
                         PlanPtr p = make_routing_plan(in[3], E, cf);
                         return moe_combine(grouped_linear(moe_permute(transpose(in[0], 0, 1), p), in[1], Tensor(), p),
                                            in[2], p);
                       })
                    .gemm()
                    .errors_from("grouped_linear")
                    .errors_from("moe_combine")
                    .errors_from("make_routing_plan")
                    .bad_shape(0, {d, n + 1})
                    .bad_shape(1, {E + 1, o, d}));
  }
}

void routing(Table& t) {
  for (int64_t k : {1, 2, 5}) {
    const std::string of = std::to_string(k) + " of 5";
    t.push_back(OpCase("router_topk_softmax", "router_topk_softmax scores " + of, {uniform_in({7, 5}, -2, 2)},
                       [k](const std::vector<Tensor>& in) { return router_topk_softmax(in[0], k).scores; })
                    .bad_shape(0, {7}));
    t.push_back(OpCase("router_topk_softmax", "router_topk_softmax values " + of, {uniform_in({7, 5}, -2, 2)},
                       [k](const std::vector<Tensor>& in) { return router_topk_softmax(in[0], k).values; })
                    .bad_shape(0, {7, 5, 1}));
  }
  t.push_back(OpCase("switch_balance_loss", "switch_balance_loss",
                     {uniform_in({7, 5}, -2, 2), index_in({0, 3, 1, 2, 4, 0, 2, 3, 1, 4, 0, 1, 3, 2}, {7, 2})},
                     [](const std::vector<Tensor>& in) { return switch_balance_loss(in[0], in[1]); })
                  .bad_shape(1, {6, 2}));
  t.push_back(OpCase("router_z_loss", "router_z_loss", {uniform_in({7, 5}, -2, 2)},
                     [](const std::vector<Tensor>& in) { return router_z_loss(in[0]); })
                  .bad_shape(0, {35}));
}

void ac_weights(Table& t) {
  const OpInput labels = index_in({0, 1, 0, 1, 1, 3, 0, 3, 3});  // cluster 2 empty
  // The official clip (10 · the mean entry) cannot bind beside an empty
  // cluster (its entries 1/eps lift the mean past every entry / 10): it gets
  // clusters of 2+ tokens, one of them tight along feature 0 (tokens 4 and 6:
  // spread 5e-5, A ≈ 1/1.5e-4, about 12 times the mean).
  const OpInput tight_labels = index_in({0, 1, 0, 1, 2, 3, 2, 3, 3});
  const OpInput tight_x = fixed_in({0.3, -0.7, 0.5, -0.2, 0.9, -0.4, 0.8, 0.1, -0.6, 0.4, -0.3, 0.2, 0.25, 0.6, -0.8,
                                    -0.5, 0.35, 0.7, 0.2501, -0.1, 0.45, 0.65, -0.9, 0.05, -0.35, 0.15, -0.55},
                                   {9, 3});
  for (const ACOptions& o : ac_variants()) {
    const std::string name = std::string("ac_cluster_weights ") + (o.stat == ACStat::MAD ? "mad" : "variance") +
                             (o.scaling == ACScaling::PerFeature ? " per feature" : " global") + " clip " +
                             std::to_string(static_cast<int>(o.clip * 10));
    const bool official_clip = o.clip == 10.0;
    t.push_back(OpCase("ac_cluster_weights", name, {official_clip ? tight_x : uniform_in({9, 3}),
                                                    official_clip ? tight_labels : labels},
                       [o](const std::vector<Tensor>& in) { return ac_cluster_weights(in[0], in[1], 4, o); })
                    .bad_shape(1, {8}));
  }
  // a repeated pair (1, 1) on token 1
  t.push_back(OpCase("ac_scale_gather", "ac_scale_gather mixed",
                     {uniform_in({5, 3}), uniform_in({4, 3}), uniform_in({5, 2}), index_in({0, 1, 1, 1, 3, 0, 2, 3, 0, 3}, {5, 2})},
                     [](const std::vector<Tensor>& in) { return ac_scale_gather(in[0], in[1], in[3], in[2]); })
                  .bad_shape(1, {4, 2})
                  .bad_shape(2, {5, 3}));
  const OpInput ac_labels = index_in({3, 3, 0, 2, 1});
  t.push_back(OpCase("ac_scale_gather", "ac_scale_gather transposed", {uniform_in({3, 5}), uniform_in({4, 3}), ac_labels},
                     [](const std::vector<Tensor>& in) { return ac_scale_gather(transpose(in[0], 0, 1), in[1], in[2]); })
                  .bad_shape(1, {4, 5}));
  // the whole AC scaling, end to end: x -> W -> x ⊙ W[c]
  t.push_back(OpCase("ac_scale_gather", "ac scaling end to end", {uniform_in({5, 3}), ac_labels},
                     [](const std::vector<Tensor>& in) {
                       return ac_scale_gather(in[0], ac_cluster_weights(in[0], in[1], 4, ACOptions()), in[1]);
                     })
                  .errors_from("ac_cluster_weights")
                  .bad_shape(1, {4}));
}

void attention_ops(Table& t) {
  for (const Shape& s : std::vector<Shape>{{2, 3, 3}, {2, 2, 4}, {2, 3, 4}, {4, 4}, {1, 2, 1, 3}})
    for (bool causal : {false, true})
      t.push_back(OpCase("masked_softmax", std::string("masked_softmax ") + (causal ? "causal " : "") + dims(s),
                         {uniform_in(s, -2, 2)},
                         [causal](const std::vector<Tensor>& in) { return masked_softmax(in[0], causal); }));
  for (bool causal : {false, true}) {
    const std::string kind = causal ? "causal " : "";
    // transpose: [2, 4, 3] -> [2, 3, 4]; slice: every other column of [3, 8] -> [3, 4]
    t.push_back(OpCase("masked_softmax", "masked_softmax " + kind + "transposed", {uniform_in({2, 4, 3}, -2, 2)},
                       [causal](const std::vector<Tensor>& in) { return masked_softmax(transpose(in[0], 1, 2), causal); }));
    t.push_back(OpCase("masked_softmax", "masked_softmax " + kind + "sliced", {uniform_in({3, 8}, -2, 2)},
                       [causal](const std::vector<Tensor>& in) { return masked_softmax(slice(in[0], 1, 0, 8, 2), causal); }));
  }
  // 34 queries: two blocks of the CPU kernel, the second partial; 18 queries
  // and 19 keys: two 16-row tiles of the device kernel each, the second partial
  for (const auto& [queries, keys] : std::vector<std::pair<int64_t, int64_t>>{{34, 35}, {18, 19}})
    for (bool causal : {true, false})
      t.push_back(OpCase("fused_attention",
                         std::string("fused_attention ") + (causal ? "causal " : "") + std::to_string(queries) + " queries",
                         {uniform_in({1, 1, queries, 2}), uniform_in({1, 1, keys, 2}), uniform_in({1, 1, keys, 2})},
                         [causal](const std::vector<Tensor>& in) {
                           return fused_attention(in[0], in[1], in[2], 0.8, causal);
                         })
                      .gemm()
                      .bad_shape(1, {1, 1, keys, 3})
                      .bad_shape(2, {1, 1, queries, 2}));
  t.push_back(OpCase("fused_attention", "fused_attention constant keys and values",
                     {uniform_in({1, 1, 6, 2}), constant_in({1, 1, 6, 2}), constant_in({1, 1, 6, 2})},
                     [](const std::vector<Tensor>& in) { return fused_attention(in[0], in[1], in[2], 1.0, true); })
                  .gemm()
                  .bad_shape(0, {1, 1, 6, 3}));
  // dropout on the probabilities: a fresh generator on every call, so every
  // evaluation of the checks draws the same mask
  for (bool causal : {true, false})
    t.push_back(OpCase("fused_attention",
                       std::string("fused_attention ") + (causal ? "causal " : "") + "dropout 0.4",
                       {uniform_in({1, 2, 34, 2}), uniform_in({1, 2, 35, 2}), uniform_in({1, 2, 35, 2})},
                       [causal](const std::vector<Tensor>& in) {
                         Generator gen(44);
                         return fused_attention(in[0], in[1], in[2], 0.8, causal, {0.4, &gen});
                       })
                    .gemm());
  t.push_back(OpCase("fused_self_attention", "fused_self_attention causal dropout 0.3", {uniform_in({1, 18, 3 * 4})},
                     [](const std::vector<Tensor>& in) {
                       Generator gen(45);
                       return fused_self_attention(in[0], 2, 0.9, true, {0.3, &gen});
                     })
                  .gemm());
  for (int64_t queries : {34, 18})
    for (bool causal : {true, false})
      t.push_back(OpCase("fused_self_attention",
                         std::string("fused_self_attention ") + (causal ? "causal " : "") + std::to_string(queries) +
                             " queries",
                         {uniform_in({1, queries, 3 * 4})},
                         [causal](const std::vector<Tensor>& in) { return fused_self_attention(in[0], 2, 0.9, causal); })
                      .gemm()
                      .bad_shape(0, {1, queries, 13}));
}

Table build_table() {
  Table t;
  binary_ops(t);
  unary_ops(t);
  reductions(t);
  views(t);
  joins(t);
  matmuls(t);
  softmaxes(t);
  layer_norms(t);
  cross_entropies(t);
  indexing(t);
  selections(t);
  topks(t);
  dropouts(t);
  routing(t);
  dispatches(t);
  ac_weights(t);
  attention_ops(t);
  return t;
}

}  // namespace

OpCase::OpCase(std::string op_, const std::string& name_, std::vector<OpInput> inputs_, TensorFunction fn_)
    : op(std::move(op_)), name(test_name(name_)), inputs(std::move(inputs_)), fn(std::move(fn_)) {}

OpCase& OpCase::gemm() {
  tol = ParityTol::Gemm;
  return *this;
}

OpCase& OpCase::any_dtype() {
  float_only = false;
  return *this;
}

OpCase& OpCase::bad_shape(size_t input, const Shape& shape) {
  bad_shapes.push_back({input, shape});
  return *this;
}

OpCase& OpCase::errors_from(const std::string& other) {
  also.push_back(other);
  return *this;
}

const std::vector<OpCase>& op_table() {
  static const std::vector<OpCase> table = build_table();
  return table;
}

}  // namespace moegrad::testing
