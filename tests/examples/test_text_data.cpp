// Tests of the text data layer (examples/common): byte and word tokenizers,
// vocabulary save/load and mismatch detection, the corpus folder and its
// errors, LM batches (random and eval), and the word-swap attack.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "examples/common/text_data.h"
#include "examples/common/word_swap.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using namespace moegrad;
using namespace moegrad::data;

namespace {

// A fresh folder under the test temp dir, removed at the end of the test.
struct TempFolder {
  fs::path path;
  explicit TempFolder(const std::string& name)
      : path(fs::path(::testing::TempDir()) / ("moegrad_text_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempFolder() { fs::remove_all(path); }
  void write(const std::string& file, const std::string& text) const {
    std::ofstream(path / file, std::ios::binary) << text;
  }
};

void write_corpus(const TempFolder& dir, const std::string& train, const std::string& valid,
                  const std::string& test) {
  dir.write("train.txt", train);
  dir.write("valid.txt", valid);
  dir.write("test.txt", test);
}

std::vector<int64_t> iota_stream(int64_t n) {
  std::vector<int64_t> s(n);
  for (int64_t i = 0; i < n; ++i) s[i] = i;
  return s;
}

// The text with every run of non-whitespace characters replaced by 'w'.
std::string whitespace_skeleton(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    bool space = std::isspace(static_cast<unsigned char>(text[i]));
    if (space) out += text[i];
    else if (i == 0 || std::isspace(static_cast<unsigned char>(text[i - 1]))) out += 'w';
  }
  return out;
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// About n words of English-like text: content words, stopwords, punctuation,
// "--" tokens that are no words, lines of 1..15 words, some blank lines.
std::string long_text(int64_t n, uint64_t seed) {
  const std::vector<std::string> content = {"river", "Lord", "house", "bread", "earth.", "king,", "city",
                                            "water;", "light", "servant", "mountain", "sword:", "gold"};
  const std::vector<std::string> stop = {"the", "and", "of", "The", "unto", "which,", "AND", "it's", "--"};
  std::string text;
  int64_t in_line = 0, line_len = 5;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t r = random_bits(seed, i);
    const auto& pool = (r & 1) ? content : stop;
    text += pool[(r >> 8) % pool.size()];
    if (++in_line >= line_len) {
      text += (r >> 20) % 7 == 0 ? "\n\n" : "\n";
      in_line = 0;
      line_len = 1 + static_cast<int64_t>((r >> 32) % 15);
    } else {
      text += (r >> 40) % 9 == 0 ? "  " : " ";
    }
  }
  return text;
}

}  // namespace

// ---- tokenizers ----

TEST(ByteTokenizer, RoundTripAllBytes) {
  std::string text;
  for (int b = 0; b < 256; ++b) text += static_cast<char>(b);
  ByteTokenizer tok;
  std::vector<int64_t> ids = tok.encode(text);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_EQ(tok.token_name('A'), "A");
  EXPECT_EQ(tok.token_name('\n'), "<0x0A>");
  EXPECT_EQ(tok.token_name(0xff), "<0xFF>");
  EXPECT_MG_ERROR(tok.decode({65, 256}), "ByteTokenizer::decode");
  EXPECT_MG_ERROR(tok.token_name(-1), "ByteTokenizer::token_name");
}

TEST(WordTokenizer, VocabularyOrderedByCountThenAlphabet) {
  WordTokenizer tok = WordTokenizer::build("b a b c\nc b\ny x\n");
  // b:3, c:2, then a, x, y with one each in alphabetical order
  std::vector<std::string> expected = {"<unk>", "<eol>", "b", "c", "a", "x", "y"};
  ASSERT_EQ(tok.vocab_size(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(tok.token_name(i), expected[i]);
  EXPECT_EQ(tok.id("c"), 3);
  EXPECT_EQ(tok.id("zebra"), WordTokenizer::kUnk);
}

TEST(WordTokenizer, RoundTripUnknownWordsAndEol) {
  WordTokenizer tok = WordTokenizer::build("the cat sat\non the mat\n");
  const std::string text = "the cat sat\non the mat\n";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  const int64_t the = tok.id("the"), cat = tok.id("cat"), unk = WordTokenizer::kUnk, eol = WordTokenizer::kEol;
  // unknown words, tabs and repeated spaces, blank lines, a last line without '\n'
  EXPECT_EQ(tok.encode("the  dog\tcat\n\nthe"), (std::vector<int64_t>{the, unk, cat, eol, eol, the, eol}));
  EXPECT_EQ(tok.encode(""), std::vector<int64_t>{});
  EXPECT_EQ(tok.encode("\n"), std::vector<int64_t>{eol});
  // the literal <unk> of WikiText is the unknown token, not a vocabulary word
  WordTokenizer wiki = WordTokenizer::build("a <unk> <unk> <unk> b\n");
  EXPECT_EQ(wiki.vocab_size(), 4);
  EXPECT_EQ(wiki.encode("<unk> a"), (std::vector<int64_t>{unk, wiki.id("a"), eol}));
  EXPECT_EQ(tok.decode({the, unk, eol, cat}), "the <unk>\ncat");
  EXPECT_MG_ERROR(tok.decode({the, 99}), "WordTokenizer::decode");
}

TEST(WordTokenizer, MinCountAndMaxSize) {
  const std::string train = "a a a b b c\n";
  WordTokenizer min2 = WordTokenizer::build(train, {2, 0});
  EXPECT_EQ(min2.vocab_size(), 4);  // <unk> <eol> a b
  EXPECT_EQ(min2.id("c"), WordTokenizer::kUnk);
  WordTokenizer max3 = WordTokenizer::build(train, {1, 3});
  EXPECT_EQ(max3.vocab_size(), 3);  // <unk> <eol> a
  EXPECT_EQ(max3.token_name(2), "a");
  EXPECT_EQ(max3.id("b"), WordTokenizer::kUnk);
}

TEST(WordTokenizer, Errors) {
  EXPECT_MG_ERROR(WordTokenizer::build(" \n\t\n"), "no words");
  EXPECT_MG_ERROR(WordTokenizer::build(""), "no words");
  EXPECT_MG_ERROR(WordTokenizer::build("a", {0, 0}), "min_count");
  EXPECT_MG_ERROR(WordTokenizer::build("a", {1, 2}), "max_size");
  EXPECT_MG_ERROR(WordTokenizer({"a", "<eol>"}), "must start with <unk>, <eol>");
  EXPECT_MG_ERROR(WordTokenizer({"<unk>", "<eol>", "a", "a"}), "appears twice");
  EXPECT_MG_ERROR(WordTokenizer({"<unk>", "<eol>", "a b"}), "whitespace");
  EXPECT_MG_ERROR(make_tokenizer("char", "a"), "make_tokenizer");
}

TEST(WordTokenizer, SaveLoadAndMismatch) {
  WordTokenizer tok = WordTokenizer::build("in the beginning God created the heaven\n");
  std::unique_ptr<Tokenizer> loaded = load_tokenizer(tok.save());
  ASSERT_NE(dynamic_cast<WordTokenizer*>(loaded.get()), nullptr);
  EXPECT_EQ(loaded->vocab_size(), tok.vocab_size());
  for (int64_t i = 0; i < tok.vocab_size(); ++i) EXPECT_EQ(loaded->token_name(i), tok.token_name(i));
  const std::string text = "the heaven and the earth\n";
  EXPECT_EQ(loaded->encode(text), tok.encode(text));
  EXPECT_NO_THROW(check_same_vocab(tok, tok.save(), "ckpt.safetensors"));

  ByteTokenizer bytes;
  EXPECT_NE(dynamic_cast<ByteTokenizer*>(load_tokenizer(bytes.save()).get()), nullptr);
  EXPECT_NO_THROW(check_same_vocab(bytes, bytes.save(), "ckpt"));

  // same size, one token different: names the checkpoint and the token
  WordTokenizer other = WordTokenizer::build("in the beginning God created the earth\n");
  ASSERT_EQ(other.vocab_size(), tok.vocab_size());
  EXPECT_MG_ERROR(check_same_vocab(tok, other.save(), "ckpt.safetensors"), "vocabulary mismatch: ckpt.safetensors");
  EXPECT_MG_ERROR(check_same_vocab(tok, other.save(), "ckpt"), "\"earth\" there and \"heaven\" here");
  // different size or kind
  EXPECT_MG_ERROR(check_same_vocab(tok, WordTokenizer::build("a b\n").save(), "ckpt"), "vocabulary mismatch");
  EXPECT_MG_ERROR(check_same_vocab(bytes, tok.save(), "ckpt"), "header");

  EXPECT_MG_ERROR(load_tokenizer("hello\n"), "load_tokenizer");
  EXPECT_MG_ERROR(load_tokenizer("moegrad-vocab word 5\n<unk>\n<eol>\na\n"), "header says 5 words");
  EXPECT_MG_ERROR(load_tokenizer("moegrad-vocab word x\n"), "bad word count");
  EXPECT_MG_ERROR(load_tokenizer("moegrad-vocab word 2\n<eol>\n<unk>\n"), "must start with <unk>");
}

// A saved vocabulary is read only in the form save() writes: load_tokenizer
// took a text without its last newline or with a count like "+4" and gave a
// tokenizer whose own save() differs, so check_same_vocab then rejected the
// very text it had loaded from.
TEST(WordTokenizer, LoadAcceptsOnlyWhatSaveWrites) {
  const std::string saved = WordTokenizer::build("the lord said\n").save();
  ASSERT_EQ(saved, "moegrad-vocab word 5\n<unk>\n<eol>\nlord\nsaid\nthe\n");
  EXPECT_MG_ERROR(load_tokenizer(saved.substr(0, saved.size() - 1)), "does not end with a newline");
  EXPECT_MG_ERROR(load_tokenizer("moegrad-vocab byte 256"), "does not end with a newline");
  for (const char* count : {"+5", " 5", "05", "5 ", "99999999999999999999"})
    EXPECT_MG_ERROR(load_tokenizer("moegrad-vocab word " + std::string(count) + "\n<unk>\n<eol>\nlord\nsaid\nthe\n"),
                    "bad word count");
  EXPECT_NO_THROW(check_same_vocab(*load_tokenizer(saved), saved, "ckpt"));
}

// ---- corpus folder ----

TEST(TextCorpus, LoadsFolderWithBothTokenizers) {
  TempFolder dir("load");
  write_corpus(dir, "a b a\nc a\n", "a d\n", "b\n");
  TextFiles files = read_text_folder(dir.path.string());
  EXPECT_EQ(files.valid, "a d\n");
  std::unique_ptr<Tokenizer> word = make_tokenizer("word", files.train);
  TextCorpus wc = encode_corpus(files, *word);
  EXPECT_EQ(wc.train.size(), 7u);  // 5 words + 2 <eol>
  EXPECT_EQ(wc.valid, (std::vector<int64_t>{2, WordTokenizer::kUnk, WordTokenizer::kEol}));  // a is id 2
  EXPECT_EQ(wc.test.size(), 2u);
  TextCorpus bc = encode_corpus(files, *make_tokenizer("byte", files.train));
  EXPECT_EQ(bc.train.size(), files.train.size());
  EXPECT_EQ(bc.test, (std::vector<int64_t>{'b', '\n'}));
}

TEST(TextCorpus, Errors) {
  TempFolder dir("errors");
  const std::string missing = (dir.path / "nope").string();
  EXPECT_MG_ERROR(read_text_folder(missing), "data folder " + missing + " does not exist");
  dir.write("train.txt", "a b\n");
  dir.write("test.txt", "a\n");
  EXPECT_MG_ERROR(read_text_folder(dir.path.string()), "valid.txt is missing");
  dir.write("valid.txt", "");
  EXPECT_MG_ERROR(read_text_folder(dir.path.string()), "valid.txt is empty");
  EXPECT_MG_ERROR(read_text_file(dir.path.string()), "is a folder");
  EXPECT_MG_ERROR(read_text_file(missing), missing + " does not exist");

  // a train file with no words is no corpus for the word tokenizer
  write_corpus(dir, "  \n\n", "a\n", "a\n");
  TextFiles files = read_text_folder(dir.path.string());
  EXPECT_MG_ERROR(make_tokenizer("word", files.train), "no words");
  // one byte is no (input, target) pair
  write_corpus(dir, "ab\n", "x", "ab\n");
  files = read_text_folder(dir.path.string());
  EXPECT_MG_ERROR(encode_corpus(files, ByteTokenizer()), "valid.txt encodes to 1 tokens");
}

// ---- batches ----

TEST(LmBatch, RandomBatchShiftsByOneAndIsReproducible) {
  const std::vector<int64_t> stream = iota_stream(500);
  const int64_t B = 4, T = 16;
  Generator gen(7);
  Batch b1 = random_batch(stream, B, T, gen);
  EXPECT_EQ(b1.inputs.shape(), (Shape{B, T}));
  EXPECT_EQ(b1.targets.shape(), (Shape{B, T}));
  EXPECT_EQ(b1.inputs.dtype(), DType::Int64);
  EXPECT_EQ(b1.tokens, B * T);
  std::vector<int64_t> in = b1.inputs.to_indices(), tg = b1.targets.to_indices();
  for (int64_t b = 0; b < B; ++b) {
    EXPECT_GE(in[b * T], 0);
    EXPECT_LE(in[b * T] + T, 499);  // the last target is inside the stream
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_EQ(in[b * T + t], in[b * T] + t);   // a contiguous window
      EXPECT_EQ(tg[b * T + t], in[b * T + t] + 1);  // targets are the next token
    }
  }
  Batch b2 = random_batch(stream, B, T, gen);
  EXPECT_NE(b2.inputs.to_indices(), in);  // the generator moved on
  Generator again(7);
  EXPECT_EQ(random_batch(stream, B, T, again).inputs.to_indices(), in);
  Generator resumed(7);
  resumed.set_state(gen.seed(), gen.offset() - B);  // a checkpointed state replays the same batch
  EXPECT_EQ(random_batch(stream, B, T, resumed).targets.to_indices(), b2.targets.to_indices());
  // the whole range of offsets is used, including the last one
  std::vector<int> seen(3, 0);
  Generator g3(1);
  for (int i = 0; i < 50; ++i) ++seen[random_batch(iota_stream(T + 3), 1, T, g3).inputs.to_indices()[0]];
  for (int s : seen) EXPECT_GT(s, 0);
}

TEST(LmBatch, RandomBatchErrors) {
  Generator gen(0);
  EXPECT_MG_ERROR(random_batch(iota_stream(16), 2, 16, gen), "random_batch: the stream has 16 tokens");
  EXPECT_MG_ERROR(random_batch(iota_stream(100), 0, 16, gen), "random_batch: expected B > 0");
  EXPECT_MG_ERROR(eval_batches(iota_stream(1), 2, 4), "eval_batches: the stream has 1 tokens");
  EXPECT_MG_ERROR(eval_batches(iota_stream(10), 2, 0), "eval_batches: expected B > 0 and T > 0");
}

TEST(LmBatch, EvalBatchesCoverEveryTokenOnce) {
  for (int64_t n : {103, 21, 2}) {
    const int64_t B = 3, T = 10;
    std::vector<int64_t> stream = iota_stream(n);
    for (auto& v : stream) v += 1000;  // ids unlike positions
    std::vector<Batch> batches = eval_batches(stream, B, T);
    const int64_t windows = (n - 1 + T - 1) / T;
    ASSERT_EQ(static_cast<int64_t>(batches.size()), (windows + B - 1) / B) << "n=" << n;
    std::map<int64_t, int> target_count;
    int64_t tokens = 0, ignored = 0, expected_next = 1001;
    for (size_t k = 0; k < batches.size(); ++k) {
      const Batch& b = batches[k];
      const int64_t rows = std::min<int64_t>(B, windows - static_cast<int64_t>(k) * B);
      ASSERT_EQ(b.inputs.shape(), (Shape{rows, T}));
      ASSERT_EQ(b.targets.shape(), (Shape{rows, T}));
      tokens += b.tokens;
      std::vector<int64_t> in = b.inputs.to_indices(), tg = b.targets.to_indices();
      // the mask marks the padding, only where there is some
      EXPECT_EQ(b.mask.defined(), b.tokens < rows * T);
      if (b.mask.defined()) {
        for (size_t i = 0; i < tg.size(); ++i) EXPECT_EQ(b.mask.data<bool>()[i], tg[i] != kIgnoreIndex) << i;
      }
      for (size_t i = 0; i < tg.size(); ++i) {
        if (tg[i] == kIgnoreIndex) {
          ++ignored;
          continue;
        }
        EXPECT_EQ(tg[i], expected_next++);  // in order
        EXPECT_EQ(in[i], tg[i] - 1);        // shifted by one
        ++target_count[tg[i]];
      }
    }
    EXPECT_EQ(tokens, n - 1);
    EXPECT_EQ(ignored, windows * T - (n - 1));
    ASSERT_EQ(static_cast<int64_t>(target_count.size()), n - 1);
    for (auto& [token, count] : target_count) EXPECT_EQ(count, 1) << token;
  }
}

// ---- word swap ----

TEST(WordSwap, RateStopwordsAndLinesOverLongText) {
  const std::string text = long_text(40000, 3);
  WordSwapResult r = word_swap(text);
  EXPECT_EQ(whitespace_skeleton(r.text), whitespace_skeleton(text));  // lines and spacing kept
  std::vector<std::string> before = split_words(text), after = split_words(r.text);
  ASSERT_EQ(before.size(), after.size());
  int64_t candidates = 0, changed = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const bool word = before[i] != "--";
    if (word && !is_stopword(before[i])) ++candidates;
    if (before[i] == after[i]) continue;
    ++changed;
    EXPECT_EQ(after[i], "<unk>");
    EXPECT_FALSE(is_stopword(before[i])) << before[i];
    EXPECT_NE(before[i], "--");
  }
  EXPECT_EQ(r.candidates, candidates);
  EXPECT_EQ(r.swapped, changed);
  EXPECT_GT(candidates, 15000);
  EXPECT_NEAR(static_cast<double>(changed) / candidates, 0.025, 0.001);
}

TEST(WordSwap, SameSeedSameTextOtherSeedOther) {
  const std::string text = long_text(5000, 11);
  const std::string a = word_swap(text, {0.025, 42}).text;
  EXPECT_EQ(word_swap(text, {0.025, 42}).text, a);
  EXPECT_NE(word_swap(text, {0.025, 43}).text, a);
  EXPECT_EQ(word_swap(text, {0.0, 42}).text, text);
}

TEST(WordSwap, WordAndByteLevels) {
  const std::string text = "The cat, AND the dog.\n\n  it's -- (gold)\t<unk> Unto\n";
  WordSwapResult w = word_swap(text, {1.0, 1, SwapLevel::Word});
  EXPECT_EQ(w.text, "The <unk> AND the <unk>\n\n  it's -- <unk>\t<unk> <unk>\n");
  EXPECT_EQ(w.candidates, 4);  // cat, dog, gold, Unto; never "<unk>" or "--"
  WordSwapResult b = word_swap(text, {1.0, 1, SwapLevel::Byte});
  EXPECT_EQ(b.text, "The <unk>, AND the <unk>.\n\n  it's -- (<unk>)\t<unk> <unk>\n");
  EXPECT_TRUE(is_stopword("The,"));
  EXPECT_TRUE(is_stopword("WHICH"));
  EXPECT_FALSE(is_stopword("Lord"));
  EXPECT_GE(english_stopwords().size(), 120u);
  EXPECT_MG_ERROR(word_swap(text, {1.5, 1}), "word_swap: rate");
}

TEST(WordSwap, AttackedWordsEncodeToUnk) {
  const std::string text = long_text(3000, 5);
  WordTokenizer tok = WordTokenizer::build(text);
  WordSwapResult r = word_swap(text);
  auto count_unk = [](const std::vector<int64_t>& ids) {
    return std::count(ids.begin(), ids.end(), WordTokenizer::kUnk);
  };
  EXPECT_EQ(count_unk(tok.encode(text)), 0);
  EXPECT_EQ(count_unk(tok.encode(r.text)), r.swapped);
  EXPECT_GT(r.swapped, 0);
}
