/* Every CUDA backend op against the CPU scalar reference of the library. Built only with CUDA=1
 * (make test-gpu); not a Check program because it must run as one process that owns the device.
 * Exits 0 with "SKIP: no CUDA device" where there is no GPU (what CI sees).
 *
 * Tolerances are derived, not tuned:
 * - int8 matrix-vector kernels: activations are rounded to levels of d = amax/127 per block of
 *   32, so |error| <= sum over blocks of (d/2) * sum |w_i| (the bound is computed per output),
 *   plus float accumulation (1e-5 * sum |w x|).
 * - F16 GEMM: weights and activations each rounded to F16 (relative 2^-11), so
 *   |error| <= (2 * 2^-11 + 2^-22) * sum |w x|, plus accumulation.
 * - elementwise ops use the CPU's formulas; they differ only in expf/tanhf/sqrtf ulps and FMA
 *   contraction: a few float ulps (1e-5 relative). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "core/core.h"
#include "cuda/backend_cuda.h"
#include "ops.h"
#include "qtypes.h"

static int n_pass, n_fail;
static nllm_cuda *cu;

static void check(int ok, const char *fmt, ...) NLLM_PRINTF(2, 3);
static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (ok) {
    n_pass++;
  } else {
    n_fail++;
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
  }
  va_end(ap);
}

#define TRY(call)                                                                             \
  do {                                                                                        \
    nllm_status st_ = (call);                                                                 \
    if (st_ != NLLM_OK) {                                                                     \
      printf("FAIL: %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call, nllm_status_name(st_), \
             nllm_last_error());                                                              \
      n_fail++;                                                                               \
      return;                                                                                 \
    }                                                                                         \
  } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static void fill(float *x, int64_t n, float scale) {
  for (int64_t i = 0; i < n; i++) x[i] = frand() * scale;
}

static void *dalloc(size_t bytes) {
  void *p = NULL;
  if (nllm_cuda_alloc(cu, bytes, "test buffer", &p) != NLLM_OK) {
    printf("FATAL: %s\n", nllm_last_error());
    exit(1);
  }
  return p;
}
static float *to_dev(const float *h, int64_t n) {
  float *d = dalloc((size_t)n * sizeof(float));
  if (nllm_cuda_upload(cu, d, h, (size_t)n * sizeof(float)) != NLLM_OK) {
    printf("FATAL: %s\n", nllm_last_error());
    exit(1);
  }
  return d;
}
static float *from_dev(const float *d, int64_t n) {
  float *h = malloc((size_t)n * sizeof(float));
  if (nllm_cuda_download(cu, h, d, (size_t)n * sizeof(float)) != NLLM_OK) {
    printf("FATAL: %s\n", nllm_last_error());
    exit(1);
  }
  return h;
}

/* max over i of |a - b| / (atol + rtol * |b|); <= 1 passes */
static double worst(const float *a, const float *b, int64_t n, double atol, double rtol,
                    int64_t *at) {
  double w = 0;
  *at = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
    if (!(e <= w)) { /* NaN counts as worst */
      w = isnan(e) ? INFINITY : e;
      *at = i;
    }
  }
  return w;
}

/* ---------------------------------------------------------------- weights and matmul */

static const int32_t weight_types[] = {
    NLLM_TYPE_Q4_0, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K, NLLM_TYPE_Q5_K,   NLLM_TYPE_Q6_K,
    NLLM_TYPE_F16,  NLLM_TYPE_F32,  NLLM_TYPE_BF16, NLLM_TYPE_Q4_1,   NLLM_TYPE_Q5_0,
    NLLM_TYPE_Q5_1, NLLM_TYPE_Q2_K, NLLM_TYPE_Q3_K, NLLM_TYPE_IQ4_NL, NLLM_TYPE_IQ4_XS};

static float f16_round(float x) {
  return nllm_fp16_to_fp32(nllm_fp32_to_fp16(x));
}

static void test_weight_type(int32_t type, int64_t rows, int64_t cols) {
  const nllm_qtype *q = nllm_qtype_get(type);
  const int native = nllm_cuda_type_native(type);
  float *w = malloc((size_t)(rows * cols) * sizeof(float));
  fill(w, rows * cols, 1.0f);
  for (int64_t c = 0; c < cols; c++) {
    w[3 * cols + c] *= 100.0f; /* a large row */
    w[4 * cols + c] = 0.0f;    /* an all-zero row: zero scales */
  }
  for (int64_t c = 0; c < 64; c++) w[5 * cols + c] = 0.0f; /* zero blocks inside a row */
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *wq = malloc(rs * (size_t)rows);
  float *wr = malloc((size_t)(rows * cols) * sizeof(float)); /* what the device should hold */
  for (int64_t r = 0; r < rows; r++) {
    q->from_float_ref(w + r * cols, wq + (size_t)r * rs, cols);
    q->to_float_ref(wq + (size_t)r * rs, wr + r * cols, cols);
  }
  if (!native)
    for (int64_t i = 0; i < rows * cols; i++) wr[i] = f16_round(wr[i]);

  nllm_cuda_weight dw;
  char name[64];
  snprintf(name, sizeof name, "test.%s.%lldx%lld", q->name, (long long)rows, (long long)cols);
  nllm_status st = nllm_cuda_weight_upload(cu, wq, type, rows, cols, name, &dw);
  check(st == NLLM_OK, "%s: upload: %s", name, nllm_last_error());
  if (st != NLLM_OK) goto done;
  check(dw.type == (native ? type : NLLM_TYPE_F16), "%s: device type %d", name, dw.type);

  { /* get_rows: exact dequantization (a float ulp or two for FMA contraction) */
    const int32_t ids[5] = {0, (int32_t)rows - 1, 5, 5, 3};
    int32_t *did = dalloc(sizeof ids);
    float *dy = dalloc((size_t)(5 * cols) * sizeof(float));
    TRY(nllm_cuda_upload(cu, did, ids, sizeof ids));
    for (int si = 0; si < 2; si++) {
      const float scale = si ? 2.5f : 1.0f;
      TRY(nllm_cuda_get_rows(cu, dy, &dw, did, 5, scale));
      float *y = from_dev(dy, 5 * cols), *ref = malloc((size_t)(5 * cols) * sizeof(float));
      for (int t = 0; t < 5; t++)
        for (int64_t c = 0; c < cols; c++) ref[t * cols + c] = wr[ids[t] * cols + c] * scale;
      int64_t at;
      /* native: the CPU's formula in float (FMA contraction: an ulp or two); converted: one
       * F16 ulp, since the upload may use the dispatched (SIMD) dequantizer */
      double e = worst(y, ref, 5 * cols, 1e-30, native ? 2e-6 : 1e-3, &at);
      check(e <= 1, "%s: get_rows scale %g: element %lld gpu %g ref %g", name, (double)scale,
            (long long)at, (double)y[at], (double)ref[at]);
      free(y);
      free(ref);
    }
    nllm_cuda_dfree(cu, did);
    nllm_cuda_dfree(cu, dy);
  }

  static const int64_t n_toks[] = {1, 2, 3, 8, 9, 37};
  for (size_t ni = 0; ni < sizeof n_toks / sizeof n_toks[0]; ni++) {
    const int64_t n = n_toks[ni];
    const int gemm = n > NLLM_CUDA_MMV_MAX;
    float *x = malloc((size_t)(n * cols) * sizeof(float));
    fill(x, n * cols, 1.0f);
    if (n > 1)
      for (int64_t c = 0; c < cols; c++) x[1 * cols + c] = 0.0f; /* an all-zero token */
    x[0] = 300.0f;                                               /* an outlier */
    float *dx = to_dev(x, n * cols), *dy = dalloc((size_t)(n * rows) * sizeof(float));
    TRY(nllm_cuda_matmul(cu, dy, &dw, dx, n));
    float *y = from_dev(dy, n * rows);
    double worst_ratio = 0;
    int64_t worst_at = -1;
    double worst_ref = 0, worst_tol = 0;
    for (int64_t t = 0; t < n; t++) {
      for (int64_t r = 0; r < rows; r++) {
        const float *wrow = wr + r * cols, *xt = x + t * cols;
        double ref = 0, mag = 0, qbound = 0;
        for (int64_t c = 0; c < cols; c++) {
          ref += (double)wrow[c] * xt[c];
          mag += fabs((double)wrow[c] * xt[c]);
        }
        if (!gemm && dw.type != NLLM_TYPE_F16) {
          for (int64_t b = 0; b < cols / 32; b++) {
            double amax = 0, wsum = 0;
            for (int i = 0; i < 32; i++) {
              amax = fmax(amax, fabs(xt[32 * b + i]));
              wsum += fabs(wrow[32 * b + i]);
            }
            qbound += amax / 127.0 / 2.0 * wsum;
          }
        }
        const double tol =
            gemm ? 1.1e-3 * mag + 1e-5 * mag + 1e-6 : 1.05 * qbound + 1e-5 * mag + 1e-6;
        const double ratio = fabs((double)y[t * rows + r] - ref) / tol;
        if (!(ratio <= worst_ratio)) {
          worst_ratio = isnan(ratio) ? INFINITY : ratio;
          worst_at = t * rows + r;
          worst_ref = ref;
          worst_tol = tol;
        }
      }
    }
    check(worst_ratio <= 1, "%s: matmul n_tok %lld (%s): output %lld gpu %g ref %g tol %g", name,
          (long long)n, gemm ? "GEMM" : "matvec", (long long)worst_at,
          worst_at >= 0 ? (double)y[worst_at] : 0.0, worst_ref, worst_tol);
    free(x);
    free(y);
    nllm_cuda_dfree(cu, dx);
    nllm_cuda_dfree(cu, dy);
  }
  nllm_cuda_weight_free(cu, &dw);
done:
  free(w);
  free(wq);
  free(wr);
}

/* ---------------------------------------------------------------- small ops */

static void test_rmsnorm(void) {
  static const int64_t ns[] = {4096, 100, 33};
  for (size_t k = 0; k < 3; k++) {
    const int64_t n = ns[k], rows = 5;
    float *x = malloc((size_t)(n * rows) * 4), *w = malloc((size_t)n * 4),
          *ref = malloc((size_t)(n * rows) * 4);
    fill(x, n * rows, 3.0f);
    fill(w, n, 1.0f);
    for (int64_t i = 0; i < n; i++) x[2 * n + i] = 0.0f; /* zero row: eps keeps it finite */
    float *dx = to_dev(x, n * rows), *dw = to_dev(w, n);
    TRY(nllm_cuda_rmsnorm(cu, dx, dx, dw, n, rows, 1e-6f)); /* in place */
    float *y = from_dev(dx, n * rows);
    nllm_rmsnorm(ref, x, w, n, rows, 1e-6f, 1);
    int64_t at;
    double e = worst(y, ref, n * rows, 1e-6, 1e-5, &at);
    check(e <= 1, "rmsnorm n %lld: element %lld gpu %g ref %g", (long long)n, (long long)at,
          (double)y[at], (double)ref[at]);
    free(y);
    nllm_cuda_dfree(cu, dx);
    nllm_cuda_dfree(cu, dw);
    free(x);
    free(w);
    free(ref);
  }
}

static void test_rope(void) {
  static const struct {
    int64_t heads, hd, n_rot;
    int neox;
    int32_t pos0;
  } cs[] = {{4, 64, 64, 0, 0}, {4, 64, 64, 1, 7}, {3, 128, 64, 1, 100000}, {2, 96, 32, 0, 4000}};
  for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
    const int64_t n_tok = 6, stride = cs[k].heads * cs[k].hd + 8; /* padded rows */
    const int64_t half = cs[k].n_rot / 2;
    float *x = malloc((size_t)(n_tok * stride) * 4), *freq = malloc((size_t)half * 4);
    fill(x, n_tok * stride, 2.0f);
    for (int64_t i = 0; i < half; i++)
      freq[i] = powf(10000.0f, -2.0f * (float)i / (float)cs[k].n_rot);
    float *dx = to_dev(x, n_tok * stride), *df = to_dev(freq, half);
    TRY(nllm_cuda_rope(cu, dx, n_tok, stride, cs[k].heads, cs[k].hd, cs[k].n_rot, cs[k].pos0, df,
                       cs[k].neox));
    float *y = from_dev(dx, n_tok * stride);
    for (int64_t t = 0; t < n_tok; t++)
      nllm_rope(x + t * stride, cs[k].heads, cs[k].hd, cs[k].n_rot, cs[k].pos0 + (int32_t)t, freq,
                cs[k].neox);
    int64_t at;
    double e = worst(y, x, n_tok * stride, 1e-5, 1e-5, &at);
    check(e <= 1, "rope case %zu (neox %d, pos0 %d): element %lld gpu %g ref %g", k, cs[k].neox,
          cs[k].pos0, (long long)at, (double)y[at], (double)x[at]);
    free(x);
    free(freq);
    free(y);
    nllm_cuda_dfree(cu, dx);
    nllm_cuda_dfree(cu, df);
  }
}

static void test_elementwise(void) {
  const int64_t n = 3000, nb = 100, ntok = 30; /* ntok * nb = n */
  float *x = malloc(n * 4), *y = malloc(n * 4), *b = malloc(nb * 4), *ref = malloc(n * 4);
  fill(x, n, 10.0f);
  fill(y, n, 10.0f);
  fill(b, nb, 1.0f);
  int64_t at;
  double e;
  float *dx, *dy, *db, *out;

  /* bias into rows of stride 100 */
  dx = to_dev(x, n);
  db = to_dev(b, nb);
  TRY(nllm_cuda_add_bias(cu, dx, db, nb, ntok, nb));
  out = from_dev(dx, n);
  for (int64_t i = 0; i < n; i++) ref[i] = x[i] + b[i % nb];
  check(memcmp(out, ref, n * 4) == 0, "add_bias: not bitwise equal");
  free(out);
  nllm_cuda_dfree(cu, dx);
  nllm_cuda_dfree(cu, db);

  dx = to_dev(x, n);
  dy = to_dev(y, n);
  TRY(nllm_cuda_add(cu, dx, dy, n));
  out = from_dev(dx, n);
  for (int64_t i = 0; i < n; i++) ref[i] = x[i] + y[i];
  check(memcmp(out, ref, n * 4) == 0, "add: not bitwise equal");
  free(out);
  TRY(nllm_cuda_scale(cu, dx, 0.125f, n));
  out = from_dev(dx, n);
  for (int64_t i = 0; i < n; i++) ref[i] *= 0.125f;
  check(memcmp(out, ref, n * 4) == 0, "scale: not bitwise equal");
  free(out);
  TRY(nllm_cuda_softcap(cu, dx, 3.0f, n));
  out = from_dev(dx, n);
  for (int64_t i = 0; i < n; i++) ref[i] = 3.0f * tanhf(ref[i] / 3.0f);
  e = worst(out, ref, n, 1e-6, 1e-5, &at);
  check(e <= 1, "softcap: element %lld gpu %g ref %g", (long long)at, (double)out[at],
        (double)ref[at]);
  free(out);
  check(nllm_cuda_softcap(cu, dx, 0.0f, n) == NLLM_ERR_INVALID_ARG, "softcap 0 accepted");
  nllm_cuda_dfree(cu, dx);
  nllm_cuda_dfree(cu, dy);

  for (int gelu = 0; gelu < 2; gelu++) {
    /* plain: out aliases up */
    dx = to_dev(x, n);
    dy = to_dev(y, n);
    TRY(nllm_cuda_glu(cu, dy, n, dx, dy, n, n, 1, gelu));
    out = from_dev(dy, n);
    nllm_glu(ref, x, y, n, gelu, 1);
    e = worst(out, ref, n, 1e-6, 1e-5, &at);
    check(e <= 1, "glu gelu=%d: element %lld gpu %g ref %g", gelu, (long long)at, (double)out[at],
          (double)ref[at]);
    free(out);
    nllm_cuda_dfree(cu, dy);
    /* fused layout (Phi-3): row t of x holds gate then up, 50 each; out rows of 50 */
    float *dout = dalloc((size_t)(ntok * 50) * 4);
    TRY(nllm_cuda_glu(cu, dout, 50, dx, dx + 50, nb, 50, ntok, gelu));
    out = from_dev(dout, ntok * 50);
    for (int64_t t = 0; t < ntok; t++)
      nllm_glu(ref + t * 50, x + t * nb, x + t * nb + 50, 50, gelu, 1);
    e = worst(out, ref, ntok * 50, 1e-6, 1e-5, &at);
    check(e <= 1, "glu fused gelu=%d: element %lld", gelu, (long long)at);
    free(out);
    nllm_cuda_dfree(cu, dout);
    nllm_cuda_dfree(cu, dx);
  }

  /* copy_rows: split a fused qkv-like buffer */
  dx = to_dev(x, n);
  float *dst = dalloc((size_t)(ntok * 40) * 4);
  TRY(nllm_cuda_copy_rows(cu, dst, 40, dx + 60, nb, 40, ntok));
  out = from_dev(dst, ntok * 40);
  int same = 1;
  for (int64_t t = 0; t < ntok; t++) same &= memcmp(out + t * 40, x + t * nb + 60, 160) == 0;
  check(same, "copy_rows: rows differ");
  free(out);
  nllm_cuda_dfree(cu, dst);
  nllm_cuda_dfree(cu, dx);
  free(x);
  free(y);
  free(b);
  free(ref);
}

static void test_kv_store(void) {
  const int64_t row = 96, n_ctx = 20, n_tok = 5;
  const int32_t pos0 = 7;
  float *src = malloc((size_t)(n_tok * row) * 4);
  fill(src, n_tok * row, 100.0f);
  src[0] = 1e-8f;   /* F16 subnormal */
  src[1] = 70000.f; /* beyond F16: inf on both sides */
  for (int f16 = 0; f16 < 2; f16++) {
    const size_t es = f16 ? 2 : 4, bytes = (size_t)(n_ctx * row) * es;
    uint8_t *dc = dalloc(bytes), *host = malloc(bytes), *ref = malloc(bytes);
    TRY(nllm_cuda_memset(cu, dc, 0xAB, bytes));
    memset(ref, 0xAB, bytes);
    float *ds = to_dev(src, n_tok * row);
    TRY(nllm_cuda_kv_store(cu, dc, f16 ? NLLM_TYPE_F16 : NLLM_TYPE_F32, ds, n_tok, row, pos0));
    TRY(nllm_cuda_download(cu, host, dc, bytes));
    const nllm_qtype *kt = nllm_qtype_get(f16 ? NLLM_TYPE_F16 : NLLM_TYPE_F32);
    for (int64_t t = 0; t < n_tok; t++)
      kt->from_float_ref(src + t * row, ref + (size_t)((pos0 + t) * row) * es, row);
    check(memcmp(host, ref, bytes) == 0, "kv_store %s: cache differs from the CPU's conversion",
          f16 ? "F16" : "F32");
    free(host);
    free(ref);
    nllm_cuda_dfree(cu, dc);
    nllm_cuda_dfree(cu, ds);
  }
  free(src);
}

/* ---------------------------------------------------------------- attention */

typedef struct {
  int64_t n_head, n_kv, hd, n_tok, pos0;
  int32_t window;
  float softcap;
  int32_t kv_type;
} att_case;

static void test_attention_case(const att_case *c) {
  const int64_t n_ctx = c->pos0 + c->n_tok, kv_row = c->n_kv * c->hd, q_row = c->n_head * c->hd;
  const size_t es = c->kv_type == NLLM_TYPE_F16 ? 2 : 4;
  float *kf = malloc((size_t)(n_ctx * kv_row) * 4), *vf = malloc((size_t)(n_ctx * kv_row) * 4);
  float *q = malloc((size_t)(c->n_tok * q_row) * 4), *ref = malloc((size_t)(c->n_tok * q_row) * 4);
  fill(kf, n_ctx * kv_row, 1.0f);
  fill(vf, n_ctx * kv_row, 1.0f);
  fill(q, c->n_tok * q_row, 2.0f);
  for (int64_t i = 0; i < q_row; i++) q[i] *= 8.0f; /* a peaked softmax for token 0 */
  uint8_t *kc = malloc((size_t)(n_ctx * kv_row) * es), *vc = malloc((size_t)(n_ctx * kv_row) * es);
  const nllm_qtype *kt = nllm_qtype_get(c->kv_type);
  kt->from_float_ref(kf, kc, n_ctx * kv_row);
  kt->from_float_ref(vf, vc, n_ctx * kv_row);

  nllm_cuda_attn_args g = {.attn = {.n_head = c->n_head, .n_head_kv = c->n_kv, .head_dim = c->hd},
                           .kv_type = c->kv_type,
                           .n_tok = c->n_tok,
                           .pos0 = c->pos0};
  /* the tensor-core prompt kernel rounds q to F16 first: so does the reference, and what is
   * left is the F16 rounding of the softmax weights, at most 2^-11 of max|v| = 1 per output
   * (doubled for the sums' order) */
  const int mma = nllm_cuda_attention_mma(&g);
  if (mma) {
    const nllm_qtype *f16 = nllm_qtype_get(NLLM_TYPE_F16);
    uint16_t h;
    for (int64_t i = 0; i < c->n_tok * q_row; i++)
      f16->from_float_ref(&q[i], &h, 1), f16->to_float_ref(&h, &q[i], 1);
  }
  const size_t scr = nllm_attention_scratch(n_ctx, c->n_head, c->n_kv, c->hd);
  float *scratch = malloc(scr * 4);
  const float scale = 1.0f / sqrtf((float)c->hd);
  /* the same heads for both backends, each with its own buffers */
  const nllm_attn heads = {.out = ref,
                           .q = q,
                           .k = kc,
                           .v = vc,
                           .n_head = c->n_head,
                           .n_head_kv = c->n_kv,
                           .head_dim = c->hd,
                           .scale = scale,
                           .softcap = c->softcap,
                           .window = c->window};
  nllm_attn_args a = {.attn = heads,
                      .kv_type = c->kv_type,
                      .n_tok = c->n_tok,
                      .pos0 = c->pos0,
                      .scratch = scratch,
                      .scratch_per_thread = scr,
                      .n_threads = 1};
  nllm_attention(&a);

  void *dk = dalloc((size_t)(n_ctx * kv_row) * es), *dv = dalloc((size_t)(n_ctx * kv_row) * es);
  TRY(nllm_cuda_upload(cu, dk, kc, (size_t)(n_ctx * kv_row) * es));
  TRY(nllm_cuda_upload(cu, dv, vc, (size_t)(n_ctx * kv_row) * es));
  float *dq = to_dev(q, c->n_tok * q_row), *dout = dalloc((size_t)(c->n_tok * q_row) * 4);
  g.attn = heads;
  g.attn.out = dout;
  g.attn.q = dq;
  g.attn.k = dk;
  g.attn.v = dv;
  TRY(nllm_cuda_attention(cu, &g));
  float *out = from_dev(dout, c->n_tok * q_row);
  int64_t at;
  /* outputs are convex combinations of V rows (|v| <= 1): absolute error of float softmax */
  double e = worst(out, ref, c->n_tok * q_row, mma ? 1e-3 : 2e-5, 1e-4, &at);
  check(e <= 1,
        "attention%s heads %lld/%lld hd %lld n_tok %lld pos0 %lld window %d softcap %g %s: "
        "element %lld gpu %g ref %g",
        mma ? " (tensor cores)" : "", (long long)c->n_head, (long long)c->n_kv, (long long)c->hd,
        (long long)c->n_tok, (long long)c->pos0, c->window, (double)c->softcap, kt->name,
        (long long)at, (double)out[at], (double)ref[at]);
  free(out);
  nllm_cuda_dfree(cu, dk);
  nllm_cuda_dfree(cu, dv);
  nllm_cuda_dfree(cu, dq);
  nllm_cuda_dfree(cu, dout);
  free(kf);
  free(vf);
  free(q);
  free(ref);
  free(kc);
  free(vc);
  free(scratch);
}

static void test_attention(void) {
  static const att_case cases[] = {
      /* decode path (n_tok <= 4) */
      {8, 2, 64, 1, 0, 0, 0, NLLM_TYPE_F16},
      {8, 2, 64, 1, 50, 0, 0, NLLM_TYPE_F16},
      {4, 4, 128, 3, 200, 0, 0, NLLM_TYPE_F32},
      {8, 1, 256, 1, 3000, 0, 0, NLLM_TYPE_F16},   /* many splits */
      {6, 2, 96, 2, 700, 64, 0, NLLM_TYPE_F16},    /* window */
      {4, 2, 80, 4, 130, 0, 30.0f, NLLM_TYPE_F32}, /* softcap, head_dim not a multiple of 32 */
      /* prompt path (tiled) */
      {8, 2, 64, 37, 0, 0, 0, NLLM_TYPE_F16},
      {8, 2, 64, 37, 50, 0, 0, NLLM_TYPE_F32},
      {4, 4, 128, 300, 0, 0, 0, NLLM_TYPE_F16},
      {4, 1, 256, 65, 10, 0, 50.0f, NLLM_TYPE_F16},
      {6, 3, 96, 100, 20, 16, 0, NLLM_TYPE_F16}, /* window smaller than a tile */
      {2, 2, 80, 20, 0, 0, 0, NLLM_TYPE_F32},
      {2, 2, 32, 513, 0, 200, 0, NLLM_TYPE_F16},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_attention_case(&cases[i]);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
  void *p = NULL;
  nllm_status st = nllm_cuda_alloc(cu, (size_t)1 << 50, "a petabyte", &p);
  check(st == NLLM_ERR_NOMEM && p == NULL, "huge alloc: status %d", st);
  check(strstr(nllm_last_error(), "a petabyte") && strstr(nllm_last_error(), "MiB"),
        "huge alloc message lacks the name and sizes: %s", nllm_last_error());
  /* the context is still usable */
  float one = 1.0f, *d = dalloc(4), back = 0;
  TRY(nllm_cuda_upload(cu, d, &one, 4));
  TRY(nllm_cuda_scale(cu, d, 3.0f, 1));
  TRY(nllm_cuda_download(cu, &back, d, 4));
  check(back == 3.0f, "after OOM: got %g", (double)back);
  nllm_cuda_dfree(cu, d);
  nllm_cuda_weight w;
  uint8_t junk[64] = {0};
  st = nllm_cuda_weight_upload(cu, junk, NLLM_TYPE_Q4_K, 1, 100, "bad.cols", &w);
  check(st == NLLM_ERR_UNSUPPORTED && strstr(nllm_last_error(), "bad.cols"),
        "Q4_K with 100 columns: status %d, %s", st, nllm_last_error());
  nllm_cuda_attn_args a = {.n_tok = 1,
                           .attn.n_head = 4,
                           .attn.n_head_kv = 4,
                           .attn.head_dim = 512,
                           .kv_type = NLLM_TYPE_F16};
  check(nllm_cuda_attention(cu, &a) == NLLM_ERR_UNSUPPORTED, "head_dim 512 accepted");
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (nllm_cuda_device_count() == 0) {
    nllm_status st = nllm_cuda_init(0, &cu);
    printf("SKIP: no CUDA device (%s)\n", st != NLLM_OK ? nllm_last_error() : "?");
    if (cu) nllm_cuda_free(cu);
    return 0;
  }
  nllm_status st = nllm_cuda_init(0, &cu);
  if (st != NLLM_OK) {
    printf("FAIL: nllm_cuda_init: %s\n0 passed, 1 failed\n", nllm_last_error());
    return 1;
  }
  char name[256];
  int32_t cc = 0;
  size_t fr = 0, tot = 0;
  if (nllm_cuda_device_info(cu, name, sizeof name, &cc, &fr, &tot) == NLLM_OK)
    printf("device: %s (compute %d.%d), %.1f of %.1f GiB free\n", name, cc / 10, cc % 10,
           (double)fr / 1073741824.0, (double)tot / 1073741824.0);

  test_errors();
  test_rmsnorm();
  test_rope();
  test_elementwise();
  test_kv_store();
  for (size_t i = 0; i < sizeof weight_types / sizeof weight_types[0]; i++) {
    test_weight_type(weight_types[i], 67, 768);   /* fewer units than lanes, odd rows */
    test_weight_type(weight_types[i], 130, 4096); /* several units per lane */
  }
  /* F16 rows that are not a multiple of 8 wide (stories260K's ffn_down has 172 columns) */
  test_weight_type(NLLM_TYPE_F32, 67, 172);
  test_weight_type(NLLM_TYPE_F16, 67, 172);
  /* GEMM over several dequantized row tiles (64 rows each: 64 + 64 + 2) */
  nllm_cuda_set_gemm_tile_elems(64 * 4096);
  test_weight_type(NLLM_TYPE_Q4_K, 130, 4096);
  test_weight_type(NLLM_TYPE_Q8_0, 130, 4096);
  nllm_cuda_set_gemm_tile_elems(0);
  test_attention();

  nllm_cuda_free(cu);
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
