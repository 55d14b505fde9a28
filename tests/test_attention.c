/* CPU attention over the KV cache: the SIMD path against the scalar reference (forced with
 * nllm_qtypes_force_scalar) on random data, over cache types, GQA ratios, head sizes, windows,
 * softcap, decode and prompt batches; the scalar reference against a naive double one; the split
 * of a long context over threads against the unsplit pass; and the vector exp against expf. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "attention.h"
#include "core/core.h"
#include "cpu/quant.h"
#include "nativellm.h"
#include "qtypes.h"
#include "testutil.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
  return test_frand(&rng_state);
}

typedef struct attn_case {
  int32_t type;
  int64_t n_head, n_head_kv, head_dim, n_tok, pos0;
  int32_t window;
  float softcap, q_scale; /* q_scale spreads the scores: large = peaky softmax */
} attn_case;

static const attn_case cases[] = {
    /* decode, F16 cache, the TinyLlama shape and other GQA ratios */
    {NLLM_TYPE_F16, 32, 4, 64, 1, 255, 0, 0, 1},
    {NLLM_TYPE_F16, 8, 8, 64, 1, 300, 0, 0, 1},
    {NLLM_TYPE_F16, 8, 1, 128, 1, 1999, 0, 0, 1},
    {NLLM_TYPE_F16, 14, 2, 64, 1, 777, 0, 0, 3},
    {NLLM_TYPE_F16, 16, 4, 80, 1, 500, 0, 0, 1},
    {NLLM_TYPE_F16, 8, 4, 256, 1, 130, 0, 0, 1},
    {NLLM_TYPE_F16, 6, 2, 96, 1, 90, 0, 0, 1},
    {NLLM_TYPE_F16, 10, 2, 64, 1, 61, 0, 0, 1},
    {NLLM_TYPE_F16, 12, 1, 64, 1, 400, 0, 0, 1}, /* 12 heads per KV head: two chunks of 6 */
    {NLLM_TYPE_F16, 24, 2, 64, 1, 200, 0, 0, 1}, /* 12 */
    {NLLM_TYPE_F16, 4, 4, 64, 1, 0, 0, 0, 1},    /* one visible position */
    /* F32 cache */
    {NLLM_TYPE_F32, 32, 4, 64, 1, 1023, 0, 0, 1},
    {NLLM_TYPE_F32, 7, 1, 128, 1, 333, 0, 0, 2},
    {NLLM_TYPE_F32, 4, 4, 80, 1, 1500, 0, 0, 1},
    /* sliding window and softcap (Gemma-2 style) */
    {NLLM_TYPE_F16, 8, 4, 256, 1, 1000, 128, 50.0f, 4},
    {NLLM_TYPE_F16, 8, 2, 128, 1, 700, 100, 0, 1},
    {NLLM_TYPE_F32, 8, 8, 64, 1, 90, 37, 30.0f, 3},
    /* prompt batches: causal masking inside the batch, with and without a window */
    {NLLM_TYPE_F16, 32, 4, 64, 17, 0, 0, 0, 1},
    {NLLM_TYPE_F16, 7, 1, 128, 9, 40, 0, 0, 1},
    {NLLM_TYPE_F16, 8, 8, 64, 23, 100, 11, 0, 1},
    {NLLM_TYPE_F32, 16, 2, 80, 13, 5, 0, 20.0f, 2},
    {NLLM_TYPE_F16, 4, 1, 256, 5, 1990, 64, 0, 1},
    /* one query head per KV head, no window: the SIMD path takes tokens in groups (a tail of
     * 1, of 2, of 3; softcap; head_dim of 10 vectors) */
    {NLLM_TYPE_F16, 12, 12, 64, 37, 0, 0, 0, 1},
    {NLLM_TYPE_F16, 4, 4, 64, 6, 3, 0, 0, 2},
    {NLLM_TYPE_F32, 6, 6, 128, 11, 20, 0, 25.0f, 2},
    {NLLM_TYPE_F16, 4, 4, 80, 2, 7, 0, 0, 1},
    /* head_dim not a multiple of 8: the scalar path even with SIMD */
    {NLLM_TYPE_F16, 4, 2, 36, 3, 50, 0, 0, 1},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

typedef struct attn_data {
  attn_case c;
  int64_t n_ctx, row;
  float *q, *k32, *v32;
  void *k, *v;
} attn_data;

static attn_data make_data(const attn_case *c) {
  attn_data d = {.c = *c, .n_ctx = c->pos0 + c->n_tok, .row = c->n_head_kv * c->head_dim};
  const int64_t nq = c->n_tok * c->n_head * c->head_dim, nkv = d.n_ctx * d.row;
  d.q = malloc((size_t)nq * sizeof(float));
  d.k32 = malloc((size_t)nkv * sizeof(float));
  d.v32 = malloc((size_t)nkv * sizeof(float));
  const size_t esz = c->type == NLLM_TYPE_F16 ? 2 : 4;
  d.k = malloc((size_t)nkv * esz);
  d.v = malloc((size_t)nkv * esz);
  ck_assert(d.q && d.k32 && d.v32 && d.k && d.v);
  for (int64_t i = 0; i < nq; i++) d.q[i] = frand() * c->q_scale;
  for (int64_t i = 0; i < nkv; i++) {
    float kx = frand(), vx = frand();
    if (c->type == NLLM_TYPE_F16) {
      ((uint16_t *)d.k)[i] = nllm_fp32_to_fp16(kx);
      ((uint16_t *)d.v)[i] = nllm_fp32_to_fp16(vx);
      kx = nllm_fp16_to_fp32(((uint16_t *)d.k)[i]);
      vx = nllm_fp16_to_fp32(((uint16_t *)d.v)[i]);
    } else {
      ((float *)d.k)[i] = kx;
      ((float *)d.v)[i] = vx;
    }
    d.k32[i] = kx;
    d.v32[i] = vx;
  }
  return d;
}

static void free_data(attn_data *d) {
  free(d->q);
  free(d->k32);
  free(d->v32);
  free(d->k);
  free(d->v);
}

/* kv_pos_stride / kv_head_stride for the cache layout; 0, 0: the data's own [pos][kv head]. */
static int64_t layout_ps, layout_hs;
/* nllm_attn_args.group of the runs */
static int32_t group_mode;

static float *run_attention_split(const attn_data *d, int n_threads, int32_t split) {
  const attn_case *c = &d->c;
  float *out = malloc((size_t)(c->n_tok * c->n_head * c->head_dim) * sizeof(float));
  const size_t per = nllm_attention_scratch(d->n_ctx, c->n_head, c->n_head_kv, c->head_dim);
  float *scratch = malloc(per * (size_t)n_threads * sizeof(float));
  ck_assert(out && scratch);
  nllm_attn_args a = {.attn.out = out,
                      .attn.q = d->q,
                      .attn.k = d->k,
                      .attn.v = d->v,
                      .attn.n_head = c->n_head,
                      .attn.n_head_kv = c->n_head_kv,
                      .attn.head_dim = c->head_dim,
                      .attn.scale = 1.0f / sqrtf((float)c->head_dim),
                      .attn.softcap = c->softcap,
                      .attn.window = c->window,
                      .kv_type = c->type,
                      .n_tok = c->n_tok,
                      .pos0 = c->pos0,
                      .scratch = scratch,
                      .scratch_per_thread = per,
                      .n_threads = n_threads,
                      .split = split,
                      .group = group_mode,
                      .kv_pos_stride = layout_ps,
                      .kv_head_stride = layout_hs};
  nllm_attention(&a);
  free(scratch);
  return out;
}

static float *run_attention(const attn_data *d, int n_threads) {
  return run_attention_split(d, n_threads, 0);
}

/* Max |a - b| over the output; the V values are in [-1, 1], so this is relative to their scale. */
static double max_abs_diff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - (double)b[i]);
    if (!(e <= m)) m = e; /* NaN counts as a failure */
  }
  return m;
}

/* The scalar reference itself against a naive double-precision attention. */
START_TEST(scalar_vs_naive) {
  const attn_case *c = &cases[_i];
  attn_data d = make_data(c);
  nllm_qtypes_force_scalar(1);
  float *out = run_attention(&d, 2);
  nllm_qtypes_force_scalar(0);
  const int64_t hd = c->head_dim, n_rep = c->n_head / c->n_head_kv;
  double *p = malloc((size_t)d.n_ctx * sizeof(double));
  ck_assert(p);
  double worst = 0;
  for (int64_t t = 0; t < c->n_tok; t++) {
    const int64_t pos = c->pos0 + t;
    const int64_t first = c->window > 0 && pos + 1 > c->window ? pos + 1 - c->window : 0;
    for (int64_t h = 0; h < c->n_head; h++) {
      const float *q = d.q + (t * c->n_head + h) * hd;
      const int64_t kvh = h / n_rep;
      double mx = -INFINITY, sum = 0;
      for (int64_t j = first; j <= pos; j++) {
        double s = 0;
        for (int64_t i = 0; i < hd; i++) s += (double)q[i] * d.k32[j * d.row + kvh * hd + i];
        s /= sqrt((double)hd);
        if (c->softcap > 0) s = c->softcap * tanh(s / c->softcap);
        p[j] = s;
        mx = s > mx ? s : mx;
      }
      for (int64_t j = first; j <= pos; j++) sum += p[j] = exp(p[j] - mx);
      for (int64_t i = 0; i < hd; i++) {
        double o = 0;
        for (int64_t j = first; j <= pos; j++) o += p[j] * d.v32[j * d.row + kvh * hd + i];
        double e = fabs(o / sum - out[(t * c->n_head + h) * hd + i]);
        worst = e > worst ? e : worst;
      }
    }
  }
  ck_assert_msg(worst < 2e-5, "case %d: scalar attention off the naive one by %g", _i, worst);
  free(p);
  free(out);
  free_data(&d);
}
END_TEST

START_TEST(simd_vs_scalar) {
  if (!nllm_cpu_has_avx2()) {
    fprintf(stderr, "SKIP: no SIMD attention path on this CPU\n");
    return;
  }
  const attn_case *c = &cases[_i];
  attn_data d = make_data(c);
  nllm_qtypes_force_scalar(1);
  float *ref = run_attention(&d, 2);
  nllm_qtypes_force_scalar(0);
  float *fast = run_attention(&d, 2);
  float *fast1 = run_attention(&d, 1);
  const int64_t n = c->n_tok * c->n_head * c->head_dim;
  const double e = max_abs_diff(fast, ref, n);
  ck_assert_msg(e < 1e-5,
                "case %d (type %d, %lld/%lld heads, hd %lld, %lld tok at %lld, window %d, "
                "softcap %g): max |simd - scalar| = %g",
                _i, (int)c->type, (long long)c->n_head, (long long)c->n_head_kv,
                (long long)c->head_dim, (long long)c->n_tok, (long long)c->pos0, c->window,
                (double)c->softcap, e);
  /* The split over threads must not change a single bit. */
  ck_assert_msg(memcmp(fast, fast1, (size_t)n * sizeof(float)) == 0,
                "case %d: 1 and 2 threads differ", _i);
  free(ref);
  free(fast);
  free(fast1);
  free_data(&d);
}
END_TEST

/* The split of a few tokens' context into position chunks (flash-decoding) against the
 * unsplit pass, on the scalar and the SIMD path: forced splits into short chunks (many chunks
 * even over a short context), the automatic choice, and no split, over contexts 1..2000. */
static const attn_case split_cases[] = {
    {NLLM_TYPE_F16, 32, 4, 64, 1, 0, 0, 0, 1},
    {NLLM_TYPE_F16, 32, 4, 64, 1, 1, 0, 0, 1},
    {NLLM_TYPE_F16, 8, 1, 128, 1, 6, 0, 0, 2},
    {NLLM_TYPE_F16, 8, 1, 256, 1, 63, 0, 0, 1},
    {NLLM_TYPE_F16, 32, 4, 64, 1, 255, 0, 0, 3},
    {NLLM_TYPE_F16, 8, 1, 256, 1, 256, 0, 0, 1},
    {NLLM_TYPE_F16, 32, 4, 64, 1, 1023, 0, 0, 1},
    {NLLM_TYPE_F16, 8, 1, 128, 1, 1999, 0, 0, 4},
    {NLLM_TYPE_F32, 7, 1, 128, 1, 777, 0, 0, 1},
    {NLLM_TYPE_F32, 32, 4, 64, 1, 1500, 0, 0, 2},
    {NLLM_TYPE_F16, 8, 4, 256, 1, 1000, 128, 50.0f, 4}, /* window and softcap */
    {NLLM_TYPE_F16, 8, 1, 256, 1, 1999, 300, 30.0f, 3},
    {NLLM_TYPE_F32, 8, 4, 64, 1, 600, 37, 0, 1},
    {NLLM_TYPE_F16, 32, 4, 64, 3, 700, 0, 0, 1}, /* a few tokens, causal inside the batch */
    {NLLM_TYPE_F16, 8, 1, 128, 4, 1200, 257, 20.0f, 2},
    {NLLM_TYPE_F16, 12, 1, 64, 2, 900, 0, 0, 1}, /* 12 heads per KV head */
    {NLLM_TYPE_F16, 4, 1, 36, 2, 400, 0, 0, 1},  /* head_dim not a multiple of 8: scalar */
};
#define N_SPLIT_CASES ((int)(sizeof split_cases / sizeof split_cases[0]))

static double max_rel_diff(const float *a, const float *b, int64_t n) {
  double scale = 0;
  for (int64_t i = 0; i < n; i++) scale = fabs((double)b[i]) > scale ? fabs((double)b[i]) : scale;
  return max_abs_diff(a, b, n) / (scale > 0 ? scale : 1);
}

START_TEST(split_vs_unsplit) {
  const attn_case *c = &split_cases[_i];
  attn_data d = make_data(c);
  const int64_t n = c->n_tok * c->n_head * c->head_dim;
  for (int scalar = 0; scalar < 2; scalar++) {
    nllm_qtypes_force_scalar(scalar);
    float *ref = run_attention_split(&d, 2, -1);
    static const int32_t modes[] = {1, 7, 64, 0};
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
      float *out2 = run_attention_split(&d, 2, modes[mi]);
      float *out1 = run_attention_split(&d, 1, modes[mi]);
      const double e = max_rel_diff(out2, ref, n);
      ck_assert_msg(e < 1e-5,
                    "split case %d (%s, split %d, %lld/%lld heads, hd %lld, %lld tok at %lld, "
                    "window %d, softcap %g): split off unsplit by %g relative",
                    _i, scalar ? "scalar" : "simd", (int)modes[mi], (long long)c->n_head,
                    (long long)c->n_head_kv, (long long)c->head_dim, (long long)c->n_tok,
                    (long long)c->pos0, c->window, (double)c->softcap, e);
      /* chunking depends on the context only: the thread count must not change a bit */
      ck_assert_msg(memcmp(out1, out2, (size_t)n * sizeof(float)) == 0,
                    "split case %d (%s, split %d): 1 and 2 threads differ", _i,
                    scalar ? "scalar" : "simd", (int)modes[mi]);
      free(out1);
      free(out2);
    }
    free(ref);
  }
  nllm_qtypes_force_scalar(0);
  free_data(&d);
}
END_TEST

/* The forward pass keeps its CPU cache head-major ([kv head][n_ctx][head_dim], capacity larger
 * than the context): the same values in that layout must give the same bits, on both paths and
 * split or not. */
START_TEST(head_major_layout) {
  const attn_case *c = &split_cases[_i];
  attn_data d = make_data(c);
  const int64_t n = c->n_tok * c->n_head * c->head_dim, hd = c->head_dim, cap = d.n_ctx + 37;
  const size_t esz = c->type == NLLM_TYPE_F16 ? 2 : 4;
  uint8_t *k = calloc((size_t)(cap * d.row), esz), *v = calloc((size_t)(cap * d.row), esz);
  ck_assert(k && v);
  for (int64_t pos = 0; pos < d.n_ctx; pos++)
    for (int64_t h = 0; h < c->n_head_kv; h++) {
      const size_t from = (size_t)(pos * d.row + h * hd) * esz,
                   to = (size_t)((h * cap + pos) * hd) * esz;
      memcpy(k + to, (const uint8_t *)d.k + from, (size_t)hd * esz);
      memcpy(v + to, (const uint8_t *)d.v + from, (size_t)hd * esz);
    }
  for (int scalar = 0; scalar < 2; scalar++) {
    nllm_qtypes_force_scalar(scalar);
    for (int32_t split = -1; split <= 0; split++) {
      layout_ps = layout_hs = 0;
      float *ref = run_attention_split(&d, 2, split);
      attn_data hm = d;
      hm.k = k;
      hm.v = v;
      layout_ps = hd;
      layout_hs = cap * hd;
      float *out = run_attention_split(&hm, 2, split);
      layout_ps = layout_hs = 0;
      ck_assert_msg(memcmp(out, ref, (size_t)n * sizeof(float)) == 0,
                    "case %d (%s, split %d): head-major cache differs from position-major", _i,
                    scalar ? "scalar" : "simd", (int)split);
      free(out);
      free(ref);
    }
  }
  nllm_qtypes_force_scalar(0);
  free(k);
  free(v);
  free_data(&d);
}
END_TEST

/* Tokens taken in groups (one K/V read for several tokens' rows of a head) give the same bits
 * as one token at a time, on the contiguous cache and on a paged one where a batch holds the
 * rows of two sequences (a group then splits at the boundary) at scattered cells. */
START_TEST(grouped_vs_single) {
  for (int ci = 0; ci < N_CASES; ci++) {
    const attn_case *c = &cases[ci];
    if (c->n_head != c->n_head_kv || c->window > 0 || c->n_tok < 2) continue;
    attn_data d = make_data(c);
    const int64_t n = c->n_tok * c->n_head * c->head_dim;
    group_mode = -1;
    float *ref = run_attention(&d, 2);
    group_mode = 0;
    float *out = run_attention(&d, 2);
    ck_assert_msg(memcmp(out, ref, (size_t)n * sizeof(float)) == 0,
                  "case %d: grouped tokens differ from one at a time", ci);
    free(out);
    free(ref);
    free_data(&d);
  }
  /* paged: sequence A's last 6 positions then sequence B's last 5 in one batch; A's 30
   * positions at even cells, B's 25 at odd cells in reverse order */
  enum { HD = 64, NH = 3, LA = 30, LB = 25, NA = 6, NB = 5, NT = NA + NB, NCTX = 64 };
  const attn_case c = {NLLM_TYPE_F16, NH, NH, HD, 1, NCTX - 1, 0, 0, 2};
  attn_data d = make_data(&c);
  float *q = malloc((size_t)(NT * NH * HD) * sizeof(float));
  ck_assert(q);
  for (int64_t i = 0; i < NT * NH * HD; i++) q[i] = frand() * 2;
  int32_t cell_a[LA], pos_a[LA], cell_b[LB], pos_b[LB], tok_pos[NT], n_vis[NT];
  const int32_t *vis_cell[NT], *vis_pos[NT];
  for (int j = 0; j < LA; j++) cell_a[j] = 2 * j, pos_a[j] = j;
  for (int j = 0; j < LB; j++) cell_b[j] = NCTX - 1 - 2 * j, pos_b[j] = j;
  for (int t = 0; t < NT; t++) {
    const int in_a = t < NA;
    tok_pos[t] = in_a ? LA - NA + t : LB - NB + (t - NA);
    n_vis[t] = tok_pos[t] + 1;
    vis_cell[t] = in_a ? cell_a : cell_b;
    vis_pos[t] = in_a ? pos_a : pos_b;
  }
  const size_t per = nllm_attention_scratch(NCTX, NH, NH, HD);
  float *scratch = malloc(per * 2 * sizeof(float)), *outs[3];
  ck_assert(scratch);
  for (int run = 0; run < 3; run++) { /* scalar, SIMD one at a time, SIMD grouped */
    outs[run] = malloc((size_t)(NT * NH * HD) * sizeof(float));
    ck_assert(outs[run]);
    nllm_qtypes_force_scalar(run == 0);
    const nllm_attn_args a = {.attn.out = outs[run],
                              .attn.q = q,
                              .attn.k = d.k,
                              .attn.v = d.v,
                              .attn.n_head = NH,
                              .attn.n_head_kv = NH,
                              .attn.head_dim = HD,
                              .attn.scale = 0.125f,
                              .kv_type = c.type,
                              .n_tok = NT,
                              .scratch = scratch,
                              .scratch_per_thread = per,
                              .n_threads = 2,
                              .group = run == 1 ? -1 : 0,
                              .vis_cell = vis_cell,
                              .vis_pos = vis_pos,
                              .n_vis = n_vis,
                              .tok_pos = tok_pos};
    nllm_attention(&a);
  }
  nllm_qtypes_force_scalar(0);
  const double e = max_abs_diff(outs[2], outs[0], NT * NH * HD);
  ck_assert_msg(e < 1e-5, "paged: grouped SIMD off the scalar reference by %g", e);
  ck_assert_msg(memcmp(outs[2], outs[1], (size_t)(NT * NH * HD) * sizeof(float)) == 0,
                "paged: grouped tokens differ from one at a time");
  for (int run = 0; run < 3; run++) free(outs[run]);
  free(scratch);
  free(q);
  free_data(&d);
}
END_TEST

/* The AVX-512 tier's pipeline (wide V tiles, two score tiles a step) against the AVX2 tier's:
 * the same bits, for every case (decode, prompts, grouped tokens) and forced splits. */
START_TEST(avx512_equals_avx2) {
  const int top = nllm_qtypes_isa_max();
  if (top < NLLM_ISA_AVX512) {
    fprintf(stderr, "SKIP: no AVX-512 tier on this CPU\n");
    return;
  }
  for (int ci = 0; ci < N_CASES + N_SPLIT_CASES; ci++) {
    const attn_case *c = ci < N_CASES ? &cases[ci] : &split_cases[ci - N_CASES];
    attn_data d = make_data(c);
    const int64_t n = c->n_tok * c->n_head * c->head_dim;
    for (int mode = 0; mode < 3; mode++) { /* grouped, one token at a time, split in chunks */
      group_mode = mode == 1 ? -1 : 0;
      float *out[2];
      for (int t = 0; t < 2; t++) {
        nllm_qtypes_set_isa(t == 0 ? NLLM_ISA_SIMD : NLLM_ISA_AVX512);
        out[t] = run_attention_split(&d, 2, mode == 2 ? 7 : 0);
      }
      ck_assert_msg(memcmp(out[0], out[1], (size_t)n * sizeof(float)) == 0,
                    "case %d mode %d: the AVX-512 attention differs from the AVX2 one", ci, mode);
      free(out[0]);
      free(out[1]);
    }
    group_mode = 0;
    nllm_qtypes_set_isa(top);
    free_data(&d);
  }
}
END_TEST

#if defined(__x86_64__)
static int32_t ulp_diff(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  return ia > ib ? ia - ib : ib - ia;
}

START_TEST(exp_vs_expf) {
  if (!nllm_cpu_has_avx2()) {
    fprintf(stderr, "SKIP: no SIMD exp on this CPU\n");
    return;
  }
  enum { N = 200003 };
  float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
  ck_assert(x && y);
  for (int i = 0; i < N; i++) y[i] = x[i] = -100.0f * (float)i / (N - 1);
  y[N - 2] = x[N - 2] = -1e-30f;
  y[N - 1] = x[N - 1] = -INFINITY;
  nllm_exp_nonpos_avx2(y, N);
  int32_t worst = 0;
  for (int i = 0; i < N; i++) {
    const float want = expf(x[i]);
    if (want < 1.1754944e-38f) { /* under the smallest normal: flushed to 0 is fine */
      ck_assert_msg(y[i] >= 0 && y[i] <= 1.1754944e-38f, "exp(%g) = %g", (double)x[i],
                    (double)y[i]);
      continue;
    }
    const int32_t u = ulp_diff(y[i], want);
    worst = u > worst ? u : worst;
  }
  ck_assert_msg(worst <= 2, "vector exp is %d ulp off expf", (int)worst);
  const float nan_in = NAN;
  float nan_out = nan_in;
  nllm_exp_nonpos_avx2(&nan_out, 1);
  ck_assert(isnan(nan_out));
  free(x);
  free(y);
}
END_TEST

/* The softcap's tanh is judged on what matters downstream: the absolute error of the score,
 * within a few ulp of the score near the cap, where the score itself rounds to ulp(50) = 4e-6. */
START_TEST(softcap_vs_tanhf) {
  if (!nllm_cpu_has_avx2()) return;
  enum { N = 100001 };
  const float cap = 50.0f;
  float *x = malloc(N * sizeof(float));
  ck_assert(x);
  double worst = 0, worst_rel_small = 0;
  for (int i = 0; i < N; i++) x[i] = -400.0f + 800.0f * (float)i / (N - 1);
  x[N / 2] = 1e-20f;
  nllm_softcap_avx2(x, N, cap);
  for (int i = 0; i < N; i++) {
    const float in = i == N / 2 ? 1e-20f : -400.0f + 800.0f * (float)i / (N - 1);
    const double want = cap * tanh((double)in / cap);
    const double e = fabs(x[i] - want);
    worst = e > worst ? e : worst;
    if (fabs(in) < 5.0f && want != 0) {
      const double rel = e / fabs(want);
      worst_rel_small = rel > worst_rel_small ? rel : worst_rel_small;
    }
  }
  ck_assert_msg(worst < cap * 2.5e-7, "softcap off by %g", worst);
  ck_assert_msg(worst_rel_small < 5e-7, "softcap near 0 off by %g relative", worst_rel_small);
  free(x);
}
END_TEST
#endif

static Suite *attention_suite(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("attention");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, scalar_vs_naive, 0, N_CASES);
  tcase_add_loop_test(tc, simd_vs_scalar, 0, N_CASES);
  tcase_add_loop_test(tc, split_vs_unsplit, 0, N_SPLIT_CASES);
  tcase_add_loop_test(tc, head_major_layout, 0, N_SPLIT_CASES);
  tcase_add_test(tc, grouped_vs_single);
  tcase_add_test(tc, avx512_equals_avx2);
#if defined(__x86_64__)
  tcase_add_test(tc, exp_vs_expf);
  tcase_add_test(tc, softcap_vs_tanhf);
#endif
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  fprintf(stderr, "cpu: %s\n", nllm_cpu_features());
  return run_suite(attention_suite());
}
