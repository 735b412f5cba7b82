// Fuzz target for the text corpus loaders and tokenizers
// (examples/common/text_data.cpp). The first byte chooses what the rest is:
//   0  text for the byte tokenizer: decode(encode(t)) == t;
//   1  training text for a word vocabulary (next two bytes: min_count,
//      max_size): the vocabulary saves and loads back as itself, and
//      encode(decode(encode(t))) == encode(t);
//   2  a saved vocabulary for load_tokenizer: what loads is the vocabulary the
//      text holds (check_same_vocab agrees) and every token encodes to its id;
//   3  a corpus folder (next three bytes: level, B, T; then train, valid and
//      test separated by NUL bytes): every token after the first is one eval
//      target, and a random batch's targets are its inputs shifted by one.
// Anything else is a moegrad::Error.
#include <algorithm>

#include "examples/common/text_data.h"
#include "fuzz_support.h"

using namespace moegrad;
using namespace moegrad::data;

namespace {

void byte_round_trip(const std::string& text) {
  ByteTokenizer t;
  FUZZ_EXPECT(t.decode(t.encode(text)) == text, "byte round trip changed a ", text.size(), "-byte text");
}

void word_vocabulary(const uint8_t* params, const std::string& text) {
  WordVocabOptions options;
  options.min_count = params[0] % 4;  // 0 is an error
  options.max_size = params[1] % 8;   // 1 and 2 are errors
  const WordTokenizer t = WordTokenizer::build(text, options);
  const std::string saved = t.save();
  const std::string again = fuzz::must("loading a saved vocabulary", [&] { return load_tokenizer(saved)->save(); });
  FUZZ_EXPECT(again == saved, "a saved vocabulary loads as another");
  const std::vector<int64_t> ids = t.encode(text);
  FUZZ_EXPECT(t.encode(t.decode(ids)) == ids, "encode(decode(ids)) != ids");
}

void loaded_vocabulary(const std::string& saved) {
  std::unique_ptr<Tokenizer> t;
  try {
    t = load_tokenizer(saved);
  } catch (const Error& e) {
    fuzz::rejected(e);
    return;
  }
  fuzz::must("check_same_vocab with the text it was loaded from",
             [&] { check_same_vocab(*t, saved, "the text it was loaded from"); });
  const int64_t n = std::min<int64_t>(t->vocab_size(), 64);
  for (int64_t id = 0; id < n; ++id) {
    const std::vector<int64_t> ids = t->encode(t->token_name(id));
    if (dynamic_cast<const WordTokenizer*>(t.get()))
      FUZZ_EXPECT(ids.size() == 2 && ids[0] == id && ids[1] == WordTokenizer::kEol, "token ", id, " \"",
                  t->token_name(id), "\" encodes to ", ids.size(), " ids");
  }
}

void corpus(const uint8_t* params, const std::string& text) {
  static const fuzz::Scratch dir("corpus");
  std::filesystem::create_directories(dir.path());
  const char* names[] = {"train.txt", "valid.txt", "test.txt"};
  size_t begin = 0;
  for (int i = 0; i < 3; ++i) {  // splits separated by NUL; missing ones are empty
    size_t end = i < 2 ? std::min(text.find('\0', begin), text.size()) : text.size();
    if (begin > text.size()) begin = end = text.size();
    fuzz::write_file(dir.path() + "/" + names[i], reinterpret_cast<const uint8_t*>(text.data()) + begin, end - begin);
    begin = end + 1;
  }
  const TextFiles files = read_text_folder(dir.path());
  const std::unique_ptr<Tokenizer> t = make_tokenizer(params[0] & 1 ? "word" : "byte", files.train);
  const TextCorpus c = encode_corpus(files, *t);
  const int64_t B = 1 + params[1] % 4, T = 1 + params[2] % 8;
  int64_t targets = 0;
  for (const Batch& b : eval_batches(c.valid, B, T)) targets += b.tokens;
  FUZZ_EXPECT(targets == static_cast<int64_t>(c.valid.size()) - 1, targets, " eval targets for ", c.valid.size(),
              " tokens");
  if (static_cast<int64_t>(c.train.size()) <= T) return;
  Generator gen(params[1]);
  const Batch b = random_batch(c.train, B, T, gen);
  const std::vector<int64_t> in = b.inputs.to_indices(), tg = b.targets.to_indices();
  for (int64_t r = 0; r < B; ++r)
    for (int64_t i = 0; i + 1 < T; ++i)
      FUZZ_EXPECT(tg[r * T + i] == in[r * T + i + 1], "row ", r, ": target ", i, " is not input ", i + 1);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 4, size - 4);
  try {
    switch (data[0] % 4) {
      case 0: byte_round_trip(rest); break;
      case 1: word_vocabulary(data + 1, rest); break;
      case 2: loaded_vocabulary(rest); break;
      default: corpus(data + 1, rest); break;
    }
  } catch (const Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
