/* The sparse (mixture-of-experts) feed-forward block on the CPU: router probabilities, top-k
 * choice, and the chosen experts' SwiGLU MLPs, each expert's weights read once per batch. */
#ifndef NLLM_MOE_H
#define NLLM_MOE_H

#include <stddef.h>
#include <stdint.h>

/* One matrix per expert, stacked as GGUF stores them: expert e's rows x cols matrix starts
 * e * rows * nllm_row_size(type, cols) bytes after data. */
typedef struct nllm_moe_mat {
  const void *data;
  int32_t type;
  int64_t rows, cols;
} nllm_moe_mat;

/* Per token: p = softmax(logits[t]) over n_expert; ids[t*k..] = the k largest p, best first (a
 * tie goes to the lower expert index); w[t*k..] = their p, divided by their sum when norm. */
void nllm_moe_route(const float *logits, int64_t n_tok, int32_t n_expert, int32_t k, int norm,
                    int32_t *ids, float *w);

typedef struct nllm_moe_args {
  float *out;           /* [n_tok][d]: sum over the chosen experts of w_e * down_e(...) */
  const float *x;       /* [n_tok][d] */
  const float *logits;  /* [n_tok][n_expert] router logits */
  int64_t n_tok, d, ff; /* ff: one expert's hidden width */
  int32_t n_expert, n_used, norm;
  nllm_moe_mat gate, up, down; /* gate/up: ff x d per expert, down: d x ff */
  /* Qwen2-MoE's shared expert, which every token runs besides its k chosen ones: one SwiGLU MLP
   * (sh_gate/sh_up: ff_sh x d, sh_down: d x ff_sh, each one matrix) whose output is added scaled
   * by sigmoid(sh_gate_inp . x). sh_gate.data NULL: none. */
  nllm_moe_mat sh_gate, sh_up, sh_down;
  const float *sh_gate_inp; /* [d] */
  void *scratch;            /* nllm_moe_scratch_size bytes */
  int n_threads;
  int matmul_mode; /* NLLM_MATMUL_* (ops.h) for every product of the experts' weights */
} nllm_moe_args;

/* Scratch for batches of up to a->n_tok tokens of a's shapes, weight types and thread count
 * (either matmul path); the data pointers are not read. */
size_t nllm_moe_scratch_size(const nllm_moe_args *a);

/* Routes the batch, groups its tokens by expert and runs every used expert once on its group:
 * one token (decode) reads only the k chosen experts' rows, split over the threads across
 * experts and rows; a prompt reads each used expert once for all its tokens. */
void nllm_moe_ffn(const nllm_moe_args *a);

/* The same result computed plainly (each token, each chosen expert, weights dequantized row by
 * row with the scalar reference, float64 sums, no grouping, one thread): the reference the
 * tests hold the grouped kernel to. Its scratch: nllm_moe_ref_scratch_size bytes. */
void nllm_moe_ffn_ref(const nllm_moe_args *a);
size_t nllm_moe_ref_scratch_size(const nllm_moe_args *a);

#endif
