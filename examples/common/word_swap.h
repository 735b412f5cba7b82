// The word-swap attack of docs/design.md ("Evaluation under corruption"), applied
// to valid/test text before tokenizing: a fixed fraction of the non-stopword
// words is replaced by an out-of-vocabulary token, chosen by a fixed seed so
// every model is evaluated on the same attacked text.
//
// A word is a whitespace-separated token whose core (the token without its
// leading and trailing punctuation) is non-empty; it is a stopword when its
// lower-cased core is in the stopword list. Tokens that are already "<unk>"
// are never candidates. Exactly round(rate * candidates) words are swapped.
// Whitespace and line structure are kept byte for byte.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moegrad::data {

enum class SwapLevel {
  Word,  // the whole token becomes "<unk>", which the word tokenizer maps to its <unk> id
  Byte,  // the core becomes the literal bytes "<unk>", its punctuation stays ("earth." -> "<unk>.")
};

struct WordSwapOptions {
  double rate = 0.025;   // fraction of the non-stopword words to replace, in [0, 1]
  uint64_t seed = 2025;  // the attack seed: same seed, same attacked text
  SwapLevel level = SwapLevel::Word;
};

struct WordSwapResult {
  std::string text;
  int64_t candidates = 0;  // non-stopword words in the input
  int64_t swapped = 0;     // words replaced
};

WordSwapResult word_swap(const std::string& text, const WordSwapOptions& options = {});

// The built-in English stopword list (common function words, lower case).
const std::vector<std::string>& english_stopwords();
// True when the lower-cased core of `token` is a stopword.
bool is_stopword(const std::string& token);

}  // namespace moegrad::data
