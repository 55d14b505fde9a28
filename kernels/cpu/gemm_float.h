/* The prompt path's GEMM for float weights (F32, F16, BF16): y[t][r] = sum_k W[r][k] x[t][k]
 * for a batch of tokens, threaded over the pool like the quantized tiles, with no BLAS (the
 * serial OpenBLAS is not thread-safe, so its calls were serialized behind a lock).
 *
 * Layout: the activations are packed once per call into blocks of `tb` tokens, each column
 * chunk of `kc` columns k-major, so that one vector holds one column of `tb` tokens (lanes are
 * tokens). A micro tile keeps `rm` weight rows x `tb` tokens of sums in registers; each weight
 * is broadcast to a whole vector and meets `tb` tokens per instruction, so a weight is read (and,
 * for F16, converted) once per token block instead of once per token. The sums come out in
 * the token-lane layout and are transposed into y once per tile. */
#ifndef NLLM_GEMM_FLOAT_H
#define NLLM_GEMM_FLOAT_H

#include <stddef.h>
#include <stdint.h>

/* Upper bounds over every tier (sizes the workspace independently of the tier in use). */
#define NLLM_GEMMF_TB_MAX 32
#define NLLM_GEMMF_RM_MAX 16
#define NLLM_GEMMF_KC_MAX 512

typedef struct nllm_gemmf {
  int32_t rm;         /* weight rows per micro tile (<= NLLM_GEMMF_RM_MAX) */
  int32_t tb;         /* tokens per packed block and micro tile (<= NLLM_GEMMF_TB_MAX) */
  int32_t kc;         /* columns per chunk (<= NLLM_GEMMF_KC_MAX) */
  int32_t min_tokens; /* from this batch size on the GEMM beats the four-row dots */
  /* Tokens [0, n) of x (row stride x_rs floats), columns [k0, k0 + kc), into one chunk of a
   * block: kc * tb * 4 bytes; tokens n..tb-1 are zeros. */
  void (*pack_x)(const float *x, size_t x_rs, int n, int64_t k0, int64_t kc, void *xp);
  /* Rows [0, n) of W (row stride w_rs bytes), columns [k0, k0 + kc), in the form the micro
   * kernel reads; rows n..rm-1 are zeros. Returns what the micro kernel gets and its row stride
   * in bytes (a format the kernel reads directly returns W itself). */
  const void *(*pack_w)(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc, void *panel,
                        size_t *p_rs);
  /* c[r * tb + t] (+)= sum over the chunk's kc columns of w[r][k] x[k][t], for r < rm, t < tb */
  void (*micro)(int64_t kc, const void *w, size_t w_rs, const void *xp, float *c, int accumulate);
  /* optional (NULL: a scalar loop): y[t * y_rs + r] = c[r * tb + t] for r < n, t < n_tok */
  void (*store)(const float *c, int n, int n_tok, float *y, size_t y_rs);
} nllm_gemmf;

/* Bytes of scratch nllm_gemmf_run needs at most, for any tier. */
size_t nllm_gemmf_wsize(int64_t cols, int64_t n_tok, int n_threads);

/* y[t * rows + r] = dot(W row r, x row t) (x rows cols floats apart, W rows w_rs bytes apart),
 * on up to n_threads pool threads, with scratch of nllm_gemmf_wsize bytes. */
void nllm_gemmf_run(const nllm_gemmf *g, float *y, const void *W, size_t w_rs, int64_t rows,
                    int64_t cols, const float *x, int64_t n_tok, void *scratch, int n_threads);

/* Matrices of one input x (a layer's q, k and v, or gate and up; each n_p <= PARTS_MAX):
 * y[p] = W[p] x as nllm_gemmf_run would give each, with x packed once and every matrix's rows
 * the work items of one pass of the pool (one hand-off for all, and the small ones fill the
 * threads' share next to the large). Same scratch size as one of them. */
#define NLLM_GEMMF_PARTS_MAX 4
void nllm_gemmf_run_group(const nllm_gemmf *g, int n_p, float *const *y, const void *const *W,
                          const size_t *w_rs, const int64_t *rows, int64_t cols, const float *x,
                          int64_t n_tok, void *scratch, int n_threads);

/* The same GEMM on weights of a quantized format q (any with to_float; q->block_size divides
 * g->kc): each chunk of a tile's rows is dequantized into the panel and read by g's micro
 * kernel, which must be the f32 one (pack_w is not used). The activations stay f32, as with
 * sgemm, which this replaces past a format's crossover (blas_min_tokens) on the tiers that
 * have an f32 GEMM: it runs on every pool thread at once and at the tier's full width. */
struct nllm_qtype;
void nllm_gemmf_run_dequant(const nllm_gemmf *g, const struct nllm_qtype *q, float *y,
                            const void *W, size_t w_rs, int64_t rows, int64_t cols, const float *x,
                            int64_t n_tok, void *scratch, int n_threads);

/* Each tier's kernels (for the tests, which run every one the CPU has). */
extern const nllm_gemmf nllm_gemmf_f32_avx2, nllm_gemmf_f16_avx2, nllm_gemmf_bf16_avx2;
extern const nllm_gemmf nllm_gemmf_f32_avx512, nllm_gemmf_f16_avx512, nllm_gemmf_bf16_avx512;
/* BF16 weights x activations rounded to BF16 (vdpbf16ps); only for a CPU with AVX512_BF16. */
extern const nllm_gemmf nllm_gemmf_bf16_xbf16_avx512;

#endif
