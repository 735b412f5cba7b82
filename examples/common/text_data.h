// Text data for language modelling: reading a corpus folder (train.txt,
// valid.txt, test.txt: the WikiText-103 / enwik8 / text8 layout), the byte and
// word tokenizers behind one interface, and the batches a training loop eats
// (inputs and next-token targets, int64 [B, T]). The word vocabulary is built
// from train only and is deterministic; it saves to a string so a checkpoint
// can carry it and a resume can refuse a different vocabulary.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace moegrad::data {

// ---- tokenizers ----

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Error on an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string token_name(int64_t id) const = 0;
  // The whole vocabulary as text; load_tokenizer() rebuilds the tokenizer.
  virtual std::string save() const = 0;
};

// Raw bytes: id = byte value, vocabulary 256. Names: printable ASCII as
// itself, other bytes as "<0xNN>".
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return 256; }
  std::string token_name(int64_t id) const override;
  std::string save() const override;
};

struct WordVocabOptions {
  int64_t min_count = 1;  // words seen fewer times in train map to <unk>
  int64_t max_size = 0;   // total vocabulary including <unk> and <eol>; 0: no limit
};

// Words are split on whitespace; every line ends with <eol>, including a last
// line without a newline. Id 0 is <unk> (also what the literal text "<unk>"
// encodes to, as in WikiText), id 1 is <eol>, then the train words by
// descending count, ties alphabetical. decode joins words with one space and
// turns <eol> into a newline.
class WordTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kUnk = 0;
  static constexpr int64_t kEol = 1;
  // Counts the words of train_text; Error when it has none.
  static WordTokenizer build(const std::string& train_text, const WordVocabOptions& options = {});
  // tokens[0] must be "<unk>", tokens[1] "<eol>"; no duplicates, no whitespace.
  explicit WordTokenizer(std::vector<std::string> tokens);

  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  std::string token_name(int64_t id) const override;
  std::string save() const override;
  // The id of a word, kUnk when it is not in the vocabulary.
  int64_t id(const std::string& word) const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
};

// "byte" or "word"; the word vocabulary is built from train_text.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& level, const std::string& train_text,
                                          const WordVocabOptions& options = {});
// Rebuilds a tokenizer from Tokenizer::save(); Error when the text is not one.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& saved);
// Error saying how they differ (kind, size, first different token) when the
// vocabulary in `saved` (e.g. from a checkpoint named by `where`) is not the
// one of `current`.
void check_same_vocab(const Tokenizer& current, const std::string& saved, const std::string& where);

// ---- the corpus ----

// The raw text of the three splits.
struct TextFiles {
  std::string train, valid, test;
};
// Reads dir/train.txt, dir/valid.txt, dir/test.txt; Error naming the folder or
// file when one is missing, unreadable or empty.
TextFiles read_text_folder(const std::string& dir);
// The whole file; Error naming it when missing or unreadable.
std::string read_text_file(const std::string& path);

struct TextCorpus {
  std::vector<int64_t> train, valid, test;
};
// Encodes each split; Error naming the split when it gives fewer than 2
// tokens (one input and its target).
TextCorpus encode_corpus(const TextFiles& files, const Tokenizer& tokenizer);

// ---- batches for LM training ----

constexpr int64_t kIgnoreIndex = -100;  // cross_entropy's default ignore_index

struct Batch {
  Tensor inputs;   // int64 [B, T]
  Tensor targets;  // int64 [B, T]: the token after each input, or kIgnoreIndex
  int64_t tokens = 0;  // targets that are not kIgnoreIndex
  Tensor mask;     // bool [B, T]: true for real inputs, false for padding; undefined when there is none
};

// B windows of T+1 tokens at offsets drawn from gen (B counters per call, so
// the same generator state gives the same batch). Error when the stream has
// fewer than T+1 tokens.
Batch random_batch(const std::vector<int64_t>& stream, int64_t B, int64_t T, Generator& gen);

// The whole stream in order: window w predicts stream[w*T + 1 .. w*T + T],
// windows fill batch rows in order, so every token after the first is a
// target exactly once. The last window is padded (input 0, target
// kIgnoreIndex, mask false) and the last batch may have fewer than B rows.
std::vector<Batch> eval_batches(const std::vector<int64_t>& stream, int64_t B, int64_t T);

}  // namespace moegrad::data
