// Tests of the IDX reader (examples/common/idx): small gzip'd and plain files
// written here with zlib are read back; bad magic, truncated and over-long
// files, zero dimensions and count mismatches are errors naming the file; the
// installed Fashion-MNIST is found and read when present.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "examples/common/idx.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using namespace moegrad;
using namespace moegrad::data;

namespace {

std::string idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string s;
  auto put32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
  };
  put32(magic);
  for (uint32_t d : dims) put32(d);
  s.append(data.begin(), data.end());
  return s;
}

void write_plain(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void write_gzip(const fs::path& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::vector<uint8_t> pixels(size_t n) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  return p;
}

class Idx : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("moegrad_idx_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

}  // namespace

TEST_F(Idx, ReadsGzipAndPlainImagesAndLabels) {
  const std::vector<uint8_t> px = pixels(3 * 2 * 4);
  const std::vector<uint8_t> lb = {7, 0, 9};
  write_gzip(path("img.gz"), idx_bytes(0x803, {3, 2, 4}, px));
  write_plain(path("img"), idx_bytes(0x803, {3, 2, 4}, px));
  write_gzip(path("lbl.gz"), idx_bytes(0x801, {3}, lb));
  write_plain(path("lbl"), idx_bytes(0x801, {3}, lb));
  for (const char* suffix : {".gz", ""}) {
    ImageDataset ds = read_idx_dataset(path(std::string("img") + suffix), path(std::string("lbl") + suffix));
    EXPECT_EQ(ds.images.shape(), (Shape{3, 1, 2, 4}));
    EXPECT_EQ(ds.images.dtype(), DType::Float32);
    std::vector<double> v = ds.images.to_vector();
    for (size_t i = 0; i < px.size(); ++i) EXPECT_FLOAT_EQ(v[i], px[i] / 255.0f) << i;
    EXPECT_EQ(ds.labels.dtype(), DType::Int64);
    EXPECT_EQ(ds.labels.to_indices(), (std::vector<int64_t>{7, 0, 9}));
  }
}

TEST_F(Idx, BadMagicMissingFileAndZeroDimension) {
  write_plain(path("lbl"), idx_bytes(0x801, {2}, {1, 2}));
  EXPECT_MG_ERROR(read_idx_images(path("lbl")), "has magic number 0x00000801, expected 0x00000803");
  write_gzip(path("img.gz"), idx_bytes(0x803, {1, 1, 1}, {5}));
  EXPECT_MG_ERROR(read_idx_labels(path("img.gz")), "read_idx_labels: " + path("img.gz") + " has magic");
  write_plain(path("text"), "hello world, not an idx file");
  EXPECT_MG_ERROR(read_idx_images(path("text")), "expected 0x00000803");
  EXPECT_MG_ERROR(read_idx_images(path("none.gz")), path("none.gz") + " does not exist");
  write_plain(path("zero"), idx_bytes(0x803, {2, 0, 3}, {}));
  EXPECT_MG_ERROR(read_idx_images(path("zero")), "dimension 1 of size 0");
}

TEST_F(Idx, TruncatedAndOverlongFiles) {
  const std::string full = idx_bytes(0x803, {4, 8, 8}, pixels(4 * 64));
  write_plain(path("short"), full.substr(0, full.size() - 5));
  EXPECT_MG_ERROR(read_idx_images(path("short")), path("short") + " is truncated: the header promises 4 images");
  EXPECT_MG_ERROR(read_idx_images(path("short")), "256 bytes of data, the file has 251");
  write_plain(path("header"), full.substr(0, 10));
  EXPECT_MG_ERROR(read_idx_images(path("header")), "is truncated: the header needs bytes 8 to 12");
  write_plain(path("empty"), "");
  EXPECT_MG_ERROR(read_idx_images(path("empty")), "the magic number needs bytes 0 to 4, the file ends after 0");
  // a gzip stream cut in the middle
  write_gzip(path("full.gz"), full);
  std::ifstream in(path("full.gz"), std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_plain(path("cut.gz"), gz.substr(0, gz.size() / 2));
  EXPECT_MG_ERROR(read_idx_images(path("cut.gz")), path("cut.gz") + " is truncated");
  // a header claiming far more than the file holds allocates nothing large
  write_plain(path("huge"), idx_bytes(0x803, {60000000, 28, 28}, pixels(10)));
  EXPECT_MG_ERROR(read_idx_images(path("huge")), "the file has 10");
  write_plain(path("long"), full + "xyz");
  EXPECT_MG_ERROR(read_idx_images(path("long")), "has bytes after");
}

// 2^22 images of 2^21 x 2^21 pixels: the byte count 2^64 wrapped to 0 in 64
// bits, so an empty file "held" them and gave a tensor whose size overflows.
TEST_F(Idx, DimensionsWhoseProductOverflows) {
  write_plain(path("huge"), idx_bytes(0x00000803, {1u << 22, 1u << 21, 1u << 21}, {}));
  EXPECT_MG_ERROR(read_idx_images(path("huge")), "more than this reader accepts");
  write_plain(path("big"), idx_bytes(0x00000803, {1u << 16, 1u << 16, 1u << 16}, {}));
  EXPECT_MG_ERROR(read_idx_images(path("big")), "more than this reader accepts");
}

TEST_F(Idx, CountMismatch) {
  write_gzip(path("img.gz"), idx_bytes(0x803, {3, 2, 2}, pixels(12)));
  write_gzip(path("lbl.gz"), idx_bytes(0x801, {2}, {1, 2}));
  EXPECT_MG_ERROR(read_idx_dataset(path("img.gz"), path("lbl.gz")),
                  path("img.gz") + " has 3 images but " + path("lbl.gz") + " has 2 labels");
}

TEST_F(Idx, FindAndLoadFashionMnistLayout) {
  EXPECT_MG_ERROR(find_fashion_mnist(dir_.string()), "apt-get install dataset-fashion-mnist");
  EXPECT_MG_ERROR(find_fashion_mnist(dir_.string()), "train-images-idx3-ubyte.gz is missing");
  write_gzip(path("train-images-idx3-ubyte.gz"), idx_bytes(0x803, {5, 3, 3}, pixels(45)));
  write_gzip(path("train-labels-idx1-ubyte.gz"), idx_bytes(0x801, {5}, {0, 1, 2, 3, 4}));
  write_gzip(path("t10k-images-idx3-ubyte.gz"), idx_bytes(0x803, {2, 3, 3}, pixels(18)));
  write_gzip(path("t10k-labels-idx1-ubyte.gz"), idx_bytes(0x801, {2}, {9, 8}));
  EXPECT_EQ(find_fashion_mnist(dir_.string()), dir_.string());
  FashionMnist fm = load_fashion_mnist(dir_.string());
  EXPECT_EQ(fm.train.images.shape(), (Shape{5, 1, 3, 3}));
  EXPECT_EQ(fm.test.labels.to_indices(), (std::vector<int64_t>{9, 8}));
}

// Skips only where Debian's package is not installed (its folder absent); a
// folder that is there but incomplete or unreadable fails.
TEST(FashionMnist, InstalledPackageReads) {
  if (!std::filesystem::exists(kFashionMnistDir)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = find_fashion_mnist();
  FashionMnist fm = load_fashion_mnist(dir);
  EXPECT_EQ(fm.train.images.shape(), (Shape{60000, 1, 28, 28}));
  EXPECT_EQ(fm.test.images.shape(), (Shape{10000, 1, 28, 28}));
  std::vector<int64_t> counts(10, 0);
  for (int64_t y : fm.test.labels.to_indices()) {
    ASSERT_TRUE(y >= 0 && y < 10) << y;
    ++counts[y];
  }
  for (int64_t c : counts) EXPECT_EQ(c, 1000);  // the test set is balanced
}
