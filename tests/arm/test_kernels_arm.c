/* NEON kernels against the scalar reference, for every format of the table (plain C: Check is
 * not available for the aarch64 cross build). Last line: "N passed, N failed". */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/quant.h"
#include "moe.h"
#include "ops.h"
#include "qtypes.h"
#include "../random_blocks.h"

static int passed, failed;
#define CHECK(cond, ...)            \
  do {                              \
    if (cond) {                     \
      passed++;                     \
    } else {                        \
      failed++;                     \
      printf("FAIL: " __VA_ARGS__); \
      printf("\n");                 \
    }                               \
  } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
  return test_frand(&rng);
}

static void fill(float *x, int64_t n, int kind) {
  for (int64_t i = 0; i < n; i++) {
    float g = frand() + frand() + frand();
    x[i] = kind == 0   ? g
           : kind == 1 ? 0
           : kind == 2 ? 1e3f * frand()
                       : (i % 37 == 0 ? 50 * frand() : 0.01f * g);
  }
}

/* vec_dot4 on four rows at x (stride apart) against vec_dot_ref on each: y is the activation
 * yq dequantized, a room for a row. */
static void check_dot4(const nllm_qtype *q, int64_t n, const uint8_t *w, size_t stride,
                       const void *yq, const float *y, float *a, const char *what, int kind) {
  float s4[4];
  q->vec_dot4(n, s4, w, stride, yq);
  for (int r = 0; r < 4; r++) {
    float s_ref = NAN;
    q->vec_dot_ref(n, &s_ref, w + (size_t)r * stride, yq);
    q->to_float_ref(w + (size_t)r * stride, a, n);
    double sumabs = 0;
    for (int64_t i = 0; i < n; i++) sumabs += fabs((double)a[i] * y[i]);
    CHECK(fabs((double)s_ref - s4[r]) <= (double)(n + 4) * FLT_EPSILON * sumabs + 1e-30,
          "%s vec_dot4 %s n %lld kind %d row %d: ref %.9g neon %.9g", q->name, what, (long long)n,
          kind, r, s_ref, s4[r]);
  }
}

/* The load-only low-bit formats (no quantizer): random blocks with a small block scale (MXFP4:
 * every E8M0 scale but NaN's, rep picking where the sequence starts). */
static const int32_t lowbit_types[] = {
    NLLM_TYPE_IQ2_XXS, NLLM_TYPE_IQ2_XS, NLLM_TYPE_IQ2_S, NLLM_TYPE_IQ3_XXS, NLLM_TYPE_IQ3_S,
    NLLM_TYPE_IQ1_S,   NLLM_TYPE_IQ1_M,  NLLM_TYPE_TQ1_0, NLLM_TYPE_TQ2_0,   NLLM_TYPE_MXFP4};
static void lowbit_random(const nllm_qtype *q, uint8_t *w, int64_t nb, int rep) {
  for (size_t i = 0; i < (size_t)nb * (size_t)q->type_size; i++) w[i] = (uint8_t)test_xorshift(&rng);
  for (int64_t b = 0; b < nb; b++) {
    uint8_t *blk = w + (size_t)b * (size_t)q->type_size;
    uint16_t h = (uint16_t)(0x1c00 + test_xorshift(&rng) % 0x800); /* 2^-8 .. 2^-6 */
    if (q->type == NLLM_TYPE_MXFP4) {
      blk[0] = (uint8_t)((rep * 7 + b) % 255);
    } else if (q->type == NLLM_TYPE_IQ1_M) {
      for (int k = 0; k < 4; k++) {
        uint8_t *hi = blk + q->type_size - 8 + 2 * k + 1;
        *hi = (uint8_t)((*hi & 0x0f) | ((h >> (4 * k)) & 15) << 4);
      }
    } else if (q->type == NLLM_TYPE_TQ1_0 || q->type == NLLM_TYPE_TQ2_0) {
      memcpy(blk + q->type_size - 2, &h, 2); /* the ternary formats store d last */
    } else {
      memcpy(blk, &h, 2);
    }
  }
}

/* Random blocks of the low-bit formats against random activations of the type each dots
 * with (-128 included); the NEON rows sum the same integers and round the same floats as the
 * reference, so the results must be identical. */
static void check_lowbit_formats(void) {
  const int64_t n = 8 * QK_K;
  for (size_t ti = 0; ti < sizeof lowbit_types / sizeof lowbit_types[0]; ti++) {
    const nllm_qtype *q = nllm_qtype_get(lowbit_types[ti]);
    CHECK(q != NULL && q->vec_dot != q->vec_dot_ref, "type %d: no NEON row", lowbit_types[ti]);
    if (!q) continue;
    const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
    size_t ws = nllm_row_size(q->type, n), ys = nllm_row_size(vq->type, n);
    uint8_t *w = malloc(ws), *yq = malloc(ys);
    for (int rep = 0; rep < 50; rep++) {
      lowbit_random(q, w, n / q->block_size, rep);
      CHECK(random_blocks(&rng, vq->type, yq, n / vq->block_size, (size_t)vq->type_size, 1),
            "%s blocks", vq->name);
      float s_ref = NAN, s_neon = NAN;
      q->vec_dot_ref(n, &s_ref, w, yq);
      q->vec_dot(n, &s_neon, w, yq);
      CHECK(!memcmp(&s_ref, &s_neon, sizeof s_ref), "%s vec_dot rep %d: ref %.9g neon %.9g",
            q->name, rep, s_ref, s_neon);
      /* block by block, so a wrong element order cannot hide in a row's sum */
      for (int64_t b = 0; b < n / q->block_size; b++) {
        const uint8_t *wb = w + (size_t)b * (size_t)q->type_size;
        const uint8_t *yb =
            yq + (size_t)(b * q->block_size / vq->block_size) * (size_t)vq->type_size;
        q->vec_dot_ref(q->block_size, &s_ref, wb, yb);
        q->vec_dot(q->block_size, &s_neon, wb, yb);
        CHECK(!memcmp(&s_ref, &s_neon, sizeof s_ref), "%s vec_dot rep %d block %lld: %.9g vs %.9g",
              q->name, rep, (long long)b, s_ref, s_neon);
      }
    }
    free(w);
    free(yq);
  }
}

static int same_float(float x, float y) {
  return (isnan(x) && isnan(y)) || memcmp(&x, &y, sizeof x) == 0;
}

/* Activations of -128, 127, -127, -1, 0, 1 (Q8_K: with consistent bsums). */
static void q8_extremes(int32_t type, void *a, int64_t nb, int pass) {
  const int bs = type == NLLM_TYPE_Q8_0 ? QK : QK_K;
  for (int64_t b = 0; b < nb; b++) {
    int8_t *qs = type == NLLM_TYPE_Q8_0 ? ((block_q8_0 *)a)[b].qs : ((block_q8_K *)a)[b].qs;
    for (int i = 0; i < bs; i++) {
      unsigned r = (unsigned)(i * 7 + b * 13 + pass) % 6;
      qs[i] = (int8_t)(r == 0 ? -128 : r == 1 ? 127 : r == 2 ? -127 : (int)r - 4);
    }
    if (type == NLLM_TYPE_Q8_K)
      for (int j = 0; j < QK_K / 16; j++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += qs[16 * j + i];
        ((block_q8_K *)a)[b].bsums[j] = (int16_t)sum;
      }
  }
}

/* The low-bit formats' four-row and batch kernels (vec_dot4, vec_dot4x4, vec_dot4xt) against
 * vec_dot_ref on each row and token, bit for bit, as tests/test_kernels.c holds the x86 tiers'
 * (lowbit_check_dot4): rows and tokens are quarters of w and a, dotted over 1, 3, NB / 4 - 3 and
 * NB / 4 blocks; results written with a stride wider than four, the gaps left alone; random
 * activations, then extreme ones. Then batches through nllm_matmul (rows that leave a partial
 * four; 2, 3, 5 and 7 tokens: the two- and three-token kernels alone and after a four-by-four
 * step; two threads) against the scalar tier, bit for bit. */
static void check_lowbit_batch(void) {
  enum { NB = 32, SS = 7 };
  for (size_t ti = 0; ti < sizeof lowbit_types / sizeof lowbit_types[0]; ti++) {
    const nllm_qtype *q = nllm_qtype_get(lowbit_types[ti]);
    if (!q) continue;
    CHECK(q->vec_dot4 && q->vec_dot4x4 && q->vec_dot4xt, "%s: no NEON batch kernels", q->name);
    if (!q->vec_dot4 || !q->vec_dot4x4 || !q->vec_dot4xt) continue;
    const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
    const int64_t n_all = NB * (int64_t)q->block_size;
    uint8_t *w = malloc(nllm_row_size(q->type, n_all)), *a = malloc(nllm_row_size(vq->type, n_all));
    const size_t xs = (size_t)(NB / 4) * (size_t)q->type_size;
    const size_t ys = nllm_row_size(vq->type, NB / 4 * q->block_size);
    for (int pass = 0; pass < 3; pass++) {
      lowbit_random(q, w, NB, 11 * pass);
      random_blocks(&rng, vq->type, a, n_all / vq->block_size, (size_t)vq->type_size, 1);
      if (pass == 2) q8_extremes(vq->type, a, n_all / vq->block_size, pass);
      const int64_t counts[] = {1, 3, NB / 4 - 3, NB / 4};
      for (int ci = 0; ci < 4; ci++) {
        const int64_t n = counts[ci] * q->block_size;
        float want[4][4], got4[4], got[4 * SS];
        for (int t = 0; t < 4; t++)
          for (int r = 0; r < 4; r++) q->vec_dot_ref(n, &want[t][r], w + r * xs, a + t * ys);
        int ok = 1;
        for (int t = 0; t < 4; t++) {
          q->vec_dot4(n, got4, w, xs, a + t * ys);
          for (int r = 0; r < 4; r++) ok &= same_float(got4[r], want[t][r]);
        }
        CHECK(ok, "%s vec_dot4 pass %d n %lld", q->name, pass, (long long)n);
        for (int i = 0; i < 4 * SS; i++) got[i] = -0.0f;
        q->vec_dot4x4(n, got, SS, w, xs, a, ys);
        ok = 1;
        for (int t = 0; t < 4; t++)
          for (int i = 0; i < SS; i++)
            ok &= i < 4 ? same_float(got[t * SS + i], want[t][i])
                        : same_float(got[t * SS + i], -0.0f);
        CHECK(ok, "%s vec_dot4x4 pass %d n %lld", q->name, pass, (long long)n);
        for (int nt = 2; nt <= 3; nt++) {
          for (int i = 0; i < 4 * SS; i++) got[i] = -0.0f;
          q->vec_dot4xt(n, got, SS, w, xs, a, ys, nt);
          ok = 1;
          for (int t = 0; t < 4; t++)
            for (int i = 0; i < SS; i++)
              ok &= i < 4 && t < nt ? same_float(got[t * SS + i], want[t][i])
                                    : same_float(got[t * SS + i], -0.0f);
          CHECK(ok, "%s vec_dot4xt (%d tokens) pass %d n %lld", q->name, nt, pass, (long long)n);
        }
      }
    }
    free(w);
    free(a);
    /* nllm_matmul: 7 rows of 8 blocks' columns (MXFP4: 32 blocks) */
    enum { ROWS = 7, TMAX = 7 };
    const int64_t cols = 8 * QK_K;
    const size_t rs = nllm_row_size(q->type, cols);
    uint8_t *W = malloc(rs * ROWS);
    lowbit_random(q, W, ROWS * cols / q->block_size, 5);
    if (q->type == NLLM_TYPE_MXFP4) /* moderate scales 2^-8 .. 2^7, so that no sum is inf */
      for (int64_t b = 0; b < ROWS * cols / QK; b++) W[(size_t)b * q->type_size] = (uint8_t)(120 + b % 16);
    float *x = malloc(sizeof(float) * (size_t)(cols * TMAX)), *y1 = malloc(sizeof(float) * ROWS * TMAX),
          *y2 = malloc(sizeof(float) * ROWS * TMAX);
    fill(x, cols * TMAX, 0);
    void *wd = malloc(nllm_matmul_wsize(q->type, cols, TMAX, 2));
    static const int64_t toks[] = {2, 3, 5, 7};
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
      nllm_matmul(y1, W, q->type, ROWS, cols, x, toks[k], wd, 2);
      nllm_qtypes_force_scalar(1);
      nllm_matmul(y2, W, q->type, ROWS, cols, x, toks[k], wd, 1);
      nllm_qtypes_force_scalar(0);
      int ok = 1;
      for (int64_t i = 0; i < ROWS * toks[k]; i++) ok &= same_float(y1[i], y2[i]);
      CHECK(ok, "%s matmul %lld tokens: neon vs scalar", q->name, (long long)toks[k]);
    }
    free(W);
    free(x);
    free(y1);
    free(y2);
    free(wd);
  }
}

/* A stacked expert tensor of n_expert rows x cols matrices, random values quantized to type. */
static void *experts(int32_t type, int64_t n_expert, int64_t rows, int64_t cols, float scale) {
  const nllm_qtype *q = nllm_qtype_get(type);
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *w = malloc(rs * (size_t)(rows * n_expert));
  float *row = malloc(sizeof(float) * (size_t)cols);
  for (int64_t r = 0; r < rows * n_expert; r++) {
    for (int64_t c = 0; c < cols; c++) row[c] = scale * frand();
    q->from_float_ref(row, w + (size_t)r * rs, cols);
  }
  free(row);
  return w;
}

/* The expert kernel (kernels/cpu/moe.c: routing, grouping by expert, the four-row and
 * multi-token NEON dots on gathered rows, the shared expert) against its plain reference, for
 * decode and prompt batches; the experts no token chose hold NaN and must never be read. */
static void check_moe(void) {
  static const int32_t types[] = {NLLM_TYPE_F16, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_0, NLLM_TYPE_Q4_K,
                                  NLLM_TYPE_Q6_K};
  static const int64_t toks[] = {1, 5, 24};
  const int64_t d = 256, ff = 256, fsh = 512;
  const int32_t ne = 8, k = 2;
  for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
    for (size_t ni = 0; ni < sizeof toks / sizeof toks[0]; ni++)
      for (int shared = 0; shared < 2; shared++) {
        const int32_t type = types[ti];
        const int64_t n = toks[ni];
        void *g = experts(type, ne, ff, d, 1.0f / 16), *u = experts(type, ne, ff, d, 1.0f / 16);
        void *dn = experts(type, ne, d, ff, 1.0f / 16);
        void *sg = experts(type, 1, fsh, d, 1.0f / 16), *su = experts(type, 1, fsh, d, 1.0f / 16);
        void *sd = experts(type, 1, d, fsh, 1.0f / 22);
        float *x = malloc(sizeof(float) * (size_t)(n * d)), *gin = malloc(sizeof(float) * d);
        float *lg = malloc(sizeof(float) * (size_t)(n * ne));
        float *out = malloc(sizeof(float) * (size_t)(n * d)),
              *ref = malloc(sizeof(float) * (size_t)(n * d));
        for (int64_t i = 0; i < n * d; i++) x[i] = frand();
        for (int64_t i = 0; i < d; i++) gin[i] = 0.2f * frand();
        /* experts 3 and 6 are never chosen: NaN weights */
        for (int64_t i = 0; i < n * ne; i++)
          lg[i] = (i % ne == 3 || i % ne == 6) ? -60 : 2 * frand();
        const size_t per_gu = nllm_row_size(type, d) * (size_t)ff,
                     per_d = nllm_row_size(type, ff) * (size_t)d;
        if (type == NLLM_TYPE_F16 || type == NLLM_TYPE_Q8_0) { /* NaN is representable */
          for (int e = 3; e <= 6; e += 3) {
            float nan_row[256];
            for (int i = 0; i < 256; i++) nan_row[i] = NAN;
            const nllm_qtype *q = nllm_qtype_get(type);
            for (int64_t r = 0; r < ff; r++) {
              q->from_float_ref(nan_row,
                                (uint8_t *)g + e * per_gu + (size_t)r * nllm_row_size(type, d), d);
              q->from_float_ref(nan_row,
                                (uint8_t *)u + e * per_gu + (size_t)r * nllm_row_size(type, d), d);
            }
            for (int64_t r = 0; r < d; r++)
              q->from_float_ref(
                  nan_row, (uint8_t *)dn + e * per_d + (size_t)r * nllm_row_size(type, ff), ff);
          }
        }
        nllm_moe_args a = {.out = out,
                           .x = x,
                           .logits = lg,
                           .n_tok = n,
                           .d = d,
                           .ff = ff,
                           .n_expert = ne,
                           .n_used = k,
                           .norm = 1,
                           .gate = {g, type, ff, d},
                           .up = {u, type, ff, d},
                           .down = {dn, type, d, ff},
                           .n_threads = 3};
        if (shared) {
          a.sh_gate = (nllm_moe_mat){sg, type, fsh, d};
          a.sh_up = (nllm_moe_mat){su, type, fsh, d};
          a.sh_down = (nllm_moe_mat){sd, type, d, fsh};
          a.sh_gate_inp = gin;
          a.norm = 0;
        }
        void *scratch = malloc(nllm_moe_scratch_size(&a)),
             *rscratch = malloc(nllm_moe_ref_scratch_size(&a));
        a.scratch = scratch;
        nllm_moe_ffn(&a);
        nllm_moe_args r = a;
        r.out = ref;
        r.scratch = rscratch;
        nllm_moe_ffn_ref(&r);
        double worst = 0;
        int finite = 1;
        for (int64_t t = 0; t < n; t++) {
          double num = 0, den = 0;
          for (int64_t i = 0; i < d; i++) {
            finite &= isfinite(out[t * d + i]);
            double e = (double)out[t * d + i] - ref[t * d + i];
            num += e * e, den += (double)ref[t * d + i] * ref[t * d + i];
          }
          double rel = sqrt(num / (den > 0 ? den : 1));
          if (rel > worst) worst = rel;
        }
        /* F16 rows dot in float; the integer types round the activations to 8 bits (~1%) */
        const double tol = type == NLLM_TYPE_F16 ? 4e-3 : 4e-2;
        CHECK(finite && worst < tol, "moe %s n_tok %lld shared %d: rel RMS %g vs the reference%s",
              nllm_qtype_get(type)->name, (long long)n, shared, worst,
              finite ? "" : " (not finite)");
        free(g), free(u), free(dn), free(sg), free(su), free(sd), free(x), free(gin), free(lg);
        free(out), free(ref), free(scratch), free(rscratch);
      }
}

/* LoRA's low-rank kernels (lowrank_neon.c) against lowrank.c's reference: F32/F16/BF16 weights,
 * 1..4 rows and tokens, lengths off the 4- and 16-wide tiles. */
static void check_lowrank(void) {
  const nllm_cpu_ops *ops = nllm_cpu_ops_get();
  CHECK(ops->lowrank_dot && ops->lowrank_axpy, "no NEON lowrank kernels");
  if (!ops->lowrank_dot || !ops->lowrank_axpy) return;
  static const int64_t lens[] = {1, 5, 16, 37, 70, 515};
  enum { MAXN = 515, R = 7 };
  static float wf[R * MAXN], x[4 * MAXN], y[4 * MAXN], yref[4 * MAXN], c[4 * R];
  static uint16_t wh[R * MAXN];
  static const int32_t types[] = {NLLM_TYPE_F32, NLLM_TYPE_F16, NLLM_TYPE_BF16};
  for (int ti = 0; ti < 3; ti++)
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
      for (int kind = 0; kind < 4; kind++) {
        const int64_t n = lens[li];
        const int32_t type = types[ti];
        fill(wf, R * n, kind);
        for (int64_t i = 0; i < R * n && type != NLLM_TYPE_F32; i++)
          wf[i] = type == NLLM_TYPE_F16 ? q_h2f(wh[i] = q_f2h(wf[i]))
                                        : q_bf2f(wh[i] = nllm_fp32_to_bf16(wf[i]));
        const void *w = type != NLLM_TYPE_F32 ? (const void *)wh : (const void *)wf;
        fill(x, 4 * n, kind == 1 ? 0 : 3);
        fill(c, 4 * R, 0);
        for (int rows = 1; rows <= 4; rows++)
          for (int nt = 1; nt <= 4; nt++) {
            float s[16], sr[16];
            ops->lowrank_dot(type, n, s, 4, w, n, rows, x, n, nt, 0.5f);
            nllm_lowrank_dot_ref(type, n, sr, 4, w, n, rows, x, n, nt, 0.5f);
            for (int t = 0; t < nt; t++)
              for (int j = 0; j < rows; j++) {
                double sumabs = 0;
                for (int64_t i = 0; i < n; i++)
                  sumabs += fabs((double)wf[j * n + i] * x[t * n + i]);
                CHECK(fabs((double)s[t * 4 + j] - sr[t * 4 + j]) <=
                          (double)(n + 4) * FLT_EPSILON * sumabs + 1e-30,
                      "lowrank_dot type %d n %lld kind %d rows %d tok %d: %.9g vs %.9g", type,
                      (long long)n, kind, rows, nt, s[t * 4 + j], sr[t * 4 + j]);
              }
            fill(y, 4 * n, 0);
            memcpy(yref, y, (size_t)(4 * n) * sizeof(float));
            ops->lowrank_axpy(type, n, y, n, w, n, R, c, R, nt);
            nllm_lowrank_axpy_ref(type, n, yref, n, w, n, R, c, R, nt);
            for (int64_t i = 0; i < nt * n; i++) {
              const int64_t t = i / n, o = i % n;
              double sumabs = fabs((double)yref[i]);
              for (int j = 0; j < R; j++) sumabs += fabs((double)c[t * R + j] * wf[j * n + o]);
              CHECK(fabs((double)y[i] - yref[i]) <= (R + 4) * FLT_EPSILON * sumabs + 1e-30,
                    "lowrank_axpy type %d n %lld kind %d tok %d: [%lld] %.9g vs %.9g", type,
                    (long long)n, kind, nt, (long long)i, y[i], yref[i]);
            }
          }
      }
}

int main(void) {
  printf("cpu: %s\n", nllm_cpu_features());
  check_lowbit_formats();
  check_lowbit_batch();
  check_moe();
  check_lowrank();
  static const int32_t types[] = {NLLM_TYPE_F32,   NLLM_TYPE_F16,  NLLM_TYPE_BF16, NLLM_TYPE_Q8_0,
                                  NLLM_TYPE_Q4_0,  NLLM_TYPE_Q4_1, NLLM_TYPE_Q5_0, NLLM_TYPE_Q5_1,
                                  NLLM_TYPE_Q8_1,  NLLM_TYPE_Q2_K, NLLM_TYPE_Q3_K, NLLM_TYPE_Q4_K,
                                  NLLM_TYPE_Q5_K,  NLLM_TYPE_Q6_K, NLLM_TYPE_Q8_K, NLLM_TYPE_IQ4_NL,
                                  NLLM_TYPE_IQ4_XS};
  static const int64_t lens[] = {256, 768, 4096};
  for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
    const nllm_qtype *q = nllm_qtype_get(types[ti]);
    CHECK(q != NULL, "type %d missing", types[ti]);
    if (!q) continue;
    const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
      int64_t n = lens[li];
      float *x = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n), *a = malloc(4 * (size_t)n),
            *b = malloc(4 * (size_t)n);
      size_t ws = nllm_row_size(q->type, n), ys = nllm_row_size(vq->type, n);
      uint8_t *w = malloc(ws), *w2 = malloc(ws), *yq = malloc(ys), *yq2 = malloc(ys);
      for (int kind = 0; kind < 4; kind++) {
        fill(x, n, kind);
        fill(y, n, kind == 1 ? 0 : kind);
        q->from_float_ref(x, w, n);
        q->from_float(x, w2, n);
        CHECK(!memcmp(w, w2, ws), "%s from_float n %lld kind %d", q->name, (long long)n, kind);
        q->to_float_ref(w, a, n);
        q->to_float(w, b, n);
        double amax = 0, maxd = 0;
        for (int64_t i = 0; i < n; i++) {
          amax = fmax(amax, fabs(a[i]));
          maxd = fmax(maxd, fabs((double)a[i] - b[i]));
        }
        /* same products of scale and level; only the association of scales may differ */
        CHECK(maxd <= 2 * FLT_EPSILON * amax, "%s to_float n %lld kind %d: diff %g", q->name,
              (long long)n, kind, maxd);
        vq->from_float_ref(y, yq, n);
        vq->from_float(y, yq2, n);
        CHECK(!memcmp(yq, yq2, ys), "%s activation quantize n %lld kind %d", vq->name, (long long)n,
              kind);
        vq->to_float_ref(yq, b, n);
        double sumabs = 0;
        for (int64_t i = 0; i < n; i++) sumabs += fabs((double)a[i] * b[i]);
        float s_ref = NAN, s_neon = NAN;
        q->vec_dot_ref(n, &s_ref, w, yq);
        q->vec_dot(n, &s_neon, w, yq);
        /* integer block sums are exact in both; float summation order differs: bound
         * (n + 4) eps sum|terms| */
        CHECK(fabs((double)s_ref - s_neon) <= (double)(n + 4) * FLT_EPSILON * sumabs + 1e-30,
              "%s vec_dot n %lld kind %d: ref %.9g neon %.9g", q->name, (long long)n, kind, s_ref,
              s_neon);
      }
      free(x);
      free(y);
      free(a);
      free(b);
      free(w);
      free(w2);
      free(yq);
      free(yq2);
    }
    /* four-row dot: four different rows (every pair of data kinds), odd block counts, rows
     * further apart than their size */
    static const int64_t lens4_32[] = {32, 96, 160, 1056}, lens4_256[] = {256, 768, 1280};
    const int big = q->block_size == QK_K || vq->block_size == QK_K;
    const int64_t *lens4 = big ? lens4_256 : lens4_32;
    const size_t nl4 =
        big ? sizeof lens4_256 / sizeof lens4_256[0] : sizeof lens4_32 / sizeof lens4_32[0];
    for (size_t li = 0; q->vec_dot4 && li < nl4; li++) {
      int64_t n = lens4[li];
      size_t ws = nllm_row_size(q->type, n), stride = ws + (size_t)q->type_size;
      float *x = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n), *a = malloc(4 * (size_t)n);
      uint8_t *w = malloc(4 * stride), *yq = malloc(nllm_row_size(vq->type, n));
      memset(w, 0xff, 4 * stride); /* the gaps between rows are never read */
      /* activations with -128 too: the NEON dots widen every product, no sign trick */
      if (random_blocks(&rng, q->type, w, 4 * (int64_t)stride / q->type_size, (size_t)q->type_size,
                        1) &&
          random_blocks(&rng, vq->type, yq, n / vq->block_size, (size_t)vq->type_size, 1)) {
        vq->to_float_ref(yq, y, n);
        check_dot4(q, n, w, stride, yq, y, a, "random bits", 4);
      }
      memset(w, 0xff, 4 * stride);
      for (int kind = 0; kind < 4; kind++) {
        fill(y, n, kind == 1 ? 0 : kind);
        vq->from_float_ref(y, yq, n);
        vq->to_float_ref(yq, y, n);
        for (int r = 0; r < 4; r++) {
          fill(x, n, (kind + r) % 4);
          q->from_float_ref(x, w + (size_t)r * stride, n);
        }
        check_dot4(q, n, w, stride, yq, y, a, "quantized", kind);
      }
      free(x);
      free(y);
      free(a);
      free(w);
      free(yq);
    }
    /* the one-row dot on random bits too */
    {
      const int64_t n = 768;
      uint8_t *w = malloc(nllm_row_size(q->type, n)), *yq = malloc(nllm_row_size(vq->type, n));
      float *a = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n);
      if (random_blocks(&rng, q->type, w, n / q->block_size, (size_t)q->type_size, 1) &&
          random_blocks(&rng, vq->type, yq, n / vq->block_size, (size_t)vq->type_size, 1)) {
        float s_ref = NAN, s_neon = NAN;
        q->vec_dot_ref(n, &s_ref, w, yq);
        q->vec_dot(n, &s_neon, w, yq);
        q->to_float_ref(w, a, n);
        vq->to_float_ref(yq, y, n);
        double sumabs = 0;
        for (int64_t i = 0; i < n; i++) sumabs += fabs((double)a[i] * y[i]);
        CHECK(fabs((double)s_ref - s_neon) <= (double)(n + 4) * FLT_EPSILON * sumabs + 1e-30,
              "%s vec_dot random bits: ref %.9g neon %.9g", q->name, s_ref, s_neon);
      }
      free(w);
      free(yq);
      free(a);
      free(y);
    }
    /* matmul (several tokens, 2 threads) against the scalar path */
    int64_t rows = 37, cols = 512, nt = 5;
    size_t rs = nllm_row_size(q->type, cols);
    uint8_t *W = malloc(rs * (size_t)rows);
    float *xf = malloc(4 * (size_t)(cols * nt)), *y1 = malloc(4 * (size_t)(rows * nt)),
          *y2 = malloc(4 * (size_t)(rows * nt));
    for (int64_t r = 0; r < rows; r++) {
      fill(xf, cols, 0);
      q->from_float_ref(xf, W + (size_t)r * rs, cols);
    }
    fill(xf, cols * nt, 0);
    void *wd = malloc(nllm_matmul_wsize(q->type, cols, nt, 2));
    nllm_matmul(y1, W, q->type, rows, cols, xf, nt, wd, 2);
    nllm_qtypes_force_scalar(1);
    nllm_matmul(y2, W, q->type, rows, cols, xf, nt, wd, 1);
    nllm_qtypes_force_scalar(0);
    double md = 0, mx = 0;
    for (int64_t i = 0; i < rows * nt; i++) {
      md = fmax(md, fabs((double)y1[i] - y2[i]));
      mx = fmax(mx, fabs((double)y2[i]));
    }
    CHECK(md <= 1e-4 * (mx + 1), "%s matmul neon vs scalar: max diff %g (max %g)", q->name, md, mx);
    free(W);
    free(xf);
    free(y1);
    free(y2);
    free(wd);
  }
  float v1[100], v2[100];
  fill(v1, 100, 0);
  fill(v2, 100, 0);
  double ex = 0, sa = 0;
  for (int i = 0; i < 100; i++) {
    ex += (double)v1[i] * v2[i];
    sa += fabs((double)v1[i] * v2[i]);
  }
  CHECK(fabs(nllm_dot_f32(v1, v2, 100) - ex) <= 104 * FLT_EPSILON * sa, "dot_f32");
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
