// The pieces the paper's official recipes need (recipes/*.recipe): the
// orthogonal initialisation, ReLU experts with fastmoe's initialisation and
// hidden dropout, XMoE's gate renormalised in place, the post-norm double
// residual of the MoE sublayers, the dropout layout, the AC table up to the
// largest previous choice, the AC diagnostics, and a float64 gradcheck of a
// tiny language model built with all of them.
#include <cmath>

#include "moe/transformer_lm.h"
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

TEST(OfficialBlocks, OrthogonalInit) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{4, 9}, {9, 4}, {5, 5}}) {
    Generator g(3);
    const Tensor w = init_orthogonal(rows, cols, 0.32, {DType::Float64, &g});
    ASSERT_EQ(w.shape(), (Shape{rows, cols}));
    // the smaller side is orthonormal times the gain
    const Tensor gram = rows <= cols ? matmul(w, transpose(w, 0, 1)) : matmul(transpose(w, 0, 1), w);
    const int64_t n = std::min(rows, cols);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(gram.at({i, j}), i == j ? 0.32 * 0.32 : 0.0, 1e-12);
    Generator g2(3);
    EXPECT_EQ(w.to_vector(), init_orthogonal(rows, cols, 0.32, {DType::Float64, &g2}).to_vector());
  }
}

TEST(OfficialBlocks, ExpertsOfficialInitReluAndDropout) {
  Generator g(1);
  ExpertOptions o{Activation::Relu, 0.5, ExpertInit::Official};
  StackedExperts e(3, 4, 6, {DType::Float64, &g}, o);
  const double bound = 1 / std::sqrt(24.0);
  for (const Tensor& w : {e.w1, e.w2})
    for (double v : w.to_vector()) EXPECT_LE(std::fabs(v), bound);
  for (const Tensor& b : {e.b1, e.b2})
    for (double v : b.to_vector()) EXPECT_EQ(v, 0.0);
  ASSERT_TRUE(e.drop);
  // eval mode: relu FFN per expert, no dropout
  e.eval();
  const Tensor xs = leaf({3, 2, 4}, 5).detach();
  const Tensor got = e.forward_batched(xs);
  const Tensor want = add(matmul(relu(add(matmul(xs, transpose(e.w1, 1, 2)), unsqueeze(e.b1, 1))),
                                 transpose(e.w2, 1, 2)),
                          unsqueeze(e.b2, 1));
  EXPECT_EQ(got.to_vector(), want.to_vector());
  // training mode: the hidden dropout changes the output
  e.train();
  EXPECT_NE(e.forward_batched(xs).to_vector(), want.to_vector());
}

TEST(OfficialBlocks, XMoEGateIsRenormalisedInPlaceAndTheLogitsDoNotChange) {
  Generator g(2);
  TopKRouter r(RouterConfig{4, 3, 2, GateKind::Cosine, 0.32, 1.5}, {DType::Float64, &g});
  for (double n : sqrt(sum(mul(r.weight, r.weight), {1})).to_vector()) EXPECT_NEAR(n, 0.32, 1e-12);
  const Tensor x = leaf({5, 4}, 6).detach();
  const std::vector<double> before = [&] {
    NoGradGuard ng;
    return matmul(x, transpose(div(r.weight, sqrt(sum(mul(r.weight, r.weight), {1}, true))), 0, 1)).to_vector();
  }();
  const RouterOutput out = r.forward(x);
  for (double n : sqrt(sum(mul(r.weight, r.weight), {1})).to_vector()) EXPECT_NEAR(n, 1.5, 1e-12);
  moegrad::testing::expect_near(out.logits.to_vector(), before, 1e-12);
  EXPECT_THROW(TopKRouter(RouterConfig{4, 3, 2, GateKind::Linear, 0.32, 0}), Error);
}

// The MoE sublayer with the double residual: norm(h + inner_norm(h + moe(h))).
TEST(OfficialBlocks, DoubleResidual) {
  BlockConfig b;
  b.dim = 4, b.heads = 2, b.pre_norm = false, b.moe_double_residual = true;
  b.moe.hidden = 3, b.moe.experts = 3, b.moe.k = 2;
  Generator g(4);
  Sublayer s('g', b, {DType::Float64, &g});
  ASSERT_TRUE(s.inner_norm);
  const Tensor h = leaf({2, 3, 4}, 7).detach();
  StackState state;
  const Tensor got = s.forward(h, state);
  StackState again;
  const Tensor moe = reshape(s.moe->forward(reshape(h, {6, 4})).y, {2, 3, 4});
  const Tensor want = s.norm->forward(add(h, s.inner_norm->forward(add(h, moe))));
  EXPECT_EQ(got.to_vector(), want.to_vector());
  b.pre_norm = true;
  EXPECT_MG_ERROR(Sublayer('g', b, {DType::Float64, &g}), "double residual of the MoE sublayers needs post-norm");
}

// Official dropout: none on the embeddings or on the attention and dense FFN
// outputs; on the MoE output and inside the experts.
TEST(OfficialBlocks, DropoutLayout) {
  BlockConfig b;
  b.dim = 4, b.heads = 2, b.dropout = 0.3, b.dropout_layout = DropoutLayout::Official;
  b.moe.hidden = 3, b.moe.experts = 3;
  Generator g(5);
  InitOptions opt{DType::Float64, &g};
  EXPECT_EQ(Sublayer('s', b, opt).drop->p, 0.0);
  EXPECT_EQ(Sublayer('f', b, opt).drop->p, 0.0);
  Sublayer moe('g', b, opt);
  EXPECT_EQ(moe.drop->p, 0.3);
  ASSERT_TRUE(moe.moe->experts->drop);
  EXPECT_EQ(moe.moe->experts->drop->p, 0.3);
  LMConfig lm;
  lm.vocab = 7, lm.max_len = 4, lm.arch = "sg", lm.block = b;
  EXPECT_EQ(TransformerLM(lm, opt).drop->p, 0.0);
  lm.block.dropout_layout = DropoutLayout::Residual;
  EXPECT_EQ(TransformerLM(lm, opt).drop->p, 0.3);
  EXPECT_EQ(Sublayer('s', lm.block, opt).drop->p, 0.3);
}

TEST(OfficialBlocks, ACTableUpToTheLargestPreviousChoice) {
  const Tensor x = leaf({6, 3}, 8).detach();
  // previous choices use experts 0..2 of 5: the table has 3 rows
  const Assignments prev{Tensor::from_indices({0, 1, 1, 2, 2, 0, 0, 2, 1, 0, 0, 1}, {6, 2}), Tensor()};
  ACOptions o;
  o.rows = ACTableRows::LargestIndex;
  const ACScale got = ac_token_scale(x, prev, 5, o, 1, false, "test");
  EXPECT_EQ(got.W.shape(), (Shape{3, 3}));
  const Tensor labels = Tensor::from_indices({0, 1, 2, 0, 1, 0}, {6});
  EXPECT_EQ(got.W.to_vector(), ac_cluster_weights(x, labels, 3, o).to_vector());
  o.rows = ACTableRows::Experts;
  EXPECT_EQ(ac_token_scale(x, prev, 5, o, 1, false, "test").W.shape(), (Shape{5, 3}));
  o.rows = ACTableRows::LargestIndex;
  EXPECT_MG_ERROR(ac_token_scale(x, prev, 2, o, 1, false, "test"), "test: previous expert index 2 outside [0, 2)");
}

TEST(OfficialBlocks, ACDiagnostics) {
  // 4 clusters: sizes 3, 1, 0, 2; W rows with means 1, 2, 3, 4
  const Tensor W = Tensor::from_vector({0, 2, 2, 2, 3, 3, 4, 4}, {4, 2}, DType::Float64);
  const Tensor labels = Tensor::from_indices({0, 0, 3, 1, 0, 3}, {6, 1});
  RoutingStats s;
  ac_weight_stats(W, labels, Tensor(), s);
  EXPECT_EQ(s.ac_empty, 1.0);
  EXPECT_EQ(s.ac_single, 1.0);
  EXPECT_NEAR(s.ac_token_weight, (3 * 1 + 2 + 2 * 4) / 6.0, 1e-15);
  // mixing over two choices: w_i = 0.25 W[c_i0] + 0.75 W[c_i1]
  const Tensor index = Tensor::from_indices({0, 1, 3, 2}, {2, 2});
  const Tensor mix = Tensor::from_vector({0.25, 0.75, 0.5, 0.5}, {2, 2}, DType::Float64);
  ac_weight_stats(W, index, mix, s);
  EXPECT_NEAR(s.ac_token_weight, ((0.25 * 1 + 0.75 * 2) + (0.5 * 4 + 0.5 * 3)) / 2, 1e-15);
  EXPECT_EQ(s.ac_empty, 2.0);  // clusters by the labels (column 0): 0 and 3 hold a token each
  EXPECT_EQ(s.ac_single, 2.0);
  // bad input is an Error, not a read or write outside W's rows
  EXPECT_MG_ERROR(ac_weight_stats(W, Tensor::from_indices({0, 4}, {2, 1}), Tensor(), s),
                  "ac_weight_stats: index 4 at position 1 is outside [0, 4)");
  EXPECT_MG_ERROR(ac_weight_stats(W, Tensor::from_indices({-1}, {1, 1}), Tensor(), s), "is outside [0, 4)");
  EXPECT_MG_ERROR(ac_weight_stats(W, index, Tensor::ones({2, 1}, DType::Float64), s),
                  "ac_weight_stats: mix must have the index's shape [2, 2], got [2, 1]");
  EXPECT_MG_ERROR(ac_weight_stats(Tensor::zeros({0, 2}, DType::Float64), labels, Tensor(), s),
                  "ac_weight_stats: expected weights W [rows, d] with rows, d >= 1, got [0, 2]");
  EXPECT_MG_ERROR(ac_weight_stats(W, Tensor::from_indices({}, {0, 1}), Tensor(), s),
                  "ac_weight_stats: expected index int64 [n, m] with n, m >= 1");
  EXPECT_MG_ERROR(ac_weight_stats(W, Tensor::zeros({2, 1}), Tensor(), s), "expected index int64 [n, m]");
}

// A tiny language model with every official piece (the AC in its
// differentiable mode, so that finite differences and the backward see the
// same function; the XMoE gate without its in-place rescale, which would
// undo gradcheck's perturbations).
TEST(OfficialBlocks, GradcheckOfficialLanguageModel) {
  LMConfig lm;
  lm.vocab = 6, lm.max_len = 4, lm.arch = "sgsc", lm.embedding_std = 1.0, lm.head_bias = true;
  BlockConfig& b = lm.block;
  b.dim = 4, b.heads = 2, b.pre_norm = false, b.moe_double_residual = true, b.attention_bias = false;
  b.activation = Activation::Relu, b.dropout_layout = DropoutLayout::Official;
  b.moe.hidden = 3, b.moe.experts = 3, b.moe.k = 2;
  b.moe.expert = ExpertOptions{Activation::Relu, 0.0, ExpertInit::Official};
  b.c_gate = GateKind::Cosine, b.c_embedding_gain = 0.32;
  b.moe.ac.differentiable = true;
  b.moe.ac.stats.rows = ACTableRows::LargestIndex;
  Generator g(9);
  auto model = std::make_shared<TransformerLM>(lm, InitOptions{DType::Float64, &g});
  EXPECT_FALSE(model->layers[3]->moe->router->bias.defined());  // the c layer's cosine gate
  EXPECT_TRUE(model->head->bias.defined());
  const Tensor ids = Tensor::from_indices({1, 4, 2, 0, 5, 3, 3, 1}, {2, 4});
  std::vector<Tensor> params = model->parameters();
  EXPECT_GRADCHECK([model, ids](const std::vector<Tensor>&) { return model->forward(ids).logits; }, params);
}

// Padding takes no part in routing: the real tokens' outputs and loss are the
// same with padding after them (padded positions, and a row of padding), for
// the top-k and the AC router, with a capacity that would drop slots.
TEST(OfficialBlocks, PaddingChangesNoRealToken) {
  for (bool ac : {false, true}) {
    SCOPED_TRACE(ac ? "acmoe" : "smoe");
    LMConfig lm;
    lm.vocab = 9, lm.max_len = 8, lm.arch = ac ? "sgsc" : "sgsg";
    lm.block.dim = 4, lm.block.heads = 2;
    lm.block.moe.hidden = 3, lm.block.moe.experts = 3, lm.block.moe.k = 2, lm.block.moe.capacity_factor = 0.6;
    Generator g(11);
    TransformerLM model(lm, {DType::Float64, &g});
    const std::vector<int64_t> a = {1, 4, 2, 7, 5, 3}, b = {3, 8, 1, 0, 2, 6};
    const Tensor ids = Tensor::from_indices({1, 4, 2, 7, 5, 3, 3, 8, 1, 0, 2, 6}, {2, 6});
    const Tensor targets = Tensor::from_indices({4, 2, 7, 5, 3, 8, 8, 1, 0, 2, 6, 4}, {2, 6});
    const LMOutput plain = model.forward(ids, targets);
    // the same two rows with two padded positions each, and a third row of padding
    std::vector<int64_t> pid, ptg;
    std::vector<char> real;
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t t = 0; t < 8; ++t) {
        const bool is_real = r < 2 && t < 6;
        pid.push_back(is_real ? ids.to_indices()[r * 6 + t] : 0);
        ptg.push_back(is_real ? targets.to_indices()[r * 6 + t] : -100);
        real.push_back(is_real);
      }
    Tensor mask = Tensor::empty({3, 8}, DType::Bool);
    for (int64_t j = 0; j < 24; ++j) mask.data<bool>()[j] = real[j];
    const LMOutput padded = model.forward(Tensor::from_indices(pid, {3, 8}), Tensor::from_indices(ptg, {3, 8}), mask);
    EXPECT_NEAR(padded.loss.item(), plain.loss.item(), 1e-12);
    EXPECT_NEAR(padded.balance_loss.item(), plain.balance_loss.item(), 1e-12);
    const Tensor real_logits = narrow(narrow(padded.logits, 0, 0, 2), 1, 0, 6);
    moegrad::testing::expect_near(contiguous(real_logits).to_vector(), plain.logits.to_vector(), 1e-12);
    // without the mask the padding does change them (the test can fail)
    const LMOutput unmasked = model.forward(Tensor::from_indices(pid, {3, 8}), Tensor::from_indices(ptg, {3, 8}));
    EXPECT_GT(std::fabs(unmasked.loss.item() - plain.loss.item()), 1e-9);
  }
}
