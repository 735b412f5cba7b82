// The hook through which tensor/ reaches a device backend without including
// it: cuda/ implements DeviceBackend (copies between host and device, copies
// and fills on the device, device validation) and tensor/ calls it. A build
// without the CUDA backend has none, and CUDA tensors cannot be made in it.
//
// MOEGRAD_CUDA(call) is how an op calls a kernel of cuda/ (whose headers are
// plain C++ and always included): the op builds one node whatever the device
// and picks the kernel with `if (t.device().is_cuda()) return
// MOEGRAD_CUDA(cuda_kernel(...));`. Without the CUDA backend the call is
// compiled out (it only names the kernel's type) and becomes an Error; it
// cannot be reached there, since no tensor can live on a CUDA device.
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

#ifdef MOEGRAD_WITH_CUDA
#define MOEGRAD_CUDA(call) (call)
#else
#define MOEGRAD_CUDA(call) (::moegrad::no_cuda_backend(), decltype(call)())
#endif

// Throws the Error of a CUDA kernel called in a build without the CUDA backend.
[[noreturn]] void no_cuda_backend();

// The CUDA backend, or nullptr when this build has none.
DeviceBackend* cuda_backend();

// CUDA devices visible to this process: 0 without the CUDA backend, a driver
// or a GPU. Never throws.
int cuda_device_count();

}  // namespace moegrad
