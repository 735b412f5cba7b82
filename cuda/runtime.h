// CUDA runtime essentials for the kernels in cuda/: every CUDA and cuBLAS call
// goes through MG_CUDA_CHECK / MG_CUBLAS_CHECK, which turn a failure into a
// moegrad::Error naming the call (and, through the extra arguments, what it
// was doing, e.g. the bytes of an allocation); device validation; a guard that
// makes a device current for a scope. Only cuda/ includes this header.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "tensor/tensor.h"

namespace moegrad::cuda {

// Throws Error "CUDA call <call> failed: <name> (<text>)<context>" (and
// clears the runtime's last error) when status is not success.
void check_status(cudaError_t status, const char* call, const std::string& context);
void check_status(cublasStatus_t status, const char* call, const std::string& context);

// Visible devices; 0 when there is no driver or GPU. Never throws; the count
// is read once.
int device_count();
// Error naming op unless device is a CUDA device with a visible index.
void check_device(Device device, const char* op);

// Makes `device` current for the scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace moegrad::cuda

// MG_CUDA_CHECK(cudaMalloc(&p, n), " allocating ", n, " bytes on ", dev.str())
#define MG_CUDA_CHECK(call, ...) ::moegrad::cuda::check_status((call), #call, ::moegrad::detail::cat("" __VA_ARGS__))
#define MG_CUBLAS_CHECK(call, ...) ::moegrad::cuda::check_status((call), #call, ::moegrad::detail::cat("" __VA_ARGS__))
