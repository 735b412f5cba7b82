// Safetensors files: the checkpoint format of Hugging Face's safetensors, so
// moegrad checkpoints load in PyTorch and back. Layout: 8 bytes little-endian
// u64 N, N bytes of JSON header {"name": {"dtype", "shape", "data_offsets"},
// "__metadata__": {string: string}}, then the tensors' bytes (C-contiguous,
// little-endian; offsets relative to the start of that buffer).
#pragma once
#include <map>
#include <string>

#include "tensor/tensor.h"

namespace moegrad {

using TensorMap = std::map<std::string, Tensor>;  // sorted names

struct SafetensorsFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

// Reads a whole file. Everything is validated before it is trusted: the header
// length lies within the file (and below 100 MB), the header is a JSON object,
// every entry has a known dtype (F32, F64, I64, BOOL), a shape of non-negative
// ints, data_offsets [begin, end] inside the buffer whose size matches the
// shape, no two tensors' byte ranges overlap, names are unique, BOOL bytes are
// 0 or 1. Any violation is an Error naming the file and what is wrong.
SafetensorsFile load_safetensors(const std::string& path);

// Writes tensors (any layout, any dtype, written contiguous) and metadata.
// Atomic and durable through AtomicFile (nn/atomic_file.h): "<path>.tmp.<pid>",
// fsync, rename over path, fsync of the folder. On failure the temp file is
// removed, an existing file at path is untouched, and an Error names path and
// the reason; a temp file left by a killed save is removed by the next save.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace moegrad
