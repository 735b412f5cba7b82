// Safetensors reader and writer: round trips of every dtype, 0-d, empty and
// non-contiguous tensors and metadata; the exact bytes of a small file against
// a hand-built one (so the format really is safetensors); every kind of corrupt
// or truncated file giving an Error that names the file; and atomic saves that
// leave no temp file and keep an existing file when they fail.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "nn/safetensors.h"
#include "test_helpers.h"

using namespace moegrad;
namespace fs = std::filesystem;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>(n >> (8 * i) & 0xff);
  return s;
}

// A file from header text and data bytes, as another writer might produce it.
std::string file_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// First occurrence of `from` replaced by `to`; `from` must occur.
std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << "'" << from << "' not in " << s;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

void expect_tensor_eq(const Tensor& got, const Tensor& want) {
  ASSERT_TRUE(got.defined());
  EXPECT_EQ(got.dtype(), want.dtype());
  EXPECT_EQ(got.shape(), want.shape());
  EXPECT_TRUE(got.is_contiguous());
  EXPECT_EQ(got.to_vector(), want.to_vector());
}

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "moegrad_st_" + std::to_string(::getpid()) + "_" + info->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  // A valid file holding a = [1, 2] and b = [3, 4] (F32): the base of the corruption tests.
  std::string valid_file() const {
    const std::string p = file("valid.safetensors");
    save_safetensors(p, {{"a", Tensor::from_vector({1, 2}, {2})}, {"b", Tensor::from_vector({3, 4}, {2})}});
    return p;
  }
  // Rewrites the header of the file at p through edit, keeping its data bytes.
  void edit_header(const std::string& p, const std::function<std::string(const std::string&)>& edit) const {
    const std::string bytes = read_bytes(p);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(bytes[i]);
    write_bytes(p, file_bytes(edit(bytes.substr(8, n)), bytes.substr(8 + n)));
  }
  // load_safetensors(p) must fail with a message naming the file and containing text.
  void expect_load_error(const std::string& p, const std::string& text) const {
    EXPECT_MG_ERROR(load_safetensors(p), text);
    EXPECT_MG_ERROR(load_safetensors(p), p);
  }

  std::string dir_;
};

// ---- round trips ----

TEST_F(Safetensors, RoundTripEveryDtypeWithMetadata) {
  Generator gen(5);
  const TensorMap in = {
      {"f32", Tensor::randn({2, 3}, 0, 1, DType::Float32, &gen)},
      {"f64", Tensor::randn({4}, 0, 1, DType::Float64, &gen)},
      {"i64", Tensor::from_indices({-3, 0, int64_t(1) << 40}, {3})},
      {"mask", Tensor::from_vector({1, 0, 0, 1, 1}, {5}, DType::Bool)},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "42"}, {"note", "héllo"}};
  save_safetensors(file("m.safetensors"), in, meta);
  const SafetensorsFile out = load_safetensors(file("m.safetensors"));
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) expect_tensor_eq(out.tensors.at(name), t);
  EXPECT_EQ(out.metadata, meta);
}

TEST_F(Safetensors, RoundTripScalarAndEmptyTensors) {
  const TensorMap in = {
      {"scalar", Tensor::scalar(2.5, DType::Float64)},
      {"empty", Tensor::zeros({0}, DType::Float32)},
      {"empty3d", Tensor::zeros({2, 0, 3}, DType::Int64)},
      {"after", Tensor::from_vector({7, 8}, {2}, DType::Float32)},
  };
  save_safetensors(file("s.safetensors"), in);
  const SafetensorsFile out = load_safetensors(file("s.safetensors"));
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) expect_tensor_eq(out.tensors.at(name), t);
  EXPECT_EQ(out.tensors.at("scalar").dim(), 0);
  EXPECT_TRUE(out.metadata.empty());
}

TEST_F(Safetensors, RoundTripNonContiguousInputs) {
  Generator gen(6);
  const Tensor base = Tensor::randn({3, 4}, 0, 1, DType::Float64, &gen);
  const TensorMap in = {
      {"transposed", transpose(base, 0, 1)},
      {"strided", slice(base, 1, 0, 4, 2)},
      {"broadcast", expand(Tensor::from_vector({1, 2, 3}, {1, 3}), {4, 3})},
      {"offset", narrow(base, 0, 1, 2)},
  };
  for (const char* name : {"transposed", "strided", "broadcast"}) ASSERT_FALSE(in.at(name).is_contiguous());
  save_safetensors(file("n.safetensors"), in);
  const SafetensorsFile out = load_safetensors(file("n.safetensors"));
  for (const auto& [name, t] : in) expect_tensor_eq(out.tensors.at(name), t);
  // Only the views' elements are written: 12 + 6 + 8 float64 and 12 float32.
  const std::string bytes = read_bytes(file("n.safetensors"));
  EXPECT_EQ(bytes.size() - 8 - static_cast<unsigned char>(bytes[0]) - 256 * static_cast<unsigned char>(bytes[1]),
            26u * 8 + 12 * 4);
}

// ---- the exact format ----

TEST_F(Safetensors, BytesMatchHandBuiltFile) {
  save_safetensors(file("h.safetensors"),
                   {{"b", Tensor::from_indices({7}, {})}, {"a", Tensor::from_vector({1.0, -2.0}, {2})}},
                   {{"format", "pt"}});
  // Keys sorted, no spaces, padded with spaces to a multiple of 8 bytes (138 + 6 = 144).
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},)"
      R"("b":{"data_offsets":[8,16],"dtype":"I64","shape":[]}})"
      "      ";
  ASSERT_EQ(header.size(), 144u);
  const std::string expected = std::string("\x90\0\0\0\0\0\0\0", 8) + header +
                               std::string("\x00\x00\x80\x3f", 4) +         // 1.0f
                               std::string("\x00\x00\x00\xc0", 4) +         // -2.0f
                               std::string("\x07\0\0\0\0\0\0\0", 8);        // int64 7
  EXPECT_EQ(read_bytes(file("h.safetensors")), expected);
}

TEST_F(Safetensors, ReadsFileFromAnotherWriter) {
  // Key order as Python writes it, a gap in the buffer, a zero-size tensor at the end, no padding.
  const std::string header =
      R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[4,12]},"m":{"dtype":"BOOL","shape":[2],)"
      R"("data_offsets":[0,2]},"e":{"dtype":"F32","shape":[0,5],"data_offsets":[12,12]}})";
  const std::string data = std::string("\x01\x00", 2) + "xx" + std::string("\0\0\0\0\0\0\xf8\x3f", 8);  // 1.5
  write_bytes(file("o.safetensors"), file_bytes(header, data));
  const SafetensorsFile out = load_safetensors(file("o.safetensors"));
  expect_tensor_eq(out.tensors.at("w"), Tensor::from_vector({1.5}, {1}, DType::Float64));
  expect_tensor_eq(out.tensors.at("m"), Tensor::from_vector({1, 0}, {2}, DType::Bool));
  expect_tensor_eq(out.tensors.at("e"), Tensor::zeros({0, 5}));
}

// ---- corrupt and truncated files ----

TEST_F(Safetensors, MissingFileOrDirectory) {
  expect_load_error(file("absent.safetensors"), "cannot open");
  expect_load_error(dir_, "not a regular file");
}

TEST_F(Safetensors, TruncatedBelowHeaderLength) {
  const std::string p = valid_file();
  write_bytes(p, read_bytes(p).substr(0, 5));
  expect_load_error(p, "too short");
  write_bytes(p, "");
  expect_load_error(p, "too short");
}

TEST_F(Safetensors, TruncatedInsideHeader) {
  const std::string p = valid_file();
  write_bytes(p, read_bytes(p).substr(0, 40));
  expect_load_error(p, "exceeds the 32 bytes");
}

TEST_F(Safetensors, TruncatedData) {
  const std::string p = valid_file();
  const std::string bytes = read_bytes(p);
  write_bytes(p, bytes.substr(0, bytes.size() - 1));
  expect_load_error(p, "tensor 'b': data_offsets [8,16] end beyond the 15-byte data buffer");
}

TEST_F(Safetensors, HeaderLengthBeyondFile) {
  const std::string p = valid_file();
  const std::string bytes = read_bytes(p);
  write_bytes(p, le64(bytes.size()) + bytes.substr(8));
  expect_load_error(p, "exceeds the");
}

TEST_F(Safetensors, HeaderLengthOverLimit) {
  const std::string p = valid_file();
  const std::string bytes = read_bytes(p);
  write_bytes(p, le64(200u << 20) + bytes.substr(8));
  expect_load_error(p, "exceeds the limit");
  write_bytes(p, le64(~uint64_t(0)) + bytes.substr(8));
  expect_load_error(p, "exceeds the limit");
}

TEST_F(Safetensors, HeaderNotJson) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return "{\"a\": not json" + std::string(h.size() - 14, ' '); });
  expect_load_error(p, "not valid JSON");
  edit_header(p, [](const std::string& h) { return std::string(h.size(), '\0'); });
  expect_load_error(p, "not valid JSON");
}

TEST_F(Safetensors, HeaderNotObject) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string&) { return "[1, 2]"; });
  expect_load_error(p, "not a JSON object");
}

// A shape nested a million levels deep: the error message printed it, and
// printing recursed once per level until the stack overflowed.
TEST_F(Safetensors, DeeplyNestedHeader) {
  const std::string p = valid_file();
  const size_t depth = 1000000;
  edit_header(p, [&](const std::string&) {
    return "{\"a\": {\"dtype\": \"F32\", \"shape\": " + std::string(depth, '[') + std::string(depth, ']') +
           ", \"data_offsets\": [0, 8]}}";
  });
  expect_load_error(p, "header nests deeper than 16 levels");
}

TEST_F(Safetensors, UnsupportedDtype) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "\"F32\"", "\"F16\""); });
  expect_load_error(p, "tensor 'a': unsupported dtype 'F16'");
  edit_header(p, [](const std::string& h) { return replaced(h, "\"F16\"", "32"); });
  expect_load_error(p, "dtype is not a string");
}

TEST_F(Safetensors, BadShape) {
  for (const char* shape : {"[-2]", "[2.0]", "[\"2\"]", "[18446744073709551615]"}) {
    const std::string p = valid_file();
    edit_header(p, [&](const std::string& h) { return replaced(h, "[2]", shape); });
    expect_load_error(p, "is not a list of non-negative integers");
  }
  std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "[2]", "2"); });
  expect_load_error(p, "shape is not an array");
  p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "[2]", "[0,4294967296,4294967296]"); });
  expect_load_error(p, "is too large");
}

TEST_F(Safetensors, MissingField) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "\"dtype\":", "\"dtypo\":"); });
  expect_load_error(p, "tensor 'a' needs an object with dtype, shape and data_offsets");
  edit_header(p, [](const std::string& h) { return replaced(h, "{\"data_offsets\":[0,8],\"dtypo\":\"F32\",\"shape\":[2]}", "7"); });
  expect_load_error(p, "tensor 'a' needs an object");
}

TEST_F(Safetensors, OffsetsOutOfRange) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "[8,16]", "[16,24]"); });
  expect_load_error(p, "end beyond the 16-byte data buffer");
}

TEST_F(Safetensors, OffsetsNotAPair) {
  for (const char* offsets : {"[8]", "[8,16,24]", "[-8,0]", "[8,16.5]", "\"8,16\""}) {
    const std::string p = valid_file();
    edit_header(p, [&](const std::string& h) { return replaced(h, "[8,16]", offsets); });
    expect_load_error(p, "is not a pair of non-negative integers");
  }
}

TEST_F(Safetensors, OffsetsReversed) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "[8,16]", "[16,8]"); });
  expect_load_error(p, "has begin > end");
}

TEST_F(Safetensors, OverlappingRanges) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "[8,16]", "[4,12]"); });
  expect_load_error(p, "byte ranges of tensors 'a' and 'b' overlap");
  // The same range twice overlaps too.
  edit_header(p, [](const std::string& h) { return replaced(h, "[4,12]", "[0,8]"); });
  expect_load_error(p, "overlap");
}

TEST_F(Safetensors, SizeMismatch) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "\"shape\":[2]}}", "\"shape\":[3]}}"); });
  expect_load_error(p, "tensor 'b': data_offsets [8,16] span 8 bytes, but shape [3] of F32 needs 12");
  edit_header(p, [](const std::string& h) { return replaced(h, "\"F32\",\"shape\":[3]", "\"F64\",\"shape\":[2]"); });
  expect_load_error(p, "needs 16");
}

TEST_F(Safetensors, DuplicateNames) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "\"b\":", "\"a\":"); });
  expect_load_error(p, "tensor name 'a' appears twice");
}

TEST_F(Safetensors, BadMetadata) {
  const std::string p = valid_file();
  edit_header(p, [](const std::string& h) { return replaced(h, "{\"a\"", "{\"__metadata__\":{\"step\":3},\"a\""); });
  expect_load_error(p, "__metadata__ value of 'step' is not a string");
  edit_header(p, [](const std::string& h) { return replaced(h, "{\"step\":3}", "[]"); });
  expect_load_error(p, "__metadata__ is not a JSON object");
}

TEST_F(Safetensors, InvalidBoolByte) {
  const std::string p = file("bool.safetensors");
  write_bytes(p, file_bytes(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x02\x00", 3)));
  expect_load_error(p, "tensor 'm': BOOL bytes must be 0 or 1");
}

// ---- saving ----

TEST_F(Safetensors, SaveRejectsBadInput) {
  const std::string p = file("bad.safetensors");
  EXPECT_MG_ERROR(save_safetensors(p, {{"x", Tensor()}}), "save_safetensors: '" + p + "': tensor 'x' is undefined");
  EXPECT_MG_ERROR(save_safetensors(p, {{"__metadata__", Tensor::zeros({1})}}), "__metadata__ is reserved");
  EXPECT_MG_ERROR(save_safetensors(p, {{"bad\xff", Tensor::zeros({1})}}), "not valid UTF-8");
  EXPECT_MG_ERROR(save_safetensors(p, {}, {{"k", "bad\xff"}}), "not valid UTF-8");
  EXPECT_TRUE(listing().empty());
}

TEST_F(Safetensors, FailedSaveIntoMissingDirectoryLeavesNothing) {
  EXPECT_MG_ERROR(save_safetensors(file("nope/x.safetensors"), {{"a", Tensor::zeros({2})}}), "cannot create");
  EXPECT_TRUE(listing().empty());
}

TEST_F(Safetensors, FailedSaveOverDirectoryLeavesNoTempFile) {
  fs::create_directory(file("d"));
  EXPECT_MG_ERROR(save_safetensors(file("d"), {{"a", Tensor::zeros({2})}}), "save_safetensors: cannot write '" + file("d"));
  EXPECT_EQ(listing(), std::vector<std::string>{"d"});
  EXPECT_TRUE(fs::is_directory(file("d")));
}

TEST_F(Safetensors, FailedSaveKeepsExistingFile) {
  const std::string p = valid_file();
  const std::string before = read_bytes(p);
  // The temp file cannot be created: a directory is in its place.
  const std::string tmp = p + ".tmp." + std::to_string(::getpid());
  fs::create_directory(tmp);
  EXPECT_MG_ERROR(save_safetensors(p, {{"c", Tensor::ones({3})}}), "cannot create");
  EXPECT_EQ(read_bytes(p), before);
  fs::remove(tmp);
  EXPECT_MG_ERROR(save_safetensors(p, {{"c", Tensor()}}), "undefined");
  EXPECT_EQ(read_bytes(p), before);
  // A successful save replaces the file and leaves only it.
  save_safetensors(p, {{"c", Tensor::ones({3})}});
  EXPECT_EQ(listing(), std::vector<std::string>{"valid.safetensors"});
  EXPECT_EQ(load_safetensors(p).tensors.at("c").to_vector(), std::vector<double>({1, 1, 1}));
}

}  // namespace
