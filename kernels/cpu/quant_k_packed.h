/* The AVX2 tier's compact Q4_K, Q5_K and Q6_K groups (eight rows, kept packed from load) and their
 * prepared activations: the layout both that tier's kernels (quant_k_avx2.c) and the AVX-512 tier's
 * sixteen-row kernel (quant_k_packed16_avx512.c, two groups at a time) read, and the AVX2
 * functions the AVX-512 row reuses (packing, the activations' preparation). */
#ifndef NLLM_QUANT_K_PACKED_H
#define NLLM_QUANT_K_PACKED_H

#include "cpu/quant.h"

/* Tokens from which the prompt path repacks (below, the tiles run: the same sums). */
#define K_PACKED_MIN_TOKENS 12

/* Q4_K's compact layout (K_Q4_KC) keeps its rows' bytes, so a group takes what its rows do
 * (8 * 144 a super-block: weights packed from load take no more memory, and decode reads no
 * more): the eight rows' d, dmin as halves, then the three 32-bit words of each row's 12 scale
 * bytes (KQ4_U + 32 w + 4 r: word w of row r), so that one vector op unpacks a word of every row,
 * then per 32-byte chunk j of qs eight vectors, vector v holding row r's bytes 4v..4v+3 of the
 * chunk in lane r: sub-block 2j's levels 4v..4v+3 in their low nibbles, sub-block 2j + 1's in the
 * high. AVX2 prompts expand it per work item into a byte layout (q4_K_expand_avx2). */
#define KQ4_D 0
#define KQ4_DMIN 16
#define KQ4_U 32
#define KQ4_Q 128
#define KQ4_BLOCK (KQ4_Q + 4 * 256)
_Static_assert(KQ4_BLOCK == 8 * sizeof(block_q4_K), "a packed Q4_K group is its rows' size");

/* Q5_K's compact layout (K_Q5_KC, ee982ed): Q4_K's, then its rows' 32 qh bytes the same way
 * (vector v: row r's bytes 4v..4v+3 in lane r; bit k of a byte: sub-block k's fifth bit) */
#define KQ5_QH KQ4_BLOCK
#define KQ5_BLOCK (KQ5_QH + 256)
_Static_assert(KQ5_BLOCK == 8 * sizeof(block_q5_K), "a packed Q5_K group is its rows' size");

/* Q6_K's compact layout (K_Q6_KC) keeps its rows' bits as Q4_K's does (8 * 210 bytes a
 * super-block): the eight rows' d as halves, their scales (row r's scales 2j, 2j + 1 of 16
 * values each at 16 j + 2 r), then per 32-byte chunk j
 * of ql eight vectors (row r's bytes 4v..4v+3 of the chunk in lane r of vector v: the low 4 bits
 * of the levels in the low nibbles, of those 64 on in the high), then the same of qh's two
 * 32-byte chunks (groups 0..3's top 2 bits at bits 0, 2, 4, 6). The levels are unpacked per
 * sub-block and call (kq6_levels); AVX2 prompts expand the groups into a byte layout
 * (q6_K_expand_avx2). */
#define KQ6_D 0
#define KQ6_SC 16
#define KQ6_QL 144
#define KQ6_QH (KQ6_QL + 4 * 256)
#define KQ6_BLOCK (KQ6_QH + 2 * 256)
_Static_assert(KQ6_BLOCK == 8 * sizeof(block_q6_K), "a packed Q6_K group is its rows' size");

/* Per super-block of an activation row: its 256 bytes, its block sums of 16 as they are, the
 * sums of 32 (int16), its d. */
#define KPREP_BS16 256
#define KPREP_BS32 288
#define KPREP_D 304
#define KPREP_BLOCK 320

/* A Q8_K row into KPREP_BLOCKs (packed_prep) */
void nllm_k_packed_prep_avx2(int64_t n, const void *vy, void *vp);
/* Eight Q4_K / Q5_K / Q6_K rows into one compact group (pack_rows) */
void nllm_q4_K_pack_rows_avx2(int64_t n, const void *x, size_t bx, void *p);
void nllm_q5_K_pack_rows_avx2(int64_t n, const void *x, size_t bx, void *p);
void nllm_q6_K_pack_rows_avx2(int64_t n, const void *x, size_t bx, void *p);

#endif
