// Fuzz target for the IDX reader (examples/common/idx.cpp). The first byte
// chooses how the rest is read: bit 0 gzips it first (so the fuzzer explores
// the IDX layout behind zlib too; raw gzip bytes are read in the plain mode),
// bit 1 reads labels instead of images. Every input gives a tensor or a
// moegrad::Error; what loads must be exactly header + one element per data
// byte, and images lie in [0, 1].
#include <zlib.h>

#include "examples/common/idx.h"
#include "fuzz_support.h"

using namespace moegrad;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const fuzz::Scratch file("input.idx");
  const bool gzip = data[0] & 1, labels = data[0] & 2;
  const uint8_t* body = data + 1;
  const size_t n = size - 1;
  if (gzip) {
    gzFile f = gzopen(file.path().c_str(), "wb");
    FUZZ_EXPECT(f && gzwrite(f, body, static_cast<unsigned>(n)) == static_cast<int>(n) && gzclose(f) == Z_OK,
                "cannot gzip into ", file.path());
  } else {
    fuzz::write_file(file.path(), body, n);
  }
  Tensor t;
  try {
    t = labels ? data::read_idx_labels(file.path()) : data::read_idx_images(file.path());
  } catch (const Error& e) {
    fuzz::rejected(e);
    return 0;
  }
  const size_t header = 4 + 4 * static_cast<size_t>(t.dim() - (labels ? 0 : 1));
  const bool raw_gzip = !gzip && n >= 2 && body[0] == 0x1f && body[1] == 0x8b;  // its size is not the data's
  FUZZ_EXPECT(raw_gzip || static_cast<uint64_t>(t.numel()) + header == n, "a ", n, "-byte file gave shape ",
              shape_str(t.shape()));
  if (!labels) {
    FUZZ_EXPECT(t.dim() == 4 && t.size(1) == 1, "images of shape ", shape_str(t.shape()));
    const float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) FUZZ_EXPECT(p[i] >= 0 && p[i] <= 1, "pixel ", i, " is ", p[i]);
  }
  return 0;
}
