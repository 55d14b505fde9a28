/* The registry put together, and the choice of ISA. One table per tier (scalar, where
 * dispatched = reference; AVX2 or NEON; AVX-512), each the one below with the tier's kernel
 * files' rows laid over it; the best tier the CPU has is used unless a cap (tests, NLLM_ISA)
 * asks for a lower one. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/quant.h"
#include "qtypes.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define N_TYPES NLLM_GGML_TYPE_COUNT

/* The kernel files of each tier, applied in order over the tier below. */
static const nllm_kernel_set *const scalar_sets[] = {
    &nllm_kernels_ref, &nllm_kernels_kref, &nllm_kernels_lowbit_ref, &nllm_kernels_iq_ref};
static const nllm_kernel_set *const scalar_tile_sets[] = {
    &nllm_kernels_ref_tiles, &nllm_kernels_kref_tiles, &nllm_kernels_lowbit_ref_tiles,
    &nllm_kernels_iq_ref_tiles};
#if defined(__x86_64__)
static const nllm_kernel_set *const simd_sets[] = {
    &nllm_kernels_float_avx2, &nllm_kernels_q32_avx2,    &nllm_kernels_k_avx2,
    &nllm_kernels_iq_avx2,    &nllm_kernels_lowbit_avx2, &nllm_kernels_gemmf_avx2};
static const nllm_cpu_ops *const simd_ops = &nllm_cpu_ops_avx2;
static const nllm_kernel_set *const avx512_sets[] = {&nllm_kernels_avx512,
                                                     &nllm_kernels_iq_avx512,
                                                     &nllm_kernels_lowbit_avx512,
                                                     &nllm_kernels_gemmf_avx512,
                                                     &nllm_kernels_packed16_avx512,
                                                     &nllm_kernels_k_packed16_avx512,
                                                     &nllm_kernels_iq4_xs_packed16_avx512};
#elif defined(__aarch64__)
static const nllm_kernel_set *const simd_sets[] = {&nllm_kernels_neon, &nllm_kernels_iq_neon,
                                                   &nllm_kernels_lowbit_neon};
static const nllm_cpu_ops *const simd_ops = &nllm_cpu_ops_neon;
#endif

#define N_ISA (NLLM_ISA_AVX512 + 1)
static nllm_qtype tables[N_ISA][N_TYPES];
static nllm_cpu_ops ops[N_ISA];
static char features[N_ISA][128];
static int isa_max;
static atomic_int isa_cap = N_ISA;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static int isa_in_use(void) {
  int cap = atomic_load(&isa_cap);
  return cap < isa_max ? cap : isa_max;
}

#define N_ENTRIES(a) (sizeof(a) / sizeof((a)[0]))

/* Lays a kernel file's rows over a tier's table: each function (and crossover) a row sets
 * replaces the one below; a scalar row (with to_float, from_float and vec_dot) also starts
 * the type's row, its facts from the file format's table. */
static void overlay(nllm_qtype *table, const nllm_kernel_set *set) {
  for (size_t i = 0; i < set->n_rows; i++) {
    const nllm_qtype_kernels *k = &set->rows[i];
    nllm_qtype *q = &table[k->type];
    if (!q->name) {
      const nllm_ggml_type_info *info = nllm_ggml_type_get(k->type);
      *q = (nllm_qtype){.name = info->name,
                        .type = k->type,
                        .block_size = info->block_size,
                        .type_size = info->type_size,
                        .vec_dot_type = k->vec_dot_type,
                        .to_float_ref = k->to_float,
                        .from_float_ref = k->from_float,
                        .vec_dot_ref = k->vec_dot,
                        .blas_min_tokens = NLLM_BLAS_MIN_TOKENS};
    }
    if (k->to_float) q->to_float = k->to_float;
    if (k->from_float) q->from_float = k->from_float;
    if (k->vec_dot) q->vec_dot = k->vec_dot;
    if (k->vec_dot4) q->vec_dot4 = k->vec_dot4;
    if (k->vec_dot4_tile) q->vec_dot4_tile = k->vec_dot4_tile;
    if (k->vec_dot4x4) {
      q->vec_dot4x4 = k->vec_dot4x4;
      q->vec_dot4xt = k->vec_dot4xt;
    }
    if (k->blas_min_tokens) q->blas_min_tokens = k->blas_min_tokens;
    if (k->gemmf) q->gemmf = k->gemmf;
    if (k->gemmf_xbf16) q->gemmf_xbf16 = k->gemmf_xbf16;
    if (k->gemm4) {
      q->gemm_prep = k->gemm_prep;
      q->gemm4 = k->gemm4;
      q->gemm_min_tokens = k->gemm_min_tokens;
    }
    /* a tier's own prompt kernels replace the interleaved ones of the tier below: these were
     * measured against that tier's tiles only */
    if (k->gemm4 || k->gemm_packed) {
      q->pack_rows = k->pack_rows;
      q->packed_prep = k->packed_prep;
      q->gemm_packed = k->gemm_packed;
      q->packed_min_tokens = k->packed_min_tokens;
      q->pack_group_rows = k->pack_group_rows ? k->pack_group_rows : NLLM_PACK_ROWS;
      q->packed_tok = k->packed_tok ? k->packed_tok : NLLM_GEMM_TOK;
      q->gemv_packed = k->gemv_packed;
      q->prepack = k->prepack;
      q->expand_packed = k->expand_packed;
      q->gemm_expanded = k->gemm_expanded;
      q->expand_min_tokens = k->expand_min_tokens;
      q->pack_expanded = k->pack_expanded;
      q->packed_block_bytes = k->packed_block_bytes;
      q->gemm_packed_stream = k->gemm_packed_stream;
      q->stream_passes = k->stream_passes > 1 ? k->stream_passes : 1;
      q->stream_tok = k->stream_tok > q->packed_tok && k->stream_tok <= NLLM_STREAM_TOK_MAX
                          ? k->stream_tok
                          : q->packed_tok;
    }
  }
}

/* A tier: the table of the tier below with the tier's files laid over it. */
static void build_tier(int isa, const nllm_kernel_set *const *sets, size_t n_sets,
                       const nllm_cpu_ops *isa_ops) {
  if (isa > NLLM_ISA_SCALAR) {
    memcpy(tables[isa], tables[isa - 1], sizeof tables[0]);
    ops[isa] = ops[isa - 1];
  }
  for (size_t i = 0; i < n_sets; i++) overlay(tables[isa], sets[i]);
  if (!isa_ops) return;
  nllm_cpu_ops *o = &ops[isa];
  if (isa_ops->dot_f32) o->dot_f32 = isa_ops->dot_f32;
  if (isa_ops->axpy_f32) o->axpy_f32 = isa_ops->axpy_f32;
  if (isa_ops->attn_span) o->attn_span = isa_ops->attn_span;
  if (isa_ops->attn_rows) o->attn_rows = isa_ops->attn_rows;
  if (isa_ops->gelu_erf) o->gelu_erf = isa_ops->gelu_erf;
  if (isa_ops->lowrank_dot) o->lowrank_dot = isa_ops->lowrank_dot;
  if (isa_ops->lowrank_axpy) o->lowrank_axpy = isa_ops->lowrank_axpy;
  if (isa_ops->glu) o->glu = isa_ops->glu;
}

#if defined(__x86_64__)
/* AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16): CPUID leaf 7, sub-leaf 1, EAX bit 5. Asked of CPUID
 * directly: older compilers' __builtin_cpu_supports has no name for it. Only asked where the
 * AVX-512 tier is usable, so the OS saves the zmm registers. */
static int cpu_has_avx512_bf16(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1u);
}

/* Whether the AVX-512 tier takes its AMD rows (nllm_kernels_packed16_l1_avx512,
 * nllm_kernels_k_packed16_amd_avx512, nllm_kernels_iq4_xs_packed16_amd_avx512): the streaming
 * kernels that have both ask for the next group's lines into L1 rather than L2, and the
 * K-quants' and IQ4_XS's streaming passes take eight tokens.
 * On AMD CPUs, where those measured ahead (Zen 5), unless NLLM_PREFETCH=l2 (or l1 elsewhere)
 * says otherwise, for A/B runs. */
static int amd_rows(void) {
  const char *env = getenv("NLLM_PREFETCH");
  if (env && !strcmp(env, "l1")) return 1;
  if (env && !strcmp(env, "l2")) return 0;
  return __builtin_cpu_is("amd");
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
           "x86_64 avx2 fma f16c avx512 (bw vl vnni vbmi%s)",
           avx512 && cpu_has_avx512_bf16() ? " bf16" : "");
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

  build_tier(NLLM_ISA_SCALAR, scalar_sets, N_ENTRIES(scalar_sets), NULL);
  /* a tier the CPU lacks stays a copy of the one below, so no table holds a kernel it cannot
   * run */
#if defined(__x86_64__) || defined(__aarch64__)
  const int simd = isa_max >= NLLM_ISA_SIMD;
  build_tier(NLLM_ISA_SIMD, simd_sets, simd ? N_ENTRIES(simd_sets) : 0, simd ? simd_ops : NULL);
#else
  build_tier(NLLM_ISA_SIMD, NULL, 0, NULL);
#endif
#if defined(__x86_64__)
  const int has_avx512 = isa_max >= NLLM_ISA_AVX512;
  if (has_avx512) {
    nllm_avx512_init();
    nllm_iq_avx512_init();
  }
  build_tier(NLLM_ISA_AVX512, avx512_sets, has_avx512 ? N_ENTRIES(avx512_sets) : 0,
             has_avx512 ? &nllm_cpu_ops_avx512 : NULL);
  if (has_avx512 && cpu_has_avx512_bf16())
    overlay(tables[NLLM_ISA_AVX512], &nllm_kernels_gemmf_xbf16_avx512);
  if (has_avx512 && amd_rows()) {
    overlay(tables[NLLM_ISA_AVX512], &nllm_kernels_packed16_l1_avx512);
    overlay(tables[NLLM_ISA_AVX512], &nllm_kernels_k_packed16_amd_avx512);
    overlay(tables[NLLM_ISA_AVX512], &nllm_kernels_iq4_xs_packed16_amd_avx512);
  }
#else
  build_tier(NLLM_ISA_AVX512, NULL, 0, NULL);
#endif
  /* The scalar tier's batch kernels (cpu/quant_tile.h) equal its one-row dot bit for bit, and
   * its quantized formats never cross to sgemm: its batches take them on the activations
   * rounded to vec_dot_type, as one token takes the one-row dot. sgemm's float activations put
   * a prompt's rows a last bit away from the same rows decoded alone, and the next layer's
   * 8-bit rounding of its input carries that across (1-3% of a small model's logits). Both set
   * after the tiers above have copied the scalar tier: their own rows and crossovers stand. */
  for (size_t i = 0; i < N_ENTRIES(scalar_tile_sets); i++)
    overlay(tables[NLLM_ISA_SCALAR], scalar_tile_sets[i]);
  for (int t = 0; t < N_TYPES; t++) {
    nllm_qtype *q = &tables[NLLM_ISA_SCALAR][t];
    if (q->name && q->vec_dot_type != NLLM_TYPE_F32) q->blas_min_tokens = NLLM_BLAS_NEVER;
  }
}

int nllm_cpu_has_avx2(void) {
  return nllm_cpu_ops_get()->attn_span != NULL;
}

const nllm_cpu_ops *nllm_cpu_ops_get(void) {
  pthread_once(&init_once, qtypes_init);
  return &ops[isa_in_use()];
}

int nllm_qtypes_isa_max(void) {
  pthread_once(&init_once, qtypes_init);
  return isa_max;
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
  size_t bytes;
  /* n comes from files and callers: a count whose bytes do not fit is as invalid as a bad one */
  if (__builtin_mul_overflow((size_t)(n / q->block_size), (size_t)q->type_size, &bytes)) return 0;
  return bytes;
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
