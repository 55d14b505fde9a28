/* The table of weight formats: one row per type, bit-compatible with GGUF's block layouts.
 * Each row carries the scalar reference functions (always present) and the dispatched ones
 * (AVX2/FMA or NEON when the CPU has them, else the reference). */
#ifndef NLLM_QTYPES_H
#define NLLM_QTYPES_H

#include <stddef.h>
#include <stdint.h>

typedef void (*nllm_to_float_fn)(const void *x, float *y, int64_t n);
typedef void (*nllm_from_float_fn)(const float *x, void *y, int64_t n);
/* s = dot(x[0..n), y[0..n)); x in the row's type, y in the row's vec_dot_type. */
typedef void (*nllm_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);
/* s[r] = dot(row r, y) for four rows r, row r starting x_stride * r bytes after x: decode shares
 * the work that depends on the activation alone between rows. */
typedef void (*nllm_vec_dot4_fn)(int64_t n, float *s, const void *x, size_t x_stride,
                                 const void *y);

typedef struct nllm_qtype {
  const char *name;                  /* "Q4_K" */
  int32_t type;                      /* NLLM_TYPE_* */
  int32_t block_size;                /* elements per block */
  int32_t type_size;                 /* bytes per block */
  int32_t vec_dot_type;              /* type the activation row is converted to for vec_dot */
  nllm_to_float_fn to_float;         /* dispatched dequantize */
  nllm_to_float_fn to_float_ref;     /* scalar reference */
  nllm_from_float_fn from_float;     /* dispatched quantize (activations) */
  nllm_from_float_fn from_float_ref; /* scalar reference quantizer (weights) */
  nllm_vec_dot_fn vec_dot;           /* dispatched */
  nllm_vec_dot_fn vec_dot_ref;       /* scalar reference */
  nllm_vec_dot4_fn vec_dot4;         /* optional (NULL): four rows, equal to vec_dot on each */
  /* optional (NULL: vec_dot4): four rows for the prompt path, where each weight row meets many
   * tokens and a kernel that spends loads and permutes to save arithmetic can win */
  nllm_vec_dot4_fn vec_dot4_tile;
} nllm_qtype;

/* Row of the table for a type, or NULL if this build cannot compute with it. Thread-safe;
 * selects the ISA on first use. */
const nllm_qtype *nllm_qtype_get(int32_t type);
/* Bytes of a row of n elements (n must be a multiple of block_size; else 0). */
size_t nllm_row_size(int32_t type, int64_t n);
/* Name of any GGUF type number, including ones we refuse ("IQ2_XXS"); NULL if unknown. */
const char *nllm_ggml_type_name(int32_t type);
/* Block size and bytes of any GGUF type number we can at least size (for validation); 0 if not. */
int nllm_ggml_type_block(int32_t type, int32_t *block_size, int32_t *type_size);

/* Tiers of kernels, each on top of the one below: a tier's row takes the lower tier's function
 * wherever it has none of its own. */
enum { NLLM_ISA_SCALAR, NLLM_ISA_SIMD /* AVX2+FMA+F16C or NEON */, NLLM_ISA_AVX512 };
/* The best tier this CPU (and OS) can run. */
int nllm_qtypes_isa_max(void);
/* The tier in use: the best one, capped by nllm_qtypes_set_isa or env NLLM_ISA
 * (scalar, avx2 / neon, avx512). */
int nllm_qtypes_isa(void);
/* Cap the tier (tests compare tiers); a cap above what the CPU has means the best it has. */
void nllm_qtypes_set_isa(int tier);
/* Force the scalar path, or undo that (also env NLLM_FORCE_SCALAR=1). */
void nllm_qtypes_force_scalar(int on);
const char *nllm_cpu_features(void);

#endif
