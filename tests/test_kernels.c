/* Weight formats and CPU kernels: golden dequantization of real GGUF files, every ISA kernel
 * against the scalar reference, matmul and ops against naive double-precision references. */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cpu/gemm_float.h"
#include "cpu/lowbit_grids.h"
#include "cpu/quant.h"
#include "ops.h"
#include "pool.h"
#include "qtypes.h"
#include "random_blocks.h"
#include "testutil.h"

/* Every format the table must carry (milestone order). */
static const int32_t all_types[] = {
    NLLM_TYPE_F32,    NLLM_TYPE_F16,   NLLM_TYPE_BF16, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_0,
    NLLM_TYPE_Q4_1,   NLLM_TYPE_Q5_0,  NLLM_TYPE_Q5_1, NLLM_TYPE_Q8_1, NLLM_TYPE_Q2_K,
    NLLM_TYPE_Q3_K,   NLLM_TYPE_Q4_K,  NLLM_TYPE_Q5_K, NLLM_TYPE_Q6_K, NLLM_TYPE_Q8_K,
    NLLM_TYPE_IQ4_NL, NLLM_TYPE_IQ4_XS};
#define N_ALL ((int)(sizeof all_types / sizeof all_types[0]))

/* Deterministic data: xorshift, so a failure reproduces. */
static uint64_t rng_state = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
  return test_frand(&rng_state);
}
static float fgauss(void) { /* roughly normal, like trained weights */
  return (frand() + frand() + frand() + frand()) * 0.8660254f;
}

/* ------------------------------------------------------------------ tiny GGUF offset reader */
/* Only what the test needs: walk the header and find a tensor's type, shape and data. The real
 * reader lives in src/formats; this one keeps the kernel test independent of it. */
typedef struct gg {
  const uint8_t *p, *end;
  int bad;
} gg;
static uint64_t gg_u(gg *g, int bytes) {
  uint64_t v = 0;
  if (g->end - g->p < bytes) {
    g->bad = 1;
    return 0;
  }
  for (int i = 0; i < bytes; i++) v |= (uint64_t)g->p[i] << (8 * i);
  g->p += bytes;
  return v;
}
static void gg_skip_value(gg *g, uint32_t t) {
  static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  if (t == 8) {
    uint64_t n = gg_u(g, 8);
    if ((uint64_t)(g->end - g->p) < n)
      g->bad = 1;
    else
      g->p += n;
  } else if (t == 9) {
    uint32_t et = (uint32_t)gg_u(g, 4);
    uint64_t n = gg_u(g, 8);
    for (uint64_t i = 0; i < n && !g->bad; i++) gg_skip_value(g, et);
  } else if (t < 13) {
    gg_u(g, sz[t]);
  } else {
    g->bad = 1;
  }
}
typedef struct gg_tensor {
  int32_t type;
  int64_t cols, rows;
  const uint8_t *data;
} gg_tensor;
/* Returns 1 and fills *out if the tensor exists. */
static int gg_find(const uint8_t *file, size_t size, const char *name, gg_tensor *out) {
  gg g = {file, file + size, 0};
  if (gg_u(&g, 4) != 0x46554747u) return 0; /* "GGUF" */
  gg_u(&g, 4);
  uint64_t n_t = gg_u(&g, 8), n_kv = gg_u(&g, 8);
  uint64_t align = 32;
  for (uint64_t i = 0; i < n_kv && !g.bad; i++) {
    uint64_t kl = gg_u(&g, 8);
    const char *key = (const char *)g.p;
    if ((uint64_t)(g.end - g.p) < kl) return 0;
    g.p += kl;
    uint32_t t = (uint32_t)gg_u(&g, 4);
    if (kl == 17 && !memcmp(key, "general.alignment", 17) && t == 4)
      align = gg_u(&g, 4);
    else
      gg_skip_value(&g, t);
  }
  int found = 0;
  uint64_t off = 0;
  for (uint64_t i = 0; i < n_t && !g.bad; i++) {
    uint64_t nl = gg_u(&g, 8);
    const char *nm = (const char *)g.p;
    if ((uint64_t)(g.end - g.p) < nl) return 0;
    g.p += nl;
    uint32_t nd = (uint32_t)gg_u(&g, 4);
    int64_t ne[4] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < nd && d < 4; d++) ne[d] = (int64_t)gg_u(&g, 8);
    int32_t type = (int32_t)gg_u(&g, 4);
    uint64_t o = gg_u(&g, 8);
    if (nl == strlen(name) && !memcmp(nm, name, nl)) {
      found = 1;
      out->type = type;
      out->cols = ne[0];
      out->rows = ne[1];
      off = o;
    }
  }
  if (!found || g.bad) return 0;
  uint64_t start = ((uint64_t)(g.p - file) + align - 1) / align * align;
  if (start + off > size) return 0;
  out->data = file + start + off;
  return 1;
}

static const char *golden_files[] = {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K",
                                     "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
                                     /* load-only: dequantization only, no quantizer */
                                     "TQ1_0", "TQ2_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS",
                                     "IQ3_S", "IQ1_S", "IQ1_M"};
#define N_GOLDEN ((int)(sizeof golden_files / sizeof golden_files[0]))
#define N_GOLDEN_QUANTIZED (N_GOLDEN - 9)

/* Dequantizing rows 0..7 of each listed tensor must give the reference reader's floats. Both
 * compute scale * level in float, so the only slack allowed is the 9-digit printing (exact
 * after strtof) and a possible different association of two scale factors: 2 ulp. */
static void check_golden(const char *tag, int *n_rows_checked) {
  char tpath[512], mpath[512], rel[256];
  snprintf(rel, sizeof rel, "golden/tensors/tiny-a-%s.tensors.txt", tag);
  if (!testdata_path(tpath, sizeof tpath, rel)) return;
  /* the low-bit files sit apart, in models/lowbit/ */
  snprintf(rel, sizeof rel, "golden/models/lowbit/tiny-a-%s.gguf", tag);
  char lowbit[512];
  snprintf(lowbit, sizeof lowbit, "%s/%s", testdata_dir(), rel);
  if (access(lowbit, R_OK) != 0) snprintf(rel, sizeof rel, "golden/models/tiny-a-%s.gguf", tag);
  if (!testdata_path(mpath, sizeof mpath, rel)) return;
  size_t tlen = 0, mlen = 0;
  char *txt = read_file(tpath, &tlen);
  uint8_t *model = (uint8_t *)read_file(mpath, &mlen);
  ck_assert_ptr_nonnull(txt);
  ck_assert_ptr_nonnull(model);
  char *line = txt;
  while (line && *line) {
    char *next = strchr(line, '\n');
    if (next) *next++ = 0;
    char name[128], tname[32];
    int rows, cols;
    if (sscanf(line, "tensor %127s type %31s rows %d cols %d", name, tname, &rows, &cols) == 4) {
      gg_tensor t = {0, 0, 0, NULL};
      ck_assert_msg(gg_find(model, mlen, name, &t), "%s: tensor %s not in gguf", tag, name);
      ck_assert_int_eq(t.cols, cols);
      const nllm_qtype *q = nllm_qtype_get(t.type);
      ck_assert_msg(q != NULL, "%s: %s has type %s (%d) the table lacks", tag, name, tname, t.type);
      ck_assert_str_eq(q->name, tname);
      float *ref = malloc(sizeof(float) * (size_t)cols), *a = malloc(sizeof(float) * (size_t)cols),
            *b = malloc(sizeof(float) * (size_t)cols);
      for (int r = 0; r < rows; r++) {
        char *s = next;
        ck_assert_ptr_nonnull(s);
        next = strchr(s, '\n');
        if (next) *next++ = 0;
        for (int i = 0; i < cols; i++) ref[i] = strtof(s, &s);
        const uint8_t *row = t.data + (size_t)r * nllm_row_size(t.type, cols);
        q->to_float_ref(row, a, cols);
        q->to_float(row, b, cols);
        for (int i = 0; i < cols; i++) {
          float tol = 2 * FLT_EPSILON * fabsf(ref[i]);
          ck_assert_msg(fabsf(a[i] - ref[i]) <= tol && fabsf(b[i] - ref[i]) <= tol,
                        "%s %s (%s) row %d col %d: ref %.9g dispatched %.9g golden %.9g", tag, name,
                        tname, r, i, a[i], b[i], ref[i]);
        }
        (*n_rows_checked)++;
      }
      free(ref);
      free(a);
      free(b);
    }
    line = next;
  }
  free(txt);
  free(model);
}

START_TEST(golden_dequant) {
  int n = 0;
  check_golden(golden_files[_i], &n);
  if (n == 0) /* one SKIP line per check (tests/run_tests.sh counts them) */
    fprintf(stderr, "%sgolden %s absent\n",
            testutil_skipped ? "  also skipped: " : "SKIP: ", golden_files[_i]);
}
END_TEST

/* Rows of one tensor from a golden tensors.txt (malloc'ed rows x cols), or NULL. */
static float *golden_rows(const char *txt, const char *name, int *rows, int *cols) {
  char hdr[200];
  snprintf(hdr, sizeof hdr, "tensor %s type ", name);
  const char *p = strstr(txt, hdr);
  if (!p) return NULL;
  char tname[32];
  if (sscanf(p + strlen(hdr), "%31s rows %d cols %d", tname, rows, cols) != 3) return NULL;
  float *v = malloc(sizeof(float) * (size_t)(*rows * *cols));
  char *s = strchr(p, '\n');
  for (int i = 0; i < *rows * *cols && s; i++) v[i] = strtof(s, &s);
  return v;
}

/* Our reference quantizers against the one that wrote the golden files, on the same float rows
 * (tiny-a-F32's rows 0..7): the simple formats must produce the very same bytes; the searched
 * formats (K, IQ4) must be about as accurate (rel RMS error within 10% of the file's). */
START_TEST(quantizer_vs_golden) {
  char fpath[512], tpath[512], mpath[512], rel[256];
  if (!testdata_path(fpath, sizeof fpath, "golden/tensors/tiny-a-F32.tensors.txt")) return;
  const char *tag = golden_files[_i];
  snprintf(rel, sizeof rel, "golden/tensors/tiny-a-%s.tensors.txt", tag);
  if (!testdata_path(tpath, sizeof tpath, rel)) return;
  snprintf(rel, sizeof rel, "golden/models/tiny-a-%s.gguf", tag);
  if (!testdata_path(mpath, sizeof mpath, rel)) return;
  char *f32 = read_file(fpath, NULL), *txt = read_file(tpath, NULL);
  size_t mlen = 0;
  uint8_t *model = (uint8_t *)read_file(mpath, &mlen);
  static const char *names[] = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight",
                                "output.weight"};
  for (int k = 0; k < 4; k++) {
    int rows, cols, r2, c2;
    float *x = golden_rows(f32, names[k], &rows, &cols), *g = golden_rows(txt, names[k], &r2, &c2);
    gg_tensor t = {0, 0, 0, NULL};
    ck_assert(x && g && r2 == rows && c2 == cols && gg_find(model, mlen, names[k], &t));
    const nllm_qtype *q = nllm_qtype_get(t.type);
    size_t rs = nllm_row_size(t.type, cols);
    uint8_t *buf = malloc(rs);
    float *a = malloc(sizeof(float) * (size_t)cols);
    double e_ours = 0, e_ref = 0, nx = 0;
    int same = 0;
    for (int r = 0; r < rows; r++) {
      q->from_float_ref(x + r * cols, buf, cols);
      same += !memcmp(buf, t.data + (size_t)r * rs, rs);
      q->to_float_ref(buf, a, cols);
      for (int i = 0; i < cols; i++) {
        double xi = x[r * cols + i];
        e_ours += (a[i] - xi) * (a[i] - xi);
        e_ref += (g[r * cols + i] - xi) * (g[r * cols + i] - xi);
        nx += xi * xi;
      }
    }
    e_ours = sqrt(e_ours / nx);
    e_ref = sqrt(e_ref / nx);
    fprintf(stderr, "quantizer %-6s %-22s rel rms: ours %.5f file %.5f, identical rows %d/%d\n",
            q->name, names[k], e_ours, e_ref, same, rows);
    int simple = q->block_size == 1 || t.type == NLLM_TYPE_Q8_0 || t.type == NLLM_TYPE_Q4_0 ||
                 t.type == NLLM_TYPE_Q4_1 || t.type == NLLM_TYPE_Q5_0 || t.type == NLLM_TYPE_Q5_1;
    if (simple)
      ck_assert_msg(same == rows, "%s %s: only %d/%d rows identical to the file", tag, names[k],
                    same, rows);
    ck_assert_msg(e_ours <= 1.10 * e_ref + 1e-7, "%s %s (%s): error %.5f vs file %.5f", tag,
                  names[k], q->name, e_ours, e_ref);
    free(x);
    free(g);
    free(buf);
    free(a);
  }
  free(f32);
  free(txt);
  free(model);
}
END_TEST

/* ------------------------------------------------------------------ dispatched vs reference */

static int type_supported(int32_t t) {
  return nllm_qtype_get(t) != NULL;
}

/* Lengths: a single block up to 4096, including odd block counts. */
static const int64_t lens_32[] = {32, 96, 160, 256, 288, 1056, 4096};
static const int64_t lens_256[] = {256, 768, 1280, 4096};
/* float formats: lengths off every vector width too (their kernels' scalar tails) */
static const int64_t lens_1[] = {1, 7, 37, 96, 101, 1056, 4101};

enum { DATA_GAUSS, DATA_ZERO, DATA_LARGE, DATA_TINY, DATA_SPIKY, N_DATA };
static void fill(float *x, int64_t n, int kind) {
  for (int64_t i = 0; i < n; i++) {
    switch (kind) {
      case DATA_GAUSS: x[i] = fgauss(); break;
      case DATA_ZERO: x[i] = 0; break;
      case DATA_LARGE: x[i] = 3e4f * frand(); break; /* fp16 block scales stay finite */
      case DATA_TINY: x[i] = 1e-6f * frand(); break; /* fp16 scales go subnormal */
      default: x[i] = (i % 37 == 0) ? 50.0f * frand() : 0.01f * frand(); break; /* outliers */
    }
  }
}

/* Exact dot of two float vectors, and the sum of |products| that bounds rounding. */
static double dot_exact(const float *a, const float *b, int64_t n, double *sumabs) {
  double s = 0, sa = 0;
  for (int64_t i = 0; i < n; i++) {
    s += (double)a[i] * b[i];
    sa += fabs((double)a[i] * b[i]);
  }
  *sumabs = sa;
  return s;
}

/* The bound for a float sum of at most n terms, each with its own relative rounding of a few
 * eps (scale products): |error| <= (n + 4) * eps * sum|terms|. Integer partial sums inside
 * blocks are exact, so this holds for every format, in any summation order. */
static double dot_tol(int64_t n, double sumabs) {
  return (double)(n + 4) * FLT_EPSILON * sumabs + 1e-30;
}

/* Q8_1 activations carry s = d * sum(q) rounded to fp16, which Q4_1/Q5_1 dots use for their
 * offset term m * sum(y): that rounding (half an fp16 ulp, 2^-11 relative) adds |m| |s| 2^-11
 * per block on top of the float summation bound. */
static double offset_tol(const nllm_qtype *q, const void *wx, const void *wy, int64_t n) {
  if (q->vec_dot_type != NLLM_TYPE_Q8_1 || q->type == NLLM_TYPE_Q8_1) return 0;
  double t = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    uint16_t m; /* Q4_1 and Q5_1 both start with fp16 d, fp16 m */
    memcpy(&m, (const uint8_t *)wx + b * q->type_size + 2, 2);
    t += fabs(q_h2f(m)) * fabs(q_h2f(((const block_q8_1 *)wy)[b].s));
  }
  return t * (1.0 / 2048);
}

static void check_type_vs_ref(int32_t type, int *n_cases) {
  const nllm_qtype *q = nllm_qtype_get(type);
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  ck_assert_ptr_nonnull(vq);
  int big = q->block_size == QK_K || vq->block_size == QK_K;
  const int64_t *lens = big ? lens_256 : lens_32;
  int nl =
      big ? (int)(sizeof lens_256 / sizeof *lens_256) : (int)(sizeof lens_32 / sizeof *lens_32);
  for (int li = 0; li < nl; li++) {
    int64_t n = lens[li];
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    float *ya = malloc(sizeof(float) * (size_t)n);
    size_t ws = nllm_row_size(type, n), ys = nllm_row_size(q->vec_dot_type, n);
    ck_assert_uint_gt(ws, 0);
    ck_assert_uint_gt(ys, 0);
    uint8_t *wq = malloc(ws), *wq2 = malloc(ws), *yq = malloc(ys), *yq2 = malloc(ys);
    for (int kind = 0; kind < N_DATA; kind++) {
      fill(x, n, kind);
      fill(y, n, kind == DATA_ZERO ? DATA_GAUSS : kind);
      /* Q8_1's fp16 s = d * sum(q) overflows once a block's mean passes ~2000 (GGUF's format
       * limit); activations stay far below that, so large activations are 1e3, not 3e4 */
      if (kind == DATA_LARGE)
        for (int64_t i = 0; i < n; i++) y[i] *= 1.0f / 30;
      /* weights: the reference quantizer, as a GGUF file would hold them */
      q->from_float_ref(x, wq, n);
      q->from_float(x, wq2, n);
      ck_assert_msg(!memcmp(wq, wq2, ws), "%s from_float dispatched != reference (n %lld kind %d)",
                    q->name, (long long)n, kind);
      q->to_float_ref(wq, a, n);
      q->to_float(wq, b, n);
      double amax = 0;
      for (int64_t i = 0; i < n; i++) amax = fmax(amax, fabs(a[i]));
      for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(a[i]), "%s to_float_ref not finite at %lld", q->name, (long long)i);
        /* same scale * level products; only the association of scale factors may differ */
        ck_assert_msg(fabs((double)a[i] - b[i]) <= 2 * FLT_EPSILON * amax,
                      "%s to_float dispatched %g ref %g at %lld (n %lld kind %d)", q->name, b[i],
                      a[i], (long long)i, (long long)n, kind);
      }
      /* activations in the vec_dot type */
      vq->from_float_ref(y, yq, n);
      vq->from_float(y, yq2, n);
      ck_assert_msg(!memcmp(yq, yq2, ys), "%s activation quantize dispatched != reference",
                    vq->name);
      vq->to_float_ref(yq, ya, n);
      double sumabs, ex = dot_exact(a, ya, n, &sumabs);
      float s_ref = NAN, s_dis = NAN;
      q->vec_dot_ref(n, &s_ref, wq, yq);
      q->vec_dot(n, &s_dis, wq, yq);
      double tol = dot_tol(n, sumabs) + offset_tol(q, wq, yq, n);
      ck_assert_msg(fabs(s_ref - ex) <= tol, "%s vec_dot_ref %.9g exact %.9g (n %lld kind %d)",
                    q->name, s_ref, ex, (long long)n, kind);
      ck_assert_msg(fabs(s_dis - ex) <= tol,
                    "%s vec_dot dispatched %.9g exact %.9g (n %lld kind %d)", q->name, s_dis, ex,
                    (long long)n, kind);
      (*n_cases)++;
    }
    free(x);
    free(y);
    free(a);
    free(b);
    free(ya);
    free(wq);
    free(wq2);
    free(yq);
    free(yq2);
  }
}

START_TEST(dispatch_vs_ref) {
  int32_t type = all_types[_i];
  if (!type_supported(type)) {
    fprintf(stderr, "SKIP: type %d not in the table yet\n", type);
    return;
  }
  /* every tier this CPU has: the best one hides the kernels of the tiers below it */
  const int top = nllm_qtypes_isa_max();
  for (int isa = top > NLLM_ISA_SCALAR ? NLLM_ISA_SIMD : NLLM_ISA_SCALAR; isa <= top; isa++) {
    nllm_qtypes_set_isa(isa);
    int n = 0;
    check_type_vs_ref(type, &n);
    ck_assert_int_gt(n, 0);
  }
  nllm_qtypes_set_isa(top);
}
END_TEST

/* The four-row dot products against the exact dot of each row (and so against the reference):
 * every data kind, odd block counts, rows further apart than their size. */
static void check_dot4_fn(const nllm_qtype *q, nllm_vec_dot4_fn dot4, const char *what) {
  const int32_t type = q->type;
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  int big = q->block_size == QK_K || vq->block_size == QK_K;
  const int64_t *lens = q->block_size == 1 ? lens_1 : big ? lens_256 : lens_32;
  int nl = q->block_size == 1 ? (int)(sizeof lens_1 / sizeof *lens_1)
           : big              ? (int)(sizeof lens_256 / sizeof *lens_256)
                              : (int)(sizeof lens_32 / sizeof *lens_32);
  for (int li = 0; li < nl; li++) {
    const int64_t n = lens[li];
    const size_t rs = nllm_row_size(type, n), stride = rs + (size_t)q->type_size;
    float *x = malloc(sizeof(float) * (size_t)n * 4), *y = malloc(sizeof(float) * (size_t)n);
    float *a = malloc(sizeof(float) * (size_t)n * 4), *ya = malloc(sizeof(float) * (size_t)n);
    uint8_t *wq = malloc(stride * 4), *yq = malloc(nllm_row_size(q->vec_dot_type, n));
    memset(wq, 0xff, stride * 4); /* the gaps between rows are never read */
    for (int kind = 0; kind < N_DATA; kind++) {
      for (int r = 0; r < 4; r++) {
        fill(x + r * n, n, (kind + r) % N_DATA);
        q->from_float_ref(x + r * n, wq + (size_t)r * stride, n);
        q->to_float_ref(wq + (size_t)r * stride, a + r * n, n);
      }
      fill(y, n, kind == DATA_ZERO ? DATA_GAUSS : kind);
      if (kind == DATA_LARGE) /* within Q8_1's fp16 sum, as in dispatch_vs_ref */
        for (int64_t i = 0; i < n; i++) y[i] *= 1.0f / 30;
      vq->from_float_ref(y, yq, n);
      vq->to_float_ref(yq, ya, n);
      float s4[4];
      dot4(n, s4, wq, stride, yq);
      for (int r = 0; r < 4; r++) {
        double sumabs, ex = dot_exact(a + r * n, ya, n, &sumabs);
        float s_ref = NAN;
        q->vec_dot_ref(n, &s_ref, wq + (size_t)r * stride, yq);
        double tol = dot_tol(n, sumabs) + offset_tol(q, wq + (size_t)r * stride, yq, n);
        ck_assert_msg(fabs(s4[r] - ex) <= tol && fabs(s_ref - ex) <= tol,
                      "%s %s row %d: %.9g, reference %.9g, exact %.9g (n %lld kind %d)", q->name,
                      what, r, s4[r], s_ref, ex, (long long)n, kind);
      }
    }
    free(x);
    free(y);
    free(a);
    free(ya);
    free(wq);
    free(yq);
  }
}

/* The four-rows-by-four-tokens kernel against the exact dot of each pair: every data kind
 * (a different one per row and per token), odd block counts, rows and tokens further apart
 * than their size, results written with a stride wider than four. */
static void check_dot4x4(const nllm_qtype *q) {
  const int32_t type = q->type;
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  int big = q->block_size == QK_K || vq->block_size == QK_K;
  const int64_t *lens = big ? lens_256 : lens_32;
  int nl =
      big ? (int)(sizeof lens_256 / sizeof *lens_256) : (int)(sizeof lens_32 / sizeof *lens_32);
  enum { SS = 7 };
  for (int li = 0; li < nl; li++) {
    const int64_t n = lens[li];
    const size_t rs = nllm_row_size(type, n), stride = rs + (size_t)q->type_size;
    const size_t yrs = nllm_row_size(q->vec_dot_type, n), ystride = yrs + (size_t)vq->type_size;
    float *x = malloc(sizeof(float) * (size_t)n * 4), *y = malloc(sizeof(float) * (size_t)n * 4);
    float *a = malloc(sizeof(float) * (size_t)n * 4), *ya = malloc(sizeof(float) * (size_t)n * 4);
    uint8_t *wq = malloc(stride * 4), *yq = malloc(ystride * 4);
    memset(wq, 0xff, stride * 4); /* the gaps between rows and tokens are never read */
    memset(yq, 0xff, ystride * 4);
    for (int kind = 0; kind < N_DATA; kind++) {
      for (int r = 0; r < 4; r++) {
        fill(x + r * n, n, (kind + r) % N_DATA);
        q->from_float_ref(x + r * n, wq + (size_t)r * stride, n);
        q->to_float_ref(wq + (size_t)r * stride, a + r * n, n);
        const int yk = (kind + 2 * r + 1) % N_DATA;
        fill(y + r * n, n, yk == DATA_ZERO ? DATA_GAUSS : yk);
        if (yk == DATA_LARGE)
          for (int64_t i = 0; i < n; i++) y[r * n + i] *= 1.0f / 30;
        vq->from_float_ref(y + r * n, yq + (size_t)r * ystride, n);
        vq->to_float_ref(yq + (size_t)r * ystride, ya + r * n, n);
      }
      float s[4 * SS];
      for (int i = 0; i < 4 * SS; i++) s[i] = NAN;
      q->vec_dot4x4(n, s, SS, wq, stride, yq, ystride);
      for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++) {
          const uint8_t *row = wq + (size_t)r * stride, *tok = yq + (size_t)t * ystride;
          double sumabs, ex = dot_exact(a + r * n, ya + t * n, n, &sumabs);
          double tol = dot_tol(n, sumabs) + offset_tol(q, row, tok, n);
          ck_assert_msg(fabs(s[t * SS + r] - ex) <= tol,
                        "%s vec_dot4x4 row %d token %d: %.9g, exact %.9g (n %lld kind %d)", q->name,
                        r, t, s[t * SS + r], ex, (long long)n, kind);
        }
      for (int t = 0; t < 4; t++) /* nothing written between a token's four results */
        for (int i = 4; i < SS; i++) ck_assert(isnan(s[t * SS + i]));
    }
    free(x);
    free(y);
    free(a);
    free(ya);
    free(wq);
    free(yq);
  }
}

/* Both four-row kernels a tier may have: decode's and the prompt tiles'; and the batches'
 * four-by-four one. */
static void check_dot4(int32_t type) {
  const nllm_qtype *q = nllm_qtype_get(type);
  if (q->vec_dot4) check_dot4_fn(q, q->vec_dot4, "vec_dot4");
  if (q->vec_dot4_tile) check_dot4_fn(q, q->vec_dot4_tile, "vec_dot4_tile");
  if (q->vec_dot4x4) check_dot4x4(q);
}

START_TEST(dot4_vs_ref) {
  int32_t type = all_types[_i];
  if (!type_supported(type)) return;
  const int top = nllm_qtypes_isa_max();
  for (int isa = NLLM_ISA_SIMD; isa <= top; isa++) {
    nllm_qtypes_set_isa(isa);
    check_dot4(type);
  }
  nllm_qtypes_set_isa(top);
}
END_TEST

/* One data pass of the tile checks: `rows` weight rows stride bytes apart and n_tok
 * activation rows ars bytes apart, quantized from the data kinds (pass < N_DATA: each row and
 * token its own kind, large activations scaled down so that the products stay finite) or blocks
 * of random bits (pass N_DATA); x and y are n floats of room. */
static void tile_pass_data(const nllm_qtype *q, int pass, uint64_t *rng, int64_t n, uint8_t *wq,
                           size_t stride, int rows, uint8_t *yq, size_t ars, int n_tok, float *x,
                           float *y) {
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  memset(wq, 0xff, stride * (size_t)rows);
  if (pass == N_DATA) {
    ck_assert(random_blocks(rng, q->type, wq,
                            (int64_t)(stride * (size_t)rows / (size_t)q->type_size),
                            (size_t)q->type_size, 0));
    ck_assert(
        random_blocks(rng, vq->type, yq, n / vq->block_size * n_tok, (size_t)vq->type_size, 0));
    return;
  }
  for (int r = 0; r < rows; r++) {
    fill(x, n, (pass + r) % N_DATA);
    q->from_float_ref(x, wq + (size_t)r * stride, n);
  }
  for (int t = 0; t < n_tok; t++) {
    fill(y, n, pass == DATA_ZERO ? DATA_GAUSS : (pass + t) % N_DATA);
    if (pass == DATA_LARGE || (pass + t) % N_DATA == DATA_LARGE)
      for (int64_t i = 0; i < n; i++) y[i] *= 1.0f / 30;
    vq->from_float_ref(y, yq + (size_t)t * ars, n);
  }
}

/* The prompt path's register tiles against the four-row kernel (the one-row kernel where the
 * tier has none) each row and token (equal: the same integer sums and float steps) and against
 * the exact dot: every data kind, then blocks of random bits, for every token count a tile
 * takes, rows further apart than their size and prepared rows further apart than
 * NLLM_GEMM_PREP_BYTES. */
static void check_gemm4(const nllm_qtype *q) {
  static const int64_t lens[] = {128, 256, 640, 768, 2048};
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  const int64_t unit = q->block_size > vq->block_size ? q->block_size : vq->block_size;
  const nllm_vec_dot4_fn dot4 = q->vec_dot4_tile ? q->vec_dot4_tile : q->vec_dot4;
  ck_assert_msg(q->gemm_prep != NULL, "%s: gemm4 without gemm_prep", q->name);
  const int T = NLLM_GEMM_TOK; /* the most tokens a call takes */
  uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)q->type;
  for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
    const int64_t n = lens[li];
    if (n % unit) continue; /* not a whole number of the formats' blocks */
    const size_t stride = nllm_row_size(q->type, n) + (size_t)q->type_size;
    const size_t ars = nllm_row_size(vq->type, n), prs = NLLM_GEMM_PREP_BYTES(n) + 64;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    float *a = malloc(sizeof(float) * (size_t)n * 4), *ya = malloc(sizeof(float) * (size_t)n * T);
    uint8_t *wq = malloc(stride * 4), *yq = malloc(ars * T);
    uint8_t *prep = aligned_alloc(64, prs * T);
    for (int pass = 0; pass <= N_DATA; pass++) { /* N_DATA: random bits */
      tile_pass_data(q, pass, &rng, n, wq, stride, 4, yq, ars, T, x, y);
      for (int r = 0; r < 4; r++) q->to_float_ref(wq + (size_t)r * stride, a + r * n, n);
      for (int t = 0; t < T; t++) {
        vq->to_float_ref(yq + (size_t)t * ars, ya + t * n, n);
        memset(prep + (size_t)t * prs, 0xa5, prs);
        q->gemm_prep(n, yq + (size_t)t * ars, prep + (size_t)t * prs);
      }
      for (int nt = 1; nt <= T; nt++) {
        float s[NLLM_GEMM_TOK * 5];
        for (int i = 0; i < NLLM_GEMM_TOK * 5; i++) s[i] = NAN;
        q->gemm4(n, s, 5, wq, stride, prep, prs, nt);
        for (int t = 0; t < T; t++) {
          float d4[4];
          if (dot4)
            dot4(n, d4, wq, stride, yq + (size_t)t * ars);
          else /* a tier without a four-row kernel: its tiles equal the one-row kernel */
            for (int r = 0; r < 4; r++)
              q->vec_dot(n, &d4[r], wq + (size_t)r * stride, yq + (size_t)t * ars);
          ck_assert_msg(isnan(s[t * 5 + 4]), "%s gemm4 wrote past its four rows", q->name);
          for (int r = 0; r < 4; r++) {
            if (t >= nt) {
              ck_assert_msg(isnan(s[t * 5 + r]), "%s gemm4 wrote token %d of %d", q->name, t, nt);
              continue;
            }
            double sumabs, ex = dot_exact(a + r * n, ya + t * n, n, &sumabs);
            double tol = dot_tol(n, sumabs) +
                         offset_tol(q, wq + (size_t)r * stride, yq + (size_t)t * ars, n);
            ck_assert_msg(s[t * 5 + r] == d4[r] && fabs(s[t * 5 + r] - ex) <= tol,
                          "%s gemm4 row %d token %d of %d: %.9g, four-row %.9g, exact %.9g (n %lld "
                          "pass %d)",
                          q->name, r, t, nt, s[t * 5 + r], d4[r], ex, (long long)n, pass);
          }
        }
      }
    }
    free(x);
    free(y);
    free(a);
    free(ya);
    free(wq);
    free(yq);
    free(prep);
  }
}

/* The tier each_tier checks now. */
static int tier_checked;

/* check(q) on the type's row of every tier this CPU has that gives the row kernels of the kind
 * (has(q)), then back to the best tier. */
static void each_tier(int32_t type, int (*has)(const nllm_qtype *),
                      void (*check)(const nllm_qtype *)) {
  if (!type_supported(type)) return;
  const int top = nllm_qtypes_isa_max();
  for (int isa = NLLM_ISA_SCALAR; isa <= top; isa++) {
    nllm_qtypes_set_isa(isa);
    tier_checked = isa;
    const nllm_qtype *q = nllm_qtype_get(type);
    if (has(q)) check(q);
  }
  nllm_qtypes_set_isa(top);
}

static int has_gemm4(const nllm_qtype *q) {
  return q->gemm4 != NULL;
}

START_TEST(gemm4_vs_dot4) {
  each_tier(all_types[_i], has_gemm4, check_gemm4);
}
END_TEST

/* The prompt path's row-interleaved kernels: a group's rows (pack_group_rows) repacked (further
 * apart than their size) and up to four tokens (prepared rows further apart than
 * NLLM_GEMM_PREP_BYTES) against decode's kernels of each row and token, which they equal: on the
 * AVX2 tier the scalar reference (the same integer sums and float steps in its order), as that
 * tier's one-row and four-row kernels must too; above it the tier's four-row prompt kernel
 * (vec_dot4_tile, else vec_dot4: AVX-512 Q4_0 and Q8_0, their 16-block chunks), and the exact
 * dot within the tiles' bound. Every data kind, then blocks of random bits, every token count;
 * nothing written past the group's rows, the tokens asked for or the packed group. */
/* The tier's four-row dot, or its one-row dot on each row where the format has none on the tier
 * (IQ4_XS on AVX2). */
static void dot4_or_rows(const nllm_qtype *q, int64_t n, float *s, const uint8_t *w, size_t rs,
                         const uint8_t *a) {
  if (q->vec_dot4) {
    q->vec_dot4(n, s, w, rs, a);
    return;
  }
  for (int r = 0; r < 4; r++) q->vec_dot(n, &s[r], w + (size_t)r * rs, a);
}

static void check_packed(const nllm_qtype *q) {
  static const int64_t lens[] = {128, 256, 640, 768, 2048};
  enum { RMAX = 2 * NLLM_PACK_ROWS, TMAX = NLLM_STREAM_TOK_MAX, SS = RMAX + 1 };
  const int R = q->pack_group_rows, T = q->packed_tok, ref_order = tier_checked == NLLM_ISA_SIMD;
  /* tokens the data has: gemm_packed_stream's calls may take more than gemm_packed's */
  const int TS = q->gemm_packed_stream ? q->stream_tok : T;
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  ck_assert_msg(q->pack_rows && q->packed_prep, "%s: gemm_packed without its helpers", q->name);
  ck_assert_msg(R == NLLM_PACK_ROWS || R == RMAX, "%s: pack_group_rows %d", q->name, R);
  ck_assert_msg(T >= NLLM_GEMM_TOK && T <= NLLM_PACKED_TOK_MAX, "%s: packed_tok %d", q->name, T);
  ck_assert_msg(TS >= T && TS <= TMAX, "%s: stream_tok %d", q->name, TS);
  uint64_t rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)q->type;
  for (int64_t n = q->block_size; ref_order && n <= 5 * q->block_size; n += q->block_size) {
    const size_t rs = nllm_row_size(q->type, n); /* odd counts */
    uint8_t *w = malloc(rs * 4), *a = malloc(nllm_row_size(vq->type, n));
    ck_assert(w && a);
    ck_assert(random_blocks(&rng, q->type, w, n / q->block_size * 4, (size_t)q->type_size, 0));
    ck_assert(random_blocks(&rng, vq->type, a, n / vq->block_size, (size_t)vq->type_size, 0));
    float four[4], one, ref, f44[4 * 4];
    dot4_or_rows(q, n, four, w, rs, a);
    if (q->vec_dot4x4) { /* the same activation row as all four tokens */
      q->vec_dot4x4(n, f44, 4, w, rs, a, 0);
      for (int i = 0; i < 16; i++)
        ck_assert_msg(f44[i] == four[i % 4], "%s vec_dot4x4 n %lld: %.9g against %.9g", q->name,
                      (long long)n, f44[i], four[i % 4]);
    }
    for (int r = 0; r < 4; r++) {
      q->vec_dot_ref(n, &ref, w + (size_t)r * rs, a);
      q->vec_dot(n, &one, w + (size_t)r * rs, a);
      ck_assert_msg(one == ref && four[r] == ref, "%s n %lld row %d: %.9g, %.9g, reference %.9g",
                    q->name, (long long)n, r, one, four[r], ref);
    }
    free(w);
    free(a);
  }
  for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
    const int64_t n = lens[li];
    if (n % q->block_size) continue; /* not a whole number of the format's blocks */
    const size_t stride = nllm_row_size(q->type, n) + (size_t)q->type_size;
    const size_t ars = nllm_row_size(vq->type, n), prs = NLLM_GEMM_PREP_BYTES(n) + 64;
    const size_t pbytes = NLLM_PACK_BYTES(n) / NLLM_PACK_ROWS * (size_t)R;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    float *wf = malloc(sizeof(float) * (size_t)n * RMAX), *yf = malloc(sizeof(float) * (size_t)n);
    uint8_t *wq = malloc(stride * RMAX), *yq = malloc(ars * TS);
    uint8_t *prep = aligned_alloc(64, prs * TS), *pk = aligned_alloc(64, pbytes + 64);
    ck_assert(x && y && wf && yf && wq && yq && prep && pk);
    for (int pass = 0; pass <= N_DATA; pass++) { /* N_DATA: random bits */
      tile_pass_data(q, pass, &rng, n, wq, stride, R, yq, ars, TS, x, y);
      for (int r = 0; r < R; r++) q->to_float_ref(wq + (size_t)r * stride, wf + r * n, n);
      for (int t = 0; t < TS; t++) {
        memset(prep + (size_t)t * prs, 0xa5, prs);
        q->packed_prep(n, yq + (size_t)t * ars, prep + (size_t)t * prs);
      }
      memset(pk, 0xa5, pbytes + 64);
      q->pack_rows(n, wq, stride, pk);
      for (int i = 0; i < 64; i++)
        ck_assert_msg(pk[pbytes + i] == 0xa5, "%s pack_rows wrote past its group", q->name);
      for (int nt = 1; nt <= T; nt++) {
        float s[TMAX * SS];
        for (int i = 0; i < TMAX * SS; i++) s[i] = NAN;
        q->gemm_packed(n, s, SS, pk, prep, prs, nt);
        if (nt == 1 && q->gemv_packed) { /* one token: the decode kernel's sums, no more rows */
          float g[SS], d4[RMAX];
          for (int i = 0; i < SS; i++) g[i] = NAN;
          q->gemv_packed(n, g, SS, pk, prep, prs, 1);
          ck_assert_msg(isnan(g[R]), "%s gemv_packed wrote past its rows", q->name);
          for (int r = 0; r < R; r += 4)
            dot4_or_rows(q, n, d4 + r, wq + (size_t)r * stride, stride, yq);
          for (int r = 0; r < R; r++)
            ck_assert_msg(g[r] == d4[r] || (isnan(g[r]) && isnan(d4[r])),
                          "%s gemv_packed row %d: %.9g, decode kernel %.9g (n %lld pass %d)",
                          q->name, r, g[r], d4[r], (long long)n, pass);
        }
        for (int t = 0; t < T; t++) {
          ck_assert_msg(isnan(s[t * SS + R]), "%s gemm_packed wrote past its rows", q->name);
          if (t < nt) vq->to_float_ref(yq + (size_t)t * ars, yf, n);
          for (int r = 0; r < R; r++) {
            if (t >= nt) {
              ck_assert_msg(isnan(s[t * SS + r]), "%s gemm_packed wrote token %d of %d", q->name, t,
                            nt);
              continue;
            }
            float ref = NAN, one = NAN, four[4] = {NAN, NAN, NAN, NAN};
            q->vec_dot_ref(n, &ref, wq + (size_t)r * stride, yq + (size_t)t * ars);
            q->vec_dot(n, &one, wq + (size_t)r * stride, yq + (size_t)t * ars);
            /* the prompt path's four-row kernel where the tier has one of its own */
            if (q->vec_dot4_tile)
              q->vec_dot4_tile(n, four, wq + (size_t)(r & ~3) * stride, stride,
                               yq + (size_t)t * ars);
            else
              dot4_or_rows(q, n, four, wq + (size_t)(r & ~3) * stride, stride,
                           yq + (size_t)t * ars);
            double sumabs, ex = dot_exact(wf + r * n, yf, n, &sumabs);
            double tol = dot_tol(n, sumabs) +
                         offset_tol(q, wq + (size_t)r * stride, yq + (size_t)t * ars, n);
            ck_assert_msg(s[t * SS + r] == four[r & 3] && fabs(s[t * SS + r] - ex) <= tol &&
                              (!ref_order || (one == ref && four[r & 3] == ref)),
                          "%s gemm_packed row %d token %d of %d: %.9g, vec_dot %.9g, vec_dot4 "
                          "%.9g, reference %.9g, exact %.9g (n %lld pass %d)",
                          q->name, r, t, nt, s[t * SS + r], one, four[r & 3], ref, ex, (long long)n,
                          pass);
          }
        }
      }
      /* gemm_packed_stream: the same sums as gemm_packed's calls of at most packed_tok tokens,
       * prefetching as it goes, in calls of up to stream_tok tokens */
      for (int nt = 1; q->gemm_packed_stream && nt <= TS; nt++) {
        float s[TMAX * SS], s2[TMAX * SS];
        for (int i = 0; i < TMAX * SS; i++) s[i] = s2[i] = NAN;
        for (int t = 0; t < nt; t += T)
          q->gemm_packed(n, s + t * SS, SS, pk, prep + (size_t)t * prs, prs,
                         nt - t < T ? nt - t : T);
        q->gemm_packed_stream(n, s2, SS, pk, prep, prs, nt);
        ck_assert_msg(memcmp(s, s2, sizeof s) == 0,
                      "%s gemm_packed_stream differs from gemm_packed (n %lld, %d tokens, pass %d)",
                      q->name, (long long)n, nt, pass);
      }
    }
    free(x);
    free(y);
    free(wf);
    free(yf);
    free(wq);
    free(yq);
    free(prep);
    free(pk);
  }
}

/* With them a batch's rows equal each token's own matmul bit for bit (decode), over items that
 * leave rows out of a group of eight and a partial last call's tokens, on two threads, below and
 * above the interleaved kernels' crossover. */
static void check_batch_equals_single_cols(const nllm_qtype *q, int NT, int64_t COLS) {
  enum { ROWS = 21 };
  const size_t rs = nllm_row_size(q->type, COLS);
  uint8_t *W = malloc(rs * ROWS);
  float *x = malloc(sizeof(float) * COLS * NT), *row = malloc(sizeof(float) * COLS);
  float *y = malloc(sizeof(float) * ROWS * NT), *y1 = malloc(sizeof(float) * ROWS);
  void *wd = malloc(nllm_matmul_wsize(q->type, COLS, NT, 2));
  ck_assert(W && x && row && y && y1 && wd);
  for (int r = 0; r < ROWS; r++) {
    fill(row, COLS, r % N_DATA == DATA_ZERO ? DATA_GAUSS : r % N_DATA);
    q->from_float_ref(row, W + (size_t)r * rs, COLS);
  }
  fill(x, COLS * NT, DATA_GAUSS);
  nllm_matmul(y, W, q->type, ROWS, COLS, x, NT, wd, 2);
  if (q->vec_dot4_tile) {
    /* a tier whose prompt path has a four-row kernel of its own (AVX-512 Q8_0): a batch's rows
     * equal it (a row an item leaves alone: the one-row kernel), not decode's */
    const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
    uint8_t *a = malloc(nllm_row_size(vq->type, COLS));
    ck_assert(a);
    for (int t = 0; t < NT; t++) {
      vq->from_float(x + t * COLS, a, COLS);
      for (int r0 = 0; r0 + 4 <= ROWS; r0 += 4) {
        float four[4], one;
        q->vec_dot4_tile(COLS, four, W + (size_t)r0 * rs, rs, a);
        for (int r = r0; r < r0 + 4; r++) {
          q->vec_dot(COLS, &one, W + (size_t)r * rs, a);
          ck_assert_msg(y[t * ROWS + r] == four[r - r0] || y[t * ROWS + r] == one,
                        "%s: token %d row %d of a batch: %.9g, prompt kernel %.9g", q->name, t, r,
                        y[t * ROWS + r], four[r - r0]);
        }
      }
    }
    free(a);
  } else {
    for (int t = 0; t < NT; t++) {
      nllm_matmul(y1, W, q->type, ROWS, COLS, x + t * COLS, 1, wd, 2);
      ck_assert_msg(memcmp(y1, y + t * ROWS, sizeof(float) * ROWS) == 0,
                    "%s: token %d of a batch differs from its own matmul", q->name, t);
    }
  }
  free(W);
  free(x);
  free(row);
  free(y);
  free(y1);
  free(wd);
}

static void check_batch_equals_single(const nllm_qtype *q, int NT) {
  check_batch_equals_single_cols(q, NT, 256);
}

/* The K-quant tiles add several vectors' maddubs pair sums in int16 before one madd with the
 * scales (up to 2 * 2 * 31 * 128 for Q5_K, 2 * 2 * 63 * 128 for Q6_K): blocks at the widest
 * levels and scales against activations of -128 and 127 (all, and in alternating runs), where
 * an int16 sum that overflowed would show, equal to the four-row kernel bit for bit. */
static void k_extreme_blocks(const nllm_qtype *q, uint8_t *w, int64_t nb, int kind) {
  const uint16_t one = 0x3c00, tiny = 0x1400; /* F16 1, 2^-10 */
  for (int64_t b = 0; b < nb; b++) {
    uint8_t *x = w + (size_t)b * (size_t)q->type_size;
    memset(x, kind == 0 ? 0xff : (b & 1) ? 0xf0 : 0x0f, (size_t)q->type_size);
    if (q->type == NLLM_TYPE_Q6_K) {
      block_q6_K *k = (block_q6_K *)x;
      memset(k->scales, kind == 2 ? 0x80 : 0x7f, sizeof k->scales);
      k->d = kind == 2 ? tiny : one;
    } else { /* Q4_K, Q5_K: d, dmin first */
      memcpy(x, &one, 2);
      memcpy(x + 2, kind == 2 ? &tiny : &one, 2);
    }
  }
}

static void check_k_tile_extremes(const nllm_qtype *q) {
  if (q->type != NLLM_TYPE_Q4_K && q->type != NLLM_TYPE_Q5_K && q->type != NLLM_TYPE_Q6_K) return;
  const int64_t n = 1024, nb = n / QK_K;
  const size_t rs = nllm_row_size(q->type, n), ars = nllm_row_size(NLLM_TYPE_Q8_K, n);
  const size_t prs = NLLM_GEMM_PREP_BYTES(n);
  uint8_t *w = malloc(rs * 4), *a = malloc(ars * NLLM_GEMM_TOK);
  uint8_t *prep = aligned_alloc(64, prs * NLLM_GEMM_TOK);
  ck_assert(w && a && prep);
  for (int kind = 0; kind < 3; kind++) {
    k_extreme_blocks(q, w, nb * 4, kind);
    for (int t = 0; t < NLLM_GEMM_TOK; t++) {
      block_q8_K *y = (block_q8_K *)(a + (size_t)t * ars);
      for (int64_t b = 0; b < nb; b++) {
        y[b].d = 1.0f / 64;
        for (int i = 0; i < QK_K; i++) /* t 0: -128, 1: 127, 2, 3: runs of 8 and of 32 */
          y[b].qs[i] = (int8_t)(t == 0                          ? -128
                                : t == 1                        ? 127
                                : ((i >> (t == 2 ? 3 : 5)) & 1) ? 127
                                                                : -128);
        for (int j = 0; j < QK_K / 16; j++) {
          int sum = 0;
          for (int i = 0; i < 16; i++) sum += y[b].qs[16 * j + i];
          y[b].bsums[j] = (int16_t)sum;
        }
      }
      q->gemm_prep(n, y, prep + (size_t)t * prs);
    }
    for (int nt = 1; nt <= NLLM_GEMM_TOK; nt++) {
      float s[NLLM_GEMM_TOK * 4], d4[4];
      q->gemm4(n, s, 4, w, rs, prep, prs, nt);
      for (int t = 0; t < nt; t++) {
        dot4_or_rows(q, n, d4, w, rs, a + (size_t)t * ars);
        for (int r = 0; r < 4; r++)
          ck_assert_msg(s[t * 4 + r] == d4[r] && isfinite(d4[r]),
                        "%s extreme blocks (kind %d) row %d token %d of %d: gemm4 %.9g, four-row "
                        "%.9g",
                        q->name, kind, r, t, nt, s[t * 4 + r], d4[r]);
      }
    }
  }
  free(w);
  free(a);
  free(prep);
}

/* The same extreme blocks through the interleaved kernels (Q4_K's and Q6_K's packed groups keep
 * the rows' bits and scale bytes, unpacked per call): a group's rows packed, every token count up
 * to packed_tok and gemv_packed, against the four-row kernel bit for bit; so too the layout the
 * groups expand into for prompts (expand_packed, and pack_expanded from the rows). */
static void check_k_packed_extremes(const nllm_qtype *q) {
  if (!q->gemm_packed ||
      (q->type != NLLM_TYPE_Q4_K && q->type != NLLM_TYPE_Q5_K && q->type != NLLM_TYPE_Q6_K))
    return;
  enum { TMAX = NLLM_PACKED_TOK_MAX, RMAX = 2 * NLLM_PACK_ROWS };
  const int64_t n = 1024, nb = n / QK_K;
  const int T = q->packed_tok, R = q->pack_group_rows; /* eight rows, or sixteen (AVX-512 Q4_K) */
  const size_t rs = nllm_row_size(q->type, n), ars = nllm_row_size(NLLM_TYPE_Q8_K, n);
  const size_t prs = NLLM_GEMM_PREP_BYTES(n), pbytes = NLLM_PACK_BYTES(n) / NLLM_PACK_ROWS * R;
  ck_assert(R == NLLM_PACK_ROWS || R == RMAX);
  uint8_t *w = malloc(rs * R), *a = malloc(ars * TMAX);
  uint8_t *prep = aligned_alloc(64, prs * TMAX), *pk = aligned_alloc(64, pbytes);
  uint8_t *ex = aligned_alloc(64, pbytes);
  ck_assert(w && a && prep && pk && ex);
  for (int kind = 0; kind < 3; kind++) {
    k_extreme_blocks(q, w, nb * R, kind);
    for (int t = 0; t < TMAX; t++) {
      block_q8_K *y = (block_q8_K *)(a + (size_t)t * ars);
      for (int64_t b = 0; b < nb; b++) {
        y[b].d = 1.0f / 64;
        for (int i = 0; i < QK_K; i++) /* as check_k_tile_extremes, then runs of 4 and of 16 */
          y[b].qs[i] = (int8_t)(t % 4 == 0 ? -128
                                : t % 4 == 1
                                    ? 127
                                    : ((i >> (t == 2 ? 3 : t == 3 ? 5 : t < 6 ? 2 : 4)) & 1) ? 127
                                                                                         : -128);
        for (int j = 0; j < QK_K / 16; j++) {
          int sum = 0;
          for (int i = 0; i < 16; i++) sum += y[b].qs[16 * j + i];
          y[b].bsums[j] = (int16_t)sum;
        }
      }
      q->packed_prep(n, y, prep + (size_t)t * prs);
    }
    q->pack_rows(n, w, rs, pk);
    /* pass 0: the packed group, 1: expanded, 2: packed straight into the expanded layout */
    for (int pass = 0; pass < (q->expand_packed ? 2 + !!q->pack_expanded : 1); pass++)
    for (int nt = 1; nt <= T; nt++) {
      float s[TMAX * RMAX], d4[4];
      if (pass == 1 && nt == 1) q->expand_packed(n, pk, 0, ex);
      if (pass == 2 && nt == 1) q->pack_expanded(n, w, rs, ex);
      (pass ? q->gemm_expanded : q->gemm_packed)(n, s, R, pass ? ex : pk, prep, prs, nt);
      if (nt == 1 && q->gemv_packed && !pass) { /* the decode kernel's sums */
        float g[RMAX], g4[4];
        q->gemv_packed(n, g, R, pk, prep, prs, 1);
        for (int r0 = 0; r0 < R; r0 += 4) {
          dot4_or_rows(q, n, g4, w + (size_t)r0 * rs, rs, a);
          for (int r = 0; r < 4; r++)
            ck_assert_msg(g[r0 + r] == g4[r],
                          "%s extreme blocks (kind %d) row %d: gemv_packed %.9g, "
                          "decode kernel %.9g",
                          q->name, kind, r0 + r, g[r0 + r], g4[r]);
        }
      }
      for (int t = 0; t < nt; t++)
        for (int r0 = 0; r0 < R; r0 += 4) {
          dot4_or_rows(q, n, d4, w + (size_t)r0 * rs, rs, a + (size_t)t * ars);
          for (int r = 0; r < 4; r++)
            ck_assert_msg(s[t * R + r0 + r] == d4[r] && isfinite(d4[r]),
                          "%s extreme blocks (kind %d, pass %d) row %d token %d of %d: gemm_packed "
                          "%.9g, four-row %.9g",
                          q->name, kind, pass, r0 + r, t, nt, s[t * R + r0 + r], d4[r]);
        }
    }
  }
  free(w);
  free(a);
  free(prep);
  free(pk);
  free(ex);
}

/* Decoding 2..12 sequences together takes the tiles (12: the interleaved kernels' crossover on
 * AVX2): each token's row of the batch equals that token's own matmul bit for bit, on rows of
 * one, three and eight super-blocks. */
static void check_k_tiles(const nllm_qtype *q) {
  check_k_tile_extremes(q);
  if (q->type != NLLM_TYPE_Q4_K && q->type != NLLM_TYPE_Q5_K && q->type != NLLM_TYPE_Q6_K) return;
  static const int64_t cols[] = {256, 768, 2048};
  for (int ci = 0; ci < 3; ci++)
    for (int nt = 2; nt <= 12; nt++) check_batch_equals_single_cols(q, nt, cols[ci]);
}

START_TEST(k_tiles_vs_decode) {
  each_tier(all_types[_i], has_gemm4, check_k_tiles);
}
END_TEST

static int has_packed(const nllm_qtype *q) {
  return q->gemm_packed != NULL;
}

static void check_packed_matmul(const nllm_qtype *q) {
  check_packed(q);
  check_k_packed_extremes(q);
  /* every count of a few sequences' batch, on both sides of each format's packed_min_tokens
   * (below it the tiles or four-by-four and four-row kernels), then past packed_tok */
  for (int nt = 2; nt <= 12; nt++) check_batch_equals_single(q, nt);
  check_batch_equals_single(q, 18);
}

START_TEST(packed_vs_ref) {
  each_tier(all_types[_i], has_packed, check_packed_matmul);
}
END_TEST

/* Blocks of random bits (extreme levels, scales and high bits that quantized data seldom
 * holds): the dispatched one-row and four-row dots against the exact dot of each row. */
static void check_random_bits(int32_t type) {
  const nllm_qtype *q = nllm_qtype_get(type);
  if (q->block_size == 1) return; /* float formats: random bits would hold NaNs */
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  int big = q->block_size == QK_K || vq->block_size == QK_K;
  const int64_t *lens = big ? lens_256 : lens_32;
  int nl =
      big ? (int)(sizeof lens_256 / sizeof *lens_256) : (int)(sizeof lens_32 / sizeof *lens_32);
  uint64_t rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)type;
  for (int li = 0; li < nl; li++) {
    const int64_t n = lens[li];
    const size_t rs = nllm_row_size(type, n), stride = rs + (size_t)q->type_size;
    float *a = malloc(sizeof(float) * (size_t)n), *ya = malloc(sizeof(float) * (size_t)n);
    uint8_t *wq = malloc(stride * 4), *yq = malloc(nllm_row_size(q->vec_dot_type, n));
    ck_assert(random_blocks(&rng, type, wq, (int64_t)(stride * 4 / (size_t)q->type_size),
                            (size_t)q->type_size, 0));
    ck_assert(random_blocks(&rng, vq->type, yq, n / vq->block_size, (size_t)vq->type_size, 0));
    vq->to_float_ref(yq, ya, n);
    float s4[4] = {NAN, NAN, NAN, NAN}, t4[4] = {NAN, NAN, NAN, NAN};
    if (q->vec_dot4) q->vec_dot4(n, s4, wq, stride, yq);
    if (q->vec_dot4_tile) q->vec_dot4_tile(n, t4, wq, stride, yq);
    for (int r = 0; r < 4; r++) {
      const uint8_t *row = wq + (size_t)r * stride;
      q->to_float_ref(row, a, n);
      double sumabs, ex = dot_exact(a, ya, n, &sumabs);
      double tol = dot_tol(n, sumabs) + offset_tol(q, row, yq, n);
      float s_ref = NAN, s_dis = NAN;
      q->vec_dot_ref(n, &s_ref, row, yq);
      q->vec_dot(n, &s_dis, row, yq);
      ck_assert_msg(fabs(s_ref - ex) <= tol && fabs(s_dis - ex) <= tol,
                    "%s random bits row %d: vec_dot %.9g, reference %.9g, exact %.9g (n %lld)",
                    q->name, r, s_dis, s_ref, ex, (long long)n);
      if (q->vec_dot4)
        ck_assert_msg(fabs(s4[r] - ex) <= tol,
                      "%s random bits row %d: vec_dot4 %.9g, exact %.9g (n %lld)", q->name, r,
                      s4[r], ex, (long long)n);
      if (q->vec_dot4_tile)
        ck_assert_msg(fabs(t4[r] - ex) <= tol,
                      "%s random bits row %d: vec_dot4_tile %.9g, exact %.9g (n %lld)", q->name, r,
                      t4[r], ex, (long long)n);
    }
    free(a);
    free(ya);
    free(wq);
    free(yq);
  }
}

START_TEST(random_bits_vs_ref) {
  int32_t type = all_types[_i];
  if (!type_supported(type)) return;
  const int top = nllm_qtypes_isa_max();
  for (int isa = top > NLLM_ISA_SCALAR ? NLLM_ISA_SIMD : NLLM_ISA_SCALAR; isa <= top; isa++) {
    nllm_qtypes_set_isa(isa);
    check_random_bits(type);
  }
  nllm_qtypes_set_isa(top);
}
END_TEST

/* Super-blocks of random bytes (every scale, min, high-bit and level pattern, not only what
 * the quantizers produce) and extreme ones (all bits set, against activations of all -128 or
 * all 127: the largest products the int16 steps of the AVX2 kernels must hold), dispatched
 * against the reference. Only the fp16 scales are set, to finite values. */
START_TEST(raw_blocks_vs_ref) {
  static const struct {
    int32_t type;
    int n_f16;
    int f16_at[2]; /* byte offsets of the block's fp16 scales */
  } fmt[] = {{NLLM_TYPE_Q2_K, 2, {80, 82}}, {NLLM_TYPE_Q3_K, 1, {108}}, {NLLM_TYPE_IQ4_XS, 1, {0}}};
  enum { NB = 5, N = NB * QK_K };
  for (size_t f = 0; f < sizeof fmt / sizeof fmt[0]; f++) {
    const nllm_qtype *q = nllm_qtype_get(fmt[f].type);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(q->vec_dot_type, NLLM_TYPE_Q8_K);
    const size_t ts = (size_t)q->type_size;
    uint8_t *w = malloc(ts * NB);
    block_q8_K *yq = malloc(sizeof(block_q8_K) * NB);
    float *a = malloc(sizeof(float) * N), *ya = malloc(sizeof(float) * N);
    for (int kind = 0; kind < 4; kind++) { /* random x2, all ones vs -128, all ones vs 127 */
      for (size_t i = 0; i < ts * NB; i++)
        w[i] = kind < 2 ? (uint8_t)((frand() + 1.0f) * 128.0f) : 0xff;
      for (int b = 0; b < NB; b++) {
        for (int k = 0; k < fmt[f].n_f16; k++) {
          uint16_t h = q_f2h(kind < 2 ? frand() : 1.0f);
          memcpy(w + (size_t)b * ts + fmt[f].f16_at[k], &h, 2);
        }
        yq[b].d = kind < 2 ? 0.01f * (1 + frand()) : 0.02f;
        for (int j = 0; j < QK_K; j++)
          yq[b].qs[j] = (int8_t)(kind < 2 ? (int)(frand() * 128.0f) : kind == 2 ? -128 : 127);
        if (kind == 1) yq[b].qs[(b * 37) % QK_K] = -128;
        for (int j = 0; j < QK_K / 16; j++) {
          int sum = 0;
          for (int i = 0; i < 16; i++) sum += yq[b].qs[16 * j + i];
          yq[b].bsums[j] = (int16_t)sum;
        }
      }
      q->to_float_ref(w, a, N);
      nllm_qtype_get(NLLM_TYPE_Q8_K)->to_float_ref(yq, ya, N);
      double sumabs, ex = dot_exact(a, ya, N, &sumabs);
      float s = NAN, s_ref = NAN;
      q->vec_dot(N, &s, w, yq);
      q->vec_dot_ref(N, &s_ref, w, yq);
      double tol = dot_tol(N, sumabs);
      ck_assert_msg(fabs(s - ex) <= tol && fabs(s_ref - ex) <= tol,
                    "%s raw blocks kind %d: dispatched %.9g, reference %.9g, exact %.9g", q->name,
                    kind, s, s_ref, ex);
    }
    free(w);
    free(yq);
    free(a);
    free(ya);
  }
}
END_TEST

/* The reference quantizers must be as good as GGUF's: round-trip error of gaussian data. The
 * bounds are about 1.5x the error the reference quantizer reaches on such data. */
START_TEST(roundtrip_error) {
  static const struct {
    int32_t type;
    double max_rel_rms;
  } lim[] = {{NLLM_TYPE_F16, 0.0005}, {NLLM_TYPE_BF16, 0.004}, {NLLM_TYPE_Q8_0, 0.006},
             {NLLM_TYPE_Q4_0, 0.12},  {NLLM_TYPE_Q4_1, 0.10},  {NLLM_TYPE_Q5_0, 0.06},
             {NLLM_TYPE_Q5_1, 0.05},  {NLLM_TYPE_Q8_1, 0.006}, {NLLM_TYPE_Q2_K, 0.45},
             {NLLM_TYPE_Q3_K, 0.22},  {NLLM_TYPE_Q4_K, 0.10},  {NLLM_TYPE_Q5_K, 0.05},
             {NLLM_TYPE_Q6_K, 0.025}, {NLLM_TYPE_Q8_K, 0.008}, {NLLM_TYPE_IQ4_NL, 0.10},
             {NLLM_TYPE_IQ4_XS, 0.10}};
  int64_t n = 4096;
  float *x = malloc(sizeof(float) * (size_t)n), *a = malloc(sizeof(float) * (size_t)n);
  uint8_t *w = malloc((size_t)n * 4);
  for (size_t k = 0; k < sizeof lim / sizeof lim[0]; k++) {
    const nllm_qtype *q = nllm_qtype_get(lim[k].type);
    if (!q) continue;
    fill(x, n, DATA_GAUSS);
    q->from_float_ref(x, w, n);
    q->to_float_ref(w, a, n);
    double e = rel_rms(a, x, (int)n);
    ck_assert_msg(e <= lim[k].max_rel_rms, "%s round-trip rel rms %.4f > %.4f", q->name, e,
                  lim[k].max_rel_rms);
  }
  free(x);
  free(a);
  free(w);
}
END_TEST

START_TEST(table_sizes) {
  ck_assert_uint_eq(nllm_row_size(NLLM_TYPE_Q4_0, 4096), 4096 / 32 * 18);
  ck_assert_uint_eq(nllm_row_size(NLLM_TYPE_Q8_0, 64), 68);
  ck_assert_uint_eq(nllm_row_size(NLLM_TYPE_F16, 3), 6);
  ck_assert_uint_eq(nllm_row_size(NLLM_TYPE_Q4_0, 33), 0); /* not whole blocks */
  ck_assert_uint_eq(nllm_row_size(12345, 32), 0);
  ck_assert_ptr_null(nllm_qtype_get(-1));
  ck_assert_ptr_null(nllm_qtype_get(1000));
  ck_assert_ptr_nonnull(nllm_cpu_features());
  for (int i = 0; i < N_ALL; i++) {
    const nllm_qtype *q = nllm_qtype_get(all_types[i]);
    if (!q) continue;
    ck_assert_int_eq(q->type, all_types[i]);
    ck_assert_ptr_nonnull(q->to_float);
    ck_assert_ptr_nonnull(q->vec_dot_ref);
    ck_assert_ptr_nonnull(nllm_qtype_get(q->vec_dot_type));
  }
  nllm_qtypes_force_scalar(1);
  const nllm_qtype *q = nllm_qtype_get(NLLM_TYPE_Q4_0);
  ck_assert_ptr_eq((void *)q->vec_dot, (void *)q->vec_dot_ref);
  nllm_qtypes_force_scalar(0);
}
END_TEST

/* The registry agrees with the file format's table in every tier: a row exactly for each type
 * the format table marks computed, with its name and block layout, every function present,
 * the scalar tier the reference and its batch tiles (sgemm for float formats only), and no
 * crossover under the default. */
START_TEST(registry_vs_format_table) {
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    for (int32_t t = 0; t < NLLM_GGML_TYPE_COUNT; t++) {
      const nllm_qtype *q = nllm_qtype_get(t);
      const nllm_ggml_type_info *info = nllm_ggml_type_get(t);
      ck_assert_msg(!q == !info->computed, "type %d (%s): registry row %p, computed %d", t,
                    info->name, (const void *)q, info->computed);
      if (!q) continue;
      ck_assert_str_eq(q->name, info->name);
      ck_assert_int_eq(q->block_size, info->block_size);
      ck_assert_int_eq(q->type_size, info->type_size);
      ck_assert(q->to_float && q->vec_dot && q->to_float_ref && q->vec_dot_ref);
      /* load-only types (TQ*, MXFP4) have no quantizer in any tier; the others in every tier */
      ck_assert(!q->from_float == !q->from_float_ref);
      ck_assert_int_ge(q->blas_min_tokens, NLLM_BLAS_MIN_TOKENS);
      ck_assert(!q->gemm4 == !q->gemm_prep);
      ck_assert(!q->vec_dot4xt || q->vec_dot4x4);
      ck_assert(!q->gemm_packed || q->pack_group_rows == NLLM_PACK_ROWS ||
                q->pack_group_rows == 2 * NLLM_PACK_ROWS);
      ck_assert(!q->gemm_packed ||
                (q->packed_tok >= NLLM_GEMM_TOK && q->packed_tok <= NLLM_PACKED_TOK_MAX));
      ck_assert(!q->gemm_packed_stream ||
                (q->stream_tok >= q->packed_tok && q->stream_tok <= NLLM_STREAM_TOK_MAX));
      if (isa == NLLM_ISA_SCALAR) {
        ck_assert(!q->gemm4);
        ck_assert(q->to_float == q->to_float_ref && q->from_float == q->from_float_ref &&
                  q->vec_dot == q->vec_dot_ref);
        /* quantized formats: the batch tiles (cpu/quant_tile.h), floats none */
        const int quantized = q->vec_dot_type != NLLM_TYPE_F32;
        ck_assert(!q->vec_dot4_tile && !q->vec_dot4 == !quantized && !q->vec_dot4x4 == !quantized);
        /* float formats cross to sgemm at the default; quantized ones keep the one-row dot */
        ck_assert_int_eq(q->blas_min_tokens,
                         q->vec_dot_type == NLLM_TYPE_F32 ? NLLM_BLAS_MIN_TOKENS : NLLM_BLAS_NEVER);
      }
    }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

/* ------------------------------------------------------------------ matmul */

static void check_matmul(int32_t type, int64_t rows, int64_t cols, int64_t n_tok, int n_threads) {
  const nllm_qtype *q = nllm_qtype_get(type);
  const int blas = rows >= NLLM_BLAS_MIN_ROWS && nllm_matmul_uses_blas(type, n_tok, n_threads);
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  size_t rs = nllm_row_size(type, cols);
  uint8_t *W = malloc(rs * (size_t)rows);
  float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
  float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
  float *xd = malloc(sizeof(float) * (size_t)(n_tok * cols));
  float *y = malloc(sizeof(float) * (size_t)(n_tok * rows));
  size_t ars = nllm_row_size(q->vec_dot_type, cols);
  uint8_t *xq = malloc(ars * (size_t)n_tok);
  for (int64_t r = 0; r < rows; r++) {
    fill(wf + r * cols, cols, DATA_GAUSS);
    q->from_float_ref(wf + r * cols, W + (size_t)r * rs, cols);
    q->to_float_ref(W + (size_t)r * rs, wf + r * cols, cols);
  }
  fill(x, n_tok * cols, DATA_GAUSS);
  /* the reference sees the activation exactly as the kernel does: rounded to vec_dot_type,
   * except on the sgemm path, which takes float activations as they are */
  for (int64_t t = 0; t < n_tok; t++) {
    if (q->vec_dot_type == NLLM_TYPE_F32 || blas) {
      memcpy(xd + t * cols, x + t * cols, sizeof(float) * (size_t)cols);
    } else {
      vq->from_float_ref(x + t * cols, xq + (size_t)t * ars, cols);
      vq->to_float_ref(xq + (size_t)t * ars, xd + t * cols, cols);
    }
  }
  size_t wsize = nllm_matmul_wsize(type, cols, n_tok, n_threads);
  void *wdata = malloc(wsize); /* exactly the size asked for: ASan catches overruns */
  for (int64_t i = 0; i < n_tok * rows; i++) y[i] = NAN;
  nllm_matmul(y, W, type, rows, cols, x, n_tok, wdata, n_threads);
  for (int64_t t = 0; t < n_tok; t++)
    for (int64_t r = 0; r < rows; r++) {
      double sumabs, ex = dot_exact(wf + r * cols, xd + t * cols, cols, &sumabs);
      float got = y[t * rows + r];
      double tol = dot_tol(cols, sumabs);
      if (q->vec_dot_type != NLLM_TYPE_F32 && !blas)
        tol += offset_tol(q, W + (size_t)r * rs, xq + (size_t)t * ars, cols);
      ck_assert_msg(fabs(got - ex) <= tol,
                    "matmul %s rows %lld cols %lld n_tok %lld threads %d: y[%lld,%lld] = %.9g, "
                    "expected %.9g",
                    q->name, (long long)rows, (long long)cols, (long long)n_tok, n_threads,
                    (long long)t, (long long)r, got, ex);
    }
  free(W);
  free(wf);
  free(x);
  free(xd);
  free(y);
  free(xq);
  free(wdata);
}

START_TEST(matmul_vs_naive) {
  int32_t type = all_types[_i];
  if (!type_supported(type)) return;
  const nllm_qtype *q = nllm_qtype_get(type);
  int64_t cols =
      q->block_size == QK_K || nllm_qtype_get(q->vec_dot_type)->block_size == QK_K ? 512 : 96;
  static const int64_t toks[] = {1, 3, 17, 64};
  static const int64_t rows[] = {1, 7, 33};
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    for (int ti = 0; ti < 4; ti++)
      for (int ri = 0; ri < 3; ri++) check_matmul(type, rows[ri], cols, toks[ti], 1 + (ri & 1));
    /* each tier's prompt kernels (tiles or row-interleaved): items that leave rows out of a
     * group of eight, a partial last four tokens */
    check_matmul(type, 21, 256, 18, 2);
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
  check_matmul(type, 67, cols * 3, 5, 2);
  /* rows a multiple of NLLM_GEMM_COLS (the register tiles, where a tier has them), token counts
   * that leave a partial tile, rows that leave a partial four */
  check_matmul(type, 38, 768, 7, 1);
  check_matmul(type, 21, 256, 18, 2);
  /* past every format's tile crossover (gemm_min_tokens), with a partial last tile */
  check_matmul(type, 38, 768, 42, 2);
  /* rows long enough that the sgemm path's per-thread tile holds fewer than its usual rows */
  check_matmul(type, 37, 8448, 17, 2);
}
END_TEST

/* Matrices of one input (nllm_matmul_group): each output bit-identical to nllm_matmul of its
 * matrix alone, for sets of one format (shared quantization and tiles), of formats that share
 * the activation type but not the tiles (Q4_K with Q6_K), of different activation types, and
 * with a float matrix (each one alone); single tokens, partial tiles and rows, 1 and 2 threads,
 * in the scratch the group asks for (exactly: ASan sees an overrun). */
START_TEST(matmul_group_vs_each) {
  static const struct {
    int32_t types[3];
    int n;
    int64_t cols;
  } sets[] = {
      {{NLLM_TYPE_Q4_0, NLLM_TYPE_Q4_0, NLLM_TYPE_Q4_0}, 3, 640},
      {{NLLM_TYPE_Q4_0, NLLM_TYPE_Q4_0, 0}, 2, 96},
      {{NLLM_TYPE_Q4_K, NLLM_TYPE_Q4_K, NLLM_TYPE_Q6_K}, 3, 768},
      {{NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_0, NLLM_TYPE_Q4_K}, 3, 512},
      {{NLLM_TYPE_Q4_0, NLLM_TYPE_F16, 0}, 2, 256},
  };
  static const int64_t rows[3] = {37, 8, 64}, toks[] = {1, 3, 7, 17};
  for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++)
    for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
      nllm_qtypes_set_isa(isa);
      const int64_t cols = sets[si].cols;
      const int n = sets[si].n;
      nllm_matmul_part p[3];
      uint8_t *W[3];
      float *y[3], *ref[3];
      float *x = malloc(sizeof(float) * (size_t)(17 * cols)),
            *wf = malloc(sizeof(float) * (size_t)cols);
      ck_assert(x && wf);
      fill(x, 17 * cols, DATA_GAUSS);
      for (int i = 0; i < n; i++) {
        const nllm_qtype *q = nllm_qtype_get(sets[si].types[i]);
        const size_t rs = nllm_row_size(q->type, cols);
        W[i] = malloc(rs * (size_t)rows[i]);
        y[i] = malloc(sizeof(float) * (size_t)(17 * rows[i]));
        ref[i] = malloc(sizeof(float) * (size_t)(17 * rows[i]));
        ck_assert(W[i] && y[i] && ref[i]);
        for (int64_t r = 0; r < rows[i]; r++) {
          fill(wf, cols, (int)((r + i) % N_DATA));
          q->from_float_ref(wf, W[i] + (size_t)r * rs, cols);
        }
        p[i] = (nllm_matmul_part){y[i], W[i], q->type, rows[i], NULL};
      }
      for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++)
        for (int th = 1; th <= 2; th++) {
          const int64_t nt = toks[ti];
          size_t each = 0;
          for (int i = 0; i < n; i++) {
            const size_t s1 = nllm_matmul_wsize(p[i].wtype, cols, nt, th);
            if (s1 > each) each = s1;
          }
          void *wd = malloc(each);
          for (int i = 0; i < n; i++)
            nllm_matmul(ref[i], W[i], p[i].wtype, rows[i], cols, x, nt, wd, th);
          free(wd);
          const size_t gs = nllm_matmul_group_wsize(p, n, cols, nt, th);
          ck_assert(gs >= each);
          /* room for every form, then only a matrix's worth (a mix runs one by one) */
          for (int room = 0; room < 2; room++) {
            const size_t ws = room ? each : gs;
            wd = malloc(ws);
            for (int i = 0; i < n; i++)
              for (int64_t k = 0; k < nt * rows[i]; k++) y[i][k] = NAN;
            nllm_matmul_group(p, n, cols, x, nt, wd, ws, th);
            free(wd);
            for (int i = 0; i < n; i++)
              ck_assert_msg(memcmp(y[i], ref[i], sizeof(float) * (size_t)(nt * rows[i])) == 0,
                            "set %zu isa %d matrix %d (%s) n_tok %lld threads %d scratch %zu: the "
                            "group's product differs from the matrix's alone",
                            si, isa, i, nllm_qtype_get(p[i].wtype)->name, (long long)nt, th, ws);
          }
        }
      for (int i = 0; i < n; i++) {
        free(W[i]);
        free(y[i]);
        free(ref[i]);
      }
      free(x);
      free(wf);
    }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

/* ------------------------------------------------------------------ float GEMM */

/* Every float GEMM this CPU can run, against the exact product of the weights as stored and the
 * activations: shapes that leave partial micro tiles (rows), token blocks (tokens) and column
 * chunks (cols), odd lengths, every data kind in weights and activations, and random finite
 * bit patterns as weights (F16 and BF16 subnormals; BF16 below 2^23, whose products stay finite).
 * The sums are also bit-identical for any thread count (each is computed by one work item in one
 * order), and nothing is written past the n_tok x rows outputs. 301 rows make work items of several
 * micro tiles. */
typedef struct {
  const char *name;
  const nllm_gemmf *g;
  int32_t type;
  int xbf16; /* the kernel rounds the activations to BF16 first (NLLM_MATMUL_XBF16) */
} gemmf_case;

/* x rounded to the nearest BF16, ties to even (the reference of NLLM_MATMUL_XBF16) */
static float round_bf16_ref(float x) {
  uint16_t b = nllm_fp32_to_bf16(x);
  uint32_t u = (uint32_t)b << 16;
  memcpy(&x, &u, 4);
  return x;
}

static void check_gemmf(const gemmf_case *gc, int64_t rows, int64_t cols, int64_t n_tok, int wk,
                        int xk) {
  const nllm_qtype *q = nllm_qtype_get(gc->type);
  const size_t rs = nllm_row_size(gc->type, cols);
  uint8_t *W = malloc(rs * (size_t)rows);
  float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
  float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
  const int64_t ny = n_tok * rows;
  float *y = malloc(sizeof(float) * (size_t)(ny + 16)), *y2 = malloc(sizeof(float) * (size_t)ny);
  ck_assert(W && wf && x && y && y2);
  for (int64_t r = 0; r < rows; r++) {
    if (wk == N_DATA) { /* random finite bit patterns */
      uint16_t *h = (uint16_t *)(W + (size_t)r * rs);
      for (int64_t k = 0; k < cols && gc->type != NLLM_TYPE_F32; k++) {
        uint16_t b;
        do b = (uint16_t)(rand() & 0xffff);
        while (gc->type == NLLM_TYPE_F16 ? (b & 0x7c00) == 0x7c00 : (b & 0x7f80) >= 0x4b00);
        h[k] = b;
      }
      if (gc->type == NLLM_TYPE_F32) fill((float *)(W + (size_t)r * rs), cols, DATA_SPIKY);
    } else {
      fill(wf + r * cols, cols, wk);
      q->from_float_ref(wf + r * cols, W + (size_t)r * rs, cols);
    }
    q->to_float_ref(W + (size_t)r * rs, wf + r * cols, cols);
  }
  fill(x, n_tok * cols, xk);
  float *xr = malloc(sizeof(float) * (size_t)(n_tok * cols));
  ck_assert_ptr_nonnull(xr);
  for (int64_t i = 0; i < n_tok * cols; i++) xr[i] = gc->xbf16 ? round_bf16_ref(x[i]) : x[i];
  void *ws = malloc(nllm_gemmf_wsize(cols, n_tok, 2)); /* exactly the size: ASan sees overruns */
  ck_assert_ptr_nonnull(ws);
  for (int64_t i = 0; i < ny + 16; i++) y[i] = NAN;
  nllm_gemmf_run(gc->g, y, W, rs, rows, cols, x, n_tok, ws, 1);
  nllm_gemmf_run(gc->g, y2, W, rs, rows, cols, x, n_tok, ws, 2);
  for (int64_t i = ny; i < ny + 16; i++)
    ck_assert_msg(isnan(y[i]), "%s: wrote y[%lld]", gc->name, (long long)i);
  ck_assert_msg(memcmp(y, y2, sizeof(float) * (size_t)ny) == 0,
                "%s rows %lld cols %lld n_tok %lld: 2 threads differ from 1", gc->name,
                (long long)rows, (long long)cols, (long long)n_tok);
  for (int64_t t = 0; t < n_tok; t++)
    for (int64_t r = 0; r < rows; r++) {
      double sumabs, ex = dot_exact(wf + r * cols, xr + t * cols, cols, &sumabs);
      double tol = dot_tol(cols, sumabs);
      const float got = y[t * rows + r];
      ck_assert_msg(fabs(got - ex) <= tol,
                    "%s rows %lld cols %lld n_tok %lld data %d/%d: y[%lld,%lld] = %.9g, "
                    "expected %.9g (tolerance %.3g)",
                    gc->name, (long long)rows, (long long)cols, (long long)n_tok, wk, xk,
                    (long long)t, (long long)r, got, ex, tol);
    }
  free(ws);
  free(W);
  free(wf);
  free(x);
  free(xr);
  free(y);
  free(y2);
}

/* nllm_gemmf_run_group: matrices of one input (different heights, so the items of one pool
 * pass mix parts and end mid-part) give each matrix's nllm_gemmf_run sums bit for bit, on 1 and
 * 2 threads, in the scratch of one, writing nothing past each output. */
static void check_gemmf_group(const nllm_gemmf *g, int32_t type, const int64_t *rows, int n_p,
                              int64_t cols, int64_t n_tok) {
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *W[NLLM_GEMMF_PARTS_MAX];
  float *y[NLLM_GEMMF_PARTS_MAX], *ref[NLLM_GEMMF_PARTS_MAX];
  const void *cw[NLLM_GEMMF_PARTS_MAX];
  size_t w_rs[NLLM_GEMMF_PARTS_MAX];
  float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
  float *wf = malloc(sizeof(float) * (size_t)cols);
  ck_assert(x && wf);
  fill(x, n_tok * cols, DATA_GAUSS);
  const nllm_qtype *q = nllm_qtype_get(type);
  for (int p = 0; p < n_p; p++) {
    W[p] = malloc(rs * (size_t)rows[p]);
    y[p] = malloc(sizeof(float) * (size_t)(n_tok * rows[p] + 16));
    ref[p] = malloc(sizeof(float) * (size_t)(n_tok * rows[p]));
    ck_assert(W[p] && y[p] && ref[p]);
    for (int64_t r = 0; r < rows[p]; r++) {
      fill(wf, cols, (int)((r + p) % N_DATA));
      q->from_float_ref(wf, W[p] + (size_t)r * rs, cols);
    }
    cw[p] = W[p];
    w_rs[p] = rs;
  }
  void *ws = malloc(nllm_gemmf_wsize(cols, n_tok, 2)); /* one matrix's size: ASan sees overruns */
  ck_assert_ptr_nonnull(ws);
  for (int p = 0; p < n_p; p++) nllm_gemmf_run(g, ref[p], W[p], rs, rows[p], cols, x, n_tok, ws, 1);
  for (int nt = 1; nt <= 2; nt++) {
    for (int p = 0; p < n_p; p++)
      for (int64_t i = 0; i < n_tok * rows[p] + 16; i++) y[p][i] = NAN;
    nllm_gemmf_run_group(g, n_p, y, cw, w_rs, rows, cols, x, n_tok, ws, nt);
    for (int p = 0; p < n_p; p++) {
      ck_assert_msg(memcmp(y[p], ref[p], sizeof(float) * (size_t)(n_tok * rows[p])) == 0,
                    "group of %d, part %d (%lld rows), cols %lld, n_tok %lld, %d threads: "
                    "differs from the matrix alone",
                    n_p, p, (long long)rows[p], (long long)cols, (long long)n_tok, nt);
      for (int64_t i = n_tok * rows[p]; i < n_tok * rows[p] + 16; i++)
        ck_assert_msg(isnan(y[p][i]), "group part %d: wrote y[%lld]", p, (long long)i);
    }
  }
  for (int p = 0; p < n_p; p++) {
    free(W[p]);
    free(y[p]);
    free(ref[p]);
  }
  free(ws);
  free(wf);
  free(x);
}

START_TEST(gemmf_group_vs_single) {
#if defined(__x86_64__)
  if (nllm_qtypes_isa_max() < NLLM_ISA_SIMD) return;
  nllm_qtypes_set_isa(NLLM_ISA_SCALAR); /* the reference conversions */
  static const int64_t r3[] = {301, 7, 37}, r2[] = {96, 1000}, r4[] = {6, 12, 1, 200};
  check_gemmf_group(&nllm_gemmf_f16_avx2, NLLM_TYPE_F16, r3, 3, 258, 40);
  check_gemmf_group(&nllm_gemmf_f16_avx2, NLLM_TYPE_F16, r2, 2, 130, 128);
  check_gemmf_group(&nllm_gemmf_f32_avx2, NLLM_TYPE_F32, r4, 4, 98, 17);
  check_gemmf_group(&nllm_gemmf_bf16_avx2, NLLM_TYPE_BF16, r3, 3, 96, 33);
  if (nllm_qtypes_isa_max() >= NLLM_ISA_AVX512)
    check_gemmf_group(&nllm_gemmf_f16_avx512, NLLM_TYPE_F16, r3, 3, 258, 40);
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
#endif
}
END_TEST

START_TEST(gemmf_vs_naive) {
  gemmf_case cases[8];
  int n = 0;
#if defined(__x86_64__)
  if (nllm_qtypes_isa_max() >= NLLM_ISA_SIMD) {
    cases[n++] = (gemmf_case){"F32 avx2", &nllm_gemmf_f32_avx2, NLLM_TYPE_F32, 0};
    cases[n++] = (gemmf_case){"F16 avx2", &nllm_gemmf_f16_avx2, NLLM_TYPE_F16, 0};
    cases[n++] = (gemmf_case){"BF16 avx2", &nllm_gemmf_bf16_avx2, NLLM_TYPE_BF16, 0};
  }
  if (nllm_qtypes_isa_max() >= NLLM_ISA_AVX512) {
    cases[n++] = (gemmf_case){"F32 avx512", &nllm_gemmf_f32_avx512, NLLM_TYPE_F32, 0};
    cases[n++] = (gemmf_case){"F16 avx512", &nllm_gemmf_f16_avx512, NLLM_TYPE_F16, 0};
    cases[n++] = (gemmf_case){"BF16 avx512", &nllm_gemmf_bf16_avx512, NLLM_TYPE_BF16, 0};
    nllm_qtypes_set_isa(NLLM_ISA_AVX512);
    if (nllm_qtype_get(NLLM_TYPE_BF16)->gemmf_xbf16)
      cases[n++] =
          (gemmf_case){"BF16 x BF16 avx512", &nllm_gemmf_bf16_xbf16_avx512, NLLM_TYPE_BF16, 1};
    else
      fprintf(stderr, "gemmf_vs_naive: no AVX512_BF16 on this CPU, vdpbf16ps kernel not run\n");
  }
#endif
  if (n == 0) {
    fprintf(stderr, "gemmf_vs_naive: no SIMD tier on this CPU, no float GEMM to check\n");
    return;
  }
  static const int64_t shapes[][3] = {/* rows, cols, tokens */
                                      {1, 2, 1},     {5, 8, 3},     {12, 96, 32}, {13, 98, 33},
                                      {37, 256, 17}, {24, 258, 64}, {7, 600, 70}, {30, 1030, 40},
                                      {6, 3, 16},    {301, 130, 40}};
  for (int c = 0; c < n; c++) {
    nllm_qtypes_set_isa(NLLM_ISA_SCALAR); /* the reference conversions */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      for (int k = 0; k <= N_DATA; k++)
        check_gemmf(&cases[c], shapes[s][0], shapes[s][1], shapes[s][2], k,
                    k == N_DATA ? DATA_GAUSS : (k + (int)s) % N_DATA);
    }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

/* NLLM_MATMUL_XBF16 in every tier and on every path (one token, small batches, the GEMM, the
 * vdpbf16ps GEMM where the CPU has it): BF16 weights times the activations rounded to BF16,
 * against the exact product with the rounded activations, scratch exactly nllm_matmul_wsize.
 * The rounding moves a product ~2^-9 sqrt(cols) relative, far more than the sums' own error,
 * so nearly every output must be nearer the rounded reference than the unrounded one (a path
 * that skipped the rounding fails). Other formats ignore the mode. */
START_TEST(matmul_xbf16) {
  const int64_t rows = 29, cols = 1030;
  static const int64_t toks[] = {1, 5, 17, 40};
  const size_t rs = nllm_row_size(NLLM_TYPE_BF16, cols);
  uint8_t *W = malloc(rs * (size_t)rows);
  float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
  float *x = malloc(sizeof(float) * (size_t)(40 * cols)), *xr = malloc(sizeof(float) * 40 * cols);
  float *y = malloc(sizeof(float) * 40 * rows), *y32 = malloc(sizeof(float) * 40 * rows);
  ck_assert(W && wf && x && xr && y && y32);
  fill(wf, rows * cols, DATA_GAUSS);
  nllm_qtype_get(NLLM_TYPE_BF16)->from_float_ref(wf, W, rows * cols);
  nllm_qtype_get(NLLM_TYPE_BF16)->to_float_ref(W, wf, rows * cols);
  fill(x, 40 * cols, DATA_GAUSS);
  for (int64_t i = 0; i < 40 * cols; i++) xr[i] = round_bf16_ref(x[i]);
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    for (int ti = 0; ti < 4; ti++) {
      const int64_t n = toks[ti];
      const int nt = 1 + ti % 2;
      void *ws = malloc(nllm_matmul_wsize(NLLM_TYPE_BF16, cols, n, nt));
      ck_assert_ptr_nonnull(ws);
      nllm_matmul_mode(y, W, NLLM_TYPE_BF16, rows, cols, x, n, ws, nt, NLLM_MATMUL_XBF16);
      int64_t nearer = 0;
      for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
          double sumabs, ex = dot_exact(wf + r * cols, xr + t * cols, cols, &sumabs);
          double sa32, ex32 = dot_exact(wf + r * cols, x + t * cols, cols, &sa32);
          const double tol = dot_tol(cols, sumabs);
          ck_assert_msg(fabs(y[t * rows + r] - ex) <= tol,
                        "isa %d n_tok %lld: y[%lld,%lld] = %.9g, expected %.9g (tolerance %.3g)",
                        isa, (long long)n, (long long)t, (long long)r, y[t * rows + r], ex, tol);
          nearer += fabs(y[t * rows + r] - ex) < fabs(y[t * rows + r] - ex32);
        }
      ck_assert_msg(nearer * 10 >= n * rows * 9,
                    "isa %d n_tok %lld: %lld of %lld nearer the rounded", isa, (long long)n,
                    (long long)nearer, (long long)(n * rows));
      /* F32 weights: the mode changes nothing (same path, same bits) */
      void *ws32 = malloc(nllm_matmul_wsize(NLLM_TYPE_F32, cols, n, nt));
      ck_assert_ptr_nonnull(ws32);
      nllm_matmul_mode(y, wf, NLLM_TYPE_F32, rows, cols, x, n, ws32, nt, NLLM_MATMUL_XBF16);
      nllm_matmul(y32, wf, NLLM_TYPE_F32, rows, cols, x, n, ws32, nt);
      ck_assert(memcmp(y, y32, sizeof(float) * (size_t)(n * rows)) == 0);
      free(ws32);
      free(ws);
    }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
  free(W);
  free(wf);
  free(x);
  free(xr);
  free(y);
  free(y32);
}
END_TEST

/* The registry: every SIMD tier routes the float formats' prompt batches to a GEMM, never to
 * sgemm, and the scalar tier has none. */
START_TEST(gemmf_registry) {
  const int32_t types[] = {NLLM_TYPE_F32, NLLM_TYPE_F16, NLLM_TYPE_BF16};
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    for (int i = 0; i < 3; i++) {
      const nllm_qtype *q = nllm_qtype_get(types[i]);
#if defined(__x86_64__)
      if (isa >= NLLM_ISA_SIMD) {
        ck_assert_ptr_nonnull(q->gemmf);
        ck_assert_int_eq(q->blas_min_tokens, NLLM_BLAS_NEVER);
        ck_assert(nllm_matmul_uses_gemm(types[i], 64, 2));
        ck_assert(!nllm_matmul_uses_blas(types[i], 64, 2));
        continue;
      }
#endif
      ck_assert_ptr_null(q->gemmf);
    }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

/* ------------------------------------------------------------------ ops */

START_TEST(ops_vs_naive) {
  enum { N = 515 };
  float x[N], w[N], o[N], g[N], u[N];
  for (int scalar = 0; scalar < 2; scalar++) {
    nllm_qtypes_force_scalar(scalar);
    fill(x, N, DATA_GAUSS);
    fill(w, N, DATA_GAUSS);
    double sumabs, ex = dot_exact(x, w, N, &sumabs);
    ck_assert(fabs(nllm_dot_f32(x, w, N) - ex) <= dot_tol(N, sumabs));
    for (int n = 0; n < 20; n++) { /* every tail length */
      ex = dot_exact(x, w, n, &sumabs);
      ck_assert(fabs(nllm_dot_f32(x, w, n) - ex) <= dot_tol(n, sumabs));
    }
    memcpy(o, w, sizeof o);
    nllm_axpy_f32(o, 0.75f, x, N);
    for (int i = 0; i < N; i++)
      ck_assert(fabs(o[i] - (w[i] + 0.75 * x[i])) <= 1e-6 * (fabs(w[i]) + fabs(x[i])));

    /* rmsnorm over 3 rows */
    float xr[3 * N], orr[3 * N];
    fill(xr, 3 * N, DATA_GAUSS);
    nllm_rmsnorm(orr, xr, w, N, 3, 1e-5f, 2);
    for (int r = 0; r < 3; r++) {
      double ss = 0;
      for (int i = 0; i < N; i++) ss += (double)xr[r * N + i] * xr[r * N + i];
      double sc = 1.0 / sqrt(ss / N + 1e-5);
      for (int i = 0; i < N; i++) {
        double e = xr[r * N + i] * sc * w[i];
        ck_assert_msg(fabs(orr[r * N + i] - e) <= 1e-5 * (fabs(e) + 1e-3), "rmsnorm %d %d", r, i);
      }
    }

    /* glu */
    fill(g, N, DATA_LARGE);
    for (int i = 0; i < N; i++) g[i] *= 1e-3f; /* -30..30 covers both saturations */
    fill(u, N, DATA_GAUSS);
    for (int gelu = 0; gelu < 2; gelu++) {
      nllm_glu(o, g, u, N, gelu, 2);
      for (int i = 0; i < N; i++) {
        double gg_ = g[i],
               a = gelu
                       ? 0.5 * gg_ * (1 + tanh(sqrt(2 / M_PI) * (gg_ + 0.044715 * gg_ * gg_ * gg_)))
                       : gg_ / (1 + exp(-gg_));
        ck_assert_msg(fabs(o[i] - a * u[i]) <= 1e-5 * (fabs(a * u[i]) + 1e-6),
                      "glu %d %d: g %g got %g want %g", gelu, i, g[i], o[i], a * u[i]);
      }
    }
  }
  /* glu of the SIMD tier against the scalar reference on the same data: edge values first
   * (both saturations, overflow of the GELU cube, signed zeros, NaN), then the random range */
  static const float edge[] = {0,   -0.f, 1,   -1,   1e-30f, -1e-30f, 20,    -20,    88,  -88,
                               100, -100, 1e4, -1e4, 1e30f,  -1e30f,  3e38f, -3e38f, NAN, -NAN};
  const int n_edge = (int)(sizeof edge / sizeof edge[0]);
  float so[N];
  fill(g, N, DATA_LARGE);
  for (int i = 0; i < N; i++) g[i] = i < n_edge ? edge[i] : g[i] * 1e-3f;
  fill(u, N, DATA_GAUSS);
  for (int gelu = 0; gelu < 2; gelu++) {
    nllm_qtypes_force_scalar(1);
    nllm_glu(so, g, u, N, gelu, 1);
    nllm_qtypes_force_scalar(0);
    nllm_glu(o, g, u, N, gelu, 2);
    for (int i = 0; i < N; i++) {
      if (isnan(so[i]) || isinf(so[i])) {
        ck_assert_msg(isnan(so[i]) ? isnan(o[i]) : o[i] == so[i],
                      "glu %d: g %g gives %g, scalar %g", gelu, g[i], o[i], so[i]);
        continue;
      }
      ck_assert_msg(fabsf(o[i] - so[i]) <= 2e-6f * fabsf(so[i]) + 1e-30f,
                    "glu %d vs scalar: g %g u %g got %g want %g", gelu, g[i], u[i], o[i], so[i]);
    }
  }
}
END_TEST

START_TEST(rope_vs_naive) {
  enum { H = 3, D = 64 };
  float inv[D / 2];
  for (int n_rot = 32; n_rot <= D; n_rot += 32) { /* partial and full rotation */
    for (int i = 0; i < n_rot / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / n_rot);
    for (int neox = 0; neox < 2; neox++) {
      for (int pos = 0; pos < 5000; pos += 1237) {
        float x[H * D], x0[H * D];
        fill(x, H * D, DATA_GAUSS);
        memcpy(x0, x, sizeof x);
        nllm_rope(x, H, D, n_rot, pos, inv, neox);
        /* the two-step form (angles once, then any number of rotations) gives the same bits */
        float x2[H * D], cs[D / 2], sn[D / 2];
        memcpy(x2, x0, sizeof x2);
        nllm_rope_angles(cs, sn, pos, inv, n_rot / 2);
        nllm_rope_with(x2, H, D, n_rot, cs, sn, neox);
        ck_assert_msg(memcmp(x2, x, sizeof x) == 0, "rope in two steps differs (pos %d)", pos);
        for (int h = 0; h < H; h++) {
          for (int i = 0; i < n_rot / 2; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
            double th = (double)pos * inv[i], c = cos(th), s = sin(th);
            double ea = x0[h * D + a] * c - x0[h * D + b] * s,
                   eb = x0[h * D + a] * s + x0[h * D + b] * c;
            ck_assert_msg(fabs(x[h * D + a] - ea) < 1e-5 && fabs(x[h * D + b] - eb) < 1e-5,
                          "rope neox %d n_rot %d pos %d head %d pair %d", neox, n_rot, pos, h, i);
          }
          for (int i = n_rot; i < D; i++) ck_assert(x[h * D + i] == x0[h * D + i]); /* untouched */
        }
      }
    }
  }
}
END_TEST

/* ------------------------------------------------------------------ load-only low-bit types */

/* dot of a dequantized weight row with a dequantized activation row, in double */
static double lowbit_expected(const nllm_qtype *q, const void *w, const void *a, int64_t n,
                              double *sumabs) {
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  float *wf = malloc(sizeof(float) * (size_t)n), *af = malloc(sizeof(float) * (size_t)n);
  q->to_float_ref(w, wf, n);
  vq->to_float_ref(a, af, n);
  double s = 0, sa = 0;
  for (int64_t i = 0; i < n; i++) {
    s += (double)wf[i] * af[i];
    sa += fabs((double)wf[i] * af[i]);
  }
  free(wf);
  free(af);
  *sumabs = sa;
  return s;
}

/* vec_dot of each low-bit type against dequantize + dot, in every tier: random bytes (every
 * code and packed byte value), every byte value in every position, and scales from
 * zero and fp16 subnormals to the largest finite fp16 / E8M0 (MXFP4: 2^-127..2^127). */
static const int32_t lowbit_types[] = {
    NLLM_TYPE_TQ1_0, NLLM_TYPE_TQ2_0,   NLLM_TYPE_MXFP4, NLLM_TYPE_IQ2_XXS, NLLM_TYPE_IQ2_XS,
    NLLM_TYPE_IQ2_S, NLLM_TYPE_IQ3_XXS, NLLM_TYPE_IQ3_S, NLLM_TYPE_IQ1_S,   NLLM_TYPE_IQ1_M};
/* The IQ formats store their F16 scale first, the ternary ones last. */
static int lowbit_scale_first(int32_t type) {
  return type != NLLM_TYPE_TQ1_0 && type != NLLM_TYPE_TQ2_0;
}

/* Activations at the ends of int8: -128 (whose negation leaves int8) and 127 mixed with small
 * values; Q8_K's bsums kept consistent, Q8_0 as it comes (nb blocks of its 32) */
static void q8_extremes(int32_t type, void *a, int64_t nb, int pass) {
  if (type == NLLM_TYPE_Q8_0) {
    block_q8_0 *y = a;
    for (int64_t b = 0; b < nb; b++)
      for (int i = 0; i < QK; i++) {
        unsigned r = (unsigned)(i * 7 + b * 13 + pass) % 5;
        y[b].qs[i] = (int8_t)(r == 0 ? -128 : r == 1 ? 127 : r == 2 ? -127 : (int)(r - 3));
      }
    return;
  }
  block_q8_K *y = a;
  for (int64_t b = 0; b < nb; b++) {
    for (int i = 0; i < QK_K; i++) {
      unsigned r = (unsigned)(i * 7 + b * 13 + pass) % 5;
      y[b].qs[i] = (int8_t)(r == 0 ? -128 : r == 1 ? 127 : r == 2 ? -127 : (int)(r - 3));
    }
    for (int j = 0; j < QK_K / 16; j++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) sum += y[b].qs[16 * j + i];
      y[b].bsums[j] = (int16_t)sum;
    }
  }
}

static int same_float(float x, float y) {
  return (isnan(x) && isnan(y)) || memcmp(&x, &y, sizeof x) == 0;
}

/* The four-row and four-by-four kernels against vec_dot on each pair, and vec_dot against the
 * reference, bit for bit: rows and tokens are quarters of w and a (nb / 4 blocks apart), dotted
 * over 1, 3, nb / 4 - 3 and nb / 4 blocks (whole groups of the kernels that take 8 or 16 blocks
 * at a time, and tails); results written with a stride wider than four, the gaps left alone. */
static void lowbit_check_dot4(const nllm_qtype *q, const uint8_t *w, const uint8_t *a, int64_t nb,
                              int isa, int pass) {
  const size_t xs = (size_t)(nb / 4) * (size_t)q->type_size;
  const size_t ys = nllm_row_size(q->vec_dot_type, nb / 4 * q->block_size);
  const int64_t counts[] = {1, 3, nb / 4 - 3, nb / 4};
  enum { SS = 7 };
  for (int k = 0; k < 4; k++) {
    const int64_t n = counts[k] * q->block_size;
    float want[4][4], got4[4], got[4 * SS];
    for (int t = 0; t < 4; t++)
      for (int r = 0; r < 4; r++) {
        float ref = NAN;
        q->vec_dot(n, &want[t][r], w + r * xs, a + t * ys);
        q->vec_dot_ref(n, &ref, w + r * xs, a + t * ys);
        ck_assert_msg(same_float(want[t][r], ref),
                      "%s tier %d pass %d vec_dot n %lld row %d token %d: %.9g vs ref %.9g",
                      q->name, isa, pass, (long long)n, r, t, want[t][r], ref);
      }
    if (q->vec_dot4)
      for (int t = 0; t < 4; t++) {
        q->vec_dot4(n, got4, w, xs, a + t * ys);
        for (int r = 0; r < 4; r++)
          ck_assert_msg(same_float(got4[r], want[t][r]),
                        "%s tier %d pass %d vec_dot4 n %lld row %d token %d: %.9g vs %.9g", q->name,
                        isa, pass, (long long)n, r, t, got4[r], want[t][r]);
      }
    if (!q->vec_dot4x4) continue;
    for (int i = 0; i < 4 * SS; i++) got[i] = -0.0f;
    q->vec_dot4x4(n, got, SS, w, xs, a, ys);
    for (int t = 0; t < 4; t++)
      for (int i = 0; i < SS; i++)
        ck_assert_msg(
            i < 4 ? same_float(got[t * SS + i], want[t][i]) : same_float(got[t * SS + i], -0.0f),
            "%s tier %d pass %d vec_dot4x4 n %lld token %d slot %d: %.9g", q->name, isa, pass,
            (long long)n, t, i, got[t * SS + i]);
    if (!q->vec_dot4xt) continue;
    for (int nt = 2; nt <= 3; nt++) {
      for (int i = 0; i < 4 * SS; i++) got[i] = -0.0f;
      q->vec_dot4xt(n, got, SS, w, xs, a, ys, nt);
      for (int t = 0; t < 4; t++)
        for (int i = 0; i < SS; i++)
          ck_assert_msg(i < 4 && t < nt ? same_float(got[t * SS + i], want[t][i])
                                        : same_float(got[t * SS + i], -0.0f),
                        "%s tier %d pass %d vec_dot4xt (%d tokens) n %lld token %d slot %d: %.9g",
                        q->name, isa, pass, nt, (long long)n, t, i, got[t * SS + i]);
    }
  }
}

/* A batch of these load-only weights through nllm_matmul against each token's own matmul, bit
 * for bit: rows that leave a partial four, 2, 3, 6 and 7 tokens (the two- and three-token
 * kernels alone and after a four-by-four step), one and two threads. w holds 8 rows of nb / 8
 * blocks. */
static void lowbit_check_batch(const nllm_qtype *q, const uint8_t *w, int64_t nb) {
  enum { ROWS = 7, TMAX = 7 };
  const int64_t cols = nb / 8 * q->block_size;
  static const int toks[] = {2, 3, 6, 7};
  float *x = malloc(sizeof(float) * (size_t)(cols * TMAX));
  float y[ROWS * TMAX], y1[ROWS];
  void *wd = malloc(nllm_matmul_wsize(q->type, cols, TMAX, 2));
  ck_assert(x && wd);
  fill(x, cols * TMAX, DATA_GAUSS);
  for (int k = 0; k < 4; k++)
    for (int th = 1; th <= 2; th++) {
      const int nt = toks[k];
      nllm_matmul(y, w, q->type, ROWS, cols, x, nt, wd, th);
      for (int t = 0; t < nt; t++) {
        nllm_matmul(y1, w, q->type, ROWS, cols, x + t * cols, 1, wd, th);
        ck_assert_msg(memcmp(y1, y + t * ROWS, sizeof y1) == 0,
                      "%s: token %d of a batch of %d (%d threads) differs from its own matmul",
                      q->name, t, nt, th);
      }
    }
  free(x);
  free(wd);
}

/* The scalar tier's batch tiles (cpu/quant_tile.h) against its one-row dot, bit for bit: the
 * four-row and four-by-four kernels on every data kind and on blocks of random bits, rows and
 * tokens apart, results written with a stride wider than four (the gaps left alone); then a
 * batch through nllm_matmul (partial fours of rows and tokens, more tokens than the other tiers'
 * sgemm crossover, two threads) against each of its tokens alone. */
static void check_scalar_tiles(const nllm_qtype *q) {
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  const int64_t lens[] = {q->block_size, 3 * q->block_size, 4096};
  enum { SS = 7 };
  uint64_t rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)q->type;
  for (int li = 0; li < 3; li++) {
    const int64_t n = lens[li];
    const size_t stride = nllm_row_size(q->type, n) + (size_t)q->type_size;
    const size_t ars = nllm_row_size(vq->type, n);
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    uint8_t *wq = malloc(stride * 4), *yq = malloc(ars * 4);
    for (int pass = 0; pass <= N_DATA; pass++) { /* N_DATA: random bits */
      tile_pass_data(q, pass, &rng, n, wq, stride, 4, yq, ars, 4, x, y);
      float want[4][4], got4[4], got[4 * SS];
      for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++)
          q->vec_dot(n, &want[t][r], wq + (size_t)r * stride, yq + (size_t)t * ars);
      for (int t = 0; t < 4; t++) {
        q->vec_dot4(n, got4, wq, stride, yq + (size_t)t * ars);
        for (int r = 0; r < 4; r++)
          ck_assert_msg(same_float(got4[r], want[t][r]),
                        "%s scalar vec_dot4 n %lld pass %d row %d token %d: %.9g vs %.9g", q->name,
                        (long long)n, pass, r, t, got4[r], want[t][r]);
      }
      for (int i = 0; i < 4 * SS; i++) got[i] = NAN;
      q->vec_dot4x4(n, got, SS, wq, stride, yq, ars);
      for (int t = 0; t < 4; t++)
        for (int i = 0; i < SS; i++)
          ck_assert_msg(i < 4 ? same_float(got[t * SS + i], want[t][i]) : isnan(got[t * SS + i]),
                        "%s scalar vec_dot4x4 n %lld pass %d token %d slot %d: %.9g", q->name,
                        (long long)n, pass, t, i, got[t * SS + i]);
    }
    free(x);
    free(y);
    free(wq);
    free(yq);
  }

  enum { ROWS = 7, COLS = 512, N_TOK = 19 };
  const size_t rs = nllm_row_size(q->type, COLS);
  uint8_t *W = malloc(rs * ROWS);
  float *x = malloc(sizeof(float) * COLS * N_TOK), *yb = malloc(sizeof(float) * ROWS * N_TOK);
  float one[ROWS];
  for (int r = 0; r < ROWS; r++) {
    fill(x, COLS, r % N_DATA == DATA_ZERO ? DATA_GAUSS : r % N_DATA);
    q->from_float_ref(x, W + (size_t)r * rs, COLS);
  }
  fill(x, COLS * N_TOK, DATA_GAUSS);
  const size_t wsize = nllm_matmul_wsize(q->type, COLS, N_TOK, 2);
  void *wdata = malloc(wsize);
  ck_assert_uint_ge(wsize, nllm_matmul_wsize(q->type, COLS, 1, 2));
  nllm_matmul(yb, W, q->type, ROWS, COLS, x, N_TOK, wdata, 2);
  for (int t = 0; t < N_TOK; t++) {
    nllm_matmul(one, W, q->type, ROWS, COLS, x + t * COLS, 1, wdata, 2);
    for (int r = 0; r < ROWS; r++)
      ck_assert_msg(same_float(yb[t * ROWS + r], one[r]),
                    "%s scalar matmul token %d of %d row %d: %.9g, alone %.9g", q->name, t,
                    (int)N_TOK, r, yb[t * ROWS + r], one[r]);
  }
  free(W);
  free(x);
  free(yb);
  free(wdata);
}

START_TEST(scalar_tiles_vs_vec_dot) {
  nllm_qtypes_set_isa(NLLM_ISA_SCALAR);
  const nllm_qtype *q = nllm_qtype_get(all_types[_i]);
  if (q && q->vec_dot_type != NLLM_TYPE_F32) {
    ck_assert_msg(q->vec_dot4 && q->vec_dot4x4, "%s: no scalar batch tiles", q->name);
    check_scalar_tiles(q);
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

START_TEST(lowbit_vec_dot_vs_dequant) {
  const int32_t type = lowbit_types[_i];
  nllm_vec_dot_fn below = NULL; /* the tier below's row */
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    const nllm_qtype *q = nllm_qtype_get(type);
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_null(q->from_float_ref);
    const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
    const int64_t nb = 256, n = nb * q->block_size;
    size_t ws = nllm_row_size(type, n), as = nllm_row_size(q->vec_dot_type, n);
    uint8_t *w = malloc(ws), *a = malloc(as);
    float *y = malloc(sizeof(float) * (size_t)n);
    if (isa == NLLM_ISA_AVX512)
      ck_assert_msg(q->vec_dot != below, "%s: no row of its own in tier %d", q->name, isa);
    below = q->vec_dot;
    /* pass 0: random; 1..3: byte i + pass sweeps all values; 4, 5: random weights against
     * activations at the ends of int8 */
    for (int pass = 0; pass < 6; pass++) {
      for (size_t i = 0; i < ws; i++)
        w[i] = pass == 0 || pass > 3 ? (uint8_t)test_xorshift(&rng_state)
                                     : (uint8_t)(i * (size_t)pass + i / 7);
      for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + (size_t)b * (size_t)q->type_size;
        if (type == NLLM_TYPE_MXFP4) {
          blk[0] = (uint8_t)(pass == 0 ? 100 + b % 40 : b); /* every E8M0 code, 255 (NaN) too */
        } else if (type == NLLM_TYPE_IQ1_M) {
          /* its F16 scale is the top nibbles of the last 8 bytes: keep it small but nonzero on
           * the random pass (random nibbles make NaN/inf scales that the sweep passes cover) */
          if (pass == 0 || pass > 3) {
            uint16_t h = q_f2h(0.02f * frand() + 1e-3f);
            for (int k = 0; k < 4; k++) {
              uint8_t *hi = blk + q->type_size - 8 + 2 * k + 1;
              *hi = (uint8_t)((*hi & 0x0f) | ((h >> (4 * k)) & 15) << 4);
            }
          }
        } else {
          /* fp16 d: zero, subnormals (b = 1, 2) up to 65504 (b = 255), sign alternating */
          uint16_t h =
              (uint16_t)(pass == 0 || pass > 3 ? q_f2h(0.02f * frand()) : (b * 0x7bffu) / 255u);
          if (pass && (b & 1)) h |= 0x8000;
          memcpy(blk + (lowbit_scale_first(type) ? 0 : q->type_size - 2), &h, 2);
        }
      }
      fill(y, n, DATA_GAUSS);
      vq->from_float_ref(y, a, n);
      if (pass > 3) q8_extremes(q->vec_dot_type, a, n / vq->block_size, pass);
      double sumabs, ex = lowbit_expected(q, w, a, n, &sumabs);
      float got = NAN;
      q->vec_dot(n, &got, w, a);
      if (isa > NLLM_ISA_SCALAR)
        ck_assert_msg(q->vec_dot != q->vec_dot_ref, "%s: no SIMD row in tier %d", q->name, isa);
      /* the SIMD tiers sum the same integers and round the same floats as the reference */
      float ref = NAN;
      q->vec_dot_ref(n, &ref, w, a);
      ck_assert_msg(same_float(got, ref), "%s tier %d pass %d: %.9g vs ref %.9g", q->name, isa,
                    pass, got, ref);
      /* the largest E8M0 scales overflow float's sums (the dequantized values themselves are
       * checked in mxfp4_ocp_blocks); such rows and blocks are compared only where finite */
      ck_assert_msg(!(sumabs <= 1e36) || fabs(got - ex) <= 1e-5 * sumabs + 1e-30,
                    "%s tier %d pass %d: vec_dot %.9g, dequant dot %.9g", q->name, isa, pass, got,
                    ex);
      /* block by block, so a wrong element order in one block cannot hide in a sum */
      for (int64_t b = 0; b < nb; b++) {
        int64_t bsz = q->block_size;
        const uint8_t *wb = w + (size_t)b * (size_t)q->type_size;
        const uint8_t *ab = a + (size_t)(b * bsz / vq->block_size) * (size_t)vq->type_size;
        ex = lowbit_expected(q, wb, ab, bsz, &sumabs);
        q->vec_dot(bsz, &got, wb, ab);
        q->vec_dot_ref(bsz, &ref, wb, ab);
        ck_assert_msg(same_float(got, ref), "%s tier %d pass %d block %lld: %.9g vs ref %.9g",
                      q->name, isa, pass, (long long)b, got, ref);
        if (!(sumabs <= 1e36)) continue; /* also NaN: an infinite weight times 0 */
        ck_assert_msg(fabs(got - ex) <= 1e-5 * sumabs + 1e-37,
                      "%s tier %d pass %d block %lld: %.9g vs %.9g", q->name, isa, pass,
                      (long long)b, got, ex);
      }
      lowbit_check_dot4(q, w, a, nb, isa, pass);
      if (pass == 0) lowbit_check_batch(q, w, nb);
    }
    free(w);
    free(a);
    free(y);
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

/* TQ1_0's packing from its definition: five ternary digits t0..t4 (most significant first)
 * stored as the byte ceil(256 * value / 243) of value = sum (t_k + 1) 3^(4-k). Every one of
 * the 243 digit patterns in every byte position must come back, in element order. */
START_TEST(tq1_0_every_trit_pattern) {
  const nllm_qtype *q = nllm_qtype_get(NLLM_TYPE_TQ1_0);
  block_tq1_0 blk;
  float out[QK_K];
  for (int v = 0; v < 243; v++) {
    int trit[5];
    for (int k = 0, r = v; k < 5; k++, r /= 3) trit[4 - k] = r % 3 - 1;
    uint8_t byte = (uint8_t)((v * 256 + 242) / 243);
    memset(&blk, byte, sizeof blk);
    blk.d = q_f2h(0.5f);
    q->to_float_ref(&blk, out, QK_K);
    int i = 0;
    for (int k = 0; k < 5; k++)
      for (int m = 0; m < 32; m++, i++) ck_assert_float_eq(out[i], 0.5f * (float)trit[k]);
    for (int k = 0; k < 5; k++)
      for (int m = 0; m < 16; m++, i++) ck_assert_float_eq(out[i], 0.5f * (float)trit[k]);
    for (int k = 0; k < 4; k++) /* qh bytes: only the first four digits are used */
      for (int m = 0; m < 4; m++, i++) ck_assert_float_eq(out[i], 0.5f * (float)trit[k]);
    ck_assert_int_eq(i, QK_K);
  }
}
END_TEST

/* TQ2_0: code c (value c - 1) of element 128 h + 32 l + m in bits 2l of byte 32 h + m. */
START_TEST(tq2_0_every_code) {
  const nllm_qtype *q = nllm_qtype_get(NLLM_TYPE_TQ2_0);
  block_tq2_0 blk;
  float out[QK_K];
  for (int i = 0; i < QK_K; i++) {
    for (int c = 0; c < 4; c++) {
      memset(&blk, 0x55, sizeof blk); /* code 1 (zero) everywhere */
      int h = i / 128, l = (i % 128) / 32, m = i % 32;
      uint8_t *byte = &blk.qs[32 * h + m];
      *byte = (uint8_t)((*byte & ~(3 << (2 * l))) | c << (2 * l));
      blk.d = q_f2h(-2.0f);
      q->to_float_ref(&blk, out, QK_K);
      for (int j = 0; j < QK_K; j++)
        ck_assert_float_eq(out[j], (j == i ? -2.0f * (float)(c - 1) : 0.0f));
    }
  }
}
END_TEST

/* IQ2_XXS: every grid index with every sign index and scale, in every group position: the
 * magnitudes are the scale times a grid level (8, 25 or 43), each group of 8 has an even
 * number of minus signs, and sign bit j of the 7-bit index negates element j. */
START_TEST(iq2_xxs_every_index) {
  const nllm_qtype *q = nllm_qtype_get(NLLM_TYPE_IQ2_XXS);
  block_iq2_xxs blk;
  float out[QK_K];
  for (int k = 0; k < 256; k++) {
    for (int sg = 0; sg < 128; sg += 1 + (k & 7)) {
      int sc = (k + sg) & 15;
      blk.d = q_f2h(1.0f);
      for (int g = 0; g < QK_K / 32; g++) {
        int kk = (k + g) & 255; /* group g holds index k + g in all four places */
        blk.qs[4 * g] = (uint16_t)(kk | kk << 8);
        blk.qs[4 * g + 1] = (uint16_t)(kk | kk << 8);
        uint32_t sgn = (uint32_t)sg | (uint32_t)sg << 7 | (uint32_t)sg << 14 | (uint32_t)sg << 21 |
                       (uint32_t)sc << 28;
        blk.qs[4 * g + 2] = (uint16_t)sgn;
        blk.qs[4 * g + 3] = (uint16_t)(sgn >> 16);
      }
      q->to_float_ref(&blk, out, QK_K);
      float db = (0.5f + (float)sc) * 0.25f;
      for (int grp = 0; grp < QK_K / 8; grp++) {
        int neg = 0;
        uint64_t pt = nllm_iq2xxs_grid[(k + grp / 4) & 255];
        for (int j = 0; j < 8; j++) {
          float v = out[8 * grp + j], mag = fabsf(v) / db;
          ck_assert_msg(mag == (float)((pt >> (8 * j)) & 255), "k %d group %d j %d: %g", k, grp, j,
                        v);
          ck_assert(mag == 8 || mag == 25 || mag == 43);
          neg += v < 0;
          if (j < 7) ck_assert_int_eq(v < 0, sg >> j & 1);
        }
        ck_assert_int_eq(neg % 2, 0);
      }
    }
  }
}
END_TEST

/* IQ1_S and IQ1_M: every one of the 2048 grid indices (group g of block b holds index
 * 32b + g, its 11 bits split between qs and qh as each format splits them), with random shift
 * signs and scales, in every tier against the reference, bit for bit, one block at a time and
 * through the four-row and four-by-four kernels. */
/* Block b of an every-index row: its grid indices and scale fields set, h its F16 scale. */
typedef void (*every_index_set_fn)(int32_t type, uint8_t *blk, unsigned b, uint16_t h);

/* nb blocks of type, each set by set() over random bytes, through vec_dot against the
 * reference block by block in every tier, then through the four-row and batch kernels
 * (passes 2: again with extreme activations). */
static void every_index_check(int32_t type, int nb, every_index_set_fn set, int passes) {
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    const nllm_qtype *q = nllm_qtype_get(type), *vq = nllm_qtype_get(q->vec_dot_type);
    const int64_t n = (int64_t)nb * QK_K;
    uint8_t *w = malloc(nllm_row_size(type, n)), *a = malloc(nllm_row_size(vq->type, n));
    float *y = malloc(sizeof(float) * (size_t)n);
    for (size_t i = 0; i < nllm_row_size(type, n); i++) w[i] = (uint8_t)test_xorshift(&rng_state);
    for (int b = 0; b < nb; b++)
      set(type, w + (size_t)b * q->type_size, (unsigned)b, q_f2h(0.02f * frand() + 1e-3f));
    fill(y, n, DATA_GAUSS);
    vq->from_float_ref(y, a, n);
    const size_t as = nllm_row_size(vq->type, QK_K);
    for (int b = 0; b < nb; b++) {
      float got = NAN, ref = NAN;
      q->vec_dot(QK_K, &got, w + (size_t)b * q->type_size, a + (size_t)b * as);
      q->vec_dot_ref(QK_K, &ref, w + (size_t)b * q->type_size, a + (size_t)b * as);
      ck_assert_msg(same_float(got, ref), "%s tier %d block %d: %.9g vs ref %.9g", q->name, isa, b,
                    got, ref);
    }
    for (int pass = 0; pass < passes; pass++) {
      if (pass) q8_extremes(q->vec_dot_type, a, nb, 4);
      lowbit_check_dot4(q, w, a, nb, isa, pass);
    }
    free(w);
    free(a);
    free(y);
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}

static void iq1_set_indices(int32_t type, uint8_t *blk, unsigned b, uint16_t h) {
  if (type == NLLM_TYPE_IQ1_S) {
    block_iq1_s *x = (block_iq1_s *)(void *)blk;
    x->d = h;
    for (unsigned g = 0; g < 32; g++) {
      const unsigned idx = 32u * b + g;
      x->qs[g] = (uint8_t)idx;
      x->qh[g / 4] =
          (uint16_t)((x->qh[g / 4] & ~(7u << (3 * (g % 4)))) | (idx >> 8) << (3 * (g % 4)));
    }
  } else {
    block_iq1_m *x = (block_iq1_m *)(void *)blk;
    for (unsigned g = 0; g < 32; g++) {
      const unsigned idx = 32u * b + g, sh = 4 * (g % 2);
      x->qs[g] = (uint8_t)idx;
      x->qh[g / 2] = (uint8_t)((x->qh[g / 2] & ~(7u << sh)) | (idx >> 8) << sh);
    }
    for (int k = 0; k < 4; k++)
      x->scales[2 * k + 1] = (uint8_t)((x->scales[2 * k + 1] & 0x0f) | ((h >> (4 * k)) & 15) << 4);
  }
}

START_TEST(iq1_every_index) {
  every_index_check(_i ? NLLM_TYPE_IQ1_M : NLLM_TYPE_IQ1_S, 2048 / 32, iq1_set_indices, 1);
}
END_TEST

/* IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: every grid index (the row's j-th grid point takes
 * index j modulo the grid's size, its bits split as each format splits them) and every sign
 * pattern (the j-th 7-bit sign index j % 128, or the j-th explicit sign byte j % 256), with
 * random scales, in every tier against the reference, bit for bit, one block at a time and
 * through the four-row and four-by-four kernels. */
static const int32_t iq23_types[] = {NLLM_TYPE_IQ2_XXS, NLLM_TYPE_IQ2_XS, NLLM_TYPE_IQ2_S,
                                     NLLM_TYPE_IQ3_XXS, NLLM_TYPE_IQ3_S};
static void iq23_set_indices(int32_t type, uint8_t *blk, unsigned b, uint16_t h) {
  memcpy(blk, &h, 2);
  uint8_t *q = blk + 2; /* after the F16 scale */
  if (type == NLLM_TYPE_IQ2_XXS || type == NLLM_TYPE_IQ3_XXS) {
    const int is3 = type == NLLM_TYPE_IQ3_XXS, per = is3 ? 8 : 4; /* indices per 32 values */
    for (unsigned c = 0; c < QK_K / 32; c++) {
      uint8_t *idx = is3 ? q + per * c : q + 8 * c,
              *aux = is3 ? q + QK_K / 4 + 4 * c : q + 8 * c + 4;
      for (int k = 0; k < per; k++)
        idx[k] = (uint8_t)((QK_K / 32 * b + c) * (unsigned)per + (unsigned)k);
      uint32_t a;
      memcpy(&a, aux, 4);
      a &= 0xf0000000u;
      for (unsigned k = 0; k < 4; k++) a |= ((4 * (QK_K / 32 * b + c) + k) & 127) << (7 * k);
      memcpy(aux, &a, 4);
    }
  } else if (type == NLLM_TYPE_IQ2_XS) {
    for (unsigned j = 0; j < QK_K / 8; j++) {
      const unsigned g = QK_K / 8 * b + j;
      const uint16_t w = (uint16_t)((g & 511) | (g & 127) << 9);
      memcpy(q + 2 * j, &w, 2);
    }
  } else {
    /* IQ2_S: 32 indices of 10 bits (qh byte c: bits 2l, 2l + 1 for index 4c + l); IQ3_S: 64
     * of 9 bits (qh byte j / 8, bit j % 8); then the sign bytes */
    const int is3 = type == NLLM_TYPE_IQ3_S;
    const unsigned ni = is3 ? QK_K / 4 : QK_K / 8, bits = is3 ? 9 : 10;
    uint8_t *qh = q + QK_K / 4, *sg = is3 ? q + QK_K / 4 + QK_K / 32 : q + QK_K / 8;
    memset(qh, 0, QK_K / 32);
    for (unsigned j = 0; j < ni; j++) {
      const unsigned g = (ni * b + j) & ((1u << bits) - 1);
      q[j] = (uint8_t)g;
      if (is3)
        qh[j / 8] |= (uint8_t)((g >> 8) << (j % 8));
      else
        qh[j / 4] |= (uint8_t)((g >> 8) << (2 * (j % 4)));
    }
    for (unsigned j = 0; j < QK_K / 8; j++) sg[j] = (uint8_t)(QK_K / 8 * b + j);
  }
}

START_TEST(iq23_every_index) {
  every_index_check(iq23_types[_i], 64, iq23_set_indices, 2);
}
END_TEST

/* E2M1 from the OCP Microscaling spec: sign, 2 exponent bits (bias 1), 1 mantissa bit;
 * exponent 0 is subnormal (0.5 * m). */
static double ocp_e2m1(int code) {
  int sign = code >> 3 & 1, e = code >> 1 & 3, m = code & 1;
  double v = e == 0 ? 0.5 * m : ldexp(1.0 + 0.5 * m, e - 1);
  return sign ? -v : v;
}

/* MXFP4 blocks built from the OCP definition: every E2M1 code in both nibbles of a byte and
 * every E8M0 scale 2^(e - 127), e = 0..254, dequantize to code value x scale (rounded to float
 * only where the product leaves float's range); e = 255 is NaN. */
START_TEST(mxfp4_ocp_blocks) {
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    const nllm_qtype *q = nllm_qtype_get(NLLM_TYPE_MXFP4);
    block_mxfp4 blk;
    float out[QK];
    for (int e = 0; e < 256; e++) {
      blk.e = (uint8_t)e;
      for (int j = 0; j < QK / 2; j++) blk.qs[j] = (uint8_t)(j | (15 - j) << 4);
      q->to_float(&blk, out, QK);
      for (int j = 0; j < QK; j++) {
        int code = j < QK / 2 ? j : 15 - (j - QK / 2);
        if (e == 255) {
          ck_assert_msg(isnan(out[j]), "e 255 code %d: %g", code, out[j]);
          continue;
        }
        float want = (float)(ocp_e2m1(code) * ldexp(1.0, e - 127));
        ck_assert_msg((out[j] == want && signbit(out[j]) == signbit(want)) || (code & 7) == 0,
                      "e %d code %d: %a, want %a", e, code, out[j], want);
        if ((code & 7) == 0) ck_assert_float_eq(out[j], 0.0f);
      }
    }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

/* Quantized weights past their crossover on a SIMD tier: the tier's f32 GEMM with each chunk of
 * rows dequantized into its panel, against the dequantized weights' exact dot with the f32
 * activations (the same bound as the float GEMM), for every format the registry computes, on
 * quantized data and on random bits. 2 threads equal 1 bit for bit, and nllm_matmul at the
 * format's crossover takes this path, in exactly the scratch nllm_matmul_wsize asks for. */
static void dequant_weights(const nllm_qtype *q, uint8_t *W, float *wf, int64_t rows, int64_t cols,
                            int kind) {
  const size_t rs = nllm_row_size(q->type, cols);
  const int64_t nb = cols / q->block_size;
  for (int64_t r = 0; r < rows; r++) {
    uint8_t *w = W + (size_t)r * rs;
    if (kind < N_DATA && q->from_float_ref) {
      fill(wf + r * cols, cols, kind);
      q->from_float_ref(wf + r * cols, w, cols);
    } else if (!random_blocks(&rng_state, q->type, w, nb, (size_t)q->type_size, 0)) {
      /* the load-only formats: random levels under a small finite scale */
      for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + (size_t)b * (size_t)q->type_size;
        if (q->type == NLLM_TYPE_MXFP4) {
          blk[0] = (uint8_t)(120 + b % 10);
        } else if (q->type == NLLM_TYPE_IQ1_M) {
          const uint16_t h = q_f2h(0.02f * frand() + 1e-3f);
          for (int k = 0; k < 4; k++) {
            uint8_t *hi = blk + q->type_size - 8 + 2 * k + 1;
            *hi = (uint8_t)((*hi & 0x0f) | ((h >> (4 * k)) & 15) << 4);
          }
        } else {
          const uint16_t h = q_f2h(0.02f * frand());
          memcpy(blk + (lowbit_scale_first(q->type) ? 0 : q->type_size - 2), &h, 2);
        }
      }
    }
    q->to_float_ref(w, wf + r * cols, cols);
  }
}

static void check_gemmf_dequant(int32_t type, int isa, int64_t rows, int64_t cols, int64_t n_tok,
                                int kind) {
  nllm_qtypes_set_isa(isa);
  const nllm_qtype *q = nllm_qtype_get(type), *f = nllm_qtype_get(NLLM_TYPE_F32);
  const nllm_gemmf *g = f->gemmf;
  ck_assert_int_eq(g->kc % q->block_size, 0);
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *W = malloc(rs * (size_t)rows);
  float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
  float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
  const int64_t ny = n_tok * rows;
  float *y = malloc(sizeof(float) * (size_t)(ny + 16)), *y2 = malloc(sizeof(float) * (size_t)ny);
  void *ws = malloc(nllm_gemmf_wsize(cols, n_tok, 2)); /* exactly the size: ASan sees overruns */
  ck_assert(W && wf && x && y && y2 && ws);
  dequant_weights(q, W, wf, rows, cols, kind);
  fill(x, n_tok * cols, kind < N_DATA ? (kind + 1) % N_DATA : DATA_GAUSS);
  for (int64_t i = 0; i < ny + 16; i++) y[i] = NAN;
  nllm_gemmf_run_dequant(g, q, y, W, rs, rows, cols, x, n_tok, ws, 1);
  nllm_gemmf_run_dequant(g, q, y2, W, rs, rows, cols, x, n_tok, ws, 2);
  for (int64_t i = ny; i < ny + 16; i++)
    ck_assert_msg(isnan(y[i]), "%s tier %d: wrote y[%lld]", q->name, isa, (long long)i);
  ck_assert_msg(memcmp(y, y2, sizeof(float) * (size_t)ny) == 0,
                "%s tier %d rows %lld cols %lld n_tok %lld: 2 threads differ from 1", q->name, isa,
                (long long)rows, (long long)cols, (long long)n_tok);
  for (int64_t t = 0; t < n_tok; t++)
    for (int64_t r = 0; r < rows; r++) {
      double sumabs, ex = dot_exact(wf + r * cols, x + t * cols, cols, &sumabs);
      const float got = y[t * rows + r];
      ck_assert_msg(fabs(got - ex) <= dot_tol(cols, sumabs),
                    "%s tier %d rows %lld cols %lld n_tok %lld data %d: y[%lld,%lld] = %.9g, "
                    "expected %.9g",
                    q->name, isa, (long long)rows, (long long)cols, (long long)n_tok, kind,
                    (long long)t, (long long)r, got, ex);
    }
  free(ws);
  free(W);
  free(wf);
  free(x);
  free(y);
  free(y2);
}

/* nllm_matmul at the format's crossover (when a prompt reaches it) against the path itself. */
static void check_dequant_route(int32_t type, int isa) {
  nllm_qtypes_set_isa(isa);
  const nllm_qtype *q = nllm_qtype_get(type);
  /* rows: odd, and enough for the path (ops.h: NLLM_BLAS_MIN_ROWS) */
  const int64_t n_tok = q->blas_min_tokens, rows = NLLM_BLAS_MIN_ROWS + 3, cols = 2 * q->block_size;
  if (n_tok > 512) return;
  ck_assert(nllm_matmul_uses_blas(type, n_tok, 2) && nllm_matmul_uses_gemm(type, n_tok, 2));
  if (n_tok > 16) ck_assert(!nllm_matmul_uses_blas(type, n_tok - 1, 2));
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *W = malloc(rs * (size_t)rows);
  float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
  float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
  float *y = malloc(sizeof(float) * (size_t)(n_tok * rows));
  float *y2 = malloc(sizeof(float) * (size_t)(n_tok * rows));
  void *wd = malloc(nllm_matmul_wsize(type, cols, n_tok, 2));
  void *ws = malloc(nllm_gemmf_wsize(cols, n_tok, 2));
  ck_assert(W && wf && x && y && y2 && wd && ws);
  dequant_weights(q, W, wf, rows, cols, N_DATA);
  fill(x, n_tok * cols, DATA_GAUSS);
  nllm_matmul(y, W, type, rows, cols, x, n_tok, wd, 2);
  nllm_gemmf_run_dequant(nllm_qtype_get(NLLM_TYPE_F32)->gemmf, q, y2, W, rs, rows, cols, x, n_tok,
                         ws, 2);
  ck_assert_msg(memcmp(y, y2, sizeof(float) * (size_t)(n_tok * rows)) == 0,
                "%s tier %d: nllm_matmul at %lld tokens is not the dequantizing GEMM", q->name, isa,
                (long long)n_tok);
  free(W);
  free(wf);
  free(x);
  free(y);
  free(y2);
  free(wd);
  free(ws);
}

START_TEST(gemmf_dequant_vs_naive) {
  int32_t types[N_ALL + sizeof lowbit_types / sizeof lowbit_types[0]];
  int n = 0;
  for (int i = 0; i < N_ALL; i++) {
    const nllm_qtype *q = nllm_qtype_get(all_types[i]);
    if (q && q->vec_dot_type != NLLM_TYPE_F32) types[n++] = all_types[i];
  }
  for (size_t i = 0; i < sizeof lowbit_types / sizeof lowbit_types[0]; i++)
    if (nllm_qtype_get(lowbit_types[i])) types[n++] = lowbit_types[i];
  int tiers = 0;
  for (int isa = NLLM_ISA_SIMD; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    if (!nllm_qtype_get(NLLM_TYPE_F32)->gemmf) continue;
    tiers++;
    for (int i = 0; i < n; i++) {
      const int bs = nllm_qtype_get(types[i])->block_size;
      /* rows off the micro tile, one and several column chunks (the last one short), tokens
       * off the token block */
      const int64_t shapes[][3] = {{1, bs, 1}, {13, 3 * bs, 17}, {37, 9 * bs, 40}};
      for (int s = 0; s < 3; s++)
        for (int kind = 0; kind <= N_DATA; kind++)
          if (s == 2 || kind == DATA_GAUSS || kind == N_DATA)
            check_gemmf_dequant(types[i], isa, shapes[s][0], shapes[s][1], shapes[s][2], kind);
      check_dequant_route(types[i], isa);
    }
  }
  if (!tiers) fprintf(stderr, "gemmf_dequant_vs_naive: no tier with an f32 GEMM on this CPU\n");
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}
END_TEST

/* ------------------------------------------------------------------ worker pool */
/* Every item of a job runs exactly once, on a worker below the job's thread count, whatever
 * the item count (one, fewer than the threads, more than a range's 16-bit counter holds, so
 * that items go in chunks) and however many threads; items run from inside an item run there. */
typedef struct {
  _Atomic int *runs;
  int n_threads, nested;
  int64_t n_items;
  atomic_int bad_worker; /* set from any worker */
} pool_probe;
/* n_threads: 1 where the outer job ran in the pool (a job started from inside one runs on its
 * caller only); the outer thread count where the pool ran it on the caller alone (one thread,
 * or one item), which leaves the pool free for the inner job */
static void pool_inner_item(void *ctx, int64_t item, int worker) {
  pool_probe *p = ctx;
  if (worker < 0 || worker >= p->n_threads) atomic_store(&p->bad_worker, 1);
  atomic_fetch_add(&p->runs[item], 1);
}
static void pool_item(void *ctx, int64_t item, int worker) {
  pool_probe *p = ctx;
  if (worker < 0 || worker >= p->n_threads) atomic_store(&p->bad_worker, 1);
  atomic_fetch_add(&p->runs[item], 1);
  if (p->nested && item % 97 == 0) {
    _Atomic int inner[3] = {0, 0, 0};
    pool_probe q = {.runs = inner, .n_threads = p->n_threads > 1 && p->n_items == 1 ? p->n_threads : 1};
    nllm_pool_run(p->n_threads, 3, pool_inner_item, &q);
    if (inner[0] != 1 || inner[1] != 1 || inner[2] != 1 || atomic_load(&q.bad_worker))
      atomic_store(&p->bad_worker, 1);
  }
}
START_TEST(pool_runs_every_item_once) {
  static const int64_t counts[] = {1, 2, 3, 5, 17, 352, 4096, 65535, 65536, 140001};
  for (int nt = 1; nt <= 4; nt++)
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
      for (int nested = 0; nested < 2; nested++) {
        const int64_t n = counts[c];
        _Atomic int *runs = calloc((size_t)n, sizeof *runs);
        ck_assert_ptr_nonnull(runs);
        pool_probe p = {.runs = runs, .n_threads = nt, .nested = nested, .n_items = n};
        nllm_pool_run(nt, n, pool_item, &p);
        int64_t wrong = 0;
        for (int64_t i = 0; i < n; i++) wrong += runs[i] != 1;
        const int bad = atomic_load(&p.bad_worker);
        ck_assert_msg(wrong == 0 && !bad,
                      "%d threads, %lld items (nested %d): %lld items ran other than once, bad "
                      "worker %d",
                      nt, (long long)n, nested, (long long)wrong, bad);
        free(runs);
      }
}
END_TEST

static Suite *kernels_suite(void) {
  Suite *s = suite_create("kernels");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, table_sizes);
  tcase_add_test(tc, registry_vs_format_table);
  tcase_add_loop_test(tc, golden_dequant, 0, N_GOLDEN);
  tcase_add_loop_test(tc, quantizer_vs_golden, 0, N_GOLDEN_QUANTIZED);
  tcase_add_loop_test(tc, dispatch_vs_ref, 0, N_ALL);
  tcase_add_loop_test(tc, dot4_vs_ref, 0, N_ALL);
  tcase_add_loop_test(tc, random_bits_vs_ref, 0, N_ALL);
  tcase_add_loop_test(tc, gemm4_vs_dot4, 0, N_ALL);
  tcase_add_loop_test(tc, k_tiles_vs_decode, 0, N_ALL);
  tcase_add_loop_test(tc, packed_vs_ref, 0, N_ALL);
  tcase_add_test(tc, raw_blocks_vs_ref);
  tcase_add_test(tc, roundtrip_error);
  tcase_add_loop_test(tc, matmul_vs_naive, 0, N_ALL);
  tcase_add_loop_test(tc, scalar_tiles_vs_vec_dot, 0, N_ALL);
  tcase_add_test(tc, matmul_group_vs_each);
  tcase_add_test(tc, ops_vs_naive);
  tcase_add_test(tc, rope_vs_naive);
  tcase_add_loop_test(tc, lowbit_vec_dot_vs_dequant, 0,
                      (int)(sizeof lowbit_types / sizeof lowbit_types[0]));
  tcase_add_test(tc, tq1_0_every_trit_pattern);
  tcase_add_test(tc, tq2_0_every_code);
  tcase_add_test(tc, mxfp4_ocp_blocks);
  tcase_add_test(tc, iq2_xxs_every_index);
  tcase_add_loop_test(tc, iq1_every_index, 0, 2);
  tcase_add_loop_test(tc, iq23_every_index, 0, 5);
  suite_add_tcase(s, tc);
  TCase *tg = tcase_create("gemmf");
  tcase_set_timeout(tg, 120);
  tcase_add_test(tg, gemmf_vs_naive);
  tcase_add_test(tg, gemmf_group_vs_single);
  tcase_add_test(tg, gemmf_registry);
  tcase_add_test(tg, matmul_xbf16);
  tcase_add_test(tg, gemmf_dequant_vs_naive);
  suite_add_tcase(s, tg);
  TCase *tp = tcase_create("pool"); /* its own case: CK_RUN_CASE=pool under TSan */
  tcase_add_test(tp, pool_runs_every_item_once);
  suite_add_tcase(s, tp);
  return s;
}

int main(void) {
  fprintf(stderr, "cpu: %s\n", nllm_cpu_features());
  return run_suite(kernels_suite());
}
