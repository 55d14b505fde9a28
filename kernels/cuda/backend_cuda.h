/* The CUDA backend: the operations of the forward pass (src/model/forward.c) on device memory.
 * Argument conventions follow ops.h / attention.h: float activations row-major [n_tok][width],
 * weights as rows x cols (rows = output features). Every pointer named d_* or documented as
 * "device" points into memory from nllm_cuda_alloc; nothing here touches host memory except
 * nllm_cuda_upload / nllm_cuda_download / nllm_cuda_weight_upload.
 *
 * Every op is enqueued on the context's one stream and returns at once; a failure to launch
 * (or a sticky error from an earlier kernel) comes back as NLLM_ERR_BACKEND with a message
 * naming the call site. Results are visible to the host after nllm_cuda_download (which waits)
 * or nllm_cuda_sync. A context is used by one thread at a time.
 *
 * This header is plain C and needs no CUDA headers; it exists in every build, but the functions
 * are only defined when the library is built with CUDA=1 (NLLM_CUDA defined). */
#ifndef NLLM_BACKEND_CUDA_H
#define NLLM_BACKEND_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "attention.h"
#include "nativellm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nllm_cuda nllm_cuda;

/* ---------------------------------------------------------------- context */

/* Selects device `device` (0 = first), creates a stream and a cuBLAS handle. Fails with
 * NLLM_ERR_BACKEND and a message ("no CUDA device found", "CUDA driver too old for this build
 * (driver 11.4, runtime 13.0)", ...) when the machine cannot run it; never aborts the process. */
nllm_status nllm_cuda_init(int32_t device, nllm_cuda **out);
void nllm_cuda_free(nllm_cuda *cu);
/* Number of devices (0 when no driver / no device; never an error). */
int32_t nllm_cuda_device_count(void);
/* Device name, compute capability (e.g. 90), and free/total memory in bytes right now. */
nllm_status nllm_cuda_device_info(nllm_cuda *cu, char *name, size_t name_cap, int32_t *cc,
                                  size_t *free_bytes, size_t *total_bytes);

/* ---------------------------------------------------------------- memory */

/* Device allocation. NLLM_ERR_NOMEM with the size, the name `what` and the device's free
 * memory when it does not fit; the context stays usable. */
nllm_status nllm_cuda_alloc(nllm_cuda *cu, size_t bytes, const char *what, void **d_out);
void nllm_cuda_dfree(nllm_cuda *cu, void *d_ptr);
/* host -> device, ordered on the stream; the host buffer may be reused when this returns. */
nllm_status nllm_cuda_upload(nllm_cuda *cu, void *d_dst, const void *src, size_t bytes);
/* device -> host; waits for everything enqueued before it. */
nllm_status nllm_cuda_download(nllm_cuda *cu, void *dst, const void *d_src, size_t bytes);
/* device -> device (and the bandwidth probe of bench_cuda). */
nllm_status nllm_cuda_copy(nllm_cuda *cu, void *d_dst, const void *d_src, size_t bytes);
/* n_rows rows of width floats: dst[r*dst_stride + i] = src[r*src_stride + i] (strides in
 * floats). Source and destination must not overlap (forward.c's in-place memmove of a fused
 * qkv row becomes a split from a separate buffer). */
nllm_status nllm_cuda_copy_rows(nllm_cuda *cu, float *d_dst, int64_t dst_stride, const float *d_src,
                                int64_t src_stride, int64_t width, int64_t n_rows);
nllm_status nllm_cuda_memset(nllm_cuda *cu, void *d_dst, int value, size_t bytes);
nllm_status nllm_cuda_sync(nllm_cuda *cu);

/* ---------------------------------------------------------------- weights */

/* A matrix on the device. Q4_0, Q8_0, Q4_K, Q5_K, Q6_K and F16 keep their GGUF block layout;
 * every other type (F32, BF16, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, IQ4_*) is dequantized to F16 on
 * upload (logged once per call at NLLM_LOG_INFO), so `type` may differ from the source's. */
typedef struct nllm_cuda_weight {
  void *data;       /* device, owned */
  int32_t type;     /* device-side type: one of the six above */
  int32_t src_type; /* the host tensor's type */
  int64_t rows, cols;
  size_t row_bytes; /* nllm_row_size(type, cols) */
} nllm_cuda_weight;

/* Whether a type stays in its own layout on the device (else it becomes F16). */
int nllm_cuda_type_native(int32_t type);
/* Uploads a rows x cols host matrix in `type` (row stride nllm_row_size(type, cols)). `name`
 * only labels messages. On failure *out is zeroed and nothing stays allocated. */
nllm_status nllm_cuda_weight_upload(nllm_cuda *cu, const void *host, int32_t type, int64_t rows,
                                    int64_t cols, const char *name, nllm_cuda_weight *out);
/* Device bytes a weight will take (for planning an n_gpu_layers split before uploading). */
size_t nllm_cuda_weight_bytes(int32_t type, int64_t rows, int64_t cols);
void nllm_cuda_weight_free(nllm_cuda *cu, nllm_cuda_weight *w);
/* An F32 vector (norm weights, biases, inv_freq) to a new device buffer. */
nllm_status nllm_cuda_upload_f32(nllm_cuda *cu, const float *host, int64_t n, const char *name,
                                 float **d_out);

/* ---------------------------------------------------------------- ops */

/* y[t][0..cols) = scale * row d_tokens[t] of w, dequantized (token embeddings). d_tokens: n
 * int32 ids in device memory, each < w->rows (ids are not checked on the device: the caller
 * validates them on the host, as forward.c's callers already do). */
nllm_status nllm_cuda_get_rows(nllm_cuda *cu, float *d_y, const nllm_cuda_weight *w,
                               const int32_t *d_tokens, int64_t n, float scale);

/* y[t*rows + r] = sum_c W[r, c] * x[t*cols + c], as nllm_matmul. n_tok <= NLLM_CUDA_MMV_MAX
 * runs the quantized matrix-vector kernels (int8 activations, dp4a); larger batches
 * dequantize W in row chunks to F16 and run a cuBLAS tensor-core GEMM with F32 accumulation. */
#define NLLM_CUDA_MMV_MAX 8
nllm_status nllm_cuda_matmul(nllm_cuda *cu, float *d_y, const nllm_cuda_weight *w, const float *d_x,
                             int64_t n_tok);
/* The same for n_w matrices of one input (q, k, v; gate, up): the activations are quantized
 * once for all of them. */
nllm_status nllm_cuda_matmul_group(nllm_cuda *cu, float *const *d_y,
                                   const nllm_cuda_weight *const *w, int n_w, const float *d_x,
                                   int64_t n_tok);

/* out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * w[i]; in place allowed. */
nllm_status nllm_cuda_rmsnorm(nllm_cuda *cu, float *d_out, const float *d_x, const float *d_w,
                              int64_t n, int64_t n_rows, float eps);
/* nllm_rope over n_tok rows of row_stride floats, token t at position pos0 + t. d_inv_freq:
 * n_rot/2 floats on the device. */
nllm_status nllm_cuda_rope(nllm_cuda *cu, float *d_x, int64_t n_tok, int64_t row_stride,
                           int64_t n_heads, int64_t head_dim, int64_t n_rot, int32_t pos0,
                           const float *d_inv_freq, int neox);
/* y[t*stride + i] += b[i] for i < n_b, t < n_tok. */
nllm_status nllm_cuda_add_bias(nllm_cuda *cu, float *d_y, const float *d_b, int64_t n_b,
                               int64_t n_tok, int64_t stride);
/* x[i] += y[i] */
nllm_status nllm_cuda_add(nllm_cuda *cu, float *d_x, const float *d_y, int64_t n);
/* x[i] *= s */
nllm_status nllm_cuda_scale(nllm_cuda *cu, float *d_x, float s, int64_t n);
/* x[i] = c * tanh(x[i] / c) */
nllm_status nllm_cuda_softcap(nllm_cuda *cu, float *d_x, float c, int64_t n);
/* out[r*out_stride + i] = act(gate[r*in_stride + i]) * up[r*in_stride + i], i < n, r < n_rows;
 * act = SiLU, or tanh-GELU when gelu = 1 (nllm_glu's formulas). out may alias up. */
nllm_status nllm_cuda_glu(nllm_cuda *cu, float *d_out, int64_t out_stride, const float *d_gate,
                          const float *d_up, int64_t in_stride, int64_t n, int64_t n_rows,
                          int gelu);

/* ---------------------------------------------------------------- KV cache and attention */

/* Rows t < n_tok of d_src ([n_tok][row] floats) into cache rows pos0 + t of one layer's
 * d_cache ([n_ctx][row] in kv_type, F16 or F32). */
nllm_status nllm_cuda_kv_store(nllm_cuda *cu, void *d_cache, int32_t kv_type, const float *d_src,
                               int64_t n_tok, int64_t row, int32_t pos0);

/* The call (attention.h; out, q, k, v in device memory, head_dim <= 256) with the rows'
 * positions and the cache's type, no CPU scratch. */
typedef struct nllm_cuda_attn_args {
  nllm_attn attn;  /* k, v: one layer of the cache, [n_ctx][n_head_kv * head_dim] */
  int32_t kv_type; /* NLLM_TYPE_F16 or NLLM_TYPE_F32 */
  int64_t n_tok, pos0;
} nllm_cuda_attn_args;
/* Causal GQA attention. Few query tokens (decode): the context is split over blocks, each
 * running one online-softmax pass, then merged. Many (prompt): FlashAttention-style tiles of
 * queries against shared-memory tiles of K/V, online softmax, no n_tok x n_ctx matrix. */
nllm_status nllm_cuda_attention(nllm_cuda *cu, const nllm_cuda_attn_args *a);
/* 1 when such a call runs the prompt on tensor cores: more than a decode's tokens, an F16
 * cache, head_dim a multiple of 16, and NLLM_CUDA_ATT_MMA not 0. Q and the softmax weights are
 * then rounded to F16 (see attention.cu for the bound). */
int nllm_cuda_attention_mma(const nllm_cuda_attn_args *a);

/* Test hook: the element budget of one dequantized GEMM weight tile (default 64 Mi; <= 0
 * restores it), so tests can exercise the row tiling on small matrices. */
void nllm_cuda_set_gemm_tile_elems(int64_t elems);

/* ---------------------------------------------------------------- scratch and timing */

/* The context's cudaStream_t, for callers that time with CUDA events (bench_cuda). */
void *nllm_cuda_stream(nllm_cuda *cu);
/* Sizes the scratch the ops use (activation quantization, dequantized weight tiles, attention
 * partials) for batches up to max_tok, rows of up to max_cols, up to max_rows outputs, and
 * contexts up to n_ctx with n_head heads of head_dim. Call once after uploading weights. */
/* Decode steps as one CUDA graph: a step of ~20 kernels per layer at small sizes costs more
 * in launches than in the kernels. Between capture_begin and capture_end the stream records
 * instead of running, RoPE / KV store / attention read the position from d_pos0 (device), and
 * nothing may synchronize (no upload, download or scratch growth). capture_end returns the
 * failure of the capture (then *out is NULL and the stream is usable again). */
typedef struct nllm_cuda_graph nllm_cuda_graph;
nllm_status nllm_cuda_capture_begin(nllm_cuda *cu, const int32_t *d_pos0);
nllm_status nllm_cuda_capture_end(nllm_cuda *cu, nllm_cuda_graph **out);
nllm_status nllm_cuda_graph_launch(nllm_cuda *cu, nllm_cuda_graph *g);
void nllm_cuda_graph_free(nllm_cuda_graph *g);
/* Changes whenever a scratch buffer is reallocated (a larger batch than reserved): a graph
 * recorded before reads the freed one and must be recorded again. */
uint64_t nllm_cuda_scratch_generation(const nllm_cuda *cu);
/* A few bytes to the device in stream order, without waiting (pageable source: the driver
 * stages it before returning, so src may change right after). */
nllm_status nllm_cuda_upload_async(nllm_cuda *cu, void *d_dst, const void *src, size_t bytes);

nllm_status nllm_cuda_reserve(nllm_cuda *cu, int64_t max_tok, int64_t max_cols, int64_t max_rows,
                              int64_t n_ctx, int64_t n_head, int64_t head_dim);

#ifdef __cplusplus
}
#endif

#endif
