/* The registry of weight types the kernels compute with, in the style of ggml's type traits:
 * one row per type, bit-compatible with GGUF's block layouts. A type's file-format facts (name,
 * block size, bytes per block) come from src/formats/ggml_types.h; its functions come from the
 * kernel files, each of which exports rows of its own (nllm_qtype_kernels). The scalar files
 * give every function of a type; each faster tier's files overlay them at set-up, and the best
 * tier the CPU has is used unless a cap (tests, env NLLM_ISA) asks for a lower one. */
#ifndef NLLM_QTYPES_H
#define NLLM_QTYPES_H

#include <stddef.h>
#include <stdint.h>

#include "formats/ggml_types.h"

typedef void (*nllm_to_float_fn)(const void *x, float *y, int64_t n);
typedef void (*nllm_from_float_fn)(const float *x, void *y, int64_t n);
/* s = dot(x[0..n), y[0..n)); x in the row's type, y in the row's vec_dot_type. */
typedef void (*nllm_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);
/* s[r] = dot(row r, y) for four rows r, row r starting x_stride * r bytes after x: decode shares
 * the work that depends on the activation alone between rows. */
typedef void (*nllm_vec_dot4_fn)(int64_t n, float *s, const void *x, size_t x_stride,
                                 const void *y);
/* The prompt path's register tiles. A tile kernel keeps four weight rows unpacked in registers
 * while up to NLLM_GEMM_TOK tokens pass over them, so the unpacking is paid once per tile and
 * not once per token; the tokens' activations come prepared once per matmul by the type's
 * gemm_prep (from the vec_dot_type row to the kernel's lane order, with the per-block sums and
 * scales the kernel would otherwise recompute per row): NLLM_GEMM_PREP_BYTES(n) bytes a row.
 * s[t * s_stride + r] = dot(row r, token t) for r < 4, t < n_tok; n a multiple of
 * NLLM_GEMM_COLS. */
#define NLLM_GEMM_TOK 4
#define NLLM_GEMM_COLS 128
#define NLLM_GEMM_PREP_BYTES(n) ((size_t)(n)*3)
typedef void (*nllm_gemm_prep_fn)(int64_t n, const void *yq, void *prep);
typedef void (*nllm_gemm4_fn)(int64_t n, float *s, size_t s_stride, const void *x, size_t x_stride,
                              const void *prep, size_t prep_stride, int n_tok);
/* The prompt path's row-interleaved kernels. nllm_matmul repacks the weight rows of each work
 * item, a group of NLLM_PACK_ROWS rows (or of the format's pack_group_rows) at a time, into the
 * kernel's own layout (pack_rows: NLLM_PACK_BYTES(n) bytes per NLLM_PACK_ROWS rows), once for
 * every token of the batch: a block's bytes of the group's rows lie four by four in one vector,
 * so one broadcast of four activation bytes feeds every row's products and the rows' sums come
 * out in the lanes of one vector with their scales in another (no horizontal sums). The
 * activations are prepared once per matmul by packed_prep (NLLM_GEMM_PREP_BYTES(n) bytes a row,
 * as gemm_prep's).
 * s[t * s_stride + r] = dot(row r, token t) for r < the group's rows, t < n_tok <= NLLM_GEMM_TOK;
 * n a multiple of NLLM_GEMM_COLS. */
#define NLLM_PACK_ROWS 8
/* The most tokens an interleaved kernel's call takes (a format's packed_tok) */
#define NLLM_PACKED_TOK_MAX 8
/* The most tokens a streaming call takes (a format's stream_tok) */
#define NLLM_STREAM_TOK_MAX 16
#define NLLM_PACK_BYTES(n) ((size_t)(n)*9)
typedef void (*nllm_pack_rows_fn)(int64_t n, const void *x, size_t x_stride, void *packed);
typedef void (*nllm_gemm_packed_fn)(int64_t n, float *s, size_t s_stride, const void *packed,
                                    const void *prep, size_t prep_stride, int n_tok);
/* s[t * s_stride + r] = dot(row r, token t) for four rows r and four tokens t, token t's
 * activations y_stride * t bytes after y: a batch unpacks each weight block once for four
 * tokens instead of once per token. */
typedef void (*nllm_vec_dot4x4_fn)(int64_t n, float *s, size_t s_stride, const void *x,
                                   size_t x_stride, const void *y, size_t y_stride);
/* The same for n_tok = 2 or 3 tokens (a batch of two or three, the last tokens of a larger
 * one): the weights' unpacking shared by fewer tokens. */
typedef void (*nllm_vec_dot4xt_fn)(int64_t n, float *s, size_t s_stride, const void *x,
                                   size_t x_stride, const void *y, size_t y_stride, int n_tok);

/* Tokens from which nllm_matmul dequantizes weight tiles for OpenBLAS sgemm instead of running
 * the type's integer kernels. Float weights cross here (on the scalar tier only they: its
 * quantized formats keep the one-row dot, kernels/qtypes.c); quantized weights
 * pay a dequantization per weight that few tokens do not amortize, and the SIMD integer kernels
 * differ in speed, so a faster tier's row raises the crossover where its kernels stay ahead
 * for longer (measured per format: docs/performance.md, "BLAS crossovers"). */
#define NLLM_BLAS_MIN_TOKENS 16
/* A crossover no batch reaches: the integer kernels win at every size measured. */
#define NLLM_BLAS_NEVER INT32_MAX

/* What one kernel file has for a type. Rows of the scalar files (quant_ref.c, quant_kref.c)
 * give all three functions and vec_dot_type; a row of a faster tier's file replaces each
 * function (and the crossover) it sets, and leaves the tier below's where it has NULL (0). */
typedef struct nllm_qtype_kernels {
  int32_t type;         /* NLLM_TYPE_* */
  int32_t vec_dot_type; /* scalar rows: the type vec_dot takes the activations in */
  nllm_to_float_fn to_float;
  nllm_from_float_fn from_float;
  nllm_vec_dot_fn vec_dot;
  nllm_vec_dot4_fn vec_dot4;      /* four rows, equal to vec_dot on each */
  nllm_vec_dot4_fn vec_dot4_tile; /* four rows for the prompt path only (see nllm_qtype) */
  int32_t blas_min_tokens;        /* this tier's crossover (see NLLM_BLAS_MIN_TOKENS) */
  nllm_gemm_prep_fn gemm_prep;    /* with gemm4: the prompt path's register tiles */
  nllm_gemm4_fn gemm4;
  nllm_vec_dot4x4_fn vec_dot4x4;  /* four rows by four tokens (batches) */
  nllm_vec_dot4xt_fn vec_dot4xt;  /* with vec_dot4x4: four rows by two or three tokens */
  int32_t gemm_min_tokens;        /* with gemm4: its crossover (see nllm_qtype), 0: any batch */
  const struct nllm_gemmf *gemmf; /* float weights: the prompt path's GEMM (cpu/gemm_float.h) */
  /* the row-interleaved kernels (see nllm_gemm_packed_fn) and their crossover (tokens); a row
   * that sets gemm4 or these replaces both kinds of the tier below */
  nllm_pack_rows_fn pack_rows;
  nllm_gemm_prep_fn packed_prep;
  nllm_gemm_packed_fn gemm_packed;
  int32_t packed_min_tokens;
  const struct nllm_gemmf *gemmf_xbf16; /* BF16 weights: the GEMM for BF16-rounded activations */
  int32_t pack_group_rows; /* with gemm_packed: rows a packed group holds, 0: NLLM_PACK_ROWS */
  int32_t packed_tok;      /* with gemm_packed: the most tokens a call takes, 0: NLLM_GEMM_TOK */
  nllm_gemm_packed_fn gemv_packed; /* with gemm_packed: one token on packed rows (see nllm_qtype) */
  int32_t prepack;                 /* with gemm_packed: weights may stay packed from load */
  nllm_pack_rows_fn expand_packed; /* with prepack: see nllm_qtype */
  nllm_gemm_packed_fn gemm_expanded;
  int32_t expand_min_tokens;
  nllm_pack_rows_fn pack_expanded;        /* with expand_packed: see nllm_qtype */
  int32_t packed_block_bytes;             /* with gemm_packed: see nllm_qtype */
  nllm_gemm_packed_fn gemm_packed_stream; /* with prepack: see nllm_qtype */
  int32_t stream_passes;                  /* with gemm_packed_stream: see nllm_qtype */
  int32_t stream_tok; /* with gemm_packed_stream: see nllm_qtype; 0: packed_tok */
} nllm_qtype_kernels;

/* The rows one kernel file exports (kernels/cpu/quant.h names them). */
typedef struct nllm_kernel_set {
  const nllm_qtype_kernels *rows;
  size_t n_rows;
} nllm_kernel_set;

/* The row of a type in the tier in use. */
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
  int32_t blas_min_tokens; /* NLLM_BLAS_MIN_TOKENS or this tier's own crossover */
  /* optional (NULL): the prompt path's register tiles (see nllm_gemm4_fn); both or neither, and
   * where set they serve every batch of two or more tokens whose rows are a multiple of
   * NLLM_GEMM_COLS long (before vec_dot4x4, which serves the other lengths); equal to vec_dot4
   * on each row (to vec_dot where the tier has no vec_dot4) */
  nllm_gemm_prep_fn gemm_prep;
  nllm_gemm4_fn gemm4;
  /* optional (NULL): four rows by four tokens, equal to vec_dot on each pair; the batched
   * path (several tokens: a prompt, or a decode step of many sequences) takes it first */
  nllm_vec_dot4x4_fn vec_dot4x4;
  /* optional (NULL): the same for two or three tokens, where it beats vec_dot4 per token; set
   * (or cleared) with vec_dot4x4 by each tier */
  nllm_vec_dot4xt_fn vec_dot4xt;
  /* Tokens from which gemm4 serves a batch (0: every batch of two or more). Below it the row
   * kernels (vec_dot4x4, vec_dot4) run: with few tokens on weights that come from DRAM (a
   * decode step of a few sequences) the tiles' activation preparation and wider loads did not
   * pay for themselves in some formats (docs/performance.md, "Many sequences"). */
  int32_t gemm_min_tokens;
  /* optional (NULL): float weights' own GEMM (cpu/gemm_float.h), which nllm_matmul takes from
   * its min_tokens on, before sgemm */
  const struct nllm_gemmf *gemmf;
  /* optional (NULL): the row-interleaved prompt kernels (see nllm_gemm_packed_fn), all three or
   * none, equal to vec_dot_ref on each row and token; nllm_matmul takes them before gemm4 for
   * batches of packed_min_tokens or more whose rows are a multiple of NLLM_GEMM_COLS long
   * (below, repacking the rows costs more than it saves) */
  nllm_pack_rows_fn pack_rows;
  nllm_gemm_prep_fn packed_prep;
  nllm_gemm_packed_fn gemm_packed;
  int32_t packed_min_tokens;
  /* optional (NULL): BF16 weights' GEMM for activations rounded to BF16 (NLLM_MATMUL_XBF16),
   * which nllm_matmul_mode takes from its min_tokens on; without it those batches round the
   * activations and take the exact paths */
  const struct nllm_gemmf *gemmf_xbf16;
  /* with gemm_packed: the rows of a packed group, NLLM_PACK_ROWS or twice that (pack_rows packs
   * that many rows, gemm_packed writes that many sums per token, a group takes
   * pack_group_rows / NLLM_PACK_ROWS times NLLM_PACK_BYTES) */
  int32_t pack_group_rows;
  /* with gemm_packed: the most tokens one call takes, NLLM_GEMM_TOK..NLLM_PACKED_TOK_MAX
   * (gemm_packed's n_tok <= packed_tok instead of NLLM_GEMM_TOK) */
  int32_t packed_tok;
  /* optional (NULL: gemm_packed with n_tok 1): one token on packed rows, for weights kept
   * packed from load (prepack), where decode reads nothing else; gemm_packed's signature, and
   * the sums of the tier's decode kernel (vec_dot4) on the plain rows, so that a packed load
   * decodes as a plain one does (equal to gemm_packed's where the format's prompt and decode
   * kernels agree). Only a matmul of one token in all takes it. */
  nllm_gemm_packed_fn gemv_packed;
  /* with gemm_packed: 1 where the packed kernels serve every token count (1 included) at least
   * as fast as the row kernels and tiles on the unpacked rows, so a loader may keep the weights
   * in the packed layout from load on (no repacking per matmul) */
  int32_t prepack;
  /* optional (NULL), with prepack: from expand_min_tokens tokens on, each packed group of a work
   * item is expanded once (expand_packed(n, group, 0, out): NLLM_PACK_BYTES(n) bytes per
   * NLLM_PACK_ROWS rows) into a layout gemm_expanded (as gemm_packed, the same sums) reads with
   * less work per call: a layout that keeps the plain rows' bytes may cost unpacking per call */
  nllm_pack_rows_fn expand_packed;
  nllm_gemm_packed_fn gemm_expanded;
  int32_t expand_min_tokens;
  /* optional (NULL), with expand_packed: the plain rows packed straight into expand_packed's
   * layout (as pack_rows' call), which the repacking path (weights not kept packed) takes with
   * gemm_expanded from expand_min_tokens on, so that it runs prompts as the packed weights do */
  nllm_pack_rows_fn pack_expanded;
  /* with gemm_packed: the bytes a packed group takes per block of the format; 0 where the layout
   * keeps the plain rows' bytes (pack_group_rows * type_size). A packed copy of a matrix is
   * larger than its plain rows where this is larger. */
  int32_t packed_block_bytes;
  /* optional (NULL: gemm_packed), with prepack: gemm_packed that also prefetches the next group
   * (the one after it in memory) while it works. Weights kept packed from load come from DRAM
   * on the first pass over a group, and a group's sixteen-row blocks are read in an order the
   * hardware prefetcher does not follow; later passes (the other tokens of a prompt) find the
   * group in cache and take gemm_packed, which would only pay for the prefetches. */
  nllm_gemm_packed_fn gemm_packed_stream;
  /* with gemm_packed_stream: the passes over a group (from the first) that take it, at least 1.
   * The K-quants' (each next super-block whole, to L2): 1.1B Q4_K_M 16-sequence decode steps (two
   * passes of eight) ran 1.07x with both passes prefetching against the first only (with one
   * pass of sixteen, one or two stream passes run prompts alike); Q8_0's (to L2, in address
   * order) ran 0.95x with two. */
  int32_t stream_passes;
  /* with gemm_packed_stream: the most tokens one of its calls takes, packed_tok..
   * NLLM_STREAM_TOK_MAX; its passes are that wide. A sixteen-sequence decode step is then one
   * pass, which reads each group from DRAM while it does all the step's products on it, where
   * two passes of eight left the second with nothing to hide the next group's fetch behind: 1.1B
   * 16-sequence generation at two threads, Q8_0 1.08x and Q4_K_M 1.10x, Q4_0 none then
   * (docs/performance.md, twenty-fourth round) and 1.06x once its prefetches reached two groups
   * ahead (twenty-fifth round); on AMD Zen 5 the K-quants ran ahead with passes of eight
   * (quant_k_packed16_avx512.c, thirty-fifth round). A prompt's later passes stay packed_tok wide:
   * sixteen tokens' prepared rows and accumulators in every pass ran Q8_0 pp512 0.89x. */
  int32_t stream_tok;
} nllm_qtype;

/* Row of the table for a type, or NULL if this build cannot compute with it. Thread-safe;
 * selects the ISA on first use. */
const nllm_qtype *nllm_qtype_get(int32_t type);
/* The kernel for pass `pass` (0, 1, ...; nllm_qtype_pass_tokens tokens each) of a matmul of
 * n_tok tokens on weights packed by the format's pack_rows: gemv_packed for a one-token matmul
 * where the format has it, gemm_packed_stream in the first stream_passes passes, else
 * gemm_packed. */
static inline nllm_gemm_packed_fn nllm_qtype_packed_kernel(const nllm_qtype *q, int64_t n_tok,
                                                           int64_t pass) {
  if (n_tok == 1 && q->gemv_packed) return q->gemv_packed;
  if (pass < q->stream_passes && q->gemm_packed_stream) return q->gemm_packed_stream;
  return q->gemm_packed;
}
/* The tokens pass `pass` takes of the `left` still to go: at most stream_tok in the streaming
 * passes, else packed_tok */
static inline int64_t nllm_qtype_pass_tokens(const nllm_qtype *q, int64_t pass, int64_t left) {
  const int64_t w =
      pass < q->stream_passes && q->gemm_packed_stream ? q->stream_tok : q->packed_tok;
  return left < w ? left : w;
}
/* Bytes of a row of n elements; 0 for an unknown type, n < 0, n not a multiple of block_size,
 * or a size that does not fit in size_t. */
size_t nllm_row_size(int32_t type, int64_t n);

/* The ISA-specific helpers of the CPU ops (ops.c, attention.c) in a tier; NULL where the tier
 * has none and the portable C runs. */
struct nllm_attn_args;
/* attention of a (token, KV head) pair over a span of the cache (see attention_avx2.c) */
typedef void (*nllm_attn_span_fn)(const struct nllm_attn_args *a, int64_t t, int64_t kvh,
                                  int64_t j0, int64_t n, float *out_rows, float *m, float *l,
                                  float *scratch);
/* attention of n_rows (2..4) consecutive tokens t0.. of one sequence and one head over their
 * whole visible context, for one query head per KV head and no window (attention_avx2.c) */
typedef void (*nllm_attn_rows_fn)(const struct nllm_attn_args *a, int64_t t0, int64_t n_rows,
                                  int64_t kvh, float *scratch);
/* LoRA's low-rank products (lowrank.c is the reference; weights F32, F16 or BF16, activations
 * F32):
 * s[t * s_stride + j] = scale * dot(row j of w, row t of x) over n elements, for j < n_rows and
 * t < n_tok, both at most 4; rows w_stride and x_stride elements apart. */
typedef void (*nllm_lowrank_dot_fn)(int32_t wtype, int64_t n, float *s, int64_t s_stride,
                                    const void *w, int64_t w_stride, int n_rows, const float *x,
                                    int64_t x_stride, int n_tok, float scale);
/* y[t * y_stride + i] += sum_j c[t * c_stride + j] * w[j * w_stride + i] for i < n, j < r,
 * t < n_tok (at most 4): B t with B stored transposed, so a row of outputs is r scaled rows of
 * weights added up, without horizontal sums. */
typedef void (*nllm_lowrank_axpy_fn)(int32_t wtype, int64_t n, float *y, int64_t y_stride,
                                     const void *w, int64_t w_stride, int64_t r, const float *c,
                                     int64_t c_stride, int n_tok);
typedef struct nllm_cpu_ops {
  float (*dot_f32)(const float *a, const float *b, int64_t n);
  void (*axpy_f32)(float *y, float a, const float *x, int64_t n);
  nllm_attn_span_fn attn_span;           /* for head_dim a multiple of 8 */
  nllm_attn_rows_fn attn_rows;           /* the same, and bit for bit attn_span's results */
  void (*gelu_erf)(float *x, int64_t n); /* in place, the erf GELU (ops.c's is the reference) */
  nllm_lowrank_dot_fn lowrank_dot;
  nllm_lowrank_axpy_fn lowrank_axpy;
  /* out = act(gate) * up, SiLU or (gelu) tanh GELU (ops.c's glu_chunk is the reference) */
  void (*glu)(float *out, const float *gate, const float *up, int64_t n, int gelu);
} nllm_cpu_ops;
/* The helpers of the tier in use (a tier takes each helper it has none of from the tier
 * below; NULL in every tier: the portable C runs). */
const nllm_cpu_ops *nllm_cpu_ops_get(void);

/* Tiers of kernels, each on top of the one below: a tier's row takes the lower tier's function
 * wherever it has none of its own. */
enum { NLLM_ISA_SCALAR, NLLM_ISA_SIMD /* AVX2+FMA+F16C or NEON */, NLLM_ISA_AVX512 };
/* The best tier this CPU (and OS) can run. */
int nllm_qtypes_isa_max(void);
/* Cap the tier in use (tests compare tiers; env NLLM_ISA = scalar, avx2 / neon, avx512 does the
 * same for a process); a cap above what the CPU has means the best it has. */
void nllm_qtypes_set_isa(int tier);
/* Force the scalar path, or undo that (also env NLLM_FORCE_SCALAR=1). */
void nllm_qtypes_force_scalar(int on);
const char *nllm_cpu_features(void);

#endif
