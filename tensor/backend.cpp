// Finds the CUDA backend when this build has one (cuda/backend.cu defines
// cuda_backend_instance; referring to it here also makes the linker keep the
// CUDA objects of the static library).
#include "tensor/backend.h"

namespace moegrad {

#ifdef MOEGRAD_WITH_CUDA
DeviceBackend& cuda_backend_instance();  // cuda/backend.cu
#endif

DeviceBackend* cuda_backend() {
#ifdef MOEGRAD_WITH_CUDA
  return &cuda_backend_instance();
#else
  return nullptr;
#endif
}

void no_cuda_backend() {
  throw Error("this build of moegrad has no CUDA backend (configure with -DMOEGRAD_CUDA=ON and nvcc)");
}

int cuda_device_count() {
  DeviceBackend* b = cuda_backend();
  return b ? b->device_count() : 0;
}

}  // namespace moegrad
