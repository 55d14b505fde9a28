/* The CPU backend's operations, called by the forward pass. Every op is threaded internally
 * (the worker pool of pool.h, n_threads) and allocation-free; scratch memory comes from the caller.
 */
#ifndef NLLM_OPS_H
#define NLLM_OPS_H

#include <stddef.h>
#include <stdint.h>

/* y[t*rows + r] = sum_c W[r, c] * x[t*cols + c] for t < n_tok, r < rows.
 * W: rows x cols in wtype (row-major, row stride nllm_row_size(wtype, cols)).
 * wdata: scratch of at least nllm_matmul_wsize(wtype, cols, n_tok) bytes. */
void nllm_matmul(float *y, const void *W, int32_t wtype, int64_t rows, int64_t cols, const float *x,
                 int64_t n_tok, void *wdata, int n_threads);
size_t nllm_matmul_wsize(int32_t wtype, int64_t cols, int64_t n_tok, int n_threads);
/* nllm_matmul with a mode: NLLM_MATMUL_EXACT (what nllm_matmul does) or NLLM_MATMUL_XBF16,
 * where BF16 weights meet the activations rounded to BF16 (to nearest even) on every path
 * (decode, batches, the GEMM, which runs vdpbf16ps on a CPU with AVX512_BF16): a context's
 * bf16_activations. Other weight formats ignore the mode. */
#define NLLM_MATMUL_EXACT 0
#define NLLM_MATMUL_XBF16 1
void nllm_matmul_mode(float *y, const void *W, int32_t wtype, int64_t rows, int64_t cols,
                      const float *x, int64_t n_tok, void *wdata, int n_threads, int mode);
/* A weight's rows kept in its format's packed layout since load (qtypes.h prepack): the groups
 * of pack_group_rows rows one after the other, each as pack_rows lays it out (a group takes the
 * bytes of its plain rows), the rows past the last whole group only in W. layout: the pack_rows
 * that made them, so that a matmul reads them only while the tier in use packs the same way
 * (tests cap the tier after a load), and W otherwise. */
typedef struct nllm_packed {
  const void *data;
  void (*layout)(void);
} nllm_packed;
/* nllm_matmul_mode on a weight whose rows may be kept packed (pk NULL or without data: W
 * alone): every batch, one token included, runs the format's packed kernels on them where the
 * layout is the tier's and cols a multiple of NLLM_GEMM_COLS (no repacking per call); the sums
 * are the same as on W. */
void nllm_matmul_pk(float *y, const void *W, const nllm_packed *pk, int32_t wtype, int64_t rows,
                    int64_t cols, const float *x, int64_t n_tok, void *wdata, int n_threads,
                    int mode);
/* Bytes of prepared activations a pass over packed weights should keep in L2 (passes of a
 * block of at least 64 tokens each; the same sums); 0: the default. Tests shrink it so that
 * small matrices take several passes. */
void nllm_matmul_set_token_block_bytes(size_t bytes);
/* Bytes of W's packed copy in the tier in use (nllm_prepack), 0 where its format's row does not
 * keep weights packed (no prepack), cols is not a multiple of NLLM_GEMM_COLS or rows make no
 * whole group. */
size_t nllm_prepack_size(int32_t wtype, int64_t rows, int64_t cols);
/* Bytes of the plain rows that packed copy replaces (its whole groups of rows), 0 as above */
size_t nllm_prepack_plain_size(int32_t wtype, int64_t rows, int64_t cols);
/* Packs W's whole groups of rows into out (nllm_prepack_size bytes) on n_threads and describes
 * them in *pk. */
void nllm_prepack(const void *W, int32_t wtype, int64_t rows, int64_t cols, void *out,
                  int n_threads, nllm_packed *pk);
/* Whether NLLM_MATMUL_XBF16 runs faster kernels than the exact mode in the tier in use (the
 * vdpbf16ps GEMM, AVX512_BF16): where it does not, rounding the activations only costs
 * accuracy, so a context's NLLM_BF16_ACT_AUTO resolves to the exact mode. */
int nllm_matmul_xbf16_fast(void);
/* out = x rounded to the nearest BF16 (ties to even), n rows of cols floats (out may be x). */
void nllm_round_bf16_rows(float *out, const float *x, int64_t n, int64_t cols, int n_threads);
/* Whether nllm_matmul takes this many tokens on n_threads past the format's crossover: weights
 * dequantized to f32 and multiplied with the float activations as they are (by the tier's f32
 * GEMM, or by sgemm on tiers without one), where the integer path rounds the activations to the
 * format's vec_dot_type first (tests compare with the matching reference); for a matrix of at
 * least NLLM_BLAS_MIN_ROWS rows: one of fewer (a router) stays on the row kernels, whose rows do
 * not depend on how many tokens the batch holds (sgemm's do, in the last bits, and a router
 * passes them on to its choice of experts). */
int nllm_matmul_uses_blas(int32_t wtype, int64_t n_tok, int n_threads);
#define NLLM_BLAS_MIN_ROWS 16
/* Whether nllm_matmul takes this batch as one whole-matrix product with float activations:
 * the float formats' own GEMM (cpu/gemm_float.h), or the path above. */
int nllm_matmul_uses_gemm(int32_t wtype, int64_t n_tok, int n_threads);
/* The integer path's inner loop, shared with the expert kernel (cpu/moe.c): weight rows
 * [r0, r1) of W (row stride w_rs) against activation rows [t_begin, t_end) of act (already in
 * q's vec_dot_type, stride a_rs; prep: their gemm_prep rows, stride p_rs, or NULL) into
 * y[t * y_rs + r], in token tiles, four rows at a time (the register tiles where prepared, else
 * the four-row kernels), the rows left over one at a time. */
struct nllm_qtype;
void nllm_matmul_rows(const struct nllm_qtype *q, int64_t cols, const uint8_t *W, size_t w_rs,
                      int64_t r0, int64_t r1, const uint8_t *act, size_t a_rs, const uint8_t *prep,
                      size_t p_rs, int64_t t_begin, int64_t t_end, float *y, size_t y_rs);
/* One input x [n_tok][cols] through up to four matrices (a layer's q, k and v; gate and up):
 * y of each = W x as nllm_matmul gives it, with the activations quantized (and prepared for
 * the tiles) once per form the matrices take and every matrix's rows in one pass of the team.
 * wdata: wsize bytes, at least nllm_matmul_wsize of each matrix; matrices of one format share
 * within that, a mix whose forms need more (up to nllm_matmul_group_wsize) runs one by one. */
typedef struct nllm_matmul_part {
  float *y;
  const void *W;
  int32_t wtype;
  int64_t rows;
  const struct nllm_packed *packed; /* W's rows kept packed (nllm_matmul_pk), or NULL */
} nllm_matmul_part;
void nllm_matmul_group(const nllm_matmul_part *p, int n_p, int64_t cols, const float *x,
                       int64_t n_tok, void *wdata, size_t wsize, int n_threads);
/* ... with a mode, as nllm_matmul_mode (a group holding a BF16 matrix under NLLM_MATMUL_XBF16
 * runs matrix by matrix) */
void nllm_matmul_group_mode(const nllm_matmul_part *p, int n_p, int64_t cols, const float *x,
                            int64_t n_tok, void *wdata, size_t wsize, int n_threads, int mode);
size_t nllm_matmul_group_wsize(const nllm_matmul_part *p, int n_p, int64_t cols, int64_t n_tok,
                               int n_threads);
/* Whether the OpenBLAS loaded at run time is its serial build, the only one sgemm is used with
 * (kernels/cpu/matmul.c). Always 0 without BLAS. */
int nllm_blas_is_serial(void);

/* One low-rank product of a LoRA adapter on a layer matrix W [out][in]: y += s B (A x), with
 * A [r][in] and B packed in panels (below), both in F32, F16 or BF16 (type); the activations
 * stay F32. t is its scratch of n_tok rows of r floats. */
typedef struct nllm_lowrank {
  int32_t type;
  int32_t r;
  int64_t in, out;
  const void *a, *bt;
  float s;
  float *t;
  float *y; /* [n_tok][out] */
} nllm_lowrank;
/* B's packed form: its transpose cut into panels of NLLM_LOWRANK_PANEL outputs, each panel r
 * rows of PANEL weights one after another (the last panel zero-padded). B t adds r scaled rows
 * of a panel into PANEL outputs, reading the panel front to back: a decode step streams B
 * without the r-way strided reads of a plain transpose. */
#define NLLM_LOWRANK_PANEL 64
static inline int64_t nllm_lowrank_bt_size(int64_t r, int64_t out) {
  return r * ((out + NLLM_LOWRANK_PANEL - 1) / NLLM_LOWRANK_PANEL * NLLM_LOWRANK_PANEL);
}
/* The packed position of B[o][j]. */
static inline int64_t nllm_lowrank_bt_index(int64_t r, int64_t o, int64_t j) {
  return o / NLLM_LOWRANK_PANEL * r * NLLM_LOWRANK_PANEL + j * NLLM_LOWRANK_PANEL +
         o % NLLM_LOWRANK_PANEL;
}
/* t = s A x for every product of p (all of p[k].in columns; x [n_tok][in]): the products of
 * one input (a layer's q, k and v) read it in one pass over the team. */
void nllm_lowrank_down(const nllm_lowrank *p, int n_p, const float *x, int64_t n_tok,
                       int n_threads);
/* y += B t for every product of p, after nllm_lowrank_down. */
void nllm_lowrank_up(const nllm_lowrank *p, int n_p, int64_t n_tok, int n_threads);
/* The scalar references of the tiers' lowrank_dot / lowrank_axpy (kernels/qtypes.h). */
void nllm_lowrank_dot_ref(int32_t wtype, int64_t n, float *s, int64_t s_stride, const void *w,
                          int64_t w_stride, int n_rows, const float *x, int64_t x_stride, int n_tok,
                          float scale);
void nllm_lowrank_axpy_ref(int32_t wtype, int64_t n, float *y, int64_t y_stride, const void *w,
                           int64_t w_stride, int64_t r, const float *c, int64_t c_stride,
                           int n_tok);

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], per row of n. */
void nllm_rmsnorm(float *out, const float *x, const float *w, int64_t n, int64_t n_rows, float eps,
                  int n_threads);
/* LayerNorm: out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i] per row of n (biased
 * variance; b may be NULL). */
void nllm_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n,
                    int64_t n_rows, float eps, int n_threads);
/* In place: x = x/2 (1 + erf(x / sqrt 2)), the exact GELU (BERT's "gelu"). */
void nllm_gelu_erf(float *x, int64_t n, int n_threads);
/* Rotary embedding over n_heads heads of head_dim, first n_rot dims of each rotated.
 * neox = 0: pairs (2i, 2i+1) (GGUF llama); neox = 1: pairs (i, i + n_rot/2) (HF rotate_half).
 * freq[i] (n_rot/2 values) = theta^(-2i/n_rot) / scaling factors, precomputed by the caller. */
void nllm_rope(float *x, int64_t n_heads, int64_t head_dim, int64_t n_rot, int32_t pos,
               const float *inv_freq, int neox);
/* The same in two steps, for callers that rotate many rows at one position (q and k of every
 * layer): the cos and sin of pos * inv_freq[i], i < half, then the rotation by them. */
void nllm_rope_angles(float *cs, float *sn, int32_t pos, const float *inv_freq, int64_t half);
void nllm_rope_with(float *x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float *cs,
                    const float *sn, int neox);
/* x[i] = silu(gate[i]) * up[i] (SwiGLU) or gelu(gate)*up (GeGLU when gelu = 1). */
void nllm_glu(float *out, const float *gate, const float *up, int64_t n, int gelu, int n_threads);
float nllm_dot_f32(const float *a, const float *b, int64_t n);
/* y += a * x */
void nllm_axpy_f32(float *y, float a, const float *x, int64_t n);

#endif
