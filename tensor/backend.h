// The hook through which tensor/ reaches a device backend without including
// it: cuda/ implements DeviceBackend (copies between host and device, copies
// and fills on the device, device validation) and tensor/ calls it. A build
// without the CUDA backend has none, and CUDA tensors cannot be made in it.
#pragma once
#include <cstddef>

#include "tensor/tensor.h"

namespace moegrad {

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  // Visible devices; 0 (never an exception) when there is no driver or GPU.
  virtual int device_count() = 0;
  // Error naming op unless `device` is one of the visible devices.
  virtual void check_device(Device device, const char* op) = 0;
  // nbytes from src to dst; either side may be host memory (Device::cpu()).
  virtual void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) = 0;
  // dst = src broadcast to dst's shape and converted to dst's dtype; both on
  // the same device of this backend, not overlapping in memory.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  // Waits until all work queued on the device has finished.
  virtual void synchronize(Device device) = 0;
};

// The CUDA backend, or nullptr when this build has none.
DeviceBackend* cuda_backend();

// CUDA devices visible to this process: 0 without the CUDA backend, a driver
// or a GPU. Never throws.
int cuda_device_count();

}  // namespace moegrad
