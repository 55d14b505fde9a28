/* Causal GQA attention over the KV cache on the GPU (see backend_cuda.h).
 *
 * Decode (few query tokens): for each (query head, token) the visible context is split into
 * chunks, one block per chunk; each warp of the block runs an online softmax over its share of
 * the chunk's positions with the query held in registers (lane l owns elements l, l+32, ...),
 * the block merges its warps, and a second kernel merges the chunks. The split keeps every SM
 * busy even for one token.
 *
 * Prompts: FlashAttention-style. A block takes ATT_ROWS consecutive tokens of one head, walks
 * the union of their visible windows in tiles of 32 positions staged in shared memory as f32,
 * and keeps per-row running max / sum / output in registers; no score matrix is stored.
 * With an F16 cache and head_dim a multiple of 16, the same tiling on tensor cores (WMMA):
 * 64 rows a block, 16 a warp; S = Q K^T and O += P V as F16 x F16 -> F32 products, the online
 * softmax in F32 between them. Q and P are rounded to F16 (K and V already are): each output
 * moves by at most ~2^-11 of max|v| against F32 arithmetic on the same F16-rounded q. */
#include <math.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"

#define ATT_MAX_HD 256
#define ATT_DECODE_MAX_TOK 4
#define ATT_MAX_SPLIT 64
#define ATT_WARPS 4
#define ATT_ROWS_PER_WARP 4
#define ATT_ROWS (ATT_WARPS * ATT_ROWS_PER_WARP)
#define ATT_TILE 32

template <typename KV>
__device__ __forceinline__ float kv_load(const KV *p, int64_t i) {
  if (sizeof(KV) == 2) return __half2float(((const __half *)p)[i]);
  return ((const float *)p)[i];
}

__device__ __forceinline__ float capped(float s, float softcap) {
  return softcap > 0 ? softcap * tanhf(s / softcap) : s;
}

/* exp(a - m) that is 0 for a = -inf even when m = -inf (an empty chunk) */
__device__ __forceinline__ float exp_rel(float a, float m) {
  return a == -INFINITY ? 0.0f : expf(a - m);
}

struct att_shape {
  int64_t n_tok, pos0, n_head, n_head_kv, head_dim;
  float scale, softcap;
  int32_t window;
  const int32_t *d_pos0; /* a captured decode step: pos0 is read here (nllm_cuda_capture_begin) */
};

__device__ __forceinline__ int64_t first_visible(const att_shape &s, int64_t pos) {
  return s.window > 0 && pos + 1 > s.window ? pos + 1 - s.window : 0;
}

/* ---------------------------------------------------------------- decode */

/* grid (n_head, n_tok, n_split). part: [n_tok][n_head][n_split][2 + head_dim] = (m, l, acc). */
template <typename KV, int NJ>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    att_decode_kernel(att_shape s, const float *q, const KV *k, const KV *v, float *part) {
  const int64_t h = blockIdx.x, t = blockIdx.y, split = blockIdx.z, n_split = gridDim.z;
  const int64_t hd = s.head_dim, kvh = h / (s.n_head / s.n_head_kv), kv_row = s.n_head_kv * hd;
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  const int64_t pos0 = s.d_pos0 ? *s.d_pos0 : s.pos0;
  const int64_t pos = pos0 + t, first = first_visible(s, pos), n_vis = pos + 1 - first;
  /* a chunk past the end (a graph's split is sized for n_ctx) leaves m = -inf, l = 0 */
  const int64_t chunk = (n_vis + n_split - 1) / n_split;
  const int64_t p_begin = first + split * chunk;
  const int64_t p_end = min(p_begin + chunk, pos + 1);

  float qr[NJ], acc[NJ];
  const float *qh = q + t * s.n_head * hd + h * hd;
  for (int j = 0; j < NJ; j++) {
    const int64_t d = lane + 32 * j;
    qr[j] = d < hd ? qh[d] * s.scale : 0.0f; /* scale folded into q: one multiply per element */
    acc[j] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t p = p_begin + warp; p < p_end; p += ATT_WARPS) {
    const KV *kr = k + p * kv_row + kvh * hd;
    float dot = 0.0f;
    for (int j = 0; j < NJ; j++) {
      const int64_t d = lane + 32 * j;
      if (d < hd) dot += qr[j] * kv_load(kr, d);
    }
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float sc = capped(dot, s.softcap);
    const float m_new = fmaxf(m, sc);
    const float corr = exp_rel(m, m_new), pw = expf(sc - m_new);
    l = l * corr + pw;
    const KV *vr = v + p * kv_row + kvh * hd;
    for (int j = 0; j < NJ; j++) {
      const int64_t d = lane + 32 * j;
      acc[j] = acc[j] * corr + (d < hd ? pw * kv_load(vr, d) : 0.0f);
    }
    m = m_new;
  }

  /* merge the warps through shared memory */
  __shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
  __shared__ float sm_acc[ATT_WARPS][ATT_MAX_HD];
  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = l;
  }
  for (int j = 0; j < NJ; j++) {
    const int64_t d = lane + 32 * j;
    if (d < hd) sm_acc[warp][d] = acc[j];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sm_m[w]);
  float *out = part + ((t * s.n_head + h) * n_split + split) * (2 + hd);
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++) a += sm_acc[w][d] * exp_rel(sm_m[w], M);
    out[2 + d] = a;
  }
  if (threadIdx.x == 0) {
    float L = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++) L += sm_l[w] * exp_rel(sm_m[w], M);
    out[0] = M;
    out[1] = L;
  }
}

/* grid (n_head, n_tok), block >= head_dim threads: out = sum_s acc_s e^(m_s - M) / L. */
__global__ void att_merge_kernel(att_shape s, int n_split, const float *part, float *out) {
  const int64_t h = blockIdx.x, t = blockIdx.y, hd = s.head_dim;
  const float *ph = part + (t * s.n_head + h) * n_split * (2 + hd);
  float M = -INFINITY;
  for (int i = 0; i < n_split; i++) M = fmaxf(M, ph[i * (2 + hd)]);
  float L = 0.0f;
  for (int i = 0; i < n_split; i++) L += ph[i * (2 + hd) + 1] * exp_rel(ph[i * (2 + hd)], M);
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.0f;
    for (int i = 0; i < n_split; i++) a += ph[i * (2 + hd) + 2 + d] * exp_rel(ph[i * (2 + hd)], M);
    out[t * s.n_head * hd + h * hd + d] = a / L; /* L >= 1: the own position is always visible */
  }
}

/* Chunks per (head, token): enough blocks to cover the SMs several times, at least 128
 * positions per chunk so the merge stays cheap. */
static int decode_splits(int64_t n_vis_max, int64_t n_head, int64_t n_tok) {
  int64_t by_len = (n_vis_max + 127) / 128;
  int64_t want = (4 * 132 + n_head * n_tok - 1) / (n_head * n_tok); /* ~4 waves on a 132-SM part */
  int64_t n = by_len < want ? by_len : want;
  if (n < 1) n = 1;
  if (n > ATT_MAX_SPLIT) n = ATT_MAX_SPLIT;
  return (int)n;
}

size_t cuda_attention_scratch(int64_t n_tok, int64_t n_ctx, int64_t n_head, int64_t head_dim) {
  (void)n_ctx;
  const int64_t nt = n_tok < ATT_DECODE_MAX_TOK ? n_tok : ATT_DECODE_MAX_TOK;
  return (size_t)(nt * n_head * ATT_MAX_SPLIT * (2 + head_dim));
}

/* ---------------------------------------------------------------- prompt (tiled) */

/* Dynamic shared memory: Q [ATT_ROWS][hd], K [ATT_TILE][hd + 1] (padded: lane j reads row j
 * at a stride that hits distinct banks), V [ATT_TILE][hd]. */
template <typename KV, int NJ>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    att_prompt_kernel(att_shape s, const float *q, const KV *k, const KV *v, float *out) {
  extern __shared__ float smem[];
  const int64_t hd = s.head_dim, h = blockIdx.y, kvh = h / (s.n_head / s.n_head_kv);
  const int64_t kv_row = s.n_head_kv * hd, q_row = s.n_head * hd;
  const int64_t t0 = (int64_t)blockIdx.x * ATT_ROWS;
  const int64_t t_last = min(t0 + ATT_ROWS, s.n_tok) - 1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  float *sq = smem, *sk = sq + ATT_ROWS * hd, *sv = sk + ATT_TILE * (hd + 1);

  for (int64_t i = threadIdx.x; i < ATT_ROWS * hd; i += blockDim.x) {
    const int64_t r = i / hd, t = t0 + r;
    sq[i] = t < s.n_tok ? q[t * q_row + h * hd + i % hd] * s.scale : 0.0f;
  }
  float m[ATT_ROWS_PER_WARP], l[ATT_ROWS_PER_WARP], acc[ATT_ROWS_PER_WARP][NJ];
  for (int r = 0; r < ATT_ROWS_PER_WARP; r++) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
    for (int j = 0; j < NJ; j++) acc[r][j] = 0.0f;
  }
  const int64_t kv_lo = first_visible(s, s.pos0 + t0), kv_hi = s.pos0 + t_last; /* inclusive */

  for (int64_t p0 = kv_lo; p0 <= kv_hi; p0 += ATT_TILE) {
    __syncthreads(); /* the previous tile is no longer read (and Q is written, first time) */
    for (int64_t i = threadIdx.x; i < ATT_TILE * hd; i += blockDim.x) {
      const int64_t j = i / hd, d = i % hd, p = p0 + j;
      const bool in = p <= kv_hi;
      sk[j * (hd + 1) + d] = in ? kv_load(k, p * kv_row + kvh * hd + d) : 0.0f;
      sv[j * hd + d] = in ? kv_load(v, p * kv_row + kvh * hd + d) : 0.0f;
    }
    __syncthreads();
    /* lane j scores position p0 + j against each of the warp's rows */
    float sc[ATT_ROWS_PER_WARP];
    for (int r = 0; r < ATT_ROWS_PER_WARP; r++) sc[r] = 0.0f;
    const float *kj = sk + lane * (hd + 1);
    for (int64_t d = 0; d < hd; d++) {
      const float kd = kj[d];
      for (int r = 0; r < ATT_ROWS_PER_WARP; r++)
        sc[r] += sq[(warp * ATT_ROWS_PER_WARP + r) * hd + d] * kd;
    }
    const int64_t p = p0 + lane;
    for (int r = 0; r < ATT_ROWS_PER_WARP; r++) {
      const int64_t t = t0 + warp * ATT_ROWS_PER_WARP + r;
      if (t >= s.n_tok) break; /* uniform across the warp */
      const int64_t pos = s.pos0 + t;
      const bool vis = p <= pos && p >= first_visible(s, pos);
      const float x = vis ? capped(sc[r], s.softcap) : -INFINITY;
      float tmax = x;
      for (int o = 16; o > 0; o >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
      const float m_new = fmaxf(m[r], tmax);
      if (m_new == -INFINITY) continue; /* nothing visible yet in this tile for this row */
      const float corr = exp_rel(m[r], m_new);
      const float pw = exp_rel(x, m_new);
      float psum = pw;
      for (int o = 16; o > 0; o >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
      l[r] = l[r] * corr + psum;
      for (int j = 0; j < NJ; j++) acc[r][j] *= corr;
      for (int jj = 0; jj < ATT_TILE; jj++) {
        const float pj = __shfl_sync(0xffffffffu, pw, jj);
        if (pj == 0.0f) continue; /* same value in every lane: no divergence */
        const float *vj = sv + jj * hd;
        for (int j = 0; j < NJ; j++) {
          const int64_t d = lane + 32 * j;
          if (d < hd) acc[r][j] += pj * vj[d];
        }
      }
      m[r] = m_new;
    }
  }
  for (int r = 0; r < ATT_ROWS_PER_WARP; r++) {
    const int64_t t = t0 + warp * ATT_ROWS_PER_WARP + r;
    if (t >= s.n_tok) break;
    const float inv = 1.0f / l[r];
    for (int j = 0; j < NJ; j++) {
      const int64_t d = lane + 32 * j;
      if (d < hd) out[t * q_row + h * hd + d] = acc[r][j] * inv;
    }
  }
}

/* ---------------------------------------------------------------- prompt (tensor cores) */

#define MMA_ROWS 64 /* query rows per block: 16 per warp */
#define MMA_TILE 32 /* K/V positions per shared-memory tile */

/* The dynamic shared memory of att_prompt_mma_kernel, in bytes; every part starts 32-byte
 * aligned, as WMMA loads need. Q [64][hd+8] and K, V [32][hd+8] in F16 (the padding moves
 * consecutive rows to other banks); per warp S [16][36] F32, P [16][40] F16, O [16][hd+4]
 * F32, and the rows' max, sum and correction. */
struct mma_layout {
  size_t q, k, v, s, p, o, stat, total;
  __host__ __device__ mma_layout(int64_t hd) {
    const size_t hp = (size_t)hd + 8;
    q = 0;
    k = q + MMA_ROWS * hp * 2;
    v = k + MMA_TILE * hp * 2;
    s = v + MMA_TILE * hp * 2;
    p = s + ATT_WARPS * 16 * (MMA_TILE + 4) * 4;
    o = p + ATT_WARPS * 16 * (MMA_TILE + 8) * 2;
    stat = o + ATT_WARPS * 16 * ((size_t)hd + 4) * 4;
    total = stat + ATT_WARPS * 3 * 16 * 4;
  }
};

__global__ void __launch_bounds__(ATT_WARPS * 32)
    att_prompt_mma_kernel(att_shape s, const float *q, const __half *k, const __half *v,
                          float *out) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char mma_smem[];
  const int64_t hd = s.head_dim, h = blockIdx.y, kvh = h / (s.n_head / s.n_head_kv);
  const int64_t kv_row = s.n_head_kv * hd, q_row = s.n_head * hd, hp = hd + 8, op = hd + 4;
  const int64_t t0 = (int64_t)blockIdx.x * MMA_ROWS;
  const int64_t t_last = min(t0 + MMA_ROWS, s.n_tok) - 1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  const mma_layout L(hd);
  __half *sq = (__half *)(mma_smem + L.q), *sk = (__half *)(mma_smem + L.k);
  __half *sv = (__half *)(mma_smem + L.v);
  float *ss = (float *)(mma_smem + L.s) + warp * 16 * (MMA_TILE + 4);
  __half *sp = (__half *)(mma_smem + L.p) + warp * 16 * (MMA_TILE + 8);
  float *so = (float *)(mma_smem + L.o) + warp * 16 * op;
  float *sm = (float *)(mma_smem + L.stat) + warp * 48, *sl = sm + 16, *sc = sm + 32;

  /* q rounded to F16 as it is; the scale goes onto the F32 scores */
  for (int64_t i = threadIdx.x; i < MMA_ROWS * hd; i += blockDim.x) {
    const int64_t r = i / hd, t = t0 + r;
    sq[r * hp + i % hd] = __float2half_rn(t < s.n_tok ? q[t * q_row + h * hd + i % hd] : 0.0f);
  }
  for (int64_t i = lane; i < 16 * op; i += 32) so[i] = 0.0f;
  if (lane < 16) sm[lane] = -INFINITY, sl[lane] = 0.0f;
  const int64_t w_t0 = t0 + 16 * warp; /* this warp's first row */
  const int64_t w_last = min(w_t0 + 15, s.n_tok - 1);
  const int64_t kv_lo = first_visible(s, s.pos0 + t0), kv_hi = s.pos0 + t_last; /* inclusive */

  for (int64_t p0 = kv_lo; p0 <= kv_hi; p0 += MMA_TILE) {
    __syncthreads(); /* the previous tile is no longer read (and Q is written, first time) */
    for (int64_t i = threadIdx.x; i < MMA_TILE * hd; i += blockDim.x) {
      const int64_t j = i / hd, d = i % hd, p = p0 + j;
      const bool in = p <= kv_hi;
      sk[j * hp + d] = in ? k[p * kv_row + kvh * hd + d] : __float2half(0.0f);
      sv[j * hp + d] = in ? v[p * kv_row + kvh * hd + d] : __float2half(0.0f);
    }
    __syncthreads();
    /* nothing of this tile is visible to the warp's rows: past the last row's position, or
     * before the first row's window (the block-wide loop still reaches every barrier) */
    if (w_t0 >= s.n_tok || p0 > s.pos0 + w_last ||
        p0 + MMA_TILE - 1 < first_visible(s, s.pos0 + w_t0))
      continue;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c0, c1;
    wmma::fill_fragment(c0, 0.0f);
    wmma::fill_fragment(c1, 0.0f);
    for (int64_t d = 0; d < hd; d += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b0, b1;
      wmma::load_matrix_sync(a, sq + 16 * warp * hp + d, (unsigned)hp);
      wmma::load_matrix_sync(b0, sk + d, (unsigned)hp); /* K^T: column n is K's row n */
      wmma::load_matrix_sync(b1, sk + 16 * hp + d, (unsigned)hp);
      wmma::mma_sync(c0, a, b0, c0);
      wmma::mma_sync(c1, a, b1, c1);
    }
    wmma::store_matrix_sync(ss, c0, MMA_TILE + 4, wmma::mem_row_major);
    wmma::store_matrix_sync(ss + 16, c1, MMA_TILE + 4, wmma::mem_row_major);
    __syncwarp();

    /* online softmax, one row at a time, lane j on position p0 + j */
    const int64_t p = p0 + lane;
    for (int r = 0; r < 16; r++) {
      const int64_t t = w_t0 + r, pos = s.pos0 + t;
      const bool vis = t < s.n_tok && p <= pos && p >= first_visible(s, pos);
      const float x = vis ? capped(ss[r * (MMA_TILE + 4) + lane] * s.scale, s.softcap) : -INFINITY;
      const float m_old = sm[r];
      float tmax = x;
      for (int o = 16; o > 0; o >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
      const float m_new = fmaxf(m_old, tmax);
      const float pw = m_new == -INFINITY ? 0.0f : exp_rel(x, m_new);
      const float corr = m_new == -INFINITY ? 1.0f : exp_rel(m_old, m_new);
      float psum = pw;
      for (int o = 16; o > 0; o >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
      sp[r * (MMA_TILE + 8) + lane] = __float2half_rn(pw);
      if (lane == 0) {
        sl[r] = sl[r] * corr + psum;
        sm[r] = m_new;
        sc[r] = corr;
      }
    }
    __syncwarp();
    for (int64_t i = lane; i < 16 * hd; i += 32) so[(i / hd) * op + i % hd] *= sc[i / hd];
    __syncwarp();
    for (int64_t d = 0; d < hd; d += 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
      wmma::load_matrix_sync(o, so + d, (unsigned)op, wmma::mem_row_major);
      for (int j = 0; j < MMA_TILE; j += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
        wmma::load_matrix_sync(a, sp + j, MMA_TILE + 8);
        wmma::load_matrix_sync(b, sv + j * hp + d, (unsigned)hp);
        wmma::mma_sync(o, a, b, o);
      }
      wmma::store_matrix_sync(so + d, o, (unsigned)op, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();
  for (int64_t i = lane; i < 16 * hd; i += 32) {
    const int64_t r = i / hd, t = w_t0 + r;
    if (t < s.n_tok) out[t * q_row + h * hd + i % hd] = so[r * op + i % hd] / sl[r];
  }
}

/* NLLM_CUDA_ATT_MMA=0: prompts on the F32 kernel (A/B, and what an F32 cache always takes) */
int nllm_cuda_attention_mma(const nllm_cuda_attn_args *a) {
  static int off = -1;
  if (off < 0) {
    const char *e = getenv("NLLM_CUDA_ATT_MMA");
    off = e && !strcmp(e, "0");
  }
  return !off && a->n_tok > ATT_DECODE_MAX_TOK && a->kv_type == NLLM_TYPE_F16 &&
         a->attn.head_dim % 16 == 0;
}

#define NJ_SWITCH(nj, NJ, body) \
  switch (nj) {                 \
    case 1: {                   \
      constexpr int NJ = 1;     \
      body;                     \
    } break;                    \
    case 2: {                   \
      constexpr int NJ = 2;     \
      body;                     \
    } break;                    \
    case 3: {                   \
      constexpr int NJ = 3;     \
      body;                     \
    } break;                    \
    case 4: {                   \
      constexpr int NJ = 4;     \
      body;                     \
    } break;                    \
    case 5: {                   \
      constexpr int NJ = 5;     \
      body;                     \
    } break;                    \
    case 6: {                   \
      constexpr int NJ = 6;     \
      body;                     \
    } break;                    \
    case 7: {                   \
      constexpr int NJ = 7;     \
      body;                     \
    } break;                    \
    default: {                  \
      constexpr int NJ = 8;     \
      body;                     \
    } break;                    \
  }

template <typename KV, int NJ>
static nllm_status launch_prompt(nllm_cuda *cu, const nllm_cuda_attn_args *a, const att_shape &s,
                                 dim3 grid, size_t smem) {
  /* above 48 KiB of shared memory a kernel must opt in (head_dim > 128) */
  CU_TRY(cudaFuncSetAttribute(att_prompt_kernel<KV, NJ>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  att_prompt_kernel<KV, NJ><<<grid, ATT_WARPS * 32, smem, cu->stream>>>(
      s, a->attn.q, (const KV *)a->attn.k, (const KV *)a->attn.v, a->attn.out);
  CU_LAUNCHED("att_prompt_kernel");
  return NLLM_OK;
}

template <typename KV>
static nllm_status attention_typed(nllm_cuda *cu, const nllm_cuda_attn_args *a,
                                   const att_shape &s) {
  const int nj = (int)((a->attn.head_dim + 31) / 32);
  const KV *k = (const KV *)a->attn.k, *v = (const KV *)a->attn.v;
  if (a->n_tok <= ATT_DECODE_MAX_TOK) {
    /* the last token sees the most; a captured step may run at any position up to n_ctx */
    const int64_t n_vis_max = cu->d_pos0 ? cu->n_ctx_max : a->pos0 + a->n_tok;
    const int n_split = decode_splits(n_vis_max, a->attn.n_head, a->n_tok);
    const size_t need = (size_t)(a->n_tok * a->attn.n_head * n_split * (2 + a->attn.head_dim));
    nllm_status st = cuda_scratch_ensure(cu, (void **)&cu->att, &cu->att_cap, need, sizeof(float),
                                         "attention partials");
    if (st != NLLM_OK) return st;
    const dim3 grid((unsigned)a->attn.n_head, (unsigned)a->n_tok, (unsigned)n_split);
    NJ_SWITCH(nj, NJ,
              (att_decode_kernel<KV, NJ>
               <<<grid, ATT_WARPS * 32, 0, cu->stream>>>(s, a->attn.q, k, v, cu->att)));
    CU_LAUNCHED("att_decode_kernel");
    const int threads = a->attn.head_dim <= 64 ? 64 : a->attn.head_dim <= 128 ? 128 : 256;
    att_merge_kernel<<<dim3((unsigned)a->attn.n_head, (unsigned)a->n_tok), threads, 0,
                       cu->stream>>>(s, n_split, cu->att, a->attn.out);
    CU_LAUNCHED("att_merge_kernel");
    return NLLM_OK;
  }
  if (nllm_cuda_attention_mma(a)) {
    const mma_layout L(a->attn.head_dim);
    CU_TRY(cudaFuncSetAttribute(att_prompt_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)L.total));
    const dim3 grid((unsigned)((a->n_tok + MMA_ROWS - 1) / MMA_ROWS), (unsigned)a->attn.n_head);
    att_prompt_mma_kernel<<<grid, ATT_WARPS * 32, L.total, cu->stream>>>(
        s, a->attn.q, (const __half *)a->attn.k, (const __half *)a->attn.v, a->attn.out);
    CU_LAUNCHED("att_prompt_mma_kernel");
    return NLLM_OK;
  }
  const size_t smem = (size_t)(ATT_ROWS * a->attn.head_dim + ATT_TILE * (a->attn.head_dim + 1) +
                               ATT_TILE * a->attn.head_dim) *
                      sizeof(float);
  const dim3 grid((unsigned)((a->n_tok + ATT_ROWS - 1) / ATT_ROWS), (unsigned)a->attn.n_head);
  nllm_status st = NLLM_OK;
  NJ_SWITCH(nj, NJ, (st = launch_prompt<KV, NJ>(cu, a, s, grid, smem)));
  return st;
}

nllm_status nllm_cuda_attention(nllm_cuda *cu, const nllm_cuda_attn_args *a) {
  if (a->n_tok <= 0) return NLLM_OK;
  if (a->attn.head_dim <= 0 || a->attn.head_dim > ATT_MAX_HD || a->attn.n_head_kv <= 0 ||
      a->attn.n_head % a->attn.n_head_kv)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "CUDA attention: head_dim %lld (max %d), %lld heads over "
                    "%lld KV heads",
                    (long long)a->attn.head_dim, ATT_MAX_HD, (long long)a->attn.n_head,
                    (long long)a->attn.n_head_kv);
  if (a->n_tok > 65535 * (int64_t)ATT_ROWS || a->attn.n_head > 65535)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "CUDA attention: %lld tokens x %lld heads exceeds the grid",
                    (long long)a->n_tok, (long long)a->attn.n_head);
  const att_shape s = {a->n_tok,          a->pos0,          a->attn.n_head,
                       a->attn.n_head_kv, a->attn.head_dim, a->attn.scale,
                       a->attn.softcap,   a->attn.window,   cu->d_pos0};
  if (a->kv_type == NLLM_TYPE_F16) return attention_typed<__half>(cu, a, s);
  if (a->kv_type == NLLM_TYPE_F32) return attention_typed<float>(cu, a, s);
  return nllm_err(NLLM_ERR_UNSUPPORTED, "CUDA attention: KV type %d (F16 or F32 only)", a->kv_type);
}
