// Storage: one block of device memory shared by a tensor and all its views.
// Returned to its device's caching allocator when the last view goes away.
#pragma once
#include <cstddef>

#include "tensor/allocator.h"

namespace moegrad {

class Storage {
 public:
  Storage(size_t nbytes, Device device)
      : nbytes_(nbytes), device_(device), data_(allocator_for(device.type).allocate_on(device.index, nbytes)) {}
  ~Storage() { allocator_for(device_.type).deallocate_on(device_.index, data_, nbytes_); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  size_t nbytes_;
  Device device_;
  void* data_;
};

}  // namespace moegrad
