/* The float GEMM's kernels (gemm_float.h) written once for any vector width: the AVX2 and the
 * AVX-512 files include this after naming their vector and its operations, so both tiers run
 * the same loops (RM weight rows x TB = 2 * VL tokens of sums in registers; a weight broadcast
 * meets a vector of tokens) and differ only in width, RM and the VL x VL transpose.
 *
 * The including file defines:
 *   VEC, VL          the f32 vector type and its lanes (RM <= VL: a tile's sums transpose as one
 *                    VL x VL block)
 *   RM, KC           weight rows per micro tile, columns per chunk
 *   V_LOAD(p), V_STORE(p, v), V_ZERO(), V_SET1(p) (broadcast *p), V_FMA(a, b, c) (a * b + c)
 *   V_HALF(bf16, p)  VL F16 (bf16 = 0) or BF16 (1) values from p converted exactly to f32
 *   transpose_vl(VEC v[VL])        v[t] = column t of the matrix of rows v[0..VL-1]
 *   store_rm(float *p, VEC v)      the first RM lanes of v to p
 *   GEMMF_ISA        the suffix of the descriptors' and kernel set's names (avx2, avx512)
 * and includes <immintrin.h>, <string.h>, cpu/gemm_float.h and cpu/quant.h. */

#define TB (2 * VL)

/* Column chunk of n tokens into TB token lanes, zeros past n: VL tokens x VL columns at a time
 * through the transpose. */
static void pack_x_f32(const float *x, size_t x_rs, int n, int64_t k0, int64_t kc, void *vxp) {
  float *xp = vxp;
  for (int t0 = 0; t0 < TB; t0 += VL) {
    int64_t k = 0;
    for (; k + VL <= kc; k += VL) {
      VEC v[VL];
      for (int i = 0; i < VL; i++)
        v[i] = t0 + i < n ? V_LOAD(x + (size_t)(t0 + i) * x_rs + k0 + k) : V_ZERO();
      transpose_vl(v);
      for (int i = 0; i < VL; i++) V_STORE(xp + (k + i) * TB + t0, v[i]);
    }
    for (; k < kc; k++)
      for (int t = t0; t < t0 + VL; t++) xp[k * TB + t] = t < n ? x[(size_t)t * x_rs + k0 + k] : 0;
  }
}

/* The sums of one block (c[r * TB + t]) into y: token t's n sums go to y + t * y_rs. */
static void store_y(const float *c, int n, int n_tok, float *y, size_t y_rs) {
  for (int t0 = 0; t0 < n_tok; t0 += VL) {
    VEC v[VL];
    for (int r = 0; r < VL; r++) v[r] = r < RM ? V_LOAD(c + r * TB + t0) : V_ZERO();
    transpose_vl(v);
    const int nt = n_tok - t0 < VL ? n_tok - t0 : VL;
    for (int t = 0; t < nt; t++) {
      float *yt = y + (size_t)(t0 + t) * y_rs;
      if (n == RM) {
        store_rm(yt, v[t]);
      } else {
        float tmp[VL];
        V_STORE(tmp, v[t]);
        for (int r = 0; r < n; r++) yt[r] = tmp[r];
      }
    }
  }
}

static const void *pack_w_f32(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                              void *panel, size_t *p_rs) {
  if (n == RM) {
    *p_rs = w_rs;
    return (const uint8_t *)W + (size_t)k0 * sizeof(float);
  }
  /* the last rows of a matrix: copied, the missing rows zero */
  const size_t rs = (size_t)kc * sizeof(float) + 64;
  for (int r = 0; r < RM; r++) {
    float *p = (float *)((uint8_t *)panel + (size_t)r * rs);
    if (r < n)
      memcpy(p, (const uint8_t *)W + (size_t)r * w_rs + (size_t)k0 * sizeof(float),
             (size_t)kc * sizeof(float));
    else
      memset(p, 0, (size_t)kc * sizeof(float));
  }
  *p_rs = rs;
  return panel;
}

/* F16 and BF16 rows converted to f32 once per chunk (exact), then read by the f32 kernel. */
static inline __attribute__((always_inline)) const void *pack_w_half(int bf16, const void *W,
                                                                     size_t w_rs, int n, int64_t k0,
                                                                     int64_t kc, void *panel,
                                                                     size_t *p_rs) {
  const size_t rs = (size_t)kc * sizeof(float) + 64;
  for (int r = 0; r < RM; r++) {
    float *p = (float *)((uint8_t *)panel + (size_t)r * rs);
    if (r >= n) {
      memset(p, 0, (size_t)kc * sizeof(float));
      continue;
    }
    const uint16_t *w = (const uint16_t *)((const uint8_t *)W + (size_t)r * w_rs) + k0;
    int64_t k = 0;
    for (; k + VL <= kc; k += VL) V_STORE(p + k, V_HALF(bf16, w + k));
    for (; k < kc; k++) p[k] = bf16 ? q_bf2f(w[k]) : q_h2f(w[k]);
  }
  *p_rs = rs;
  return panel;
}

static const void *pack_w_f16(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                              void *panel, size_t *p_rs) {
  return pack_w_half(0, W, w_rs, n, k0, kc, panel, p_rs);
}

static const void *pack_w_bf16(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                               void *panel, size_t *p_rs) {
  return pack_w_half(1, W, w_rs, n, k0, kc, panel, p_rs);
}

/* Per column: 2 vector loads and RM broadcasts for 2 * RM FMAs, so the FMA units, not the
 * loads, set the pace. */
static void micro_f32(int64_t kc, const void *vw, size_t w_rs, const void *vxp, float *c,
                      int accumulate) {
  const float *xp = vxp;
  const float *w[RM];
  for (int r = 0; r < RM; r++) w[r] = (const float *)((const uint8_t *)vw + (size_t)r * w_rs);
  VEC a[RM][2];
#pragma GCC unroll 16
  for (int r = 0; r < RM; r++) {
    a[r][0] = accumulate ? V_LOAD(c + r * TB) : V_ZERO();
    a[r][1] = accumulate ? V_LOAD(c + r * TB + VL) : V_ZERO();
  }
  for (int64_t k = 0; k < kc; k++) {
    const VEC x0 = V_LOAD(xp + k * TB), x1 = V_LOAD(xp + k * TB + VL);
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++) {
      const VEC b = V_SET1(&w[r][k]);
      a[r][0] = V_FMA(b, x0, a[r][0]);
      a[r][1] = V_FMA(b, x1, a[r][1]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RM; r++) {
    V_STORE(c + r * TB, a[r][0]);
    V_STORE(c + r * TB + VL, a[r][1]);
  }
}

#define GEMMF_CAT_(a, b) a##b
#define GEMMF_CAT(a, b) GEMMF_CAT_(a, b)
#define GEMMF_NAME(t) GEMMF_CAT(GEMMF_CAT(nllm_gemmf_, t), GEMMF_CAT(_, GEMMF_ISA))
#define GEMMF(pw)                                                                         \
  {                                                                                       \
    .rm = RM, .tb = TB, .kc = KC, .min_tokens = 16, .pack_x = pack_x_f32, .pack_w = (pw), \
    .micro = micro_f32, .store = store_y                                                  \
  }
const nllm_gemmf GEMMF_NAME(f32) = GEMMF(pack_w_f32);
const nllm_gemmf GEMMF_NAME(f16) = GEMMF(pack_w_f16);
const nllm_gemmf GEMMF_NAME(bf16) = GEMMF(pack_w_bf16);

/* The GEMM wins over dequantize + sgemm at every batch from min_tokens on (docs/performance.md,
 * "Float GEMM"), so these formats never go to sgemm in the tier. */
static const nllm_qtype_kernels gemmf_rows[] = {
    {.type = NLLM_TYPE_F32, .gemmf = &GEMMF_NAME(f32), .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_F16, .gemmf = &GEMMF_NAME(f16), .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_BF16, .gemmf = &GEMMF_NAME(bf16), .blas_min_tokens = NLLM_BLAS_NEVER},
};
const nllm_kernel_set GEMMF_CAT(nllm_kernels_gemmf_, GEMMF_ISA) = {
    gemmf_rows, sizeof gemmf_rows / sizeof gemmf_rows[0]};
