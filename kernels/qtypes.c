/* The weight-format table and the choice of ISA. One copy of the table per tier (scalar, where
 * dispatched = reference; AVX2 or NEON; AVX-512), each filled on top of the one below; the
 * best tier the CPU has is used unless a cap (tests, NLLM_ISA) asks for a lower one. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/quant.h"
#include "qtypes.h"

#define N_TYPES 40 /* larger than any NLLM_TYPE_* we compute with */

/* One row per format. ISA kernels a format lacks stay NULL and fall back to the reference. */
typedef struct qtype_def {
  nllm_qtype ref; /* the row with reference functions in both slots */
#if defined(__x86_64__)
  nllm_to_float_fn to_float_avx2;
  nllm_from_float_fn from_float_avx2;
  nllm_vec_dot_fn vec_dot_avx2;
#endif
#if defined(__aarch64__)
  nllm_to_float_fn to_float_neon;
  nllm_from_float_fn from_float_neon;
  nllm_vec_dot_fn vec_dot_neon;
#endif
} qtype_def;

#define REF(fmt)                                                                      \
  fmt##_to_float_ref, fmt##_to_float_ref, fmt##_from_float_ref, fmt##_from_float_ref, \
      fmt##_vec_dot_ref, fmt##_vec_dot_ref, NULL, NULL
#define ROW(T, name, bs, ts, vdt, fmt) \
  {                                    \
    NLLM_TYPE_##T, {                   \
      { name, NLLM_TYPE_##T, bs, ts, NLLM_TYPE_##vdt, REF(fmt) }

#if defined(__x86_64__)
#define AVX2(to, from, dot) , to, from, dot
#else
#define AVX2(to, from, dot)
#endif
#if defined(__aarch64__)
#define NEON(to, from, dot) , to, from, dot
#else
#define NEON(to, from, dot)
#endif

static const struct {
  int32_t type;
  qtype_def def;
} qtype_defs[] = {ROW(F32, "F32", 1, 4, F32, f32) AVX2(NULL, NULL, f32_vec_dot_avx2)
                      NEON(NULL, NULL, f32_vec_dot_neon)}
}
, ROW(F16, "F16", 1, 2, F32, f16) AVX2(f16_to_float_avx2, f16_from_float_avx2, f16_vec_dot_avx2)
      NEON(f16_to_float_neon, NULL, f16_vec_dot_neon)
}
}
, ROW(BF16, "BF16", 1, 2, F32, bf16) AVX2(bf16_to_float_avx2, NULL, bf16_vec_dot_avx2)
      NEON(bf16_to_float_neon, NULL, bf16_vec_dot_neon)
}
}
, ROW(Q8_0, "Q8_0", QK, 34, Q8_0, q8_0) AVX2(q8_0_to_float_avx2, q8_0_from_float_avx2,
                                             q8_0_vec_dot_avx2) NEON(NULL, NULL, q8_0_vec_dot_neon)
}
}
, ROW(Q4_0, "Q4_0", QK, 18, Q8_0, q4_0) AVX2(q4_0_to_float_avx2, NULL, q4_0_vec_dot_avx2)
      NEON(NULL, NULL, q4_0_vec_dot_neon)
}
}
, ROW(Q4_1, "Q4_1", QK, 20, Q8_1, q4_1) AVX2(NULL, NULL, q4_1_vec_dot_avx2)
      NEON(NULL, NULL, q4_1_vec_dot_neon)
}
}
, ROW(Q5_0, "Q5_0", QK, 22, Q8_0, q5_0) AVX2(NULL, NULL, q5_0_vec_dot_avx2)
      NEON(NULL, NULL, q5_0_vec_dot_neon)
}
}
, ROW(Q5_1, "Q5_1", QK, 24, Q8_1, q5_1) AVX2(NULL, NULL, q5_1_vec_dot_avx2)
      NEON(NULL, NULL, q5_1_vec_dot_neon)
}
}
, ROW(Q8_1, "Q8_1", QK, 36, Q8_1, q8_1) AVX2(NULL, NULL, NULL) NEON(NULL, NULL, NULL)
}
}
, ROW(Q2_K, "Q2_K", QK_K, 84, Q8_K, q2_K) AVX2(NULL, NULL, q2_K_vec_dot_avx2)
      NEON(NULL, NULL, q2_K_vec_dot_neon)
}
}
, ROW(Q3_K, "Q3_K", QK_K, 110, Q8_K, q3_K) AVX2(NULL, NULL, q3_K_vec_dot_avx2)
      NEON(NULL, NULL, q3_K_vec_dot_neon)
}
}
, ROW(Q4_K, "Q4_K", QK_K, 144, Q8_K, q4_K) AVX2(q4_K_to_float_avx2, NULL, q4_K_vec_dot_avx2)
      NEON(NULL, NULL, q4_K_vec_dot_neon)
}
}
, ROW(Q5_K, "Q5_K", QK_K, 176, Q8_K, q5_K) AVX2(q5_K_to_float_avx2, NULL, q5_K_vec_dot_avx2)
      NEON(NULL, NULL, q5_K_vec_dot_neon)
}
}
, ROW(Q6_K, "Q6_K", QK_K, 210, Q8_K, q6_K) AVX2(q6_K_to_float_avx2, NULL, q6_K_vec_dot_avx2)
      NEON(NULL, NULL, q6_K_vec_dot_neon)
}
}
, ROW(Q8_K, "Q8_K", QK_K, 292, Q8_K, q8_K) AVX2(NULL, q8_K_from_float_avx2, NULL)
      NEON(NULL, NULL, NULL)
}
}
, ROW(IQ4_NL, "IQ4_NL", QK, 18, Q8_0, iq4_nl) AVX2(NULL, NULL, iq4_nl_vec_dot_avx2)
      NEON(NULL, NULL, iq4_nl_vec_dot_neon)
}
}
, ROW(IQ4_XS, "IQ4_XS", QK_K, 136, Q8_K, iq4_xs) AVX2(NULL, NULL, iq4_xs_vec_dot_avx2)
      NEON(NULL, NULL, iq4_xs_vec_dot_neon)
}
}
,
}
;

/* The optional four-row dot products (see nllm_vec_dot4_fn); the scalar table has none. */
typedef struct dot4_entry {
  int32_t type;
  nllm_vec_dot4_fn fn;
} dot4_entry;
#if defined(__x86_64__)
static const dot4_entry dot4_avx2[] = {
    {NLLM_TYPE_F16, f16_vec_dot4_avx2},   {NLLM_TYPE_Q4_0, q4_0_vec_dot4_avx2},
    {NLLM_TYPE_Q4_1, q4_1_vec_dot4_avx2}, {NLLM_TYPE_Q5_0, q5_0_vec_dot4_avx2},
    {NLLM_TYPE_Q5_1, q5_1_vec_dot4_avx2}, {NLLM_TYPE_IQ4_NL, iq4_nl_vec_dot4_avx2},
    {NLLM_TYPE_BF16, bf16_vec_dot4_avx2}, {NLLM_TYPE_Q8_0, q8_0_vec_dot4_avx2},
    {NLLM_TYPE_Q3_K, q3_K_vec_dot4_avx2}, {NLLM_TYPE_Q4_K, q4_K_vec_dot4_avx2},
    {NLLM_TYPE_Q5_K, q5_K_vec_dot4_avx2}, {NLLM_TYPE_Q6_K, q6_K_vec_dot4_avx2}};
#endif
#if defined(__aarch64__)
static const dot4_entry dot4_neon[] = {
    {NLLM_TYPE_Q8_0, q8_0_vec_dot4_neon}, {NLLM_TYPE_Q4_0, q4_0_vec_dot4_neon},
    {NLLM_TYPE_Q4_1, q4_1_vec_dot4_neon}, {NLLM_TYPE_Q5_0, q5_0_vec_dot4_neon},
    {NLLM_TYPE_Q5_1, q5_1_vec_dot4_neon}, {NLLM_TYPE_IQ4_NL, iq4_nl_vec_dot4_neon},
    {NLLM_TYPE_Q2_K, q2_K_vec_dot4_neon}, {NLLM_TYPE_Q3_K, q3_K_vec_dot4_neon},
    {NLLM_TYPE_Q4_K, q4_K_vec_dot4_neon}, {NLLM_TYPE_Q5_K, q5_K_vec_dot4_neon},
    {NLLM_TYPE_Q6_K, q6_K_vec_dot4_neon}, {NLLM_TYPE_IQ4_XS, iq4_xs_vec_dot4_neon}};
#endif

#if defined(__x86_64__)
static const dot4_entry dot4_avx512[] = {
    {NLLM_TYPE_Q4_0, q4_0_vec_dot4_avx512}, {NLLM_TYPE_IQ4_NL, iq4_nl_vec_dot4_avx512},
    {NLLM_TYPE_Q4_K, q4_K_vec_dot4_avx512}, {NLLM_TYPE_Q5_K, q5_K_vec_dot4_avx512},
    {NLLM_TYPE_Q6_K, q6_K_vec_dot4_avx512}, {NLLM_TYPE_IQ4_XS, iq4_xs_vec_dot4_avx512},
    {NLLM_TYPE_Q4_1, q4_1_vec_dot4_avx512}, {NLLM_TYPE_Q5_0, q5_0_vec_dot4_avx512},
    {NLLM_TYPE_Q5_1, q5_1_vec_dot4_avx512}, {NLLM_TYPE_Q2_K, q2_K_vec_dot4_avx512},
    {NLLM_TYPE_Q3_K, q3_K_vec_dot4_avx512}};

/* Q8_0's 512-bit kernel gathers four 34-byte blocks with byte permutes: in the prompt path it
 * beats the AVX2 four-row kernel (5632 x 2048, 64 tokens, 1 thread: 120 against 77 GFLOP/s),
 * in decode it loses (0.35 against 0.31 ms), so it serves the prompt tiles only. */
static const dot4_entry dot4_tile_avx512[] = {{NLLM_TYPE_Q8_0, q8_0_vec_dot4_avx512}};
#endif

#define N_ISA (NLLM_ISA_AVX512 + 1)
static nllm_qtype tables[N_ISA][N_TYPES];
static char features[N_ISA][128];
static int isa_max;
static atomic_int isa_cap = N_ISA;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static int isa_in_use(void) {
  int cap = atomic_load(&isa_cap);
  return cap < isa_max ? cap : isa_max;
}

#if defined(__x86_64__) || defined(__aarch64__)
#define N_ENTRIES(a) (sizeof(a) / sizeof((a)[0]))

/* Puts each entry's kernel into a tier's table: the decode slot, or the prompt tiles' one. */
static void install_dot4(nllm_qtype *table, const dot4_entry *e, size_t n, int tile) {
  for (size_t i = 0; i < n; i++) {
    if (tile)
      table[e[i].type].vec_dot4_tile = e[i].fn;
    else
      table[e[i].type].vec_dot4 = e[i].fn;
  }
}
#endif

static void qtypes_init(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  /* F16C has no __builtin_cpu_supports name in older compilers; every CPU with AVX2 and FMA
   * shipped so far has it (Haswell and later, Excavator and later). The AVX-512 tier needs
   * the byte permutes of VBMI and the dot products of VNNI besides F and BW; the builtin
   * also checks that the OS saves the zmm registers. */
  const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                     __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
  isa_max = avx512 ? NLLM_ISA_AVX512 : avx2 ? NLLM_ISA_SIMD : NLLM_ISA_SCALAR;
  snprintf(features[NLLM_ISA_SCALAR], sizeof features[0], "x86_64 (scalar kernels)");
  snprintf(features[NLLM_ISA_SIMD], sizeof features[0], "x86_64 avx2 fma f16c");
  snprintf(features[NLLM_ISA_AVX512], sizeof features[0],
           "x86_64 avx2 fma f16c avx512 (bw vl vnni vbmi)");
#elif defined(__aarch64__)
  isa_max = NLLM_ISA_SIMD;
  snprintf(features[NLLM_ISA_SCALAR], sizeof features[0], "aarch64 (scalar kernels)");
#if defined(__ARM_FEATURE_DOTPROD) /* a build choice: such a binary needs the extension */
  snprintf(features[NLLM_ISA_SIMD], sizeof features[0], "aarch64 neon dotprod");
#else
  snprintf(features[NLLM_ISA_SIMD], sizeof features[0], "aarch64 neon");
#endif
#else
  isa_max = NLLM_ISA_SCALAR;
  snprintf(features[NLLM_ISA_SCALAR], sizeof features[0], "generic (scalar kernels)");
#endif
  const char *env = getenv("NLLM_FORCE_SCALAR");
  if (env && *env && strcmp(env, "0") != 0) atomic_store(&isa_cap, NLLM_ISA_SCALAR);
  env = getenv("NLLM_ISA");
  if (env && *env) {
    if (!strcmp(env, "scalar"))
      atomic_store(&isa_cap, NLLM_ISA_SCALAR);
    else if (!strcmp(env, "avx2") || !strcmp(env, "neon"))
      atomic_store(&isa_cap, NLLM_ISA_SIMD);
  }

  for (size_t i = 0; i < sizeof qtype_defs / sizeof qtype_defs[0]; i++) {
    const qtype_def *d = &qtype_defs[i].def;
    int32_t t = qtype_defs[i].type;
    tables[NLLM_ISA_SCALAR][t] = d->ref;
    nllm_qtype simd = d->ref;
#if defined(__x86_64__)
    if (isa_max >= NLLM_ISA_SIMD) {
      if (d->to_float_avx2) simd.to_float = d->to_float_avx2;
      if (d->from_float_avx2) simd.from_float = d->from_float_avx2;
      if (d->vec_dot_avx2) simd.vec_dot = d->vec_dot_avx2;
    }
#endif
#if defined(__aarch64__)
    if (d->to_float_neon) simd.to_float = d->to_float_neon;
    if (d->from_float_neon) simd.from_float = d->from_float_neon;
    if (d->vec_dot_neon) simd.vec_dot = d->vec_dot_neon;
#endif
    tables[NLLM_ISA_SIMD][t] = simd;
  }
#if defined(__x86_64__)
  if (isa_max >= NLLM_ISA_SIMD)
    install_dot4(tables[NLLM_ISA_SIMD], dot4_avx2, N_ENTRIES(dot4_avx2), 0);
#endif
#if defined(__aarch64__)
  install_dot4(tables[NLLM_ISA_SIMD], dot4_neon, N_ENTRIES(dot4_neon), 0);
#endif
  memcpy(tables[NLLM_ISA_AVX512], tables[NLLM_ISA_SIMD], sizeof tables[0]);
#if defined(__x86_64__)
  if (isa_max >= NLLM_ISA_AVX512) {
    nllm_avx512_init();
    install_dot4(tables[NLLM_ISA_AVX512], dot4_avx512, N_ENTRIES(dot4_avx512), 0);
    install_dot4(tables[NLLM_ISA_AVX512], dot4_tile_avx512, N_ENTRIES(dot4_tile_avx512), 1);
  }
#endif
}

int nllm_cpu_has_avx2(void) {
  pthread_once(&init_once, qtypes_init);
#if defined(__x86_64__)
  return isa_in_use() >= NLLM_ISA_SIMD;
#else
  return 0;
#endif
}

int nllm_qtypes_isa_max(void) {
  pthread_once(&init_once, qtypes_init);
  return isa_max;
}

int nllm_qtypes_isa(void) {
  pthread_once(&init_once, qtypes_init);
  return isa_in_use();
}

void nllm_qtypes_set_isa(int tier) {
  pthread_once(&init_once, qtypes_init);
  atomic_store(&isa_cap, tier < NLLM_ISA_SCALAR ? NLLM_ISA_SCALAR : tier);
}

const nllm_qtype *nllm_qtype_get(int32_t type) {
  pthread_once(&init_once, qtypes_init);
  if (type < 0 || type >= N_TYPES) return NULL;
  const nllm_qtype *q = &tables[isa_in_use()][type];
  return q->name ? q : NULL;
}

size_t nllm_row_size(int32_t type, int64_t n) {
  const nllm_qtype *q = nllm_qtype_get(type);
  if (!q || n < 0 || n % q->block_size) return 0;
  return (size_t)(n / q->block_size) * (size_t)q->type_size;
}

void nllm_qtypes_force_scalar(int on) {
  nllm_qtypes_set_isa(on ? NLLM_ISA_SCALAR : N_ISA);
}

const char *nllm_cpu_features(void) {
  pthread_once(&init_once, qtypes_init);
  const int isa = isa_in_use();
  if (isa == NLLM_ISA_SCALAR && isa_max > NLLM_ISA_SCALAR) return "scalar (forced)";
  return features[isa];
}
