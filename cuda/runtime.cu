// Checked CUDA and cuBLAS status, the device count and device validation.
#include "cuda/runtime.h"

namespace moegrad::cuda {

void check_status(cudaError_t status, const char* call, const std::string& context) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear it, so that the next checked call does not report it again
  throw Error(detail::cat("CUDA call ", call, " failed: ", cudaGetErrorName(status), " (",
                          cudaGetErrorString(status), ")", context));
}

void check_status(cublasStatus_t status, const char* call, const std::string& context) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(detail::cat("cuBLAS call ", call, " failed: ", cublasGetStatusName(status), " (",
                          cublasGetStatusString(status), ")", context));
}

int device_count() {
  static const int count = [] {
    int n = 0;
    // no driver, an old driver or no GPU: an error status, which means none
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

void check_device(Device device, const char* op) {
  MG_CHECK(device.is_cuda(), op, ": expected a CUDA device, got ", device.str());
  const int n = device_count();
  MG_CHECK(n > 0, op, ": ", device.str(), " is not available: no CUDA device is visible (no driver or no GPU)");
  MG_CHECK(device.index >= 0 && device.index < n, op, ": ", device.str(), " is not available: ", n,
           n == 1 ? " CUDA device is" : " CUDA devices are", " visible (cuda:0 to cuda:", n - 1, ")");
}

DeviceGuard::DeviceGuard(int device) {
  int current = 0;
  MG_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    MG_CUDA_CHECK(cudaSetDevice(device), " (making cuda:", device, " current)");
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // a destructor must not throw
}

}  // namespace moegrad::cuda
