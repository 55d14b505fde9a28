/* LoRA's low-rank product kernels (kernels/cpu/lowrank*.c): every tier's lowrank_dot and
 * lowrank_axpy against the scalar reference on random and edge data, F32, F16 and BF16 weights,
 * every tail and tile shape; and the threaded passes against a double-precision y + s B (A x). */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "backend.h"
#include "cpu/quant.h"
#include "ops.h"
#include "qtypes.h"
#include "random_blocks.h"
#include "testutil.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float frand(void) {
  return test_frand(&rng_state);
}

enum { DATA_GAUSS, DATA_ZERO, DATA_LARGE, DATA_TINY, DATA_SPIKY, N_DATA };
static void fill(float *x, int64_t n, int kind) {
  for (int64_t i = 0; i < n; i++) switch (kind) {
      case DATA_GAUSS: x[i] = (frand() + frand() + frand() + frand()) * 0.8660254f; break;
      case DATA_ZERO: x[i] = 0; break;
      case DATA_LARGE: x[i] = 3e4f * frand(); break; /* near F16's largest */
      case DATA_TINY: x[i] = 1e-6f * frand(); break; /* F16 subnormals */
      default: x[i] = (i % 37 == 0) ? 50.0f * frand() : 0.01f * frand(); break;
    }
}

/* n weights in type (F16, BF16: rounded once, as an adapter file holds them), and their exact
 * floats */
static void make_weights(int32_t type, const float *src, int64_t n, void *w, float *exact) {
  if (type == NLLM_TYPE_F16) {
    uint16_t *h = w;
    for (int64_t i = 0; i < n; i++) exact[i] = q_h2f(h[i] = q_f2h(src[i]));
  } else if (type == NLLM_TYPE_BF16) {
    uint16_t *h = w;
    for (int64_t i = 0; i < n; i++) exact[i] = q_bf2f(h[i] = nllm_fp32_to_bf16(src[i]));
  } else {
    memcpy(w, src, (size_t)n * sizeof(float));
    memcpy(exact, src, (size_t)n * sizeof(float));
  }
}

static const int32_t types[] = {NLLM_TYPE_F32, NLLM_TYPE_F16, NLLM_TYPE_BF16};
#define N_TYPES ((int)(sizeof types / sizeof types[0]))

/* s[t][j] = scale dot(w row j, x row t) for 1..4 rows by 1..4 tokens, strided, with lengths off
 * every vector width; slots of s past n_rows keep their sentinel. */
START_TEST(dot_vs_ref) {
  const int32_t type = types[_i];
  static const int64_t lens[] = {1, 7, 15, 16, 37, 64, 101, 1056};
  enum { MAXN = 1056, XS = MAXN + 3, SS = 6 };
  float *src = malloc(4 * MAXN * sizeof(float)), *exact = malloc(4 * MAXN * sizeof(float));
  float *x = malloc(4 * XS * sizeof(float));
  void *w = malloc(4 * MAXN * sizeof(float));
  ck_assert(src && exact && x && w);
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    const nllm_lowrank_dot_fn dot = nllm_cpu_ops_get()->lowrank_dot;
    if (!dot) continue; /* this tier runs the reference itself */
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
      for (int kind = 0; kind < N_DATA; kind++) {
        const int64_t n = lens[li];
        fill(src, 4 * n, kind);
        fill(x, 4 * XS, kind == DATA_ZERO ? DATA_GAUSS : kind == DATA_LARGE ? DATA_TINY : kind);
        make_weights(type, src, 4 * n, w, exact);
        for (int rows = 1; rows <= 4; rows++)
          for (int nt = 1; nt <= 4; nt++) {
            float s[4 * SS], ref[4 * SS];
            for (int i = 0; i < 4 * SS; i++) s[i] = ref[i] = -7.0f;
            dot(type, n, s, SS, w, n, rows, x, XS, nt, 0.5f);
            nllm_lowrank_dot_ref(type, n, ref, SS, w, n, rows, x, XS, nt, 0.5f);
            for (int t = 0; t < 4; t++)
              for (int j = 0; j < SS; j++) {
                const float got = s[t * SS + j], want = ref[t * SS + j];
                if (t >= nt || j >= rows) {
                  ck_assert_msg(got == -7.0f, "isa %d: wrote s[%d][%d] outside the tile", isa, t,
                                j);
                  continue;
                }
                double sumabs = 0;
                for (int64_t i = 0; i < n; i++)
                  sumabs += fabs((double)exact[j * n + i] * x[t * XS + i]);
                ck_assert_msg(fabs((double)got - want) <= (double)(n + 4) * FLT_EPSILON * sumabs,
                              "isa %d type %d n %lld kind %d rows %d tok %d: [%d][%d] %.9g vs "
                              "ref %.9g",
                              isa, type, (long long)n, kind, rows, nt, t, j, got, want);
              }
          }
      }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
  free(src), free(exact), free(x), free(w);
}
END_TEST

/* y[t] += sum_j c[t][j] w[j] over output lengths that leave every partial tile, ranks 1..16,
 * 1..4 tokens; outputs past n are not touched. */
START_TEST(axpy_vs_ref) {
  const int32_t type = types[_i];
  static const int64_t lens[] = {1, 7, 31, 32, 33, 63, 64, 65, 200, 1056};
  static const int64_t ranks[] = {1, 3, 16};
  enum { MAXN = 1056, MAXR = 16, YS = MAXN + 5, WS = MAXN + 2, CS = MAXR + 1 };
  float *src = malloc(MAXR * WS * sizeof(float)), *exact = malloc(MAXR * WS * sizeof(float));
  void *w = malloc(MAXR * WS * sizeof(float));
  float *y0 = malloc(4 * YS * sizeof(float)), *y = malloc(4 * YS * sizeof(float));
  float *ref = malloc(4 * YS * sizeof(float)), c[4 * CS];
  ck_assert(src && exact && w && y0 && y && ref);
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    const nllm_lowrank_axpy_fn axpy = nllm_cpu_ops_get()->lowrank_axpy;
    if (!axpy) continue;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
      for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++)
        for (int kind = 0; kind < N_DATA; kind++) {
          const int64_t n = lens[li], r = ranks[ri];
          fill(src, MAXR * WS, kind);
          make_weights(type, src, MAXR * WS, w, exact);
          fill(c, 4 * CS, kind == DATA_ZERO ? DATA_GAUSS : kind == DATA_LARGE ? DATA_TINY : kind);
          fill(y0, 4 * YS, DATA_GAUSS);
          for (int nt = 1; nt <= 4; nt++) {
            memcpy(y, y0, 4 * YS * sizeof(float));
            memcpy(ref, y0, 4 * YS * sizeof(float));
            axpy(type, n, y, YS, w, WS, r, c, CS, nt);
            nllm_lowrank_axpy_ref(type, n, ref, YS, w, WS, r, c, CS, nt);
            for (int t = 0; t < 4; t++)
              for (int64_t i = 0; i < YS; i++) {
                const float got = y[t * YS + i];
                if (t >= nt || i >= n) {
                  ck_assert_msg(got == y0[t * YS + i], "isa %d: wrote y[%d][%lld] outside", isa, t,
                                (long long)i);
                  continue;
                }
                double sumabs = fabs((double)y0[t * YS + i]);
                for (int64_t j = 0; j < r; j++)
                  sumabs += fabs((double)c[t * CS + j] * exact[j * WS + i]);
                ck_assert_msg(
                    fabs((double)got - ref[t * YS + i]) <= (double)(r + 4) * FLT_EPSILON * sumabs,
                    "isa %d type %d n %lld r %lld kind %d tok %d: y[%d][%lld] %.9g vs "
                    "ref %.9g",
                    isa, type, (long long)n, (long long)r, kind, nt, t, (long long)i, got,
                    ref[t * YS + i]);
              }
          }
        }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
  free(src), free(exact), free(w), free(y0), free(y), free(ref);
}
END_TEST

/* Three products of one input (ranks and widths like q, k, v: the last narrower than a chunk,
 * the first not a multiple of one, none a whole number of panels), B packed, through the
 * threaded passes and through the CPU backend's lowrank op (what the forward pass calls),
 * against double precision: one token (decode), a few, and more than a token block. */
START_TEST(passes_vs_naive) {
  const int32_t type = types[_i];
  enum { IN = 328, NP = 3 };
  static const int32_t rank[NP] = {16, 5, 1};
  static const int64_t outs[NP] = {600, 40, 257};
  static const int64_t toks[] = {1, 5, 70};
  const size_t es = type == NLLM_TYPE_F32 ? 4 : 2;
  float *ae[NP], *be[NP], *y0[NP];
  void *a[NP], *bt[NP];
  nllm_lowrank p[NP];
  float *x = malloc(70 * IN * sizeof(float)), *t = malloc(70 * 22 * sizeof(float));
  ck_assert(x && t);
  fill(x, 70 * IN, DATA_GAUSS);
  float *tp = t;
  for (int k = 0; k < NP; k++) {
    const int64_t na = rank[k] * IN, nb = nllm_lowrank_bt_size(rank[k], outs[k]);
    float *tmp = malloc((size_t)(na > nb ? na : nb) * sizeof(float));
    ae[k] = malloc((size_t)na * sizeof(float)), be[k] = malloc((size_t)nb * sizeof(float));
    a[k] = malloc((size_t)na * es), bt[k] = malloc((size_t)nb * es);
    y0[k] = malloc((size_t)(70 * outs[k]) * sizeof(float));
    ck_assert(tmp && ae[k] && be[k] && a[k] && bt[k] && y0[k]);
    fill(tmp, na, DATA_GAUSS);
    make_weights(type, tmp, na, a[k], ae[k]);
    fill(tmp, nb, DATA_GAUSS);
    for (int64_t o = outs[k]; o % NLLM_LOWRANK_PANEL; o++) /* the packed form's padding */
      for (int j = 0; j < rank[k]; j++) tmp[nllm_lowrank_bt_index(rank[k], o, j)] = 0;
    make_weights(type, tmp, nb, bt[k], be[k]);
    fill(y0[k], 70 * outs[k], DATA_GAUSS);
    free(tmp);
    p[k] = (nllm_lowrank){.type = type,
                          .r = rank[k],
                          .in = IN,
                          .out = outs[k],
                          .a = a[k],
                          .bt = bt[k],
                          .s = 0.25f * (float)(k + 1),
                          .t = tp,
                          .y = malloc((size_t)(70 * outs[k]) * sizeof(float))};
    ck_assert(p[k].y);
    tp += 70 * rank[k];
  }
  nllm_fw_lowrank fp[NP];
  for (int k = 0; k < NP; k++)
    fp[k] = (nllm_fw_lowrank){.type = p[k].type,
                              .r = p[k].r,
                              .in = p[k].in,
                              .out = p[k].out,
                              .a = p[k].a,
                              .bt = p[k].bt,
                              .s = p[k].s,
                              .y = p[k].y};
  for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++)
    for (int run = 0; run < 4; run++) {
      const int64_t n = toks[ti];
      const int threads = run % 2 ? 3 : 1, via_op = run >= 2;
      for (int k = 0; k < NP; k++) memcpy(p[k].y, y0[k], (size_t)(n * outs[k]) * sizeof(float));
      if (via_op) {
        /* the smallest CPU backend of that team's size; the op's scratch is the test's */
        const nllm_fw_shape shape = {.n_batch = 1,
                                     .n_ctx = 1,
                                     .n_embd = 1,
                                     .n_head = 1,
                                     .n_head_kv = 1,
                                     .head_dim = 1,
                                     .kv_type = NLLM_TYPE_F32,
                                     .kv_type_v = NLLM_TYPE_F32,
                                     .n_threads = threads};
        nllm_fw_backend cpu;
        ck_assert_int_eq(nllm_cpu_fw_init(&cpu, &shape), NLLM_OK);
        cpu.b.lora_t = t;
        cpu.ops->lowrank(&cpu, fp, NP, x, n);
        cpu.b.lora_t = NULL;
        nllm_cpu_fw_free(&cpu);
      } else {
        nllm_lowrank_down(p, NP, x, n, threads);
        nllm_lowrank_up(p, NP, n, threads);
      }
      for (int k = 0; k < NP; k++)
        for (int64_t tok = 0; tok < n; tok++) {
          double u[16], ua[16];
          for (int j = 0; j < rank[k]; j++) {
            u[j] = ua[j] = 0;
            for (int64_t i = 0; i < IN; i++) {
              u[j] += (double)ae[k][j * IN + i] * x[tok * IN + i];
              ua[j] += fabs((double)ae[k][j * IN + i] * x[tok * IN + i]);
            }
          }
          for (int64_t o = 0; o < outs[k]; o++) {
            double want = y0[k][tok * outs[k] + o], mag = fabs(want);
            for (int j = 0; j < rank[k]; j++) {
              const double bw = be[k][nllm_lowrank_bt_index(rank[k], o, j)];
              want += p[k].s * u[j] * bw;
              mag += fabs(p[k].s * ua[j] * bw);
            }
            const double got = p[k].y[tok * outs[k] + o];
            ck_assert_msg(fabs(got - want) <= (IN + rank[k] + 8) * FLT_EPSILON * mag,
                          "type %d product %d tokens %lld threads %d%s: y[%lld][%lld] %.9g vs %.9g",
                          type, k, (long long)n, threads, via_op ? " (op)" : "", (long long)tok,
                          (long long)o, got, want);
          }
        }
    }
  for (int k = 0; k < NP; k++) {
    free(ae[k]), free(be[k]), free(a[k]), free(bt[k]), free(y0[k]);
    free(p[k].y);
  }
  free(x), free(t);
}
END_TEST

static Suite *lowrank_suite(void) {
  Suite *s = suite_create("lowrank");
  TCase *tc = tcase_create("lowrank");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, dot_vs_ref, 0, N_TYPES);
  tcase_add_loop_test(tc, axpy_vs_ref, 0, N_TYPES);
  tcase_add_loop_test(tc, passes_vs_naive, 0, N_TYPES);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  fprintf(stderr, "cpu: %s\n", nllm_cpu_features());
  return run_suite(lowrank_suite());
}
