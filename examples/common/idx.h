// Reader of MNIST-style IDX files, gzip'd or plain (zlib reads both): images
// (magic 0x00000803, unsigned bytes [N, H, W]) become float32 [N, 1, H, W] in
// [0, 1], labels (magic 0x00000801, unsigned bytes [N]) become int64 [N].
// The header, the dimensions and the amount of data are all checked, so a
// wrong or truncated file is an Error naming it, never a short read.
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace moegrad::data {

Tensor read_idx_images(const std::string& path);
Tensor read_idx_labels(const std::string& path);

struct ImageDataset {
  Tensor images;  // float32 [N, 1, H, W] in [0, 1]
  Tensor labels;  // int64 [N]
};
// Both files; Error when their counts differ.
ImageDataset read_idx_dataset(const std::string& images_path, const std::string& labels_path);

struct FashionMnist {
  ImageDataset train, test;  // 60000 and 10000 images of 28x28, 10 classes
};
// dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
FashionMnist load_fashion_mnist(const std::string& dir);

// Where Debian's dataset-fashion-mnist package puts the files.
inline const char* const kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// `dir` when it holds the four Fashion-MNIST files, else an Error saying how
// to install them.
std::string find_fashion_mnist(const std::string& dir = kFashionMnistDir);

}  // namespace moegrad::data
