// The CUDA DeviceBackend (tensor/backend.h): copies between host and device
// (cudaMemcpy, peer copies between GPUs), the strided copy kernel (broadcast
// and dtype conversion, as Tensor::copy_ on the CPU) and the fill kernel. The
// first use registers the caching allocator for DeviceType::CUDA.
#include "cuda/allocator.h"
#include "cuda/launch.cuh"
#include "tensor/backend.h"
#include "tensor/strided.h"

namespace moegrad {

namespace cuda {

namespace {

template <typename D, typename S>
__global__ void copy_kernel(D* dst, const S* src, Offsets<2> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[2];
    o.at(i, off);
    dst[off[0]] = static_cast<D>(src[off[1]]);
  }
}

template <typename T>
__global__ void fill_kernel(T* dst, T value, Offsets<1> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[1];
    o.at(i, off);
    dst[off[0]] = value;
  }
}

class CudaBackend final : public DeviceBackend {
 public:
  int device_count() override { return cuda::device_count(); }
  void check_device(Device device, const char* op) override { cuda::check_device(device, op); }

  void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) override {
    if (nbytes == 0) return;
    const std::string what = detail::cat(" (copying ", nbytes, " bytes from ", src_device.str(), " to ",
                                         dst_device.str(), "; a failure of earlier queued work shows here too)");
    if (dst_device.is_cuda() && src_device.is_cuda() && dst_device != src_device) {
      check_status(cudaMemcpyPeer(dst, dst_device.index, src, src_device.index, nbytes), "cudaMemcpyPeer", what);
      return;
    }
    DeviceGuard guard(dst_device.is_cuda() ? dst_device.index : src_device.index);
    check_status(cudaMemcpy(dst, src, nbytes, cudaMemcpyDefault), "cudaMemcpy", what);
  }

  void copy(const Tensor& dst, const Tensor& src) override {
    const int64_t n = dst.numel();
    if (n == 0) return;
    DeviceGuard guard(dst.device().index);
    Shape sstr = broadcast_strides(src.shape(), src.strides(), dst.shape());
    Offsets<2> o = make_offsets<2>(dst.shape(), {&dst.strides(), &sstr}, "Tensor::copy_");
    dispatch_all(dst.dtype(), [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      dispatch_all(src.dtype(), [&](auto stag) {
        using S = typename decltype(stag)::type;
        copy_kernel<D, S><<<grid_for(n), kThreads>>>(dst.data<D>(), src.data<S>(), o, n);
      });
    });
    check_launch("copy_kernel");
  }

  void fill(const Tensor& dst, double value) override {
    const int64_t n = dst.numel();
    if (n == 0) return;
    DeviceGuard guard(dst.device().index);
    Offsets<1> o = make_offsets<1>(dst.shape(), {&dst.strides()}, "Tensor::fill_");
    dispatch_all(dst.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      fill_kernel<T><<<grid_for(n), kThreads>>>(dst.data<T>(), saturate_cast<T>(value), o, n);
    });
    check_launch("fill_kernel");
  }

  void synchronize(Device device) override {
    cuda::check_device(device, "synchronize");
    DeviceGuard guard(device.index);
    MG_CUDA_CHECK(cudaDeviceSynchronize(), " (on ", device.str(), "; reports the failure of any queued kernel)");
  }
};

}  // namespace

}  // namespace cuda

DeviceBackend& cuda_backend_instance() {
  static DeviceBackend* backend = [] {
    register_allocator(DeviceType::CUDA, &cuda::device_allocator());
    return new cuda::CudaBackend();  // never destroyed, like the allocator
  }();
  return *backend;
}

}  // namespace moegrad
