// run_layer (see layer_runner.h): a checked reader for the JSON config
// (Keys), a checked reader for the named tensors (Inputs), one function per
// layer kind that builds the module, loads its parameters and runs its
// forward, and the shared driver that seeds the backward and collects every
// output and gradient.
#include "examples/common/layer_runner.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "moe/soft_moe.h"
#include "nn/attention.h"
#include "nn/checkpoint.h"

namespace moegrad::examples {
namespace {

using json = nlohmann::json;

constexpr int64_t kMaxSize = int64_t(1) << 20;

// The keys of one JSON object (the config, or its "ac" object), read with type
// and value checks; finish() rejects the keys nobody read.
class Keys {
 public:
  Keys(const json& j, std::string prefix, std::string layer)
      : j_(j), prefix_(std::move(prefix)), layer_(std::move(layer)) {}
  const json* find(const std::string& key, bool required) {
    read_.insert(key);
    auto it = j_.find(key);
    MG_CHECK(it != j_.end() || !required, "run_layer: missing config key \"", prefix_ + key,
             "\" (required by layer \"", layer_, "\")");
    return it == j_.end() ? nullptr : &*it;
  }
  void check(bool ok, const std::string& key, const std::string& what, const json& got) const {
    MG_CHECK(ok, "run_layer: config key \"", prefix_ + key, "\" must be ", what, ", got ", got.dump());
  }
  int64_t integer(const std::string& key, std::optional<int64_t> def, int64_t low, int64_t high = INT64_MAX) {
    const json* v = find(key, !def);
    if (!v) return *def;
    check(v->is_number_integer() && (!v->is_number_unsigned() || v->get<uint64_t>() <= INT64_MAX), key,
          "an integer", *v);
    const int64_t x = v->get<int64_t>();
    check(x >= low && x <= high, key,
          high == INT64_MAX ? detail::cat("at least ", low) : detail::cat("in [", low, ", ", high, "]"), *v);
    return x;
  }
  // A layer size, at most kMaxSize: the library multiplies up to three of them
  // (an expert stack [experts, dim, hidden]) and must not overflow int64.
  int64_t size(const std::string& key, std::optional<int64_t> def = {}) { return integer(key, def, 1, kMaxSize); }
  double number(const std::string& key, double def) {
    const json* v = find(key, false);
    if (!v) return def;
    check(v->is_number(), key, "a number", *v);
    return v->get<double>();
  }
  bool flag(const std::string& key, bool def) {
    const json* v = find(key, false);
    if (!v) return def;
    check(v->is_boolean(), key, "true or false", *v);
    return v->get<bool>();
  }
  // One of `options`; `def` when absent.
  std::string choice(const std::string& key, const std::vector<std::string>& options, const std::string& def) {
    const json* v = find(key, false);
    if (!v) return def;
    std::string all;
    for (auto& o : options) all += (all.empty() ? "one of \"" : ", \"") + o + "\"";
    check(v->is_string() && std::count(options.begin(), options.end(), v->get<std::string>()), key, all, *v);
    return v->get<std::string>();
  }
  void finish() const {
    for (auto& [key, value] : j_.items())
      MG_CHECK(read_.count(key), "run_layer: config key \"", prefix_ + key, "\" is unknown or unused for layer \"",
               layer_, "\"");
  }
  const std::string& layer() const { return layer_; }

 private:
  const json& j_;
  std::string prefix_, layer_;
  std::set<std::string> read_;
};

// The named input tensors: each lookup checks the dtype (float tensors must
// have the config's dtype) and marks the name used; finish() rejects the rest.
class Inputs {
 public:
  Inputs(const TensorMap& tensors, DType dtype) : dtype(dtype), tensors_(tensors) {}
  const DType dtype;  // the config's
  const Tensor* find(const std::string& name, std::optional<DType> want = {}) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) return nullptr;
    used_.insert(name);
    const DType d = want.value_or(dtype);
    MG_CHECK(it->second.defined() && it->second.dtype() == d, "run_layer: tensor \"", name, "\" must be ",
             dtype_name(d), d == dtype ? " (the config's \"dtype\")" : "", ", got ",
             it->second.defined() ? dtype_name(it->second.dtype()) : "undefined");
    return &it->second;
  }
  const Tensor& get(const std::string& name, std::optional<DType> want = {}) {
    const Tensor* t = find(name, want);
    MG_CHECK(t, "run_layer: missing input tensor \"", name, "\"");
    return *t;
  }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  void finish(const std::string& layer) const {
    for (auto& [name, t] : tensors_)
      MG_CHECK(used_.count(name), "run_layer: unexpected input tensor \"", name, "\" (layer \"", layer,
               "\" with this config does not use it)");
  }

 private:
  const TensorMap& tensors_;
  std::set<std::string> used_;
};

void expect_shape(const std::string& name, const Tensor& t, bool ok, const std::string& want) {
  MG_CHECK(ok, "run_layer: tensor \"", name, "\" must have shape ", want, ", got ", shape_str(t.shape()));
}

// One run: the module, its float inputs (leaves that collect gradients) and
// its outputs in documented order.
class Context {
 public:
  Context(Inputs& in, std::optional<int64_t> seed) : in(in), gen_(seed.value_or(0)), seeded_(seed.has_value()) {}

  InitOptions init() { return InitOptions{in.dtype, &gen_}; }

  // Loads "param.<name>" into every parameter (missing ones keep their seeded
  // init when the config has "init_seed").
  template <typename M>
  M& load(std::shared_ptr<M> m) {
    TensorMap given;
    for (auto& [name, p] : m->named_parameters()) {
      const std::string key = "param." + name;
      MG_CHECK(seeded_ || in.has(key), "run_layer: missing input tensor \"", key,
               "\" (give every parameter, or set \"init_seed\" to initialise the missing ones)");
      if (const Tensor* t = in.find(key)) {
        expect_shape(key, *t, t->shape() == p.shape(), shape_str(p.shape()));
        given[name] = *t;
      }
    }
    load_module_state(*m, given, /*allow_missing=*/true);
    module_ = m;
    return *m;
  }

  // A float input as a fresh leaf that requires grad; its gradient is returned as "grad.<name>".
  Tensor leaf(const std::string& name) {
    Tensor t = in.get(name).detach();
    t.requires_grad_();
    leaves_.emplace_back(name, t);
    return t;
  }

  // required: the caller must give "grad_in.<name>".
  void output(const std::string& name, const Tensor& t, bool required = false) {
    outputs_.emplace_back(name, t);
    if (required) required_.insert(name);
  }

  // Backward from Σ sum(out ⊙ grad_in) over the given upstream gradients, then
  // every output, parameter and gradient by name.
  TensorMap finish(const std::string& layer) {
    Tensor loss;
    for (auto& [name, y] : outputs_) {
      if (!is_floating(y.dtype())) continue;
      const std::string key = "grad_in." + name;
      const Tensor* g = required_.count(name) ? &in.get(key) : in.find(key);
      if (!g) continue;
      expect_shape(key, *g, g->shape() == y.shape(), shape_str(y.shape()) + " like out." + name);
      if (!y.requires_grad()) continue;  // e.g. detached AC weights: zero gradient
      Tensor term = sum(mul(y, *g));
      loss = loss.defined() ? add(loss, term) : term;
    }
    in.finish(layer);
    if (loss.defined()) loss.backward();

    auto grad_of = [](const Tensor& t) {
      Tensor g = t.grad();
      return g.defined() ? g : Tensor::zeros(t.shape(), t.dtype());
    };
    TensorMap result;
    for (auto& [name, y] : outputs_) result["out." + name] = y.detach();
    for (auto& [name, x] : leaves_) result["grad." + name] = grad_of(x);
    for (auto& [name, p] : module_->named_parameters()) {
      result["param." + name] = p.detach();
      result["grad.param." + name] = grad_of(p);
    }
    return result;
  }

  Inputs& in;

 private:
  Generator gen_;
  bool seeded_;
  std::shared_ptr<Module> module_;
  std::vector<std::pair<std::string, Tensor>> leaves_, outputs_;
  std::set<std::string> required_;
};

// ---- config pieces shared by several layers ----

int64_t heads_of(Keys& c, int64_t dim) {
  const int64_t heads = c.size("heads");
  c.check(dim % heads == 0, "heads", detail::cat("a divisor of dim=", dim), heads);
  return heads;
}

GateKind gate_kind(Keys& c) {
  return c.choice("gate", {"linear", "cosine"}, "linear") == "linear" ? GateKind::Linear : GateKind::Cosine;
}

RouterConfig router_config(Keys& c) {
  RouterConfig rc;
  rc.dim = c.size("dim");
  rc.experts = c.size("experts");
  rc.k = c.integer("k", 2, 1, rc.experts);
  rc.gate = gate_kind(c);
  return rc;
}

// The "ac" object's statistics keys, defaulting to `def`.
ACOptions ac_options(Keys& a, const ACOptions& def) {
  ACOptions o;
  o.stat = a.choice("stat", {"mad", "variance"}, def.stat == ACStat::MAD ? "mad" : "variance") == "mad"
               ? ACStat::MAD
               : ACStat::Variance;
  o.eps = a.number("eps", def.eps);
  a.check(o.eps > 0, "eps", "positive", o.eps);
  o.clip = a.number("clip", def.clip);
  o.scaling = a.choice("scaling", {"feature", "global"}, def.scaling == ACScaling::PerFeature ? "feature" : "global") ==
                      "feature"
                  ? ACScaling::PerFeature
                  : ACScaling::Global;
  o.small_clusters = a.choice("small_clusters", {"official", "neutral"},
                              def.small_clusters == ACSmallClusters::Official ? "official" : "neutral") == "official"
                         ? ACSmallClusters::Official
                         : ACSmallClusters::Neutral;
  o.rows = a.choice("rows", {"experts", "largest-index"}, def.rows == ACTableRows::Experts ? "experts" : "largest-index") ==
                   "experts"
               ? ACTableRows::Experts
               : ACTableRows::LargestIndex;
  return o;
}

const json& ac_object(Keys& c) {
  static const json empty = json::object();
  const json* v = c.find("ac", false);
  if (v) c.check(v->is_object(), "ac", "a JSON object", *v);
  return v ? *v : empty;
}

// The AC router's config: "ac": {stat, eps, clip, scaling, mix, differentiable}.
ACConfig ac_config(Keys& c, int64_t experts) {
  Keys a(ac_object(c), "ac.", c.layer());
  ACConfig ac;
  ac.stats = ac_options(a, ACOptions{});
  ac.mix_m = a.integer("mix", 1, 1, experts);
  ac.differentiable = a.flag("differentiable", false);
  a.finish();
  return ac;
}

Tensor tokens(Context& ctx, int64_t dim) {
  Tensor x = ctx.leaf("x");
  expect_shape("x", x, x.dim() == 2 && x.size(0) > 0 && x.size(1) == dim, detail::cat("[n, ", dim, "] with n >= 1"));
  return x;
}

// The previous MoE layer's assignments for n tokens: "prev_indices" int64
// [n, m] (m >= min_cols, experts in range) and "prev_logits" [n, m].
Assignments previous(Context& ctx, int64_t n, int64_t experts, int64_t min_cols) {
  const Tensor& idx = ctx.in.get("prev_indices", DType::Int64);
  expect_shape("prev_indices", idx, idx.dim() == 2 && idx.size(0) == n && idx.size(1) >= min_cols,
               detail::cat("[", n, ", m] with m >= ", min_cols));
  for (int64_t e : idx.to_indices())
    MG_CHECK(e >= 0 && e < experts, "run_layer: tensor \"prev_indices\" holds expert ", e, ", outside [0, ", experts,
             ")");
  Tensor logits = ctx.leaf("prev_logits");
  expect_shape("prev_logits", logits, logits.shape() == idx.shape(), shape_str(idx.shape()) + " like prev_indices");
  return {idx, logits};
}

void router_outputs(Context& ctx, const RouterOutput& r) {
  ctx.output("scores", r.scores, true);
  ctx.output("indices", r.indices);
  ctx.output("topk_logits", r.topk_logits);
  ctx.output("logits", r.logits, true);
  ctx.output("balance_loss", r.balance_loss);
  ctx.output("z_loss", r.z_loss);
  if (r.ac_weights.defined()) ctx.output("ac_weights", r.ac_weights);
}

// ---- the layers ----

void linear_layer(Keys& c, Context& ctx) {
  const int64_t in = c.size("in_features"), out = c.size("out_features");
  const bool bias = c.flag("bias", true);
  c.finish();
  Linear& m = ctx.load(std::make_shared<Linear>(in, out, bias, ctx.init()));
  Tensor x = ctx.leaf("x");
  expect_shape("x", x, x.dim() >= 1 && x.size(-1) == in, detail::cat("[..., ", in, "]"));
  ctx.output("y", m.forward(x), true);
}

void layernorm_layer(Keys& c, Context& ctx) {
  const int64_t dim = c.size("dim");
  const double eps = c.number("eps", 1e-5);
  c.check(eps > 0, "eps", "positive", eps);
  c.finish();
  LayerNorm& m = ctx.load(std::make_shared<LayerNorm>(dim, eps, ctx.init()));
  Tensor x = ctx.leaf("x");
  expect_shape("x", x, x.dim() >= 1 && x.size(-1) == dim, detail::cat("[..., ", dim, "]"));
  ctx.output("y", m.forward(x), true);
}

void attention_layer(Keys& c, Context& ctx, bool elliptical) {
  const int64_t dim = c.size("dim"), heads = heads_of(c, dim);
  const bool causal = c.flag("causal", false);
  c.finish();
  MultiHeadAttention& m = ctx.load(std::make_shared<MultiHeadAttention>(dim, heads, causal, 0.0, ctx.init()));
  m.elliptical = elliptical;
  Tensor x = ctx.leaf("x");
  expect_shape("x", x, x.dim() == 3 && x.size(0) > 0 && x.size(1) > 0 && x.size(2) == dim,
               detail::cat("[B, T, ", dim, "] with B, T >= 1"));
  Tensor prev;
  if (elliptical) {
    prev = ctx.leaf("prev_values");
    const Shape want{x.size(0), heads, x.size(1), dim / heads};
    expect_shape("prev_values", prev, prev.shape() == want, shape_str(want) + " ([B, heads, T, dim / heads])");
  }
  AttentionOutput o = m.forward(x, prev);
  ctx.output("y", o.y, true);
  ctx.output("values", o.values);
}

void topk_router_layer(Keys& c, Context& ctx) {
  const RouterConfig rc = router_config(c);
  c.finish();
  TopKRouter& m = ctx.load(std::make_shared<TopKRouter>(rc, ctx.init()));
  router_outputs(ctx, m.forward(tokens(ctx, rc.dim)));
}

void ac_router_layer(Keys& c, Context& ctx) {
  const RouterConfig rc = router_config(c);
  const ACConfig ac = ac_config(c, rc.experts);
  c.finish();
  ACRouter& m = ctx.load(std::make_shared<ACRouter>(rc, ac, ctx.init()));
  Tensor x = tokens(ctx, rc.dim);
  router_outputs(ctx, m.forward(x, previous(ctx, x.size(0), rc.experts, ac.mix_m)));
}

void moe_layer(Keys& c, Context& ctx) {
  MoEConfig mc;
  mc.dim = c.size("dim");
  mc.hidden = c.size("hidden");
  mc.experts = c.size("experts");
  mc.k = c.integer("k", 2, 1, mc.experts);
  mc.gate = gate_kind(c);
  mc.capacity_factor = c.number("capacity_factor", 0.0);
  c.check(mc.capacity_factor >= 0 && mc.capacity_factor <= mc.experts, "capacity_factor",
          detail::cat("in [0, ", mc.experts, "] (0: no capacity; at experts = ", mc.experts, " nothing is dropped)"),
          mc.capacity_factor);
  mc.use_ac = c.flag("use_ac", false);
  if (mc.use_ac) {
    mc.ac = ac_config(c, mc.experts);
    mc.scale_expert_input = c.flag("scale_expert_input", false);
  }
  c.finish();
  MoELayer& m = ctx.load(std::make_shared<MoELayer>(mc, ctx.init()));
  Tensor x = tokens(ctx, mc.dim);
  MoEOutput o = m.forward(x, mc.use_ac ? previous(ctx, x.size(0), mc.experts, mc.ac.mix_m) : Assignments{});
  ctx.output("y", o.y, true);
  ctx.output("balance_loss", o.balance_loss);
  ctx.output("z_loss", o.z_loss);
  ctx.output("indices", o.assignments.indices);
  ctx.output("topk_logits", o.assignments.logits);
}

void soft_moe_layer(Keys& c, Context& ctx) {
  SoftMoEConfig sc;
  sc.dim = c.size("dim");
  sc.hidden = c.size("hidden");
  sc.experts = c.size("experts");
  sc.slots = c.size("slots", 1);
  sc.mix_k = c.size("mix_k", sc.mix_k);
  sc.use_ac = c.flag("use_ac", false);
  if (sc.use_ac) {
    Keys a(ac_object(c), "ac.", c.layer());
    sc.ac = ac_options(a, sc.ac);
    sc.differentiable = a.flag("differentiable", false);
    a.finish();
  }
  c.finish();
  SoftMoE& m = ctx.load(std::make_shared<SoftMoE>(sc, ctx.init()));
  Tensor x = ctx.leaf("x");
  expect_shape("x", x, x.dim() == 3 && x.size(0) > 0 && x.size(1) > 0 && x.size(2) == sc.dim,
               detail::cat("[b, m, ", sc.dim, "] with b, m >= 1"));
  SoftMoEOutput o = m.forward(x, sc.use_ac ? previous(ctx, x.size(0) * x.size(1), sc.experts, 1) : Assignments{});
  ctx.output("y", o.y, true);
  ctx.output("dispatch", o.dispatch);
  ctx.output("combine", o.combine);
  ctx.output("indices", o.assignments.indices);
  ctx.output("topk_logits", o.assignments.logits);
}

using LayerFn = void (*)(Keys&, Context&);
const std::vector<std::pair<std::string, LayerFn>> kLayers = {
    {"linear", linear_layer},
    {"layernorm", layernorm_layer},
    {"attention", [](Keys& c, Context& ctx) { attention_layer(c, ctx, false); }},
    {"elliptical_attention", [](Keys& c, Context& ctx) { attention_layer(c, ctx, true); }},
    {"topk_router", topk_router_layer},
    {"ac_router", ac_router_layer},
    {"moe", moe_layer},
    {"soft_moe", soft_moe_layer},
};

}  // namespace

json parse_config(const std::string& text, const std::string& name) {
  // Errors print the values they reject, and printing recurses once per level:
  // a deeper value than any config has (an "ac" object: 2) is refused instead.
  constexpr int kMaxDepth = 16;
  bool too_deep = false;
  json config;
  try {
    config = json::parse(text, [&](int depth, json::parse_event_t, json&) {
      too_deep = too_deep || depth > kMaxDepth;
      return depth <= kMaxDepth;
    });
  } catch (const json::exception& e) {
    throw Error(detail::cat("run_layer: config '", name, "' is not valid JSON: ", e.what()));
  }
  MG_CHECK(!too_deep, "run_layer: config '", name, "' nests deeper than ", kMaxDepth, " levels");
  return config;
}

TensorMap run_layer(const json& config, const TensorMap& inputs) {
  MG_CHECK(config.is_object(), "run_layer: the config must be a JSON object, got ", config.dump());
  std::string names;
  LayerFn fn = nullptr;
  const auto it = config.find("layer");
  for (auto& [name, f] : kLayers) {
    names += (names.empty() ? "\"" : ", \"") + name + "\"";
    if (it != config.end() && *it == name) fn = f;
  }
  MG_CHECK(fn, "run_layer: config key \"layer\" must be one of ", names, ", got ",
           it == config.end() ? "nothing" : it->dump());
  Keys c(config, "", it->get<std::string>());
  c.find("layer", true);
  const DType dtype = c.choice("dtype", {"float32", "float64"}, "float32") == "float32" ? DType::Float32 : DType::Float64;
  std::optional<int64_t> seed;
  if (config.contains("init_seed")) seed = c.integer("init_seed", {}, 0);
  Inputs in(inputs, dtype);
  Context ctx(in, seed);
  fn(c, ctx);
  return ctx.finish(c.layer());
}

}  // namespace moegrad::examples
