/* Elementwise and normalisation ops of the forward pass. Plain loops that gcc vectorizes at
 * -O2 where the math allows; reductions go through the dispatched dot product because a float
 * sum is not reassociated (and so not vectorized) without -ffast-math. */
#include <math.h>

#include "ops.h"
#include "pool.h"
#include "qtypes.h"

float nllm_dot_f32(const float *a, const float *b, int64_t n) {
  const nllm_cpu_ops *isa = nllm_cpu_ops_get();
  if (isa->dot_f32) return isa->dot_f32(a, b, n);
  /* 8 partial sums so the scalar path pipelines and the result does not hinge on one chain */
  float s[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
  float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; i++) sum += a[i] * b[i];
  return sum;
}

void nllm_axpy_f32(float *y, float a, const float *x, int64_t n) {
  const nllm_cpu_ops *isa = nllm_cpu_ops_get();
  if (isa->axpy_f32) {
    isa->axpy_f32(y, a, x, n);
    return;
  }
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

typedef struct rmsnorm_job {
  float *out;
  const float *x, *w;
  float eps;
  int64_t n;
} rmsnorm_job;

static void rmsnorm_row(void *vjob, int64_t r, int worker) {
  const rmsnorm_job *j = vjob;
  (void)worker;
  const float *xr = j->x + r * j->n;
  float *o = j->out + r * j->n;
  float scale = 1.0f / sqrtf(nllm_dot_f32(xr, xr, j->n) / (float)j->n + j->eps);
  for (int64_t i = 0; i < j->n; i++) o[i] = xr[i] * scale * j->w[i];
}

void nllm_rmsnorm(float *out, const float *x, const float *w, int64_t n, int64_t n_rows, float eps,
                  int n_threads) {
  rmsnorm_job j = {out, x, w, eps, n};
  nllm_pool_run(n_threads, n_rows, rmsnorm_row, &j);
}

typedef struct layernorm_job {
  float *out;
  const float *x, *w, *b;
  float eps;
  int64_t n;
} layernorm_job;

/* Two passes (mean, then the centred variance) in double: BERT's eps is 1e-12, so nothing
 * hides the cancellation a one-pass E[x^2] - E[x]^2 in float would suffer. */
static void layernorm_row(void *vjob, int64_t r, int worker) {
  const layernorm_job *j = vjob;
  (void)worker;
  const float *xr = j->x + r * j->n;
  float *o = j->out + r * j->n;
  double mean = 0, var = 0;
  for (int64_t i = 0; i < j->n; i++) mean += xr[i];
  mean /= (double)j->n;
  for (int64_t i = 0; i < j->n; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
  const double inv = 1.0 / sqrt(var / (double)j->n + (double)j->eps);
  for (int64_t i = 0; i < j->n; i++)
    o[i] = (float)(((double)xr[i] - mean) * inv) * j->w[i] + (j->b ? j->b[i] : 0.0f);
}

void nllm_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n,
                    int64_t n_rows, float eps, int n_threads) {
  layernorm_job j = {out, x, w, b, eps, n};
  nllm_pool_run(n_threads, n_rows, layernorm_row, &j);
}

void nllm_rope_angles(float *cs, float *sn, int32_t pos, const float *inv_freq, int64_t half) {
  for (int64_t i = 0; i < half; i++) {
    /* double: pos * freq reaches 1e5 radians at long contexts, where float loses the phase */
    const double th = (double)pos * (double)inv_freq[i];
    cs[i] = (float)cos(th);
    sn[i] = (float)sin(th);
  }
}

/* Pairs i0 .. i0 + m of every head by the angles cs[i - i0], sn[i - i0]. */
static void rope_rotate(float *x, int64_t n_heads, int64_t head_dim, int64_t half, int64_t i0,
                        int64_t m, const float *cs, const float *sn, int neox) {
  for (int64_t h = 0; h < n_heads; h++) {
    float *xh = x + h * head_dim;
    for (int64_t i = 0; i < m; i++) {
      int64_t a = neox ? i0 + i : 2 * (i0 + i), b = neox ? i0 + i + half : 2 * (i0 + i) + 1;
      float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * cs[i] - x1 * sn[i];
      xh[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void nllm_rope_with(float *x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float *cs,
                    const float *sn, int neox) {
  rope_rotate(x, n_heads, head_dim, n_rot / 2, 0, n_rot / 2, cs, sn, neox);
}

void nllm_rope(float *x, int64_t n_heads, int64_t head_dim, int64_t n_rot, int32_t pos,
               const float *inv_freq, int neox) {
  enum { CHUNK = 256 };
  float cs[CHUNK], sn[CHUNK];
  int64_t half = n_rot / 2;
  /* the angles are shared by every head; chunks keep the table on the stack for any n_rot */
  for (int64_t i0 = 0; i0 < half; i0 += CHUNK) {
    int64_t m = half - i0 < CHUNK ? half - i0 : CHUNK;
    nllm_rope_angles(cs, sn, pos, inv_freq + i0, m);
    rope_rotate(x, n_heads, head_dim, half, i0, m, cs, sn, neox);
  }
}

typedef struct glu_job {
  float *out;
  const float *gate, *up;
  int64_t n;
  int gelu;
} glu_job;

/* Elements per work item: a parallel step for fewer costs more than it saves. */
#define GLU_CHUNK 2048

static void glu_chunk(void *vjob, int64_t c, int worker) {
  const glu_job *j = vjob;
  (void)worker;
  const float k = 0.7978845608028654f; /* sqrt(2/pi), the tanh approximation of GELU */
  const float *gate = j->gate, *up = j->up;
  float *out = j->out;
  const int gelu = j->gelu;
  const int64_t i0 = c * GLU_CHUNK, i1 = (c + 1) * GLU_CHUNK < j->n ? (c + 1) * GLU_CHUNK : j->n;
  const nllm_cpu_ops *isa = nllm_cpu_ops_get();
  if (isa->glu) {
    isa->glu(out + i0, gate + i0, up + i0, i1 - i0, gelu);
    return;
  }
  for (int64_t i = i0; i < i1; i++) {
    float g = gate[i], a;
    if (gelu) /* 0.5 (1 + tanh z) = sigmoid(2z), which does not cancel for negative g */
      a = g / (1.0f + expf(-2.0f * k * (g + 0.044715f * g * g * g)));
    else
      a = g / (1.0f + expf(-g));
    out[i] = a * up[i];
  }
}

void nllm_glu(float *out, const float *gate, const float *up, int64_t n, int gelu, int n_threads) {
  glu_job j = {out, gate, up, n, gelu};
  nllm_pool_run(n_threads, (n + GLU_CHUNK - 1) / GLU_CHUNK, glu_chunk, &j);
}

typedef struct gelu_job {
  float *x;
  int64_t n;
} gelu_job;

static void gelu_erf_chunk(void *vjob, int64_t c, int worker) {
  const gelu_job *j = vjob;
  (void)worker;
  const int64_t i0 = c * GLU_CHUNK, i1 = (c + 1) * GLU_CHUNK < j->n ? (c + 1) * GLU_CHUNK : j->n;
  const nllm_cpu_ops *isa = nllm_cpu_ops_get();
  if (isa->gelu_erf) {
    isa->gelu_erf(j->x + i0, i1 - i0);
    return;
  }
  for (int64_t i = i0; i < i1; i++)
    j->x[i] = 0.5f * j->x[i] * (1.0f + erff(j->x[i] * 0.70710678118654752f));
}

void nllm_gelu_erf(float *x, int64_t n, int n_threads) {
  gelu_job j = {x, n};
  nllm_pool_run(n_threads, (n + GLU_CHUNK - 1) / GLU_CHUNK, gelu_erf_chunk, &j);
}
