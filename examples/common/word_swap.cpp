// The word-swap attack on text (see word_swap.h): find the non-stopword words,
// pick exactly round(rate * count) of them with a seeded partial Fisher-Yates
// shuffle over the counter-based generator, replace them, copy the rest.
#include "examples/common/word_swap.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <unordered_set>

#include "tensor/error.h"
#include "tensor/random.h"

namespace moegrad::data {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Punctuation is ASCII that is not a letter or digit; bytes >= 0x80 (UTF-8
// letters) belong to the word.
bool is_punct(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u < 0x80 && !std::isalnum(u);
}

struct Span {
  size_t begin, end;  // [begin, end) in the text
};

// The token without its leading and trailing punctuation.
Span core_of(const std::string& text, Span token) {
  while (token.begin < token.end && is_punct(text[token.begin])) ++token.begin;
  while (token.end > token.begin && is_punct(text[token.end - 1])) --token.end;
  return token;
}

bool core_is_stopword(const std::string& text, Span core) {
  static const std::unordered_set<std::string> set(english_stopwords().begin(), english_stopwords().end());
  std::string lower = text.substr(core.begin, core.end - core.begin);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return set.count(lower) > 0;
}

}  // namespace

const std::vector<std::string>& english_stopwords() {
  static const std::vector<std::string> words = {
      "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are",
      "aren't", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but",
      "by", "can", "can't", "cannot", "could", "couldn't", "did", "didn't", "do", "does", "doesn't", "doing",
      "don't", "down", "during", "each", "either", "few", "for", "from", "further", "had", "hadn't", "has",
      "hasn't", "have", "haven't", "having", "he", "he's", "her", "here", "hers", "herself", "him",
      "himself", "his", "how", "i", "i'm", "i've", "if", "in", "into", "is", "isn't", "it", "it's", "its",
      "itself", "just", "let's", "may", "me", "might", "more", "most", "must", "my", "myself", "neither",
      "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours",
      "ourselves", "out", "over", "own", "same", "shall", "she", "she's", "should", "shouldn't", "so",
      "some", "such", "than", "that", "that's", "the", "their", "theirs", "them", "themselves", "then",
      "there", "there's", "these", "they", "they're", "this", "those", "through", "to", "too", "under",
      "until", "up", "upon", "very", "was", "wasn't", "we", "we're", "were", "weren't", "what", "when",
      "where", "which", "while", "who", "whom", "whose", "why", "will", "with", "won't", "would",
      "wouldn't", "yet", "you", "you're", "your", "yours", "yourself", "yourselves"};
  return words;
}

bool is_stopword(const std::string& token) {
  Span core = core_of(token, {0, token.size()});
  return core_is_stopword(token, core);
}

WordSwapResult word_swap(const std::string& text, const WordSwapOptions& options) {
  MG_CHECK(options.rate >= 0.0 && options.rate <= 1.0, "word_swap: rate must be in [0, 1], got ", options.rate);
  // Tokens, and the indices of those that may be swapped.
  std::vector<Span> tokens;
  std::vector<size_t> candidates;
  for (size_t i = 0; i < text.size();) {
    if (is_space(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && !is_space(text[j])) ++j;
    Span core = core_of(text, {i, j});
    bool is_unk = text.compare(i, j - i, "<unk>") == 0;
    if (core.begin < core.end && !is_unk && !core_is_stopword(text, core)) candidates.push_back(tokens.size());
    tokens.push_back({i, j});
    i = j;
  }
  const size_t n = candidates.size();
  const size_t k = static_cast<size_t>(std::llround(options.rate * static_cast<double>(n)));
  for (size_t i = 0; i < k; ++i) {  // partial Fisher-Yates: candidates[0, k) is a uniform k-subset
    size_t j = i + static_cast<size_t>(random_bits(options.seed, i) % (n - i));
    std::swap(candidates[i], candidates[j]);
  }
  std::vector<char> swap(tokens.size(), 0);
  for (size_t i = 0; i < k; ++i) swap[candidates[i]] = 1;

  WordSwapResult result{std::string(), static_cast<int64_t>(n), static_cast<int64_t>(k)};
  result.text.reserve(text.size());
  size_t pos = 0;  // copied up to here
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (!swap[t]) continue;
    Span cut = options.level == SwapLevel::Word ? tokens[t] : core_of(text, tokens[t]);
    result.text.append(text, pos, cut.begin - pos);
    result.text += "<unk>";
    pos = cut.end;
  }
  result.text.append(text, pos, std::string::npos);
  return result;
}

}  // namespace moegrad::data
