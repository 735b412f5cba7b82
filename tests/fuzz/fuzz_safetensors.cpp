// Fuzz target for the safetensors reader (nn/safetensors.cpp): any bytes,
// written to a file and loaded, give a SafetensorsFile or a moegrad::Error.
// What loads must be what the file holds: the tensors' bytes fit, without
// overlapping, in the data buffer after the header (their sizes add up to at
// most its size), and every BOOL byte is 0 or 1.
#include "fuzz_support.h"
#include "nn/safetensors.h"

using namespace moegrad;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Scratch file("input.safetensors");
  fuzz::write_file(file.path(), data, size);
  SafetensorsFile loaded;
  try {
    loaded = load_safetensors(file.path());
  } catch (const Error& e) {
    fuzz::rejected(e);
    return 0;
  }
  FUZZ_EXPECT(size >= 8, "a ", size, "-byte file loaded");
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = header << 8 | data[i];
  FUZZ_EXPECT(header <= size - 8, "header length ", header, " past the end of a ", size, "-byte file");
  const uint64_t buffer = size - 8 - header;
  uint64_t total = 0;
  for (const auto& [name, t] : loaded.tensors) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    FUZZ_EXPECT(nbytes <= buffer - std::min(total, buffer), "tensors up to '", name, "' need ", total + nbytes,
                " bytes, the data buffer has ", buffer);
    total += nbytes;
    if (t.dtype() == DType::Bool) {
      const unsigned char* p = static_cast<const unsigned char*>(t.raw_data());
      for (uint64_t i = 0; i < nbytes; ++i) FUZZ_EXPECT(p[i] <= 1, "BOOL tensor '", name, "' holds ", int(p[i]));
    }
  }
  return 0;
}
