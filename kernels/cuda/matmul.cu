/* Matrix multiplication of the CUDA backend.
 *
 * Decode (n_tok <= NLLM_CUDA_MMV_MAX) is memory-bound: each weight byte is read once. The
 * activations are quantized to int8 in blocks of 32 (scale d, and d * sum of levels so offset
 * formats need no second pass), and one warp per output row walks the row's blocks unpacking
 * 4 weights per byte lane and multiplying with __dp4a, so the arithmetic stays well below the
 * memory time. F16 weights use float activations directly.
 *
 * Prompts (more tokens) are compute-bound: the weight is dequantized to F16 in row tiles and
 * cuBLAS multiplies on tensor cores with F32 accumulation. */
#include "cuda/cuda_common.cuh"

/* ---------------------------------------------------------------- activations */

/* One warp per 32-element block: d = amax / 127, q = round(x / d), s = d * sum(q). */
__global__ void quantize_act_kernel(const float *x, int64_t n_blocks, int8_t *q, float2 *ds) {
  const int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (b >= n_blocks) return;
  const float v = x[b * 32 + lane];
  float amax = fabsf(v);
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float d = amax / 127.0f;
  const int qi = amax == 0.0f ? 0 : __float2int_rn(v / d);
  int sum = qi;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  q[b * 32 + lane] = (int8_t)qi;
  if (lane == 0) ds[b] = make_float2(d, d * (float)sum);
}

/* ---------------------------------------------------------------- per-format dot products */

/* A "unit" is the piece of a row one lane handles per step; every format's unit covers whole
 * 32-element activation blocks. unit_dot adds the unit's dot with each of NT activation rows
 * to acc[t]; the weight bytes are unpacked once and reused for every token. */
template <int T>
struct unit_info;
template <>
struct unit_info<NLLM_TYPE_Q8_0> {
  enum { elems = 32 };
};
template <>
struct unit_info<NLLM_TYPE_Q4_0> {
  enum { elems = 32 };
};
template <>
struct unit_info<NLLM_TYPE_Q4_K> {
  enum { elems = 64 };
};
template <>
struct unit_info<NLLM_TYPE_Q5_K> {
  enum { elems = 64 };
};
template <>
struct unit_info<NLLM_TYPE_Q6_K> {
  enum { elems = 32 };
};

/* 32 int8 activations of block `blk` as 8 ints (16-byte aligned: blocks start at 32k). */
NLLM_HD void load_act(const int8_t *aq, int64_t blk, int a[8]) {
  const int4 *p = (const int4 *)(aq + blk * 32);
  const int4 lo = p[0], hi = p[1];
  a[0] = lo.x;
  a[1] = lo.y;
  a[2] = lo.z;
  a[3] = lo.w;
  a[4] = hi.x;
  a[5] = hi.y;
  a[6] = hi.z;
  a[7] = hi.w;
}

template <int NT>
NLLM_HD void unit_dot_q8_0(const uint8_t *row, int64_t u, const int8_t *aq, const float2 *ads,
                           int64_t act_stride, float *acc) {
  const uint8_t *b = row + u * Q8_0_BYTES;
  const float d = ld_half(b);
  int w[8];
  for (int i = 0; i < 8; i++) w[i] = ld_int_a2(b + 2 + 4 * i);
  for (int t = 0; t < NT; t++) {
    int a[8];
    load_act(aq + t * act_stride, u, a);
    int s = 0;
    for (int i = 0; i < 8; i++) s = dp4a(w[i], a[i], s);
    acc[t] += d * ads[t * (act_stride / 32) + u].x * (float)s;
  }
}

template <int NT>
NLLM_HD void unit_dot_q4_0(const uint8_t *row, int64_t u, const int8_t *aq, const float2 *ads,
                           int64_t act_stride, float *acc) {
  const uint8_t *b = row + u * Q4_0_BYTES;
  const float d = ld_half(b);
  int lo[4], hi[4];
  for (int i = 0; i < 4; i++) {
    const int v = ld_int_a2(b + 2 + 4 * i);
    lo[i] = v & 0x0F0F0F0F;        /* elements 4i..4i+3 */
    hi[i] = (v >> 4) & 0x0F0F0F0F; /* elements 16+4i.. */
  }
  for (int t = 0; t < NT; t++) {
    int a[8];
    load_act(aq + t * act_stride, u, a);
    int s = 0;
    for (int i = 0; i < 4; i++) s = dp4a(hi[i], a[4 + i], dp4a(lo[i], a[i], s));
    const float2 ds = ads[t * (act_stride / 32) + u];
    /* sum (q - 8) d x = d (d_a sum q a - 8 s_a) */
    acc[t] += d * (ds.x * (float)s - 8.0f * ds.y);
  }
}

/* Q4_K / Q5_K: unit = the pair of 32-element sub-blocks (2c, 2c+1) sharing qs[32c..32c+32). */
template <int T, int NT>
NLLM_HD void unit_dot_k45(const uint8_t *row, int64_t u, const int8_t *aq, const float2 *ads,
                          int64_t act_stride, float *acc) {
  const int bytes = T == NLLM_TYPE_Q4_K ? Q4_K_BYTES : Q5_K_BYTES;
  const uint8_t *b = row + (u / 4) * bytes;
  const int c = (int)(u % 4);
  const float d = ld_half(b), dmin = ld_half(b + 2);
  int sc0, m0, sc1, m1;
  k4_scale_min_dev(b + 4, 2 * c, &sc0, &m0);
  k4_scale_min_dev(b + 4, 2 * c + 1, &sc1, &m1);
  const uint8_t *qs = b + (T == NLLM_TYPE_Q4_K ? 16 : 48) + 32 * c;
  int q0[8], q1[8];
  for (int i = 0; i < 8; i++) {
    const int v = ld_int_a4(qs + 4 * i);
    q0[i] = v & 0x0F0F0F0F;
    q1[i] = (v >> 4) & 0x0F0F0F0F;
    if (T == NLLM_TYPE_Q5_K) { /* bit 2c (+1) of qh[l] is the fifth bit of element l */
      const int h = ld_int_a4(b + 16 + 4 * i);
      q0[i] |= ((h >> (2 * c)) & 0x01010101) << 4;
      q1[i] |= ((h >> (2 * c + 1)) & 0x01010101) << 4;
    }
  }
  const int64_t blk0 = (u / 4) * 8 + 2 * c; /* activation block of sub-block 2c */
  for (int t = 0; t < NT; t++) {
    const int8_t *at = aq + t * act_stride;
    const float2 *dt = ads + t * (act_stride / 32);
    int a[8], s0 = 0, s1 = 0;
    load_act(at, blk0, a);
    for (int i = 0; i < 8; i++) s0 = dp4a(q0[i], a[i], s0);
    load_act(at, blk0 + 1, a);
    for (int i = 0; i < 8; i++) s1 = dp4a(q1[i], a[i], s1);
    const float2 d0 = dt[blk0], d1 = dt[blk0 + 1];
    acc[t] += d * ((float)sc0 * d0.x * (float)s0 + (float)sc1 * d1.x * (float)s1) -
              dmin * ((float)m0 * d0.y + (float)m1 * d1.y);
  }
}

/* Q6_K: unit = group g of half c (32 elements, two 16-element scales). */
template <int NT>
NLLM_HD void unit_dot_q6_k(const uint8_t *row, int64_t u, const int8_t *aq, const float2 *ads,
                           int64_t act_stride, float *acc) {
  const uint8_t *b = row + (u / 8) * Q6_K_BYTES;
  const int gi = (int)(u % 8), c = gi / 4, g = gi % 4;
  const float d = ld_half(b + 208);
  const float s0 = (float)(int8_t)b[192 + 8 * c + 2 * g],
              s1 = (float)(int8_t)b[192 + 8 * c + 2 * g + 1];
  int q[8];
  for (int i = 0; i < 8; i++) {
    const int lo = (ld_int_a2(b + c * 64 + (g & 1) * 32 + 4 * i) >> (4 * (g >> 1))) & 0x0F0F0F0F;
    const int hi = (ld_int_a2(b + 128 + c * 32 + 4 * i) >> (2 * g)) & 0x03030303;
    q[i] = lo | (hi << 4); /* levels 0..63; the -32 offset is applied through sum(a) */
  }
  for (int t = 0; t < NT; t++) {
    int a[8], p0 = 0, p1 = 0, n0 = 0, n1 = 0;
    load_act(aq + t * act_stride, u, a);
    for (int i = 0; i < 4; i++) {
      p0 = dp4a(q[i], a[i], p0);
      n0 = dp4a(0x01010101, a[i], n0);
      p1 = dp4a(q[4 + i], a[4 + i], p1);
      n1 = dp4a(0x01010101, a[4 + i], n1);
    }
    acc[t] += d * ads[t * (act_stride / 32) + u].x *
              (s0 * (float)(p0 - 32 * n0) + s1 * (float)(p1 - 32 * n1));
  }
}

template <int T, int NT>
NLLM_HD void unit_dot(const uint8_t *row, int64_t u, const int8_t *aq, const float2 *ads,
                      int64_t cols, float *acc) {
  if (T == NLLM_TYPE_Q8_0)
    unit_dot_q8_0<NT>(row, u, aq, ads, cols, acc);
  else if (T == NLLM_TYPE_Q4_0)
    unit_dot_q4_0<NT>(row, u, aq, ads, cols, acc);
  else if (T == NLLM_TYPE_Q4_K || T == NLLM_TYPE_Q5_K)
    unit_dot_k45<T, NT>(row, u, aq, ads, cols, acc);
  else if (T == NLLM_TYPE_Q6_K)
    unit_dot_q6_k<NT>(row, u, aq, ads, cols, acc);
}

#define MMV_WARPS 4 /* rows per block */

template <int T, int NT>
__global__ void __launch_bounds__(MMV_WARPS * 32)
    mmv_q_kernel(const uint8_t *w, size_t row_bytes, int64_t rows, int64_t cols, const int8_t *aq,
                 const float2 *ads, float *y) {
  const int64_t r = (int64_t)blockIdx.x * MMV_WARPS + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;
  const uint8_t *row = w + (size_t)r * row_bytes;
  float acc[NT];
  for (int t = 0; t < NT; t++) acc[t] = 0.0f;
  const int64_t n_units = cols / unit_info<T>::elems;
  for (int64_t u = lane; u < n_units; u += 32) unit_dot<T, NT>(row, u, aq, ads, cols, acc);
  for (int t = 0; t < NT; t++) {
    float s = acc[t];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) y[t * rows + r] = s;
  }
}

/* F16 weights, float activations: 8 halves (16 bytes) per lane per step. */
template <int NT>
__global__ void __launch_bounds__(MMV_WARPS * 32)
    mmv_f16_kernel(const __half *w, int64_t rows, int64_t cols, const float *x, float *y) {
  const int64_t r = (int64_t)blockIdx.x * MMV_WARPS + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;
  const __half *row = w + r * cols;
  float acc[NT];
  for (int t = 0; t < NT; t++) acc[t] = 0.0f;
  if (cols % 8 == 0) {
    for (int64_t c = 8 * lane; c < cols; c += 256) {
      const uint4 raw = *(const uint4 *)(row + c);
      const __half2 *h2 = (const __half2 *)&raw;
      float wv[8];
      for (int i = 0; i < 4; i++) {
        const float2 f = __half22float2(h2[i]);
        wv[2 * i] = f.x;
        wv[2 * i + 1] = f.y;
      }
      for (int t = 0; t < NT; t++) {
        const float *xt = x + t * cols + c;
        for (int i = 0; i < 8; i++) acc[t] += wv[i] * xt[i];
      }
    }
  } else { /* rows are not 16-byte aligned (converted F32/BF16 with e.g. 172 columns) */
    for (int64_t c = lane; c < cols; c += 32) {
      const float wv = __half2float(row[c]);
      for (int t = 0; t < NT; t++) acc[t] += wv * x[t * cols + c];
    }
  }
  for (int t = 0; t < NT; t++) {
    float s = acc[t];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) y[t * rows + r] = s;
  }
}

#define NT_SWITCH(n, NT, body) \
  switch (n) {                 \
    case 1: {                  \
      constexpr int NT = 1;    \
      body;                    \
    } break;                   \
    case 2: {                  \
      constexpr int NT = 2;    \
      body;                    \
    } break;                   \
    case 3: {                  \
      constexpr int NT = 3;    \
      body;                    \
    } break;                   \
    case 4: {                  \
      constexpr int NT = 4;    \
      body;                    \
    } break;                   \
    case 5: {                  \
      constexpr int NT = 5;    \
      body;                    \
    } break;                   \
    case 6: {                  \
      constexpr int NT = 6;    \
      body;                    \
    } break;                   \
    case 7: {                  \
      constexpr int NT = 7;    \
      body;                    \
    } break;                   \
    default: {                 \
      constexpr int NT = 8;    \
      body;                    \
    } break;                   \
  }

template <int T>
static nllm_status launch_mmv_q(nllm_cuda *cu, const uint8_t *wd, const nllm_cuda_weight *w,
                                float *y, int64_t n_tok, unsigned grid) {
  NT_SWITCH(n_tok, NT,
            (mmv_q_kernel<T, NT><<<grid, MMV_WARPS * 32, 0, cu->stream>>>(
                wd, w->row_bytes, w->rows, w->cols, cu->act_q, cu->act_ds, y)));
  CU_LAUNCHED("mmv_q_kernel");
  return NLLM_OK;
}

/* x's int8 blocks into the scratch, for every integer matrix-vector kernel of that input */
static nllm_status quantize_act(nllm_cuda *cu, const float *x, int64_t cols, int64_t n_tok) {
  const int64_t n_blocks = n_tok * cols / 32;
  nllm_status st = cuda_scratch_ensure(cu, (void **)&cu->act_q, &cu->act_cap,
                                       (size_t)(n_tok * cols), 1, "activations (int8)");
  if (st == NLLM_OK)
    st = cuda_scratch_ensure(cu, (void **)&cu->act_ds, &cu->act_ds_cap, (size_t)n_blocks,
                             sizeof(float2), "activation scales");
  if (st != NLLM_OK) return st;
  quantize_act_kernel<<<cuda_blocks(n_blocks * 32, 256), 256, 0, cu->stream>>>(
      x, n_blocks, cu->act_q, cu->act_ds);
  CU_LAUNCHED("quantize_act_kernel");
  return NLLM_OK;
}

/* y = w x for n_tok <= NLLM_CUDA_MMV_MAX; an integer format reads the activations quantize_act
 * left (of x) */
static nllm_status matvec(nllm_cuda *cu, float *y, const nllm_cuda_weight *w, const float *x,
                          int64_t n_tok) {
  const unsigned grid = cuda_blocks(w->rows, MMV_WARPS);
  if (w->type == NLLM_TYPE_F16) {
    NT_SWITCH(n_tok, NT,
              (mmv_f16_kernel<NT><<<grid, MMV_WARPS * 32, 0, cu->stream>>>(
                  (const __half *)w->data, w->rows, w->cols, x, y)));
    CU_LAUNCHED("mmv_f16_kernel");
    return NLLM_OK;
  }
  const uint8_t *wd = (const uint8_t *)w->data;
  nllm_status st = NLLM_OK;
  /* F16 took the float kernel above: every other native type has integer units */
  NLLM_CUDA_TYPE_SWITCH(
      w->type, T,
      if constexpr (T != NLLM_TYPE_F16) st = launch_mmv_q<T>(cu, wd, w, y, n_tok, grid),
      return nllm_err(NLLM_ERR_UNSUPPORTED, "CUDA matmul: device type %d", w->type));
  return st;
}

/* ---------------------------------------------------------------- GEMM */

__global__ void f32_to_f16_kernel(const float *x, __half *y, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2half_rn(x[i]);
}

/* Rows per dequantized tile: the whole matrix when it is at most 64 Mi elements (128 MiB of
 * F16), else a multiple of 64 rows within that, so large matrices still give cuBLAS big GEMMs. */
static int64_t gemm_tile_budget = (int64_t)64 << 20;

void nllm_cuda_set_gemm_tile_elems(int64_t elems) {
  gemm_tile_budget = elems > 0 ? elems : (int64_t)64 << 20;
}

int64_t cuda_gemm_tile_rows(int64_t rows, int64_t cols) {
  if (rows * cols <= gemm_tile_budget) return rows;
  int64_t r = gemm_tile_budget / cols / 64 * 64;
  return r < 64 ? 64 : r;
}

static nllm_status gemm(nllm_cuda *cu, float *y, const nllm_cuda_weight *w, const float *x,
                        int64_t n_tok) {
  if (w->rows > INT32_MAX || w->cols > INT32_MAX || n_tok > INT32_MAX)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "CUDA GEMM: %lld x %lld x %lld exceeds cuBLAS's int sizes", (long long)w->rows,
                    (long long)w->cols, (long long)n_tok);
  const int64_t nx = n_tok * w->cols;
  nllm_status st = cuda_scratch_ensure(cu, (void **)&cu->x16, &cu->x16_cap, (size_t)nx,
                                       sizeof(__half), "GEMM activations (F16)");
  if (st != NLLM_OK) return st;
  f32_to_f16_kernel<<<cuda_blocks(nx, 256), 256, 0, cu->stream>>>(x, cu->x16, nx);
  CU_LAUNCHED("f32_to_f16_kernel");
  const float one = 1.0f, zero = 0.0f;
  const int64_t tile = w->type == NLLM_TYPE_F16 ? w->rows : cuda_gemm_tile_rows(w->rows, w->cols);
  if (w->type != NLLM_TYPE_F16) {
    st = cuda_scratch_ensure(cu, (void **)&cu->w16, &cu->w16_cap, (size_t)(tile * w->cols),
                             sizeof(__half), "GEMM weight tile (F16)");
    if (st != NLLM_OK) return st;
  }
  for (int64_t r0 = 0; r0 < w->rows; r0 += tile) {
    const int64_t nr = w->rows - r0 < tile ? w->rows - r0 : tile;
    const __half *a;
    if (w->type == NLLM_TYPE_F16) {
      a = (const __half *)w->data + r0 * w->cols;
    } else {
      if ((st = cuda_dequant_f16(cu, w, r0, nr, cu->w16)) != NLLM_OK) return st;
      a = cu->w16;
    }
    /* column-major view: Y^T[rows x n] = (W row-major = col-major cols x rows)^T * X^T */
    CUBLAS_TRY(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, (int)n_tok, (int)w->cols,
                            &one, a, CUDA_R_16F, (int)w->cols, cu->x16, CUDA_R_16F, (int)w->cols,
                            &zero, y + r0, CUDA_R_32F, (int)w->rows, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
  }
  return NLLM_OK;
}

nllm_status nllm_cuda_matmul(nllm_cuda *cu, float *d_y, const nllm_cuda_weight *w, const float *d_x,
                             int64_t n_tok) {
  return nllm_cuda_matmul_group(cu, &d_y, &w, 1, d_x, n_tok);
}

nllm_status nllm_cuda_matmul_group(nllm_cuda *cu, float *const *d_y,
                                   const nllm_cuda_weight *const *w, int n_w, const float *d_x,
                                   int64_t n_tok) {
  if (n_tok <= 0) return NLLM_OK;
  int quantized = 0;
  for (int i = 0; i < n_w; i++) {
    if (!w[i]->data) return nllm_err(NLLM_ERR_INVALID_ARG, "CUDA matmul: weight not uploaded");
    if (w[i]->cols != w[0]->cols)
      return nllm_err(NLLM_ERR_INVALID_ARG, "CUDA matmul group: %lld and %lld columns",
                      (long long)w[0]->cols, (long long)w[i]->cols);
    quantized |= w[i]->type != NLLM_TYPE_F16;
  }
  nllm_status st = NLLM_OK;
  if (n_tok <= NLLM_CUDA_MMV_MAX && quantized) st = quantize_act(cu, d_x, w[0]->cols, n_tok);
  for (int i = 0; i < n_w && !st; i++)
    st = n_tok <= NLLM_CUDA_MMV_MAX ? matvec(cu, d_y[i], w[i], d_x, n_tok)
                                    : gemm(cu, d_y[i], w[i], d_x, n_tok);
  return st;
}
