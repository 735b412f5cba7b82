// Text corpus folder, byte and word tokenizers, LM batches (see text_data.h).
#include "examples/common/text_data.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "tensor/error.h"

namespace moegrad::data {
namespace fs = std::filesystem;

namespace {

const char* const kByteHeader = "moegrad-vocab byte 256";
const char* const kWordHeader = "moegrad-vocab word ";

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Calls word(w) for every whitespace-separated word and eol() at the end of
// every line: each '\n', and a last line that has no '\n'.
template <typename Word, typename Eol>
void scan_words(const std::string& text, Word word, Eol eol) {
  size_t i = 0, n = text.size();
  while (i < n) {
    if (text[i] == '\n') {
      eol();
      ++i;
    } else if (is_blank(text[i])) {
      ++i;
    } else {
      size_t j = i;
      while (j < n && !is_blank(text[j]) && text[j] != '\n') ++j;
      word(std::string_view(text.data() + i, j - i));
      i = j;
    }
  }
  if (n > 0 && text[n - 1] != '\n') eol();
}

void check_id(int64_t id, int64_t vocab, const char* fn) {
  MG_CHECK(id >= 0 && id < vocab, fn, ": token id ", id, " is outside the vocabulary [0, ", vocab, ")");
}

// First line of `s` and the rest after its newline.
std::pair<std::string, std::string> split_first_line(const std::string& s) {
  size_t nl = s.find('\n');
  if (nl == std::string::npos) return {s, ""};
  return {s.substr(0, nl), s.substr(nl + 1)};
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

// ---- ByteTokenizer ----

std::vector<int64_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    check_id(ids[i], 256, "ByteTokenizer::decode");
    text[i] = static_cast<char>(ids[i]);
  }
  return text;
}

std::string ByteTokenizer::token_name(int64_t id) const {
  check_id(id, 256, "ByteTokenizer::token_name");
  if (id >= 0x20 && id < 0x7f) return std::string(1, static_cast<char>(id));
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", static_cast<unsigned>(id));
  return buf;
}

std::string ByteTokenizer::save() const { return std::string(kByteHeader) + "\n"; }

// ---- WordTokenizer ----

WordTokenizer WordTokenizer::build(const std::string& train_text, const WordVocabOptions& options) {
  MG_CHECK(options.min_count >= 1, "WordTokenizer::build: min_count must be >= 1, got ", options.min_count);
  MG_CHECK(options.max_size == 0 || options.max_size >= 3,
           "WordTokenizer::build: max_size must be 0 (no limit) or >= 3 (<unk>, <eol> and a word), got ",
           options.max_size);
  std::unordered_map<std::string, int64_t> counts;
  int64_t words = 0;
  scan_words(
      train_text,
      [&](std::string_view w) {
        ++words;
        if (w != "<unk>" && w != "<eol>") ++counts[std::string(w)];
      },
      [] {});
  MG_CHECK(words > 0, "WordTokenizer::build: the training text has no words (", train_text.size(),
           " bytes, all whitespace)");
  std::vector<std::pair<std::string, int64_t>> by_count;
  for (auto& [word, count] : counts)
    if (count >= options.min_count) by_count.emplace_back(word, count);
  std::sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (options.max_size > 0 && static_cast<int64_t>(by_count.size()) > options.max_size - 2)
    by_count.resize(options.max_size - 2);
  std::vector<std::string> tokens = {"<unk>", "<eol>"};
  for (auto& wc : by_count) tokens.push_back(wc.first);
  return WordTokenizer(std::move(tokens));
}

WordTokenizer::WordTokenizer(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {
  MG_CHECK(tokens_.size() >= 2 && tokens_[0] == "<unk>" && tokens_[1] == "<eol>",
           "WordTokenizer: the vocabulary must start with <unk>, <eol>; got ", tokens_.size(), " tokens",
           tokens_.empty() ? "" : " starting with " + tokens_[0]);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const std::string& t = tokens_[i];
    MG_CHECK(!t.empty() && std::none_of(t.begin(), t.end(), [](char c) { return is_blank(c) || c == '\n'; }),
             "WordTokenizer: token ", i, " \"", t, "\" is empty or contains whitespace");
    MG_CHECK(ids_.emplace(t, static_cast<int64_t>(i)).second, "WordTokenizer: token \"", t,
             "\" appears twice (ids ", ids_[t], " and ", i, ")");
  }
}

int64_t WordTokenizer::id(const std::string& word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? kUnk : it->second;
}

std::vector<int64_t> WordTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  std::string word;
  scan_words(
      text,
      [&](std::string_view w) {
        word.assign(w);
        ids.push_back(id(word));
      },
      [&] { ids.push_back(kEol); });
  return ids;
}

std::string WordTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text;
  bool line_start = true;
  for (int64_t id : ids) {
    check_id(id, vocab_size(), "WordTokenizer::decode");
    if (id == kEol) {
      text += '\n';
      line_start = true;
    } else {
      if (!line_start) text += ' ';
      text += tokens_[id];
      line_start = false;
    }
  }
  return text;
}

std::string WordTokenizer::token_name(int64_t id) const {
  check_id(id, vocab_size(), "WordTokenizer::token_name");
  return tokens_[id];
}

std::string WordTokenizer::save() const {
  std::string s = kWordHeader + std::to_string(tokens_.size()) + "\n";
  for (const auto& t : tokens_) s += t + "\n";
  return s;
}

// ---- factory, load, mismatch ----

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& level, const std::string& train_text,
                                          const WordVocabOptions& options) {
  if (level == "byte") return std::make_unique<ByteTokenizer>();
  if (level == "word") return std::make_unique<WordTokenizer>(WordTokenizer::build(train_text, options));
  throw Error("make_tokenizer: level must be \"byte\" or \"word\", got \"" + level + "\"");
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& saved) {
  MG_CHECK(!saved.empty() && saved.back() == '\n', "load_tokenizer: the text (", saved.size(),
           " bytes) does not end with a newline, as a saved vocabulary does (cut short?)");
  auto [header, rest] = split_first_line(saved);
  if (header == kByteHeader) {
    MG_CHECK(rest.empty(), "load_tokenizer: a byte vocabulary has nothing after its header, got ", rest.size(),
             " more bytes");
    return std::make_unique<ByteTokenizer>();
  }
  MG_CHECK(header.rfind(kWordHeader, 0) == 0, "load_tokenizer: expected a header \"", kByteHeader, "\" or \"",
           kWordHeader, "N\", got \"", header.substr(0, 60), "\"");
  // The count as save() writes it: decimal digits, no sign, space or leading zero.
  const std::string count_str = header.substr(std::string(kWordHeader).size());
  const bool digits = !count_str.empty() && count_str.size() < 18 && count_str[0] != '0' &&
                      std::all_of(count_str.begin(), count_str.end(), [](char c) { return c >= '0' && c <= '9'; });
  const int64_t count = digits ? std::stoll(count_str) : -1;
  MG_CHECK(count >= 2, "load_tokenizer: bad word count \"", count_str.substr(0, 60), "\" in the header");
  std::vector<std::string> tokens = lines(rest);
  MG_CHECK(static_cast<int64_t>(tokens.size()) == count, "load_tokenizer: the header says ", count,
           " words, the text has ", tokens.size());
  return std::make_unique<WordTokenizer>(std::move(tokens));
}

void check_same_vocab(const Tokenizer& current, const std::string& saved, const std::string& where) {
  std::string mine = current.save();
  if (mine == saved) return;
  auto [mine_header, mine_rest] = split_first_line(mine);
  auto [saved_header, saved_rest] = split_first_line(saved);
  std::string what;
  if (mine_header != saved_header) {
    what = "its header is \"" + saved_header.substr(0, 60) + "\", this run's is \"" + mine_header + "\"";
  } else {
    std::vector<std::string> a = lines(mine_rest), b = lines(saved_rest);
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    auto at = [&](const std::vector<std::string>& v) { return i < v.size() ? "\"" + v[i] + "\"" : "missing"; };
    what = "token " + std::to_string(i) + " is " + at(b) + " there and " + at(a) + " here";
  }
  throw Error("vocabulary mismatch: " + where + " was made with a different vocabulary (" + what +
              "); use the same data and tokenizer options");
}

// ---- corpus ----

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  MG_CHECK(fs::exists(path, ec), "read_text_file: ", path, " does not exist");
  MG_CHECK(!fs::is_directory(path, ec), "read_text_file: ", path, " is a folder, expected a file");
  std::ifstream in(path, std::ios::binary);
  MG_CHECK(in.good(), "read_text_file: cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  MG_CHECK(!in.bad(), "read_text_file: error while reading ", path);
  return ss.str();
}

TextFiles read_text_folder(const std::string& dir) {
  std::error_code ec;
  MG_CHECK(fs::is_directory(dir, ec), "read_text_folder: data folder ", dir,
           " does not exist (expected a folder with train.txt, valid.txt, test.txt)");
  auto read = [&](const char* name) {
    std::string path = (fs::path(dir) / name).string();
    MG_CHECK(fs::exists(path, ec), "read_text_folder: ", path,
             " is missing (the folder must hold train.txt, valid.txt, test.txt)");
    std::string text = read_text_file(path);
    MG_CHECK(!text.empty(), "read_text_folder: ", path, " is empty");
    return text;
  };
  TextFiles files;
  files.train = read("train.txt");
  files.valid = read("valid.txt");
  files.test = read("test.txt");
  return files;
}

TextCorpus encode_corpus(const TextFiles& files, const Tokenizer& tokenizer) {
  auto encode = [&](const std::string& text, const char* name) {
    std::vector<int64_t> ids = tokenizer.encode(text);
    MG_CHECK(ids.size() >= 2, "encode_corpus: ", name, " encodes to ", ids.size(),
             " tokens, need at least 2 (an input and its target)");
    return ids;
  };
  return {encode(files.train, "train.txt"), encode(files.valid, "valid.txt"), encode(files.test, "test.txt")};
}

// ---- batches ----

Batch random_batch(const std::vector<int64_t>& stream, int64_t B, int64_t T, Generator& gen) {
  MG_CHECK(B > 0 && T > 0, "random_batch: expected B > 0 and T > 0, got B=", B, " T=", T);
  const int64_t n = static_cast<int64_t>(stream.size());
  MG_CHECK(n >= T + 1, "random_batch: the stream has ", n, " tokens, need at least T+1 = ", T + 1);
  Batch batch{Tensor::empty({B, T}, DType::Int64), Tensor::empty({B, T}, DType::Int64), B * T, Tensor()};
  int64_t* in = batch.inputs.data<int64_t>();
  int64_t* tg = batch.targets.data<int64_t>();
  const uint64_t first = gen.take(static_cast<uint64_t>(B));
  const uint64_t starts = static_cast<uint64_t>(n - T);  // offsets 0 .. n-T-1
  for (int64_t b = 0; b < B; ++b) {
    const int64_t off = static_cast<int64_t>(random_bits(gen.seed(), first + b) % starts);
    std::copy(stream.begin() + off, stream.begin() + off + T, in + b * T);
    std::copy(stream.begin() + off + 1, stream.begin() + off + T + 1, tg + b * T);
  }
  return batch;
}

std::vector<Batch> eval_batches(const std::vector<int64_t>& stream, int64_t B, int64_t T) {
  MG_CHECK(B > 0 && T > 0, "eval_batches: expected B > 0 and T > 0, got B=", B, " T=", T);
  const int64_t n = static_cast<int64_t>(stream.size());
  MG_CHECK(n >= 2, "eval_batches: the stream has ", n, " tokens, need at least 2");
  const int64_t pairs = n - 1;                   // (input, target) pairs
  const int64_t windows = (pairs + T - 1) / T;   // the last one may be partial
  std::vector<Batch> batches;
  for (int64_t w0 = 0; w0 < windows; w0 += B) {
    const int64_t rows = std::min(B, windows - w0);
    Batch batch{Tensor::empty({rows, T}, DType::Int64), Tensor::empty({rows, T}, DType::Int64), 0, Tensor()};
    int64_t* in = batch.inputs.data<int64_t>();
    int64_t* tg = batch.targets.data<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = (w0 + r) * T + t;
        const bool real = i < pairs;
        in[r * T + t] = real ? stream[i] : 0;
        tg[r * T + t] = real ? stream[i + 1] : kIgnoreIndex;
        batch.tokens += real;
      }
    }
    if (batch.tokens < rows * T) {  // the last, partial window: mark its padding
      batch.mask = Tensor::empty({rows, T}, DType::Bool);
      for (int64_t j = 0; j < rows * T; ++j) batch.mask.data<bool>()[j] = (w0 * T + j) < pairs;
    }
    batches.push_back(std::move(batch));
  }
  return batches;
}

}  // namespace moegrad::data
