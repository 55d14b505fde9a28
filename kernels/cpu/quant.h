/* Block layouts of the weight formats (bit-compatible with GGUF), helpers the kernel files
 * share, and the rows each kernel file exports into the registry. Internal to the kernels. */
#ifndef NLLM_QUANT_H
#define NLLM_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"
#include "qtypes.h"

#define QK 32    /* elements per block of the 32-wide formats */
#define QK_K 256 /* elements per super-block of the K-quants */

/* Half-precision scales are kept as raw uint16_t so the structs have GGUF's exact size. */
typedef struct {
  uint16_t d;
  int8_t qs[QK];
} block_q8_0;
typedef struct {
  uint16_t d;
  uint8_t qs[QK / 2];
} block_q4_0;
typedef struct {
  uint16_t d, m;
  uint8_t qs[QK / 2];
} block_q4_1;
typedef struct {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[QK / 2];
} block_q5_0;
typedef struct {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[QK / 2];
} block_q5_1;
/* s = d * sum(qs), so a dot with an offset format needs no per-call sum. s is fp16: it
 * overflows when a block's mean magnitude passes ~2000 (a limit of the GGUF format). */
typedef struct {
  uint16_t d, s;
  int8_t qs[QK];
} block_q8_1;
typedef struct {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  uint16_t d, dmin;
} block_q2_K;
typedef struct {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  uint16_t d;
} block_q3_K;
typedef struct {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[QK_K / 2];
} block_q4_K;
typedef struct {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
} block_q5_K;
typedef struct {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;
} block_q6_K;
/* bsums[i] = sum of qs[16i..16i+16): the K-quant dots subtract their minimums with them. */
typedef struct {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
} block_q8_K;
typedef struct {
  uint16_t d;
  uint8_t qs[QK / 2];
} block_iq4_nl;
typedef struct {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[QK_K / 64];
  uint8_t qs[QK_K / 2];
} block_iq4_xs;

/* Load-only low-bit formats (quant_lowbit_ref.c). */
typedef struct {
  uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; /* 240 values, five base-3 digits a byte */
  uint8_t qh[QK_K / 64];                  /* 16 values, four digits a byte */
  uint16_t d;
} block_tq1_0;
typedef struct {
  uint8_t qs[QK_K / 4];
  uint16_t d;
} block_tq2_0;
/* IQ2_XXS: per 32 values, 4 uint16: two hold four 8-bit grid indices, two hold four 7-bit sign
 * indices and a 4-bit scale in the top bits. */
typedef struct {
  uint16_t d;
  uint16_t qs[QK_K / 8];
} block_iq2_xxs;
/* IQ2_XS: per 8 values one uint16: a 9-bit grid index and a 7-bit sign index; a 4-bit scale
 * per 16 values. */
typedef struct {
  uint16_t d;
  uint16_t qs[QK_K / 8];
  uint8_t scales[QK_K / 32];
} block_iq2_xs;
/* IQ2_S: per 8 values a grid index (8 low bits in qs, 2 high bits in qh) and 8 explicit sign
 * bits (the second half of qs); a 4-bit scale per 16 values. */
typedef struct {
  uint16_t d;
  uint8_t qs[QK_K / 4];
  uint8_t qh[QK_K / 32];
  uint8_t scales[QK_K / 32];
} block_iq2_s;
/* IQ3_XXS: per 4 values an 8-bit grid index (first 64 bytes); then per 32 values one uint32 of
 * four 7-bit sign indices and a 4-bit scale on top. */
typedef struct {
  uint16_t d;
  uint8_t qs[3 * QK_K / 8];
} block_iq3_xxs;
/* IQ3_S: per 4 values a 9-bit grid index (qs + one qh bit), 8 explicit sign bits per 8 values,
 * a 4-bit scale per 32 values. */
typedef struct {
  uint16_t d;
  uint8_t qs[QK_K / 4];
  uint8_t qh[QK_K / 32];
  uint8_t signs[QK_K / 8];
  uint8_t scales[QK_K / 64];
} block_iq3_s;
/* IQ1_S: per 8 values an 11-bit index into the ternary grid (8 bits in qs, 3 in qh); per 32
 * values qh also holds a 3-bit scale and the sign of the +-1/8 shift. */
typedef struct {
  uint16_t d;
  uint8_t qs[QK_K / 8];
  uint16_t qh[QK_K / 32];
} block_iq1_s;
/* IQ1_M: IQ1_S's grid without a block scale field: per 8 values 11 index bits plus a shift-sign
 * bit, a 3-bit scale per 16 values, and the F16 super-scale spread over the scales' top nibbles. */
typedef struct {
  uint8_t qs[QK_K / 8];
  uint8_t qh[QK_K / 16];
  uint8_t scales[QK_K / 32];
} block_iq1_m;
typedef struct {
  uint8_t e; /* E8M0 scale */
  uint8_t qs[QK / 2];
} block_mxfp4;

_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K layout");
_Static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl layout");
_Static_assert(sizeof(block_iq4_xs) == 136, "iq4_xs layout");
_Static_assert(sizeof(block_tq1_0) == 54, "tq1_0 layout");
_Static_assert(sizeof(block_tq2_0) == 66, "tq2_0 layout");
_Static_assert(sizeof(block_mxfp4) == 17, "mxfp4 layout");
_Static_assert(sizeof(block_iq2_xxs) == 66, "iq2_xxs layout");
_Static_assert(sizeof(block_iq2_xs) == 74, "iq2_xs layout");
_Static_assert(sizeof(block_iq2_s) == 82, "iq2_s layout");
_Static_assert(sizeof(block_iq3_xxs) == 98, "iq3_xxs layout");
_Static_assert(sizeof(block_iq3_s) == 110, "iq3_s layout");
_Static_assert(sizeof(block_iq1_s) == 50, "iq1_s layout");
_Static_assert(sizeof(block_iq1_m) == 56, "iq1_m layout");

/* The 16 non-uniform levels of IQ4_NL / IQ4_XS. */
extern const int8_t nllm_iq4nl_values[16];

static inline int clampi(int v, int lo, int hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/* Signed value of largest magnitude: symmetric formats map it to their widest level. */
static inline float signed_absmax(const float *x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; i++)
    if (__builtin_fabsf(x[i]) > amax) {
      amax = __builtin_fabsf(x[i]);
      max = x[i];
    }
  return max;
}

/* Index of the IQ4_NL level nearest to v (the levels are sorted: binary search). */
static inline int nllm_iq4nl_nearest(float v) {
  const int8_t *L = nllm_iq4nl_values;
  if (v <= L[0]) return 0;
  if (v >= L[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (v < L[mid])
      hi = mid;
    else
      lo = mid;
  }
  return v - L[lo] < L[hi] - v ? lo : hi;
}

/* Decode prefetch: every cache line of [p, p + bytes) (a line every 64 bytes, and the last
 * byte's, since a span that starts late in a line touches one line more). Four-row kernels
 * defeat the hardware prefetcher with their four interleaved streams; their rows are adjacent,
 * so each step prefetches the bytes it consumes as one linear stream NLLM_PREFETCH_ROWS rows
 * ahead. A prefetch past the end of the matrix never faults. The distance was measured: 4 rows
 * ahead was too close, 12 to 24 within the noise of each other, and one stream beats each row
 * prefetching its own next blocks (docs/performance.md, "Four-row kernels"). */
#define NLLM_PREFETCH_ROWS 16
static inline __attribute__((always_inline)) void nllm_prefetch_span(const void *p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o, 0, 3);
  __builtin_prefetch((const char *)p + bytes - 1, 0, 3);
}
/* The same into L2 (x86: prefetcht1), for a stream a group ahead that would push this group's
 * data out of L1 */
static inline __attribute__((always_inline)) void nllm_prefetch_span_l2(const void *p,
                                                                        size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o, 0, 2);
  __builtin_prefetch((const char *)p + bytes - 1, 0, 2);
}

/* Part k of `parts` of the lines of [p, p + bytes) into L2: a block's prefetch spread over the
 * steps of its visit (a burst of a block's lines at once fills the core's line-fill buffers;
 * quant_k_packed16_avx512.c has the figures) */
static inline __attribute__((always_inline)) void nllm_prefetch_part_l2(const void *p, size_t bytes,
                                                                        int k, int parts) {
  const uintptr_t a = (uintptr_t)p & ~(uintptr_t)63;
  const size_t nl = ((uintptr_t)p + bytes - a + 63) / 64;
  for (size_t l = nl * (size_t)k / (size_t)parts; l < nl * (size_t)(k + 1) / (size_t)parts; l++)
    __builtin_prefetch((const char *)(a + 64 * l), 0, 2);
}

/* The next block's prefetch at step k of this block's visit (k -1 at its start, 0..7 at its
 * eight steps): an eighth a step into L2 where `spread` (a long visit: a burst would fill the
 * line-fill buffers), else all of it at the start, into L2, or into L1 where `to_l1`. The
 * sixteen-row K-quant and IQ4_XS kernels' streaming calls take it. */
static inline __attribute__((always_inline)) void nllm_prefetch_next_step(const void *p,
                                                                          size_t bytes, int k,
                                                                          int spread, int to_l1) {
  if (spread) {
    if (k >= 0) nllm_prefetch_part_l2(p, bytes, k, 8);
  } else if (k < 0) {
    if (to_l1)
      nllm_prefetch_span(p, bytes);
    else
      nllm_prefetch_span_l2(p, bytes);
  }
}

/* A streaming pass's prefetch (nllm_qtype's gemm_packed_stream) at block xb (bb bytes) of a
 * group of weights kept packed from load, the groups gb bytes apart: the next group's same block
 * into L2 while this one's products are done, and two of its lines two groups ahead. A prefetch
 * holds one of the core's few line-fill buffers until its line comes; the far lines start the
 * pages of the group after next (and the L2 streamer on them), so that more of the next group's
 * prefetches find their lines near (quant_packed16_avx512.c has the AVX-512 tier's figures).
 * AVX2 tier, 1.1B, 2 threads, `--parallel 16 -p 4 -n 64`: against no streaming pass Q4_0 and
 * Q8_0 1.17x; the far lines Q4_0 1.03x, Q8_0 level. */
static inline __attribute__((always_inline)) void nllm_prefetch_stream_block(const uint8_t *xb,
                                                                             size_t gb, size_t bb) {
  __builtin_prefetch(xb + 2 * gb, 0, 1); /* x86: prefetcht2 */
  if (bb > 128) __builtin_prefetch(xb + 2 * gb + 128, 0, 1);
  nllm_prefetch_span_l2(xb + gb, bb);
}

/* For a pack of NLLM_PACK_ROWS rows (rows bx bytes apart, blocks of xs bytes), at block b: the
 * next group's rows as one linear stream spread over this group's blocks. A prompt reads each
 * weight from memory once per matmul, and eight rows are eight streams the hardware prefetcher
 * misses (AVX2 110M Q4_0 pp128: the pack's share of the kernel time 14.7% -> 7.3%). */
static inline __attribute__((always_inline)) void nllm_prefetch_next_group(const uint8_t *x0,
                                                                           size_t bx, int64_t b,
                                                                           size_t xs) {
  nllm_prefetch_span(x0 + NLLM_PACK_ROWS * (bx + (size_t)b * xs), NLLM_PACK_ROWS * xs);
}

/* A prompt tile function (nllm_gemm4_fn) from a body taking the token count as a constant
 * first argument: one instance per count, so that the tile's accumulators are registers. */
#define NLLM_GEMM4_BY_TOKENS(name, body)                                                    \
  static void name(int64_t n, float *s, size_t ss, const void *x, size_t bx, const void *p, \
                   size_t ps, int n_tok) {                                                  \
    switch (n_tok) {                                                                        \
      case 1: body(1, n, s, ss, x, bx, p, ps); break;                                       \
      case 2: body(2, n, s, ss, x, bx, p, ps); break;                                       \
      case 3: body(3, n, s, ss, x, bx, p, ps); break;                                       \
      default: body(4, n, s, ss, x, bx, p, ps); break;                                      \
    }                                                                                       \
  }

/* The same for an interleaved kernel (nllm_gemm_packed_fn) of up to NLLM_PACKED_TOK_MAX (8)
 * tokens a call: body(T, n, s, ss, pk, p, ps); NLLM_PACKED4_BY_TOKENS up to four (a format's
 * packed_tok 4), NLLM_STREAM_BY_TOKENS up to NLLM_STREAM_TOK_MAX (16), for a format's
 * gemm_packed_stream with stream_tok 16. (A case's use ends in the ';' that ends its break.) */
#define NLLM_TOKENS_CASE(T, body) \
  case T:                         \
    body(T, n, s, ss, pk, p, ps); \
    break
#define NLLM_TOKENS_CASES_1_3(body) \
  NLLM_TOKENS_CASE(1, body);        \
  NLLM_TOKENS_CASE(2, body);        \
  NLLM_TOKENS_CASE(3, body)
#define NLLM_TOKENS_CASES_4_7(body) \
  NLLM_TOKENS_CASE(4, body);        \
  NLLM_TOKENS_CASE(5, body);        \
  NLLM_TOKENS_CASE(6, body);        \
  NLLM_TOKENS_CASE(7, body)
#define NLLM_TOKENS_CASES_8_15(body) \
  NLLM_TOKENS_CASE(8, body);         \
  NLLM_TOKENS_CASE(9, body);         \
  NLLM_TOKENS_CASE(10, body);        \
  NLLM_TOKENS_CASE(11, body);        \
  NLLM_TOKENS_CASE(12, body);        \
  NLLM_TOKENS_CASE(13, body);        \
  NLLM_TOKENS_CASE(14, body);        \
  NLLM_TOKENS_CASE(15, body)
#define NLLM_BY_TOKENS_FN(name, body, cases, last)                                           \
  static void name(int64_t n, float *s, size_t ss, const void *pk, const void *p, size_t ps, \
                   int n_tok) {                                                              \
    switch (n_tok) {                                                                         \
      cases;                                                                                 \
      default: body(last, n, s, ss, pk, p, ps); break;                                       \
    }                                                                                        \
  }
#define NLLM_PACKED4_BY_TOKENS(name, body) \
  NLLM_BY_TOKENS_FN(name, body, NLLM_TOKENS_CASES_1_3(body), 4)
#define NLLM_PACKED_BY_TOKENS(name, body) \
  NLLM_BY_TOKENS_FN(name, body, NLLM_TOKENS_CASES_1_3(body); NLLM_TOKENS_CASES_4_7(body), 8)
#define NLLM_STREAM_BY_TOKENS(name, body)                                                 \
  NLLM_BY_TOKENS_FN(name, body, NLLM_TOKENS_CASES_1_3(body); NLLM_TOKENS_CASES_4_7(body); \
                    NLLM_TOKENS_CASES_8_15(body), 16)

/* Unaligned loads of packed block fields in the host's byte order: every SIMD tier's CPU is
 * little-endian, as GGUF data is. */
static inline uint16_t load_u16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

static inline uint32_t load_u32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* Exact binary16 -> binary32 without F16C, inline because the scalar kernels call it per block. */
static inline float q_h2f(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7fff, u;
  if (em >= 0x7c00) {
    u = sign | 0x7f800000u | ((em & 0x3ff) << 13);
  } else if (em >= 0x400) {
    u = sign | ((em << 13) + 0x38000000u); /* rebias the exponent from 15 to 127 */
  } else {
    float f = (float)em * 5.9604644775390625e-8f; /* subnormal: em * 2^-24 */
    return sign ? -f : f;
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint16_t q_f2h(float f) {
  return nllm_fp32_to_fp16(f);
}
static inline float q_bf2f(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Q3_K's sub-block scale k (signed, -32..31): low 4 bits in scales[k] (k < 8) or the high
 * half of scales[k-8]; top 2 bits in scales[8 + k%4] at bit 2*(k/4). */
static inline int q3k_scale(const uint8_t *sc, int k) {
  int lo = k < 8 ? sc[k] & 15 : sc[k - 8] >> 4;
  int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
  return (lo | hi << 4) - 32;
}

/* Q4_K/Q5_K's eight 6-bit scales and mins from their 12 packed bytes: k < 4 in the low 6 bits
 * of bytes k (scale) and k+4 (min); k >= 4 with low 4 bits in byte k+4 (scale low nibble, min
 * high nibble) and top 2 bits in the top of bytes k-4 (scale) and k (min). */
static inline void k4_scales_mins(const uint8_t *sc, uint8_t scales[8], uint8_t mins[8]) {
  for (int k = 0; k < 4; k++) {
    scales[k] = sc[k] & 63;
    mins[k] = sc[k + 4] & 63;
    scales[k + 4] = (uint8_t)((sc[k + 8] & 15) | (sc[k] >> 6) << 4);
    mins[k + 4] = (uint8_t)((sc[k + 8] >> 4) | (sc[k + 4] >> 6) << 4);
  }
}

/* The rows each kernel file exports into the registry (kernels/qtypes.c puts them together). */
extern const nllm_kernel_set nllm_kernels_ref;        /* quant_ref.c: floats, 32-value formats */
extern const nllm_kernel_set nllm_kernels_kref;       /* quant_kref.c: K-quants, IQ4_XS */
extern const nllm_kernel_set nllm_kernels_lowbit_ref; /* quant_lowbit_ref.c: TQ*, MXFP4 */
extern const nllm_kernel_set nllm_kernels_iq_ref;     /* quant_iq_ref.c: IQ1_*, IQ2_*, IQ3_* */
/* The same files' batch tiles (quant_tile.h): the scalar tier's only, laid over it after the
 * tiers above have copied it */
extern const nllm_kernel_set nllm_kernels_ref_tiles;
extern const nllm_kernel_set nllm_kernels_kref_tiles;
extern const nllm_kernel_set nllm_kernels_lowbit_ref_tiles;
extern const nllm_kernel_set nllm_kernels_iq_ref_tiles;
#if defined(__x86_64__)
extern const nllm_kernel_set nllm_kernels_float_avx2; /* quant_float_avx2.c */
extern const nllm_kernel_set nllm_kernels_q32_avx2;   /* quant_q32_avx2.c */
extern const nllm_kernel_set nllm_kernels_k_avx2;     /* quant_k_avx2.c */
extern const nllm_kernel_set nllm_kernels_iq_avx2;    /* quant_iq_avx2.c */
/* quant_lowbit_avx2.c: TQ*, MXFP4 */
extern const nllm_kernel_set nllm_kernels_lowbit_avx2;
extern const nllm_kernel_set nllm_kernels_avx512;
/* quant_packed16_avx512.c: Q4_0 and Q8_0 row-interleaved prompt kernels, over the AVX-512 set */
extern const nllm_kernel_set nllm_kernels_packed16_avx512;
/* The same file: Q8_0's streaming and Q4_0's one-token kernels with the next group's lines
 * asked for into L1, laid over the set above where qtypes.c's amd_rows says so */
extern const nllm_kernel_set nllm_kernels_packed16_l1_avx512;
/* quant_k_packed16_avx512.c: Q4_K, Q5_K, Q6_K's AVX2 groups kept packed, read sixteen rows at a
 * time */
extern const nllm_kernel_set nllm_kernels_k_packed16_avx512;
/* The same rows as AMD CPUs take them (qtypes.c's amd_rows): the one-token calls ask for the
 * next group's lines into L1, and the streaming passes take eight tokens */
extern const nllm_kernel_set nllm_kernels_k_packed16_amd_avx512;
/* quant_iq4_xs_packed16_avx512.c: IQ4_XS kept packed, sixteen rows at a time */
extern const nllm_kernel_set nllm_kernels_iq4_xs_packed16_avx512;
/* The same row as AMD CPUs take it (qtypes.c's amd_rows): streaming passes of eight tokens */
extern const nllm_kernel_set nllm_kernels_iq4_xs_packed16_amd_avx512;
extern const nllm_kernel_set nllm_kernels_iq_avx512; /* quant_iq_avx512.c */
/* quant_lowbit_avx512.c: TQ*, MXFP4 */
extern const nllm_kernel_set nllm_kernels_lowbit_avx512;
extern const nllm_kernel_set nllm_kernels_gemmf_avx2;   /* gemm_float_avx2.c */
extern const nllm_kernel_set nllm_kernels_gemmf_avx512; /* gemm_float_avx512.c */
/* gemm_float_avx512.c: BF16 weights x BF16-rounded activations; needs AVX512_BF16 */
extern const nllm_kernel_set nllm_kernels_gemmf_xbf16_avx512;
/* Fills the AVX-512 kernels' permute tables; call once, and only on a CPU with the tier. */
void nllm_avx512_init(void);
/* quant_iq_avx512.c: the IQ2 / IQ3 grids as codes; the same conditions */
void nllm_iq_avx512_init(void);
/* The AVX2 tier's helpers of the ops (ops_avx2.c) */
extern const nllm_cpu_ops nllm_cpu_ops_avx2;
/* lowrank_avx2.c: the AVX2 tier's LoRA products (see nllm_lowrank_dot_fn) */
void nllm_lowrank_dot_avx2(int32_t wtype, int64_t n, float *s, int64_t s_stride, const void *w,
                           int64_t w_stride, int n_rows, const float *x, int64_t x_stride,
                           int n_tok, float scale);
void nllm_lowrank_axpy_avx2(int32_t wtype, int64_t n, float *y, int64_t y_stride, const void *w,
                            int64_t w_stride, int64_t r, const float *c, int64_t c_stride,
                            int n_tok);
/* The AVX-512 tier's (lowrank_avx512.c: the LoRA products only) */
extern const nllm_cpu_ops nllm_cpu_ops_avx512;
/* AVX2 single-row dots the AVX-512 four-row kernels finish a row's odd blocks with */
void q8_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void q4_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void q4_1_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void q5_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void q5_1_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void iq4_nl_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
/* and the AVX-512 tier's Q8_0 decode (the AVX2 rows of Q4_0, Q5_0, IQ4_NL and Q8_0 take kernels
 * in the scalar reference's order; the AVX-512 rows keep these, whose order their tiles match) */
void q8_0_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y);
/* attention_avx2.c: the n_rep query heads of (token t, KV head kvh) over cache positions
 * [j0, j0 + n) (head_dim a multiple of 8; scratch as attention.c's), into out_rows (rows of
 * head_dim): normalized with m NULL, else unnormalized with each head's max score in m and sum
 * of exp in l; and its exp for x <= 0 and softcap * tanh(x / softcap), in place (exposed for
 * tests) */
struct nllm_attn_args;
void nllm_attn_span_avx2(const struct nllm_attn_args *a, int64_t t, int64_t kvh, int64_t j0,
                         int64_t n, float *out_rows, float *m, float *l, float *scratch);
/* the same for n_rows (2..4) tokens t0.. of one sequence at once (one query head per KV head,
 * no window, the whole visible context, normalized), equal bit for bit */
void nllm_attn_rows_avx2(const struct nllm_attn_args *a, int64_t t0, int64_t n_rows, int64_t kvh,
                         float *scratch);
/* the AVX-512 tier's (attention_avx512.c): the same results bit for bit */
void nllm_attn_span_avx512(const struct nllm_attn_args *a, int64_t t, int64_t kvh, int64_t j0,
                           int64_t n, float *out_rows, float *m, float *l, float *scratch);
void nllm_attn_rows_avx512(const struct nllm_attn_args *a, int64_t t0, int64_t n_rows, int64_t kvh,
                           float *scratch);
void nllm_exp_nonpos_avx2(float *x, int64_t n);
void nllm_softcap_avx2(float *x, int64_t n, float softcap);
#endif
#if defined(__aarch64__)
extern const nllm_kernel_set nllm_kernels_iq_neon; /* quant_iq_neon.c */
/* quant_lowbit_neon.c: TQ*, MXFP4 */
extern const nllm_kernel_set nllm_kernels_lowbit_neon;
extern const nllm_kernel_set nllm_kernels_neon;
/* The NEON tier's helpers of the ops (lowrank_neon.c: the LoRA products only) */
extern const nllm_cpu_ops nllm_cpu_ops_neon;
#endif

/* Whether the tier in use has the AVX2 helpers (tests of attention_avx2.c ask). */
int nllm_cpu_has_avx2(void);

#endif
