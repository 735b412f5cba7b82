// IDX reader (see idx.h). zlib's gzread reads gzip'd and plain files alike.
// The data is read into a buffer that grows only as bytes arrive, so a header
// claiming more data than the file holds costs no memory: it is reported as
// truncated.
#include "examples/common/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "tensor/error.h"

namespace moegrad::data {
namespace {

constexpr uint64_t kMaxDataBytes = uint64_t(1) << 36;  // the most data this reader accepts

// An open IDX file and the name of the function reading it, for messages.
class IdxFile {
 public:
  IdxFile(const std::string& path, const char* fn) : path_(path), fn_(fn) {
    std::error_code ec;
    MG_CHECK(std::filesystem::is_regular_file(path, ec), fn_, ": ", path_, " does not exist or is not a file");
    file_ = gzopen(path.c_str(), "rb");
    MG_CHECK(file_ != nullptr, fn_, ": cannot open ", path_);
  }
  ~IdxFile() { gzclose(file_); }
  IdxFile(const IdxFile&) = delete;
  IdxFile& operator=(const IdxFile&) = delete;

  // Reads up to n bytes, fewer only at the end of the data.
  size_t read_some(uint8_t* buf, size_t n) {
    size_t got = 0;
    while (got < n) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - got, 1 << 20));
      int r = gzread(file_, buf + got, chunk);
      if (r == 0) break;
      if (r < 0) {
        int err = 0;
        const char* msg = gzerror(file_, &err);
        if (err == Z_BUF_ERROR) break;  // gzip stream cut short: reported as truncated by the caller
        throw Error(std::string(fn_) + ": " + path_ + " is corrupt (zlib: " + msg + ")");
      }
      got += static_cast<size_t>(r);
    }
    return got;
  }

  void read_exact(uint8_t* buf, size_t n, size_t before, const char* what) {
    size_t got = read_some(buf, n);
    MG_CHECK(got == n, fn_, ": ", path_, " is truncated: ", what, " needs bytes ", before, " to ", before + n,
             ", the file ends after ", before + got);
  }

  // Checks the magic number and returns the dimensions.
  std::vector<uint32_t> header(uint32_t magic, const char* layout) {
    uint8_t b[4];
    read_exact(b, 4, 0, "the magic number");
    uint32_t got = big_endian(b);
    char buf[96];
    std::snprintf(buf, sizeof buf, "has magic number 0x%08X, expected 0x%08X (%s)", got, magic, layout);
    MG_CHECK(got == magic, fn_, ": ", path_, " ", buf);
    std::vector<uint32_t> dims(magic & 0xff);
    for (size_t i = 0; i < dims.size(); ++i) {
      read_exact(b, 4, 4 + 4 * i, "the header");
      dims[i] = big_endian(b);
      MG_CHECK(dims[i] > 0, fn_, ": ", path_, " has dimension ", i, " of size 0");
    }
    return dims;
  }

  // The n data bytes after the header; Error when the file holds fewer or more.
  std::vector<uint8_t> data(uint64_t n, const std::string& what) {
    MG_CHECK(n <= kMaxDataBytes, fn_, ": ", path_, " claims ", what, " = ", n,
             " bytes, more than this reader accepts (2^36)");
    std::vector<uint8_t> bytes;
    bytes.reserve(static_cast<size_t>(std::min<uint64_t>(n, 64u << 20)));
    uint8_t chunk[1 << 16];
    while (bytes.size() < n) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof chunk, n - bytes.size()));
      size_t got = read_some(chunk, want);
      bytes.insert(bytes.end(), chunk, chunk + got);
      if (got < want) break;
    }
    MG_CHECK(bytes.size() == n, fn_, ": ", path_, " is truncated: the header promises ", what, " = ", n,
             " bytes of data, the file has ", bytes.size());
    uint8_t extra;
    MG_CHECK(read_some(&extra, 1) == 0, fn_, ": ", path_, " has bytes after the ", n, " bytes of ", what,
             ": wrong header or not an IDX file");
    return bytes;
  }

 private:
  static uint32_t big_endian(const uint8_t* b) {
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
  }
  std::string path_;
  const char* fn_;
  gzFile file_ = nullptr;
};

}  // namespace

Tensor read_idx_images(const std::string& path) {
  IdxFile file(path, "read_idx_images");
  std::vector<uint32_t> d = file.header(0x00000803, "unsigned-byte images [N, H, W]");
  const int64_t n = d[0], h = d[1], w = d[2];
  // Each size is below 2^32, so n * h cannot overflow; bounding it by the limit / w keeps n * h * w from overflowing.
  MG_CHECK(uint64_t(n) * uint64_t(h) <= kMaxDataBytes / uint64_t(w), "read_idx_images: ", path, " claims ", n,
           " images x ", h, "x", w, " pixels, more than this reader accepts (2^36 bytes)");
  std::vector<uint8_t> bytes = file.data(uint64_t(n) * uint64_t(h) * uint64_t(w),
                                         std::to_string(n) + " images x " + std::to_string(h) + "x" +
                                             std::to_string(w) + " pixels");
  Tensor images = Tensor::empty({n, 1, h, w}, DType::Float32);
  float* out = images.data<float>();
  for (size_t i = 0; i < bytes.size(); ++i) out[i] = static_cast<float>(bytes[i]) / 255.0f;
  return images;
}

Tensor read_idx_labels(const std::string& path) {
  IdxFile file(path, "read_idx_labels");
  std::vector<uint32_t> d = file.header(0x00000801, "unsigned-byte labels [N]");
  std::vector<uint8_t> bytes = file.data(d[0], std::to_string(d[0]) + " labels");
  return Tensor::from_indices(std::vector<int64_t>(bytes.begin(), bytes.end()), {int64_t(d[0])});
}

ImageDataset read_idx_dataset(const std::string& images_path, const std::string& labels_path) {
  ImageDataset ds{read_idx_images(images_path), read_idx_labels(labels_path)};
  MG_CHECK(ds.images.size(0) == ds.labels.size(0), "read_idx_dataset: ", images_path, " has ", ds.images.size(0),
           " images but ", labels_path, " has ", ds.labels.size(0), " labels");
  return ds;
}

namespace {
const char* const kFashionFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  namespace fs = std::filesystem;
  auto path = [&](int i) { return (fs::path(dir) / kFashionFiles[i]).string(); };
  return {read_idx_dataset(path(0), path(1)), read_idx_dataset(path(2), path(3))};
}

std::string find_fashion_mnist(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* name : kFashionFiles) {
    fs::path p = fs::path(dir) / name;
    MG_CHECK(fs::is_regular_file(p, ec), "find_fashion_mnist: Fashion-MNIST not found: ", p.string(),
             " is missing. Install Debian's package with `sudo apt-get install dataset-fashion-mnist` "
             "(or run tools/find_fashion_mnist.sh), or pass a folder holding the four *-ubyte.gz files");
  }
  return dir;
}

}  // namespace moegrad::data
