/* Shared by the CUDA backend's translation units: the context, the error-checking macros, and
 * the GGUF block layouts as byte offsets (device code reads blocks through byte pointers because
 * Q4_0, Q8_0 and Q6_K blocks are only 2-byte aligned inside a row). */
#ifndef NLLM_CUDA_COMMON_CUH
#define NLLM_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

extern "C" {
#include "core/core.h"
}
#include "cuda/backend_cuda.h"

struct nllm_cuda {
  int device, cc;
  char name[256];
  cudaStream_t stream;
  cublasHandle_t blas;
  void *blas_ws; /* fixed cuBLAS workspace: no allocation inside a GEMM */
  /* scratch, grown by cuda_scratch_ensure (nllm_cuda_reserve sizes it up front) */
  int8_t *act_q;   /* int8 activations for the matrix-vector kernels */
  float2 *act_ds;  /* per 32-block: (scale, scale * sum of levels) */
  size_t act_cap, act_ds_cap; /* elements of act_q, act_ds */
  __half *x16;     /* GEMM activations in F16 */
  size_t x16_cap;  /* elements */
  __half *w16;     /* dequantized weight row tile */
  size_t w16_cap;  /* elements */
  float *att;      /* attention partials of the split decode kernel */
  size_t att_cap;  /* floats */
  /* While a decode step is captured into a graph: the step's position in device memory (RoPE,
   * the KV store and attention read it there, so one graph serves every position), and the
   * context's n_ctx (attention's split then covers any length). NULL: positions are arguments. */
  const int32_t *d_pos0;
  int64_t n_ctx_max;
  uint64_t scratch_gen; /* counts the scratch buffers' reallocations */
};

/* Converts a failed call into NLLM_ERR_BACKEND (NLLM_ERR_NOMEM for allocation failures) with a
 * message naming the call and its file:line; clears CUDA's non-sticky error state. */
nllm_status nllm_cuda_fail(cudaError_t e, const char *call, const char *file, int line);
nllm_status nllm_cublas_fail(cublasStatus_t s, const char *call, const char *file, int line);

#define CU_TRY(call)                                                        \
  do {                                                                      \
    cudaError_t e_ = (call);                                                \
    if (e_ != cudaSuccess) return nllm_cuda_fail(e_, #call, __FILE__, __LINE__); \
  } while (0)
#define CUBLAS_TRY(call)                                                    \
  do {                                                                      \
    cublasStatus_t s_ = (call);                                             \
    if (s_ != CUBLAS_STATUS_SUCCESS) return nllm_cublas_fail(s_, #call, __FILE__, __LINE__); \
  } while (0)
/* After a <<<>>> launch: a bad configuration shows up here, not at the launch. */
#define CU_LAUNCHED(what) CU_TRY(cudaGetLastError())

/* Grows a scratch buffer to at least `need` elements of elem bytes (waiting for the kernels
 * still using the old one). */
nllm_status cuda_scratch_ensure(nllm_cuda *cu, void **buf, size_t *cap, size_t need, size_t elem,
                                const char *what);

static inline unsigned cuda_blocks(int64_t n, int threads) {
  return (unsigned)((n + threads - 1) / threads);
}

/* ---------------------------------------------------------------- block layouts (bytes) */
/* Q8_0 (34): d f16 @0, qs int8[32] @2.  Q4_0 (18): d @0, qs u8[16] @2 (low nibbles are
 * elements 0..15, high 16..31).  Q4_K (144): d @0, dmin @2, scales[12] @4, qs[128] @16.
 * Q5_K (176): d, dmin, scales[12] @4, qh[32] @16, qs[128] @48.
 * Q6_K (210): ql[128] @0, qh[64] @128, scales int8[16] @192, d @208. */
enum { Q8_0_BYTES = 34, Q4_0_BYTES = 18, Q4_K_BYTES = 144, Q5_K_BYTES = 176, Q6_K_BYTES = 210 };

/* The unpacking helpers are host-callable too, so their bit logic can be checked on a machine
 * without a GPU (dp4a is then emulated). */
#define NLLM_HD __host__ __device__ __forceinline__

NLLM_HD int dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
  return __dp4a(a, b, c);
#else
  for (int i = 0; i < 4; i++) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
  return c;
#endif
}

NLLM_HD float ld_half(const uint8_t *p) {
  return __half2float(__ushort_as_half(*(const unsigned short *)p));
}
/* 4 bytes from a 2-byte aligned address, little-endian as in the file. */
NLLM_HD int ld_int_a2(const uint8_t *p) {
  const uint16_t *h = (const uint16_t *)p;
  return (int)((uint32_t)h[0] | ((uint32_t)h[1] << 16));
}
NLLM_HD int ld_int_a4(const uint8_t *p) { return *(const int *)p; }

/* Q4_K/Q5_K's 6-bit scale and min of sub-block k from the 12 packed bytes (quant.h's
 * k4_scales_mins, one k at a time). */
NLLM_HD void k4_scale_min_dev(const uint8_t *sc, int k, int *scale, int *min) {
  if (k < 4) {
    *scale = sc[k] & 63;
    *min = sc[k + 4] & 63;
  } else {
    *scale = (sc[k + 4] & 15) | ((sc[k - 4] >> 6) << 4);
    *min = (sc[k + 4] >> 4) | ((sc[k] >> 6) << 4);
  }
}

/* Eight consecutive elements e0..e0+7 (e0 % 8 == 0) of a row, dequantized: these eight always
 * share one scale in every native format. Used by get_rows and the GEMM weight tiles. */
template <int T>
NLLM_HD void dequant8(const uint8_t *row, int64_t e0, float v[8]) {
  if (T == NLLM_TYPE_F16) {
    const __half *h = (const __half *)row + e0;
    for (int i = 0; i < 8; i++) v[i] = __half2float(h[i]);
  } else if (T == NLLM_TYPE_Q8_0) {
    const uint8_t *b = row + (e0 / 32) * Q8_0_BYTES;
    const int j0 = (int)(e0 % 32);
    const float d = ld_half(b);
    for (int i = 0; i < 8; i++) v[i] = d * (float)(int8_t)b[2 + j0 + i];
  } else if (T == NLLM_TYPE_Q4_0) {
    const uint8_t *b = row + (e0 / 32) * Q4_0_BYTES;
    const int j0 = (int)(e0 % 32);
    const float d = ld_half(b);
    for (int i = 0; i < 8; i++) {
      int q = j0 < 16 ? (b[2 + j0 + i] & 15) : (b[2 + j0 - 16 + i] >> 4);
      v[i] = d * (float)(q - 8);
    }
  } else if (T == NLLM_TYPE_Q4_K || T == NLLM_TYPE_Q5_K) {
    const int bytes = T == NLLM_TYPE_Q4_K ? Q4_K_BYTES : Q5_K_BYTES;
    const uint8_t *b = row + (e0 / 256) * bytes;
    const int j = (int)(e0 % 256), c = j / 64, h = (j % 64) / 32, l0 = j % 32, k = 2 * c + h;
    int sc, m;
    k4_scale_min_dev(b + 4, k, &sc, &m);
    const float dl = ld_half(b) * (float)sc, ml = ld_half(b + 2) * (float)m;
    const uint8_t *qs = b + (T == NLLM_TYPE_Q4_K ? 16 : 48) + c * 32 + l0;
    for (int i = 0; i < 8; i++) {
      int q = (qs[i] >> (4 * h)) & 15;
      if (T == NLLM_TYPE_Q5_K) q |= ((b[16 + l0 + i] >> k) & 1) << 4;
      v[i] = dl * (float)q - ml;
    }
  } else if (T == NLLM_TYPE_Q6_K) {
    const uint8_t *b = row + (e0 / 256) * Q6_K_BYTES;
    const int j = (int)(e0 % 256), c = j / 128, g = (j % 128) / 32, l0 = j % 32;
    const float dl = ld_half(b + 208) * (float)(int8_t)b[192 + j / 16];
    for (int i = 0; i < 8; i++) {
      int lo = (b[c * 64 + (g & 1) * 32 + l0 + i] >> (4 * (g >> 1))) & 15;
      int hi = (b[128 + c * 32 + l0 + i] >> (2 * g)) & 3;
      v[i] = dl * (float)((lo | (hi << 4)) - 32);
    }
  }
}

/* The weight types the CUDA kernels read as they are stored (every other type is dequantized
 * to F16 on upload): the one list that nllm_cuda_type_native, the dequantize / get_rows kernels
 * and the matrix-vector kernels expand. */
template <int... Types>
struct nllm_cuda_type_list {
  /* Calls f(std::integral_constant<int, T>) with the T equal to type; false if none is. */
  template <typename F>
  static bool visit(int32_t type, F &&f) {
    return ((type == Types ? (f(std::integral_constant<int, Types>{}), true) : false) || ...);
  }
  /* Calls f(std::integral_constant<int, T>) for each T. */
  template <typename F>
  static void each(F &&f) {
    (f(std::integral_constant<int, Types>{}), ...);
  }
};
using nllm_cuda_native_types = nllm_cuda_type_list<NLLM_TYPE_F16, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_0,
                                                   NLLM_TYPE_Q4_K, NLLM_TYPE_Q5_K, NLLM_TYPE_Q6_K>;

/* Expands a runtime device-side type into the template argument T of body; `fail` runs for a
 * type that is not native. */
#define NLLM_CUDA_TYPE_SWITCH(type, T, body, fail)                  \
  if (!nllm_cuda_native_types::visit(type, [&](auto native_type_) { \
        constexpr int T = decltype(native_type_)::value;            \
        body;                                                       \
      })) {                                                         \
    fail;                                                           \
  }

int64_t cuda_gemm_tile_rows(int64_t rows, int64_t cols);
size_t cuda_attention_scratch(int64_t n_tok, int64_t n_ctx, int64_t n_head, int64_t head_dim);

/* Launches the dequantize-to-F16 kernel for rows [r0, r0 + n_rows) of w into dst. */
nllm_status cuda_dequant_f16(nllm_cuda *cu, const nllm_cuda_weight *w, int64_t r0, int64_t n_rows,
                             __half *dst);

#endif
