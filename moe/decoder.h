// Incremental decoding of a TransformerLM, for generation and for causal
// evaluation: B sequences advance one token per step, in eval mode without a
// graph. Attention layers keep the keys and values of the tokens so far
// (nn/attention.h, KVCache; the elliptical metric is taken over them). The AC
// statistics, which the paper takes over a batch, come at generation from
// each sequence's own context so far: an AC layer routes a sequence's token
// with W from that sequence's tokens (their inputs to the layer and their
// labels, the current token included), kept as the tokens are decoded.
//
// So a token is scored from its own prefix only. For a model without a
// capacity factor whose AC layers have no AC layer before them (Switch-S,
// sgsgsc), the logits at position t equal those of a full forward over tokens
// 0..t; after an AC layer, earlier tokens keep the states they had when they
// were decoded. A capacity is not causal (a token's slot can be dropped for
// later tokens' choices): each step routes its B tokens together through the
// other MoE layers, and an AC layer one token at a time, with the layer's
// capacity over those.
#pragma once
#include <vector>

#include "moe/transformer_lm.h"

namespace moegrad {

class LMDecoder {
 public:
  // Puts the model in eval mode for the decoder's lifetime.
  LMDecoder(TransformerLM& model, int64_t batch);
  ~LMDecoder();
  LMDecoder(const LMDecoder&) = delete;
  LMDecoder& operator=(const LMDecoder&) = delete;

  // ids: int64 [B] on the model's device, the next token of each sequence;
  // returns the logits [B, vocab] of the position it fills (the prediction of
  // the token after it). Error past the model's max_len.
  Tensor step(const Tensor& ids);
  int64_t length() const { return length_; }

 private:
  // One AC layer's context for one sequence: the layer's inputs so far and
  // their previous assignments.
  struct ACContext {
    Tensor x;
    Assignments previous;
  };
  Tensor ac_layer(MoELayer& moe, const Tensor& tokens, Assignments& previous, std::vector<ACContext>& context);

  TransformerLM& model_;
  int64_t batch_, length_ = 0;
  bool was_training_;
  std::vector<KVCache> attention_;               // per sublayer
  std::vector<std::vector<ACContext>> context_;  // per sublayer, per sequence
};

}  // namespace moegrad
