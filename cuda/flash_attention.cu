// The kernels of cuda/flash_attention.h, FlashAttention style: nothing of
// size T x S is ever stored. Tiles of kTile query rows and kTile key rows
// (Dh wide) are staged in shared memory; scores, probabilities and all
// accumulators are doubles whatever the dtype.
//   forward: one block per (sample·head, query tile) streams the key/value
//     tiles its rows may see through shared memory with an online softmax
//     (running max m and sum l per row, the accumulator rescaled by
//     exp(m_old − m_new)), then writes out = acc / l and lse = m + log l.
//   backward (P = exp(scale · q kᵀ − lse), D_t = Σ_d dO_td O_td,
//     dS = P ⊙ (dO vᵀ ⊙ Z − D) · scale, dV takes P ⊙ Z, with Z the dropout
//     factors, all 1 without dropout; the forward weighs v by P ⊙ Z):
//     row_dots: D, one thread per query row;
//     dq pass: one block per (sample·head, query tile), dQ = Σ over key
//       tiles of dS K;
//     dkv pass: one block per (sample·head, key tile), dV = Σ over the query
//       tiles that see it of Pᵀ dO and dK = Σ dSᵀ Q, tiles in ascending order.
// Each accumulator element belongs to one thread for the whole kernel and
// adds its terms in a fixed order: no atomics, the same result every run.
// A masked (t, s) contributes nothing; rows past the end of a tile are
// loaded as zeros and never written.
#include <cmath>
#include <type_traits>

#include "cuda/flash_attention.h"
#include "cuda/launch.cuh"
#include "tensor/random.h"

namespace moegrad {

namespace {

constexpr int kTile = 16;      // query rows per block, key rows per tile
constexpr int kThreads = 128;  // threads per block

struct Dims {
  int64_t nh, nt, ns, dh;
  bool causal;
  double scale;
  double drop_p;  // dropout on the probabilities when > 0
  uint64_t drop_seed, drop_first;
  // Keys visible to query t (causal: the first t + (S - T) + 1).
  __device__ int64_t kept(int64_t t) const {
    return causal ? (t + ns - nt + 1 < ns ? t + ns - nt + 1 : ns) : ns;
  }
  // The dropout factor Z of query t's key s in head bh: 1 without dropout,
  // else 1/(1-p) or 0 (the mask of dropout() over [B, H, T, S]).
  __device__ double drop_factor(int64_t bh, int64_t t, int64_t s) const {
    if (drop_p <= 0) return 1;
    const uint64_t counter = drop_first + static_cast<uint64_t>((bh * nt + t) * ns + s);
    return dropout_keeps(drop_seed, counter, drop_p) ? dropout_scale(drop_p) : 0.0;
  }
};

// Rows of one operand on the device (see CudaAttentionRows).
template <typename P>
struct Rows {
  P p;
  int64_t batch, head, row;
  __device__ P at(int64_t bh, int64_t nh, int64_t r) const { return p + (bh / nh) * batch + (bh % nh) * head + r * row; }
};

// Row stride of the q, k, v, dO tiles in shared memory: odd (dh, or dh + 1
// when dh is even), so that the rows a warp reads at the same column (the
// dot products of the score loops) fall in different banks.
__host__ __device__ constexpr int64_t tile_ld(int64_t dh) { return dh | 1; }

// tile[r · ld + c] = row r0 + r of head bh, or 0 for r >= n (all kTile rows;
// the padding is never read).
template <typename T>
__device__ void load_tile(T* tile, Rows<const T*> src, int64_t bh, int64_t nh, int64_t r0, int64_t n, int64_t dh) {
  const int64_t ld = tile_ld(dh);
  for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) {
    const int64_t r = e / dh, c = e - r * dh;
    tile[r * ld + c] = r < n ? src.at(bh, nh, r0 + r)[c] : T(0);
  }
}

template <typename T>
__device__ double dot(const T* a, const T* b, int64_t n) {
  double s = 0;
  for (int64_t c = 0; c < n; ++c) s += static_cast<double>(a[c]) * static_cast<double>(b[c]);
  return s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Dims d, Rows<const T*> q, Rows<const T*> k, Rows<const T*> v, Rows<T*> o, T* lse) {
  extern __shared__ double smem[];
  const int64_t dh = d.dh, ld = tile_ld(dh);
  double* acc = smem;                     // [kTile][dh]
  double* S = acc + kTile * dh;           // [kTile][kTile] scores, then probabilities
  double* row_max = S + kTile * kTile;    // [kTile]
  double* row_sum = row_max + kTile;      // [kTile]
  double* row_scale = row_sum + kTile;    // [kTile] exp(m_old − m_new) of the current tile
  T* Q = reinterpret_cast<T*>(row_scale + kTile);  // [kTile][ld]
  T* K = Q + kTile * ld;                  // [kTile][ld]
  T* V = K + kTile * ld;                  // [kTile][ld]

  const int64_t bh = blockIdx.x, t0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t rows = min(static_cast<int64_t>(kTile), d.nt - t0);
  const int64_t keys = d.kept(t0 + rows - 1);  // the keys some row of this tile sees
  load_tile(Q, q, bh, d.nh, t0, rows, dh);
  for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) acc[e] = 0;
  for (int r = threadIdx.x; r < kTile; r += blockDim.x) row_max[r] = -INFINITY, row_sum[r] = 0;
  for (int64_t s0 = 0; s0 < keys; s0 += kTile) {
    const int64_t cols = min(static_cast<int64_t>(kTile), keys - s0);
    __syncthreads();  // the previous tile's K, V and S are no longer read
    load_tile(K, k, bh, d.nh, s0, cols, dh);
    load_tile(V, v, bh, d.nh, s0, cols, dh);
    __syncthreads();
    for (int e = threadIdx.x; e < kTile * kTile; e += blockDim.x) {
      const int r = e / kTile, j = e % kTile;
      S[e] = dot(Q + r * ld, K + j * ld, dh) * d.scale;
    }
    __syncthreads();
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {  // online softmax over the tile's visible keys
      const int64_t n = min(cols, d.kept(t0 + r) - s0);  // <= 0: the row sees none of them
      double* sr = S + r * kTile;
      double alpha = 1;
      if (n > 0) {
        double m = row_max[r];
        for (int64_t j = 0; j < n; ++j) m = sr[j] > m ? sr[j] : m;
        alpha = exp(row_max[r] - m);  // 0 on the first tile (m_old = −inf; m is finite)
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          sr[j] = exp(sr[j] - m);
          sum += sr[j];
          sr[j] *= d.drop_factor(bh, t0 + r, s0 + j);  // the sum is of the undropped P
        }
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = m;
      }
      for (int64_t j = n > 0 ? n : 0; j < kTile; ++j) sr[j] = 0;  // masked keys weigh nothing
      row_scale[r] = alpha;
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) {
      const int64_t r = e / dh, c = e - r * dh;
      if (r >= rows) continue;
      double a = acc[e] * row_scale[r];
      for (int64_t j = 0; j < cols; ++j) a += S[r * kTile + j] * static_cast<double>(V[j * ld + c]);
      acc[e] = a;
    }
  }
  __syncthreads();
  // a row that sees no key (causal with S < T, which the kernel's callers may
  // pass) has row_sum 0 and acc 0: its output is 0, as masked_softmax gives
  // all-zero probabilities to masked keys, not 0/0, and its lse −inf
  for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) {
    const int64_t r = e / dh, c = e - r * dh;
    if (r < rows) o.at(bh, d.nh, t0 + r)[c] = static_cast<T>(row_sum[r] > 0 ? acc[e] / row_sum[r] : 0.0);
  }
  for (int r = threadIdx.x; r < rows; r += blockDim.x)
    lse[bh * d.nt + t0 + r] = static_cast<T>(row_sum[r] > 0 ? row_max[r] + log(row_sum[r]) : -INFINITY);
}

// D[bh · nt + t] = Σ_c dO[t, c] · O[t, c], one thread per query row.
template <typename T>
__global__ void row_dots_kernel(Dims d, int64_t nbh, Rows<const T*> out, Rows<const T*> dout, double* D) {
  MG_GRID_STRIDE(i, nbh * d.nt) {
    const int64_t bh = i / d.nt, t = i - bh * d.nt;
    D[i] = dot(dout.at(bh, d.nh, t), out.at(bh, d.nh, t), d.dh);
  }
}

// P ⊙ Z (what dV takes) and dS of one query row and key, whose dropout
// factor is z (1 without dropout): dO vᵀ is the gradient of P ⊙ Z, so P's is
// (dO vᵀ) ⊙ Z. Qr, dOr: the query's rows; Ks, Vs: the key's.
template <typename T>
__device__ void prob_and_grad(const Dims& d, const T* Qr, const T* dOr, const T* Ks, const T* Vs, double lse_r,
                              double D_r, double z, double* p, double* ds) {
  const double prob = exp(dot(Qr, Ks, d.dh) * d.scale - lse_r);
  *ds = prob * (dot(dOr, Vs, d.dh) * z - D_r) * d.scale;
  *p = prob * z;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) dq_kernel(Dims d, Rows<const T*> q, Rows<const T*> k, Rows<const T*> v,
                                                      const T* lse, const double* D, Rows<const T*> dout,
                                                      Rows<T*> dq) {
  extern __shared__ double smem[];
  const int64_t dh = d.dh, ld = tile_ld(dh);
  double* acc = smem;                  // [kTile][dh] dQ
  double* dS = acc + kTile * dh;       // [kTile][kTile]
  double* lse_s = dS + kTile * kTile;  // [kTile]
  double* D_s = lse_s + kTile;         // [kTile]
  T* Q = reinterpret_cast<T*>(D_s + kTile);  // Q, dO, K, V: [kTile][ld]
  T* dO = Q + kTile * ld;
  T* K = dO + kTile * ld;
  T* V = K + kTile * ld;

  const int64_t bh = blockIdx.x, t0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t rows = min(static_cast<int64_t>(kTile), d.nt - t0);
  const int64_t keys = d.kept(t0 + rows - 1);
  load_tile(Q, q, bh, d.nh, t0, rows, dh);
  load_tile(dO, dout, bh, d.nh, t0, rows, dh);
  for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) acc[e] = 0;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    lse_s[r] = static_cast<double>(lse[bh * d.nt + t0 + r]);
    D_s[r] = D[bh * d.nt + t0 + r];
  }
  for (int64_t s0 = 0; s0 < keys; s0 += kTile) {
    const int64_t cols = min(static_cast<int64_t>(kTile), keys - s0);
    __syncthreads();  // the previous tile's K and dS are no longer read
    load_tile(K, k, bh, d.nh, s0, cols, dh);
    load_tile(V, v, bh, d.nh, s0, cols, dh);
    __syncthreads();
    for (int e = threadIdx.x; e < kTile * kTile; e += blockDim.x) {
      const int r = e / kTile, j = e % kTile;
      double p = 0, ds = 0;
      if (r < rows && j < cols && s0 + j < d.kept(t0 + r))
        prob_and_grad(d, Q + r * ld, dO + r * ld, K + j * ld, V + j * ld, lse_s[r], D_s[r],
                      d.drop_factor(bh, t0 + r, s0 + j), &p, &ds);
      dS[e] = ds;
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) {
      const int64_t r = e / dh, c = e - r * dh;
      double a = acc[e];
      for (int64_t j = 0; j < cols; ++j) a += dS[r * kTile + j] * static_cast<double>(K[j * ld + c]);
      acc[e] = a;
    }
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) {
    const int64_t r = e / dh, c = e - r * dh;
    if (r < rows) dq.at(bh, d.nh, t0 + r)[c] = static_cast<T>(acc[e]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) dkv_kernel(Dims d, Rows<const T*> q, Rows<const T*> k, Rows<const T*> v,
                                                       const T* lse, const double* D, Rows<const T*> dout,
                                                       Rows<T*> dk, Rows<T*> dv) {
  extern __shared__ double smem[];
  const int64_t dh = d.dh, ld = tile_ld(dh);
  double* acc_k = smem;                // [kTile][dh] dK
  double* acc_v = acc_k + kTile * dh;  // [kTile][dh] dV
  double* P = acc_v + kTile * dh;      // [kTile queries][kTile keys]
  double* dS = P + kTile * kTile;      // [kTile queries][kTile keys]
  double* lse_s = dS + kTile * kTile;  // [kTile]
  double* D_s = lse_s + kTile;         // [kTile]
  T* K = reinterpret_cast<T*>(D_s + kTile);  // K, V, Q, dO: [kTile][ld]
  T* V = K + kTile * ld;
  T* Q = V + kTile * ld;
  T* dO = Q + kTile * ld;

  const int64_t bh = blockIdx.x, s0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t cols = min(static_cast<int64_t>(kTile), d.ns - s0);
  load_tile(K, k, bh, d.nh, s0, cols, dh);
  load_tile(V, v, bh, d.nh, s0, cols, dh);
  for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) acc_k[e] = 0, acc_v[e] = 0;
  // the first query that sees key s0 (causal: t >= s0 − (S − T)), rounded down to its tile
  const int64_t first = d.causal && s0 - (d.ns - d.nt) > 0 ? s0 - (d.ns - d.nt) : 0;
  for (int64_t t0 = first / kTile * kTile; t0 < d.nt; t0 += kTile) {
    const int64_t rows = min(static_cast<int64_t>(kTile), d.nt - t0);
    __syncthreads();  // the previous tile's Q, dO, P and dS are no longer read
    load_tile(Q, q, bh, d.nh, t0, rows, dh);
    load_tile(dO, dout, bh, d.nh, t0, rows, dh);
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
      lse_s[r] = static_cast<double>(lse[bh * d.nt + t0 + r]);
      D_s[r] = D[bh * d.nt + t0 + r];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kTile * kTile; e += blockDim.x) {
      const int r = e / kTile, j = e % kTile;
      double p = 0, ds = 0;
      if (r < rows && j < cols && s0 + j < d.kept(t0 + r))
        prob_and_grad(d, Q + r * ld, dO + r * ld, K + j * ld, V + j * ld, lse_s[r], D_s[r],
                      d.drop_factor(bh, t0 + r, s0 + j), &p, &ds);
      P[e] = p;
      dS[e] = ds;
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) {
      const int64_t j = e / dh, c = e - j * dh;
      double ak = acc_k[e], av = acc_v[e];
      for (int64_t r = 0; r < rows; ++r) {
        av += P[r * kTile + j] * static_cast<double>(dO[r * ld + c]);
        ak += dS[r * kTile + j] * static_cast<double>(Q[r * ld + c]);
      }
      acc_k[e] = ak, acc_v[e] = av;
    }
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < kTile * dh; e += blockDim.x) {
    const int64_t j = e / dh, c = e - j * dh;
    if (j < cols) {
      dk.at(bh, d.nh, s0 + j)[c] = static_cast<T>(acc_k[e]);
      dv.at(bh, d.nh, s0 + j)[c] = static_cast<T>(acc_v[e]);
    }
  }
}

// Shared-memory bytes of a kernel with `doubles` doubles and `elems` T's.
template <typename T>
size_t smem_bytes(int64_t doubles, int64_t elems) {
  return static_cast<size_t>(doubles) * sizeof(double) + static_cast<size_t>(elems) * sizeof(T);
}

// Lets `kernel` use `bytes` of dynamic shared memory (beyond the default
// 48 KiB where the device allows it); Error when the device has less.
template <typename K>
void allow_smem(K kernel, size_t bytes, int device, const char* name) {
  int optin = 0;
  MG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  MG_CHECK(bytes <= static_cast<size_t>(optin), "fused_attention: ", name, " needs ", bytes,
           " bytes of shared memory per block, the device allows ", optin);
  MG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                " for ", name);
}

template <typename P>
Rows<P> rows_of(const CudaAttentionRows& r) {
  using T = std::remove_const_t<std::remove_pointer_t<P>>;
  return {r.tensor.data<T>() + r.offset, r.batch, r.head, r.row};
}

// Tensors of the call: one dtype, one CUDA device, Dh within the limit; the
// grid's tile counts within CUDA's y limit.
void check_call(const CudaAttentionDims& d, std::initializer_list<const Tensor*> ts) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts)
    MG_CHECK(t->device().is_cuda() && t->device() == first.device() && t->dtype() == first.dtype(),
             "fused_attention: expected CUDA tensors of one dtype and device, got ", dtype_name(t->dtype()), " on ",
             t->device().str(), " and ", dtype_name(first.dtype()), " on ", first.device().str());
  MG_CHECK(d.dh >= 1 && d.dh <= kCudaAttentionMaxHeadDim, "fused_attention: the CUDA kernel takes head dims Dh up to ",
           kCudaAttentionMaxHeadDim, " (the limit of its shared-memory tiles), got Dh=", d.dh);
  MG_CHECK((std::max(d.nt, d.ns) + kTile - 1) / kTile <= 65535 && d.nb * d.nh <= 0x7fffffff,
           "fused_attention: the CUDA kernel takes at most ", 65535 * kTile, " queries and keys and 2^31 - 1 ",
           "samples x heads, got T=", d.nt, " S=", d.ns, " B*H=", d.nb * d.nh);
}

Dims device_dims(const CudaAttentionDims& d) {
  return {d.nh, d.nt, d.ns, d.dh, d.causal, d.scale, d.drop_p, d.drop_seed, d.drop_first};
}

unsigned tiles(int64_t n) { return static_cast<unsigned>((n + kTile - 1) / kTile); }

}  // namespace

void cuda_flash_attention(const CudaAttentionDims& d, const CudaAttentionRows& q, const CudaAttentionRows& k,
                          const CudaAttentionRows& v, const CudaAttentionRows& out, const Tensor& lse) {
  check_call(d, {&q.tensor, &k.tensor, &v.tensor, &out.tensor, &lse});
  if (d.nb * d.nh == 0 || d.nt == 0) return;
  const int device = q.tensor.device().index;
  cuda::DeviceGuard guard(device);
  const dim3 grid(static_cast<unsigned>(d.nb * d.nh), tiles(d.nt));
  dispatch_float(q.tensor.dtype(), "fused_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const size_t bytes = smem_bytes<T>(kTile * d.dh + kTile * kTile + 3 * kTile, 3 * kTile * tile_ld(d.dh));
    allow_smem(forward_kernel<T>, bytes, device, "forward_kernel");
    forward_kernel<T><<<grid, kThreads, bytes>>>(device_dims(d), rows_of<const T*>(q), rows_of<const T*>(k),
                                                 rows_of<const T*>(v), rows_of<T*>(out), lse.data<T>());
  });
  cuda::check_launch("fused_attention forward_kernel");
}

void cuda_flash_attention_backward(const CudaAttentionDims& d, const CudaAttentionRows& q, const CudaAttentionRows& k,
                                   const CudaAttentionRows& v, const CudaAttentionRows& out, const Tensor& lse,
                                   const CudaAttentionRows& dout, const CudaAttentionRows& dq,
                                   const CudaAttentionRows& dk, const CudaAttentionRows& dv) {
  check_call(d, {&q.tensor, &k.tensor, &v.tensor, &out.tensor, &lse, &dout.tensor, &dq.tensor, &dk.tensor,
                 &dv.tensor});
  const int64_t nbh = d.nb * d.nh;
  if (nbh == 0 || d.ns == 0) return;  // no elements of dq, dk, dv
  const int device = q.tensor.device().index;
  cuda::DeviceGuard guard(device);
  const Dims dd = device_dims(d);
  Tensor D = Tensor::empty({std::max<int64_t>(nbh * d.nt, 1)}, DType::Float64, q.tensor.device());
  dispatch_float(q.tensor.dtype(), "fused_attention backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (d.nt > 0) {
      row_dots_kernel<T><<<cuda::grid_for(nbh * d.nt), cuda::kThreads>>>(dd, nbh, rows_of<const T*>(out),
                                                                         rows_of<const T*>(dout), D.data<double>());
      cuda::check_launch("fused_attention row_dots_kernel");
      const size_t bytes = smem_bytes<T>(kTile * d.dh + kTile * kTile + 2 * kTile, 4 * kTile * tile_ld(d.dh));
      allow_smem(dq_kernel<T>, bytes, device, "dq_kernel");
      dq_kernel<T><<<dim3(static_cast<unsigned>(nbh), tiles(d.nt)), kThreads, bytes>>>(
          dd, rows_of<const T*>(q), rows_of<const T*>(k), rows_of<const T*>(v), lse.data<T>(), D.data<double>(),
          rows_of<const T*>(dout), rows_of<T*>(dq));
      cuda::check_launch("fused_attention dq_kernel");
    }
    // with no queries the kernel only writes zeros: every key is unseen
    const size_t bytes = smem_bytes<T>(2 * kTile * d.dh + 2 * kTile * kTile + 2 * kTile, 4 * kTile * tile_ld(d.dh));
    allow_smem(dkv_kernel<T>, bytes, device, "dkv_kernel");
    dkv_kernel<T><<<dim3(static_cast<unsigned>(nbh), tiles(d.ns)), kThreads, bytes>>>(
        dd, rows_of<const T*>(q), rows_of<const T*>(k), rows_of<const T*>(v), lse.data<T>(), D.data<double>(),
        rows_of<const T*>(dout), rows_of<T*>(dk), rows_of<T*>(dv));
    cuda::check_launch("fused_attention dkv_kernel");
  });
}

}  // namespace moegrad
