/* Elementwise, normalisation, RoPE, embedding and KV-cache kernels of the CUDA backend. Each
 * mirrors its CPU counterpart in kernels/cpu/ops.c formula for formula, so the GPU tests can hold
 * them to float rounding. */
#include <math.h>

#include "cuda/cuda_common.cuh"

static nllm_status bad_type(const char *op, int32_t type) {
  return nllm_err(NLLM_ERR_UNSUPPORTED, "CUDA %s: device weight type %d is not handled", op, type);
}

/* ---------------------------------------------------------------- dequantization */

template <int T, typename Out>
__global__ void dequant_rows_kernel(const uint8_t *w, size_t row_bytes, int64_t cols,
                                    const int32_t *ids, int64_t r0, int64_t n_rows, float scale,
                                    Out *dst) {
  const int64_t per_row = cols / 8;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= per_row * n_rows) return;
  const int64_t r = i / per_row, e0 = (i % per_row) * 8;
  const int64_t src_row = ids ? (int64_t)ids[r] : r0 + r;
  float v[8];
  dequant8<T>(w + (size_t)src_row * row_bytes, e0, v);
  Out *o = dst + r * cols + e0;
  if (sizeof(Out) == 2) {
    __align__(16) __half h[8];
    for (int k = 0; k < 8; k++) h[k] = __float2half_rn(v[k] * scale);
    *(uint4 *)o = *(const uint4 *)h; /* cols % 8 == 0 keeps this 16-byte aligned */
  } else {
    for (int k = 0; k < 8; k++) ((float *)o)[k] = v[k] * scale;
  }
}

nllm_status cuda_dequant_f16(nllm_cuda *cu, const nllm_cuda_weight *w, int64_t r0, int64_t n_rows,
                             __half *dst) {
  const int64_t n = n_rows * (w->cols / 8);
  if (n <= 0) return NLLM_OK;
  NLLM_CUDA_TYPE_SWITCH(
      w->type, T,
      (dequant_rows_kernel<T, __half><<<cuda_blocks(n, 256), 256, 0, cu->stream>>>(
          (const uint8_t *)w->data, w->row_bytes, w->cols, NULL, r0, n_rows, 1.0f, dst)),
      return bad_type("dequantize", w->type));
  CU_LAUNCHED("dequant_rows_kernel");
  return NLLM_OK;
}

/* F16 rows whose width is not a multiple of 8 (dequant8 needs 8-element groups): one element
 * per thread. Only F16 can have such rows: every block format is at least 32 wide. */
__global__ void get_rows_f16_kernel(const __half *w, int64_t cols, const int32_t *ids,
                                    int64_t n_rows, float scale, float *dst) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= cols * n_rows) return;
  const int64_t r = i / cols, c = i % cols;
  dst[i] = __half2float(w[(int64_t)ids[r] * cols + c]) * scale;
}

nllm_status nllm_cuda_get_rows(nllm_cuda *cu, float *d_y, const nllm_cuda_weight *w,
                               const int32_t *d_tokens, int64_t n, float scale) {
  if (w->cols % 8) {
    if (w->type != NLLM_TYPE_F16) return bad_type("get_rows", w->type);
    const int64_t count = n * w->cols;
    if (count <= 0) return NLLM_OK;
    get_rows_f16_kernel<<<cuda_blocks(count, 256), 256, 0, cu->stream>>>(
        (const __half *)w->data, w->cols, d_tokens, n, scale, d_y);
    CU_LAUNCHED("get_rows_f16_kernel");
    return NLLM_OK;
  }
  const int64_t total = n * (w->cols / 8);
  if (total <= 0) return NLLM_OK;
  NLLM_CUDA_TYPE_SWITCH(
      w->type, T,
      (dequant_rows_kernel<T, float><<<cuda_blocks(total, 256), 256, 0, cu->stream>>>(
          (const uint8_t *)w->data, w->row_bytes, w->cols, d_tokens, 0, n, scale, d_y)),
      return bad_type("get_rows", w->type));
  CU_LAUNCHED("get_rows");
  return NLLM_OK;
}

/* ---------------------------------------------------------------- reductions */

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* One block per row: sum of squares in float (as the CPU's float dot), then the scale. */
__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int64_t n, float eps) {
  __shared__ float part[32];
  const float *xr = x + (int64_t)blockIdx.x * n;
  float *o = out + (int64_t)blockIdx.x * n;
  float s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += xr[i] * xr[i];
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
    s = warp_sum(s);
    if (threadIdx.x == 0) part[0] = s;
  }
  __syncthreads();
  const float scale = 1.0f / sqrtf(part[0] / (float)n + eps);
  /* in place (out == x) is safe: every read of x above finished at the barrier */
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * scale * w[i];
}

nllm_status nllm_cuda_rmsnorm(nllm_cuda *cu, float *d_out, const float *d_x, const float *d_w,
                              int64_t n, int64_t n_rows, float eps) {
  if (n_rows <= 0) return NLLM_OK;
  if (n_rows > INT32_MAX)
    return nllm_err(NLLM_ERR_INVALID_ARG, "CUDA rmsnorm: %lld rows", (long long)n_rows);
  const int threads = n >= 1024 ? 1024 : n >= 256 ? 256 : 64;
  rmsnorm_kernel<<<(unsigned)n_rows, threads, 0, cu->stream>>>(d_out, d_x, d_w, n, eps);
  CU_LAUNCHED("rmsnorm_kernel");
  return NLLM_OK;
}

/* ---------------------------------------------------------------- RoPE */

/* One thread per (token, rotation pair): the angle in double, as the CPU computes it, since
 * pos * freq reaches 1e5 radians at long contexts; then the same rotation for every head. */
__global__ void rope_kernel(float *x, int64_t n_tok, int64_t row_stride, int64_t n_heads,
                            int64_t head_dim, int64_t half, int32_t pos0, const int32_t *d_pos0,
                            const float *inv_freq, int neox) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_tok * half) return;
  const int64_t t = i / half, p = i % half;
  if (d_pos0) pos0 = *d_pos0; /* a captured decode step (nllm_cuda_capture_begin) */
  double s, c;
  sincos((double)(pos0 + t) * (double)inv_freq[p], &s, &c);
  const float cs = (float)c, sn = (float)s;
  const int64_t a = neox ? p : 2 * p, b = neox ? p + half : 2 * p + 1;
  float *xt = x + t * row_stride;
  for (int64_t h = 0; h < n_heads; h++) {
    float *xh = xt + h * head_dim;
    const float x0 = xh[a], x1 = xh[b];
    xh[a] = x0 * cs - x1 * sn;
    xh[b] = x0 * sn + x1 * cs;
  }
}

nllm_status nllm_cuda_rope(nllm_cuda *cu, float *d_x, int64_t n_tok, int64_t row_stride,
                           int64_t n_heads, int64_t head_dim, int64_t n_rot, int32_t pos0,
                           const float *d_inv_freq, int neox) {
  const int64_t half = n_rot / 2, n = n_tok * half;
  if (n <= 0) return NLLM_OK;
  rope_kernel<<<cuda_blocks(n, 128), 128, 0, cu->stream>>>(
      d_x, n_tok, row_stride, n_heads, head_dim, half, pos0, cu->d_pos0, d_inv_freq, neox);
  CU_LAUNCHED("rope_kernel");
  return NLLM_OK;
}

/* ---------------------------------------------------------------- elementwise */

__global__ void add_bias_kernel(float *y, const float *b, int64_t n_b, int64_t n_tok,
                                int64_t stride) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_b * n_tok) return;
  y[(i / n_b) * stride + i % n_b] += b[i % n_b];
}

nllm_status nllm_cuda_add_bias(nllm_cuda *cu, float *d_y, const float *d_b, int64_t n_b,
                               int64_t n_tok, int64_t stride) {
  const int64_t n = n_b * n_tok;
  if (n <= 0 || !d_b) return NLLM_OK;
  add_bias_kernel<<<cuda_blocks(n, 256), 256, 0, cu->stream>>>(d_y, d_b, n_b, n_tok, stride);
  CU_LAUNCHED("add_bias_kernel");
  return NLLM_OK;
}

enum { EW_ADD, EW_SCALE, EW_SOFTCAP };

__global__ void elementwise_kernel(int op, float *x, const float *y, float a, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (op == EW_ADD)
    x[i] += y[i];
  else if (op == EW_SCALE)
    x[i] *= a;
  else
    x[i] = a * tanhf(x[i] / a);
}

static nllm_status elementwise(nllm_cuda *cu, int op, float *x, const float *y, float a,
                               int64_t n) {
  if (n <= 0) return NLLM_OK;
  elementwise_kernel<<<cuda_blocks(n, 256), 256, 0, cu->stream>>>(op, x, y, a, n);
  CU_LAUNCHED("elementwise_kernel");
  return NLLM_OK;
}

nllm_status nllm_cuda_add(nllm_cuda *cu, float *d_x, const float *d_y, int64_t n) {
  return elementwise(cu, EW_ADD, d_x, d_y, 0.0f, n);
}
nllm_status nllm_cuda_scale(nllm_cuda *cu, float *d_x, float s, int64_t n) {
  return elementwise(cu, EW_SCALE, d_x, NULL, s, n);
}
nllm_status nllm_cuda_softcap(nllm_cuda *cu, float *d_x, float c, int64_t n) {
  if (!(c > 0)) return nllm_err(NLLM_ERR_INVALID_ARG, "CUDA softcap: cap %g", (double)c);
  return elementwise(cu, EW_SOFTCAP, d_x, NULL, c, n);
}

__global__ void glu_kernel(float *out, int64_t out_stride, const float *gate, const float *up,
                           int64_t in_stride, int64_t n, int64_t n_rows, int gelu) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n * n_rows) return;
  const int64_t r = i / n, c = i % n;
  const float g = gate[r * in_stride + c];
  const float k = 0.7978845608028654f; /* sqrt(2/pi) */
  /* the CPU's forms: gelu as g * sigmoid(2z), which does not cancel for negative g */
  const float a =
      gelu ? g / (1.0f + expf(-2.0f * k * (g + 0.044715f * g * g * g))) : g / (1.0f + expf(-g));
  out[r * out_stride + c] = a * up[r * in_stride + c];
}

nllm_status nllm_cuda_glu(nllm_cuda *cu, float *d_out, int64_t out_stride, const float *d_gate,
                          const float *d_up, int64_t in_stride, int64_t n, int64_t n_rows,
                          int gelu) {
  const int64_t total = n * n_rows;
  if (total <= 0) return NLLM_OK;
  glu_kernel<<<cuda_blocks(total, 256), 256, 0, cu->stream>>>(d_out, out_stride, d_gate, d_up,
                                                              in_stride, n, n_rows, gelu);
  CU_LAUNCHED("glu_kernel");
  return NLLM_OK;
}

/* ---------------------------------------------------------------- KV cache */

/* rows [n_tok][row] into the cache from row pos0 on (from *d_pos0 in a captured step) */
template <typename C>
__global__ void kv_store_kernel(C *cache, const float *src, int64_t n, int64_t row, int32_t pos0,
                                const int32_t *d_pos0) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  cache += (int64_t)(d_pos0 ? *d_pos0 : pos0) * row;
  if (sizeof(C) == 2)
    ((__half *)cache)[i] = __float2half_rn(src[i]); /* round to nearest even, as the CPU */
  else
    ((float *)cache)[i] = src[i];
}

nllm_status nllm_cuda_kv_store(nllm_cuda *cu, void *d_cache, int32_t kv_type, const float *d_src,
                               int64_t n_tok, int64_t row, int32_t pos0) {
  const int64_t n = n_tok * row;
  if (n <= 0) return NLLM_OK;
  if (kv_type == NLLM_TYPE_F16)
    kv_store_kernel<__half><<<cuda_blocks(n, 256), 256, 0, cu->stream>>>((__half *)d_cache, d_src,
                                                                         n, row, pos0, cu->d_pos0);
  else if (kv_type == NLLM_TYPE_F32)
    kv_store_kernel<float><<<cuda_blocks(n, 256), 256, 0, cu->stream>>>((float *)d_cache, d_src, n,
                                                                        row, pos0, cu->d_pos0);
  else
    return nllm_err(NLLM_ERR_UNSUPPORTED, "CUDA KV cache: type %d (F16 or F32 only)", kv_type);
  CU_LAUNCHED("kv_store_kernel");
  return NLLM_OK;
}
