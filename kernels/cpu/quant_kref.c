/* Scalar reference kernels of the K-quant formats (256-element super-blocks with 6- or 8-bit
 * sub-block scales) and of IQ4_XS and Q8_K. The quantizers search the sub-block scales the way
 * GGUF's reference quantizer does (weighted least squares over a few candidate scales), so a
 * weight converted here is about as accurate as one in a downloaded file. */
#include <math.h>

#include "cpu/quant.h"
#include "cpu/quant_tile.h"

/* Round to nearest, ties to even (the current rounding mode), as the GGUF quantizers do for
 * the K formats; the AVX2 code rounds the same way, so both quantize identically. */
static inline int nearest_int(float f) {
  return (int)lrintf(f);
}

/* ---------------------------------------------------------------- scale searches */

/* Symmetric levels -nmax..nmax-1 for n values; returns the scale, levels + nmax in L. With
 * weights x^2 (big values matter most), tries 19 scales around nmax/max and keeps the one with
 * the best weighted least-squares fit. */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
  float max = signed_absmax(x, n);
  if (fabsf(max) < 1e-30f) {
    memset(L, 0, (size_t)n);
    return 0;
  }
  float best_scale = 0, best = 0;
  int have = 0;
  for (int is = -9; is <= 9; is++) {
    float iscale = -((float)nmax + 0.1f * (float)is) / max;
    float sumlx = 0, suml2 = 0;
    int8_t tmp[32];
    for (int i = 0; i < n; i++) {
      int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      tmp[i] = (int8_t)l;
      float w = x[i] * x[i];
      sumlx += w * x[i] * (float)l;
      suml2 += w * (float)l * (float)l;
    }
    /* maximizing sumlx^2 / suml2 minimizes the weighted error at scale sumlx / suml2 */
    if (suml2 > 0 && (!have || sumlx * sumlx > best * suml2)) {
      have = 1;
      best_scale = sumlx / suml2;
      best = best_scale * sumlx;
      for (int i = 0; i < n; i++) L[i] = (int8_t)(tmp[i] + nmax);
    }
  }
  if (!have) memset(L, 0, (size_t)n);
  return best_scale;
}

/* Q3_K's variant: start from nmax/max, then move single levels while that improves the
 * x^2-weighted fit (a few sweeps). Levels + nmax in L. */
static float fit_symmetric_iter(int n, int nmax, const float *x, int8_t *L) {
  float max = signed_absmax(x, n);
  if (fabsf(max) < 1e-30f) {
    memset(L, 0, (size_t)n);
    return 0;
  }
  float iscale = -(float)nmax / max, sumlx = 0, suml2 = 0;
  int l8[32];
  for (int i = 0; i < n; i++) {
    l8[i] = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    float w = x[i] * x[i];
    sumlx += w * x[i] * (float)l8[i];
    suml2 += w * (float)l8[i] * (float)l8[i];
  }
  for (int sweep = 0; sweep < 5; sweep++) {
    int changed = 0;
    for (int i = 0; i < n; i++) {
      float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * (float)l8[i];
      if (slx <= 0) continue;
      float sl2 = suml2 - w * (float)l8[i] * (float)l8[i];
      int nl = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (nl == l8[i]) continue;
      slx += w * x[i] * (float)nl;
      sl2 += w * (float)nl * (float)nl;
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        l8[i] = nl;
        sumlx = slx;
        suml2 = sl2;
        changed++;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; i++) L[i] = (int8_t)(l8[i] + nmax);
  return suml2 > 0 ? sumlx / suml2 : 0;
}

/* Asymmetric levels 0..nmax with x ~ scale * L - min (min >= 0 returned in *the_min). Tries
 * nstep+1 scales spread by rdelta around nmax/(max-min); each candidate's scale and offset come
 * from the weighted least-squares fit of its levels. use_mad: absolute instead of squared error. */
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                        float rmin, float rdelta, int nstep, int use_mad) {
  float mn = x[0], mx = x[0], sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; i++) {
    mn = fminf(mn, x[i]);
    mx = fmaxf(mx, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    memset(L, 0, (size_t)n);
    *the_min = -mn;
    return 0;
  }
  float iscale = (float)nmax / (mx - mn), scale = 1 / iscale, best_err = 0;
  for (int i = 0; i < n; i++) {
    int l = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
    L[i] = (uint8_t)l;
    float diff = scale * (float)l + mn - x[i];
    best_err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
  }
  for (int is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * (float)is + (float)nmax) / (mx - mn);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    uint8_t aux[32];
    for (int i = 0; i < n; i++) {
      int l = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
      aux[i] = (uint8_t)l;
      sum_l += w[i] * (float)l;
      sum_l2 += w[i] * (float)l * (float)l;
      sum_xl += w[i] * (float)l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) { /* the offset may only lower values: refit the scale alone */
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; i++) {
      float diff = this_scale * (float)aux[i] + this_min - x[i];
      err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    if (err < best_err) {
      memcpy(L, aux, (size_t)n);
      best_err = err;
      scale = this_scale;
      mn = this_min;
    }
  }
  *the_min = -mn;
  return scale;
}

/* ---------------------------------------------------------------- Q8_K */

static void q8_K_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q8_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++)
    for (int j = 0; j < QK_K; j++) y[b * QK_K + j] = x[b].d * (float)x[b].qs[j];
}

/* The signed extreme maps to -128 exactly; the other side is clipped at 127. */
static void q8_K_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q8_K *y = vy;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float *xb = x + b * QK_K;
    float max = signed_absmax(xb, QK_K);
    memset(&y[b], 0, sizeof y[b]);
    if (max == 0) continue;
    float iscale = -128.0f / max;
    for (int j = 0; j < QK_K; j++) {
      int v = nearest_int(iscale * xb[j]);
      y[b].qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int j = 0; j < QK_K / 16; j++) {
      int s = 0;
      for (int i = 0; i < 16; i++) s += y[b].qs[16 * j + i];
      y[b].bsums[j] = (int16_t)s;
    }
    y[b].d = 1 / iscale;
  }
}

static void q8_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q8_K *x = vx, *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int j = 0; j < QK_K; j++) isum += x[b].qs[j] * y[b].qs[j];
    sum += (float)isum * x[b].d * y[b].d;
  }
  *s = sum;
}

/* ---------------------------------------------------------------- Q2_K */
/* Element c*128 + g*32 + l (c < 2, g < 4, l < 32) is bits 2g..2g+1 of qs[c*32 + l]; its
 * 16-element sub-block is c*8 + g*2 + l/16, whose scales byte holds scale (low nibble) and
 * min (high nibble). value = d * scale * q - dmin * min. */

static void q2_K_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q2_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++) {
    float d = q_h2f(x[b].d), dmin = q_h2f(x[b].dmin);
    for (int j = 0; j < QK_K; j++) {
      int c = j / 128, g = (j % 128) / 32, l = j % 32;
      uint8_t sc = x[b].scales[c * 8 + g * 2 + l / 16];
      int q = (x[b].qs[c * 32 + l] >> (2 * g)) & 3;
      y[b * QK_K + j] = d * (float)(sc & 15) * (float)q - dmin * (float)(sc >> 4);
    }
  }
}

static void q2_K_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q2_K *y = vy;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float *xb = x + b * QK_K;
    uint8_t L[QK_K];
    float w[16], scales[16], mins[16], max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
      for (int i = 0; i < 16; i++) w[i] = fabsf(xb[16 * j + i]);
      scales[j] = fit_affine(16, 3, xb + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, 1);
      max_scale = fmaxf(max_scale, scales[j]);
      max_min = fmaxf(max_min, mins[j]);
    }
    memset(&y[b], 0, sizeof y[b]);
    if (max_scale > 0) {
      float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; j++)
        y[b].scales[j] = (uint8_t)clampi(nearest_int(iscale * scales[j]), 0, 15);
      y[b].d = q_f2h(max_scale / 15.0f);
    }
    if (max_min > 0) {
      float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; j++)
        y[b].scales[j] |= (uint8_t)(clampi(nearest_int(iscale * mins[j]), 0, 15) << 4);
      y[b].dmin = q_f2h(max_min / 15.0f);
    }
    /* levels again against the scales as stored */
    float d = q_h2f(y[b].d), dmin = q_h2f(y[b].dmin);
    for (int j = 0; j < 16; j++) {
      float dl = d * (float)(y[b].scales[j] & 15);
      if (dl == 0) continue;
      float ml = dmin * (float)(y[b].scales[j] >> 4);
      for (int i = 0; i < 16; i++)
        L[16 * j + i] = (uint8_t)clampi(nearest_int((xb[16 * j + i] + ml) / dl), 0, 3);
    }
    for (int c = 0; c < 2; c++)
      for (int l = 0; l < 32; l++)
        y[b].qs[c * 32 + l] = (uint8_t)(L[c * 128 + l] | L[c * 128 + 32 + l] << 2 |
                                        L[c * 128 + 64 + l] << 4 | L[c * 128 + 96 + l] << 6);
  }
}

static void q2_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q2_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0, msum = 0;
    for (int sb = 0; sb < 16; sb++) msum += (x[b].scales[sb] >> 4) * y[b].bsums[sb];
    for (int j = 0; j < QK_K; j += 16) {
      int c = j / 128, g = (j % 128) / 32, l0 = j % 32, part = 0;
      for (int l = l0; l < l0 + 16; l++)
        part += ((x[b].qs[c * 32 + l] >> (2 * g)) & 3) * y[b].qs[j + l - l0];
      isum += (x[b].scales[c * 8 + g * 2 + l0 / 16] & 15) * part;
    }
    sum += y[b].d * (q_h2f(x[b].d) * (float)isum - q_h2f(x[b].dmin) * (float)msum);
  }
  *s = sum;
}

/* ---------------------------------------------------------------- Q3_K */
/* Same 2-bit layout as Q2_K plus a high bit: element c*128 + g*32 + l has its bit in
 * hmask[l] bit c*4 + g; a clear bit subtracts 4. Sixteen 6-bit signed scales (minus 32):
 * low nibbles in scales[0..7] (k < 8: low half of byte k, else high half of byte k-8), the
 * top 2 bits in scales[8 + k%4] at bit 2*(k/4). */

static inline int q3k_level(const block_q3_K *x, int j) {
  int c = j / 128, g = (j % 128) / 32, l = j % 32;
  int q = (x->qs[c * 32 + l] >> (2 * g)) & 3;
  return q - ((x->hmask[l] >> (c * 4 + g)) & 1 ? 0 : 4);
}

static void q3_K_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q3_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++) {
    float d = q_h2f(x[b].d);
    for (int j = 0; j < QK_K; j++)
      y[b * QK_K + j] = d * (float)q3k_scale(x[b].scales, j / 16) * (float)q3k_level(&x[b], j);
  }
}

static void q3_K_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q3_K *y = vy;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float *xb = x + b * QK_K;
    int8_t L[QK_K];
    float scales[16];
    for (int j = 0; j < 16; j++) scales[j] = fit_symmetric_iter(16, 4, xb + 16 * j, L + 16 * j);
    float max_scale = signed_absmax(scales, 16);
    memset(&y[b], 0, sizeof y[b]);
    if (max_scale != 0) {
      float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; j++) {
        int l = clampi(nearest_int(iscale * scales[j]), -32, 31) + 32;
        if (j < 8)
          y[b].scales[j] = (uint8_t)(l & 15);
        else
          y[b].scales[j - 8] |= (uint8_t)((l & 15) << 4);
        y[b].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
      }
      y[b].d = q_f2h(1 / iscale);
    }
    float d = q_h2f(y[b].d);
    for (int j = 0; j < 16; j++) {
      float dl = d * (float)q3k_scale(y[b].scales, j);
      if (dl == 0) continue;
      for (int i = 0; i < 16; i++)
        L[16 * j + i] = (int8_t)(clampi(nearest_int(xb[16 * j + i] / dl), -4, 3) + 4);
    }
    for (int j = 0; j < QK_K; j++) {
      int c = j / 128, g = (j % 128) / 32, l = j % 32, q = L[j];
      if (q > 3) {
        y[b].hmask[l] |= (uint8_t)(1 << (c * 4 + g));
        q -= 4;
      }
      y[b].qs[c * 32 + l] |= (uint8_t)(q << (2 * g));
    }
  }
}

static void q3_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q3_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int sb = 0; sb < 16; sb++) {
      int part = 0;
      for (int j = 16 * sb; j < 16 * sb + 16; j++) part += q3k_level(&x[b], j) * y[b].qs[j];
      isum += q3k_scale(x[b].scales, sb) * part;
    }
    sum += q_h2f(x[b].d) * y[b].d * (float)isum;
  }
  *s = sum;
}

/* ---------------------------------------------------------------- Q4_K / Q5_K */
/* Eight 32-element sub-blocks, each with a 6-bit scale and 6-bit min packed in 12 bytes:
 * for k < 4 scale = sc[k] & 63, min = sc[k+4] & 63; for k >= 4 the low 4 bits are in
 * sc[k+4] (scale low nibble, min high nibble) and the top 2 bits in the top of sc[k-4]
 * (scale) and sc[k] (min). Element c*64 + h*32 + l is the low (h = 0) or high nibble of
 * qs[c*32 + l], sub-block 2c + h; Q5_K adds bit 2c + h of qh[l] as 16. */

static inline void k4_scale_min(const uint8_t *sc, int k, int *scale, int *min) {
  if (k < 4) {
    *scale = sc[k] & 63;
    *min = sc[k + 4] & 63;
  } else {
    *scale = (sc[k + 4] & 15) | (sc[k - 4] >> 6) << 4;
    *min = (sc[k + 4] >> 4) | (sc[k] >> 6) << 4;
  }
}

static void k4_pack_scales(uint8_t sc[12], const uint8_t ls[8], const uint8_t lm[8]) {
  memset(sc, 0, 12);
  for (int k = 0; k < 8; k++) {
    if (k < 4) {
      sc[k] = ls[k];
      sc[k + 4] = lm[k];
    } else {
      sc[k + 4] = (uint8_t)((ls[k] & 15) | (lm[k] & 15) << 4);
      sc[k - 4] |= (uint8_t)((ls[k] >> 4) << 6);
      sc[k] |= (uint8_t)((lm[k] >> 4) << 6);
    }
  }
}

static inline int k45_level(const uint8_t *qs, const uint8_t *qh, int j) {
  int c = j / 64, h = (j % 64) / 32, l = j % 32;
  int q = (qs[c * 32 + l] >> (4 * h)) & 15;
  if (qh) q |= ((qh[l] >> (2 * c + h)) & 1) << 4;
  return q;
}

static void k45_to_float(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, float d,
                         float dmin, float *y) {
  for (int k = 0; k < 8; k++) {
    int sc, m;
    k4_scale_min(scales, k, &sc, &m);
    float dl = d * (float)sc, ml = dmin * (float)m;
    for (int j = 32 * k; j < 32 * k + 32; j++) y[j] = dl * (float)k45_level(qs, qh, j) - ml;
  }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per sub-block affine fit weighted by
 * rms(x) + |x|, then 6-bit scales and mins relative to the super-block's d and dmin. */
static void k45_quantize(const float *xb, int nmax, float rmin, int nstep, uint8_t L[QK_K],
                         uint8_t sc[12], uint16_t *d_out, uint16_t *dmin_out) {
  float sum_x2 = 0;
  for (int j = 0; j < QK_K; j++) sum_x2 += xb[j] * xb[j];
  float av_x = sqrtf(sum_x2 / QK_K), w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
  for (int k = 0; k < 8; k++) {
    for (int i = 0; i < 32; i++) w[i] = av_x + fabsf(xb[32 * k + i]);
    scales[k] = fit_affine(32, nmax, xb + 32 * k, w, L + 32 * k, &mins[k], rmin, 0.1f, nstep, 0);
    max_scale = fmaxf(max_scale, scales[k]);
    max_min = fmaxf(max_min, mins[k]);
  }
  float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0,
        inv_min = max_min > 0 ? 63.0f / max_min : 0;
  uint8_t ls[8], lm[8];
  for (int k = 0; k < 8; k++) {
    ls[k] = (uint8_t)clampi(nearest_int(inv_scale * scales[k]), 0, 63);
    lm[k] = (uint8_t)clampi(nearest_int(inv_min * mins[k]), 0, 63);
  }
  k4_pack_scales(sc, ls, lm);
  *d_out = q_f2h(max_scale / 63.0f);
  *dmin_out = q_f2h(max_min / 63.0f);
  float d = q_h2f(*d_out), dmin = q_h2f(*dmin_out);
  for (int k = 0; k < 8; k++) {
    float dl = d * (float)ls[k];
    if (dl == 0) continue;
    float ml = dmin * (float)lm[k];
    for (int i = 0; i < 32; i++)
      L[32 * k + i] = (uint8_t)clampi(nearest_int((xb[32 * k + i] + ml) / dl), 0, nmax);
  }
}

static void q4_K_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q4_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++)
    k45_to_float(x[b].scales, x[b].qs, NULL, q_h2f(x[b].d), q_h2f(x[b].dmin), y + b * QK_K);
}

static void q4_K_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q4_K *y = vy;
  for (int64_t b = 0; b < n / QK_K; b++) {
    uint8_t L[QK_K];
    k45_quantize(x + b * QK_K, 15, -1.0f, 20, L, y[b].scales, &y[b].d, &y[b].dmin);
    for (int c = 0; c < 4; c++)
      for (int l = 0; l < 32; l++)
        y[b].qs[c * 32 + l] = (uint8_t)(L[c * 64 + l] | L[c * 64 + 32 + l] << 4);
  }
}

static float k45_vec_dot(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, float d,
                         float dmin, const block_q8_K *y) {
  int isum = 0, msum = 0;
  for (int k = 0; k < 8; k++) {
    int sc, m, part = 0;
    k4_scale_min(scales, k, &sc, &m);
    for (int j = 32 * k; j < 32 * k + 32; j++) part += k45_level(qs, qh, j) * y->qs[j];
    isum += sc * part;
    msum += m * (y->bsums[2 * k] + y->bsums[2 * k + 1]);
  }
  return y->d * (d * (float)isum - dmin * (float)msum);
}

static void q4_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++)
    sum += k45_vec_dot(x[b].scales, x[b].qs, NULL, q_h2f(x[b].d), q_h2f(x[b].dmin), &y[b]);
  *s = sum;
}

static void q5_K_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q5_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++)
    k45_to_float(x[b].scales, x[b].qs, x[b].qh, q_h2f(x[b].d), q_h2f(x[b].dmin), y + b * QK_K);
}

static void q5_K_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q5_K *y = vy;
  for (int64_t b = 0; b < n / QK_K; b++) {
    uint8_t L[QK_K];
    k45_quantize(x + b * QK_K, 31, -0.5f, 15, L, y[b].scales, &y[b].d, &y[b].dmin);
    memset(y[b].qh, 0, sizeof y[b].qh);
    for (int c = 0; c < 4; c++)
      for (int l = 0; l < 32; l++) {
        int lo = L[c * 64 + l], hi = L[c * 64 + 32 + l];
        y[b].qs[c * 32 + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
        y[b].qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
      }
  }
}

static void q5_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++)
    sum += k45_vec_dot(x[b].scales, x[b].qs, x[b].qh, q_h2f(x[b].d), q_h2f(x[b].dmin), &y[b]);
  *s = sum;
}

/* ---------------------------------------------------------------- Q6_K */
/* Element c*128 + g*32 + l (c < 2, g < 4): low 4 bits are the low (g < 2) or high (g >= 2)
 * nibble of ql[c*64 + (g&1)*32 + l], top 2 bits are bits 2g..2g+1 of qh[c*32 + l]; level
 * minus 32, times the int8 scale of its 16-element sub-block. */

static inline int q6k_level(const block_q6_K *x, int j) {
  int c = j / 128, g = (j % 128) / 32, l = j % 32;
  int lo = (x->ql[c * 64 + (g & 1) * 32 + l] >> (4 * (g >> 1))) & 15;
  int hi = (x->qh[c * 32 + l] >> (2 * g)) & 3;
  return (lo | hi << 4) - 32;
}

static void q6_K_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q6_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++) {
    float d = q_h2f(x[b].d);
    for (int j = 0; j < QK_K; j++)
      y[b * QK_K + j] = d * (float)x[b].scales[j / 16] * (float)q6k_level(&x[b], j);
  }
}

static void q6_K_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q6_K *y = vy;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float *xb = x + b * QK_K;
    int8_t L[QK_K];
    float scales[16];
    for (int j = 0; j < 16; j++) scales[j] = fit_symmetric(16, 32, xb + 16 * j, L + 16 * j);
    float max_scale = signed_absmax(scales, 16);
    memset(&y[b], 0, sizeof y[b]);
    if (max_scale == 0) {
      for (int j = 0; j < QK_K; j++) L[j] = 32;
    } else {
      float iscale = -128.0f / max_scale;
      y[b].d = q_f2h(1 / iscale);
      for (int j = 0; j < 16; j++)
        y[b].scales[j] = (int8_t)clampi(nearest_int(iscale * scales[j]), -128, 127);
      float d = q_h2f(y[b].d);
      for (int j = 0; j < 16; j++) {
        float dl = d * (float)y[b].scales[j];
        if (dl == 0) continue;
        for (int i = 0; i < 16; i++)
          L[16 * j + i] = (int8_t)(clampi(nearest_int(xb[16 * j + i] / dl), -32, 31) + 32);
      }
    }
    for (int j = 0; j < QK_K; j++) {
      int c = j / 128, g = (j % 128) / 32, l = j % 32, q = L[j];
      y[b].ql[c * 64 + (g & 1) * 32 + l] |= (uint8_t)((q & 15) << (4 * (g >> 1)));
      y[b].qh[c * 32 + l] |= (uint8_t)((q >> 4) << (2 * g));
    }
  }
}

static void q6_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q6_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int sb = 0; sb < 16; sb++) {
      int part = 0;
      for (int j = 16 * sb; j < 16 * sb + 16; j++) part += q6k_level(&x[b], j) * y[b].qs[j];
      isum += x[b].scales[sb] * part;
    }
    sum += q_h2f(x[b].d) * y[b].d * (float)isum;
  }
  *s = sum;
}

/* ---------------------------------------------------------------- IQ4_XS */
/* Eight 32-element sub-blocks of IQ4_NL levels; sub-block k's 6-bit scale (minus 32) has its
 * low 4 bits in nibble k&1 of scales_l[k/2] and its top 2 bits at bit 2k of scales_h. */

static inline int iq4xs_scale(const block_iq4_xs *x, int k) {
  int lo = (x->scales_l[k / 2] >> (4 * (k & 1))) & 15, hi = (x->scales_h >> (2 * k)) & 3;
  return (lo | hi << 4) - 32;
}

static void iq4_xs_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_iq4_xs *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++) {
    float d = q_h2f(x[b].d);
    for (int k = 0; k < 8; k++) {
      float dl = d * (float)iq4xs_scale(&x[b], k);
      const uint8_t *q = x[b].qs + 16 * k;
      float *yk = y + b * QK_K + 32 * k;
      for (int j = 0; j < 16; j++) {
        yk[j] = dl * (float)nllm_iq4nl_values[q[j] & 15];
        yk[j + 16] = dl * (float)nllm_iq4nl_values[q[j] >> 4];
      }
    }
  }
}

/* Per sub-block: the x^2-weighted least-squares scale over 15 candidate grid placements. */
static float iq4_sub_scale(const float *x) {
  float max = signed_absmax(x, 32), best_d = 0, best = -1;
  if (max == 0) return 0;
  for (int itry = -7; itry <= 7; itry++) {
    float id = ((float)itry + (float)nllm_iq4nl_values[0]) / max, sqx = 0, sq2 = 0;
    for (int j = 0; j < 32; j++) {
      float w = x[j] * x[j], l = (float)nllm_iq4nl_values[nllm_iq4nl_nearest(id * x[j])];
      sqx += w * l * x[j];
      sq2 += w * l * l;
    }
    if (sq2 > 0 && (best < 0 || sqx * sqx > best * sq2)) {
      best_d = sqx / sq2;
      best = best_d * sqx;
    }
  }
  return best_d;
}

static void iq4_xs_from_float_ref(const float *x, void *vy, int64_t n) {
  block_iq4_xs *y = vy;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float *xb = x + b * QK_K;
    float scales[8];
    for (int k = 0; k < 8; k++) scales[k] = iq4_sub_scale(xb + 32 * k);
    float max_scale = signed_absmax(scales, 8);
    memset(&y[b], 0, sizeof y[b]);
    float d = max_scale != 0 ? -max_scale / 32.0f : 0;
    y[b].d = q_f2h(d);
    d = q_h2f(y[b].d);
    float id = d != 0 ? 1.0f / d : 0;
    for (int k = 0; k < 8; k++) {
      int l = clampi(nearest_int(id * scales[k]), -32, 31);
      float dl = d * (float)l, idl = dl != 0 ? 1.0f / dl : 0;
      l += 32;
      y[b].scales_l[k / 2] |= (uint8_t)((l & 15) << (4 * (k & 1)));
      y[b].scales_h |= (uint16_t)((l >> 4) << (2 * k));
      for (int j = 0; j < 16; j++) {
        int q0 = idl != 0 ? nllm_iq4nl_nearest(idl * xb[32 * k + j]) : 8;
        int q1 = idl != 0 ? nllm_iq4nl_nearest(idl * xb[32 * k + j + 16]) : 8;
        y[b].qs[16 * k + j] = (uint8_t)(q0 | q1 << 4);
      }
    }
  }
}

static void iq4_xs_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_iq4_xs *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int k = 0; k < 8; k++) {
      const uint8_t *q = x[b].qs + 16 * k;
      const int8_t *yq = y[b].qs + 32 * k;
      int part = 0;
      for (int j = 0; j < 16; j++)
        part += nllm_iq4nl_values[q[j] & 15] * yq[j] + nllm_iq4nl_values[q[j] >> 4] * yq[j + 16];
      isum += iq4xs_scale(&x[b], k) * part;
    }
    sum += q_h2f(x[b].d) * y[b].d * (float)isum;
  }
  *s = sum;
}

/* The scalar rows: every function of each type, and the type its activations take. */
static const nllm_qtype_kernels kref_rows[] = {
    {.type = NLLM_TYPE_Q2_K,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = q2_K_to_float_ref,
     .from_float = q2_K_from_float_ref,
     .vec_dot = q2_K_vec_dot_ref},
    {.type = NLLM_TYPE_Q3_K,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = q3_K_to_float_ref,
     .from_float = q3_K_from_float_ref,
     .vec_dot = q3_K_vec_dot_ref},
    {.type = NLLM_TYPE_Q4_K,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = q4_K_to_float_ref,
     .from_float = q4_K_from_float_ref,
     .vec_dot = q4_K_vec_dot_ref},
    {.type = NLLM_TYPE_Q5_K,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = q5_K_to_float_ref,
     .from_float = q5_K_from_float_ref,
     .vec_dot = q5_K_vec_dot_ref},
    {.type = NLLM_TYPE_Q6_K,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = q6_K_to_float_ref,
     .from_float = q6_K_from_float_ref,
     .vec_dot = q6_K_vec_dot_ref},
    {.type = NLLM_TYPE_Q8_K,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = q8_K_to_float_ref,
     .from_float = q8_K_from_float_ref,
     .vec_dot = q8_K_vec_dot_ref},
    {.type = NLLM_TYPE_IQ4_XS,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq4_xs_to_float_ref,
     .from_float = iq4_xs_from_float_ref,
     .vec_dot = iq4_xs_vec_dot_ref},
};
const nllm_kernel_set nllm_kernels_kref = {kref_rows, sizeof kref_rows / sizeof kref_rows[0]};

/* ---------------------------------------------------------------- batch tiles (quant_tile.h) */
/* Each block unpacked to the levels its vec_dot above multiplies, with the same group scales
 * and minimums. The levels come in the layout's own loops (element c*128 + g*32 + l, or
 * c*64 + h*32 + l), not through the per-element helpers: plain byte loops, which compilers
 * vectorize; the tests hold them to the helpers' vec_dot bit for bit. */

static void q2_K_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q2_K *x = (const block_q2_K *)(const void *)xb;
  for (int c = 0; c < 2; c++)
    for (int g = 0; g < 4; g++)
      for (int l = 0; l < 32; l++)
        u->w[c * 128 + g * 32 + l] = (int8_t)((x->qs[c * 32 + l] >> (2 * g)) & 3);
  for (int sb = 0; sb < 16; sb++) {
    u->scale[sb] = x->scales[sb] & 15;
    u->min[sb] = x->scales[sb] >> 4;
  }
  u->f[0] = q_h2f(x->d);
  u->f[1] = q_h2f(x->dmin);
}

static void q3_K_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q3_K *x = (const block_q3_K *)(const void *)xb;
  for (int c = 0; c < 2; c++)
    for (int g = 0; g < 4; g++)
      for (int l = 0; l < 32; l++) {
        const int q = (x->qs[c * 32 + l] >> (2 * g)) & 3, hi = (x->hmask[l] >> (c * 4 + g)) & 1;
        u->w[c * 128 + g * 32 + l] = (int8_t)(q - 4 + 4 * hi);
      }
  for (int sb = 0; sb < 16; sb++) u->scale[sb] = q3k_scale(x->scales, sb);
  u->f[0] = q_h2f(x->d);
}

/* Q4_K and Q5_K: a minimum per 32 values, i.e. the same for both of Q8_K's sums of 16 */
static void k45_unpack(const uint8_t *restrict scales, const uint8_t *restrict qs,
                       const uint8_t *restrict qh, uint16_t d, uint16_t dmin,
                       nllm_tile_block *restrict u) {
  for (int c = 0; c < 4; c++)
    for (int h = 0; h < 2; h++) {
      int8_t *w = u->w + c * 64 + h * 32;
      for (int l = 0; l < 32; l++) w[l] = (int8_t)((qs[c * 32 + l] >> (4 * h)) & 15);
      if (qh)
        for (int l = 0; l < 32; l++) w[l] = (int8_t)(w[l] | ((qh[l] >> (2 * c + h)) & 1) << 4);
    }
  for (int k = 0; k < 8; k++) {
    int sc, m;
    k4_scale_min(scales, k, &sc, &m);
    u->scale[k] = sc;
    u->min[2 * k] = u->min[2 * k + 1] = m;
  }
  u->f[0] = q_h2f(d);
  u->f[1] = q_h2f(dmin);
}

static void q4_K_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q4_K *x = (const block_q4_K *)(const void *)xb;
  k45_unpack(x->scales, x->qs, NULL, x->d, x->dmin, u);
}

static void q5_K_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q5_K *x = (const block_q5_K *)(const void *)xb;
  k45_unpack(x->scales, x->qs, x->qh, x->d, x->dmin, u);
}

static void q6_K_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q6_K *x = (const block_q6_K *)(const void *)xb;
  for (int c = 0; c < 2; c++)
    for (int g = 0; g < 4; g++)
      for (int l = 0; l < 32; l++) {
        const int lo = (x->ql[c * 64 + (g & 1) * 32 + l] >> (4 * (g >> 1))) & 15;
        const int hi = (x->qh[c * 32 + l] >> (2 * g)) & 3;
        u->w[c * 128 + g * 32 + l] = (int8_t)((lo | hi << 4) - 32);
      }
  for (int sb = 0; sb < 16; sb++) u->scale[sb] = x->scales[sb];
  u->f[0] = q_h2f(x->d);
}

static void q8_K_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q8_K *x = (const block_q8_K *)(const void *)xb;
  memcpy(u->w, x->qs, QK_K);
  u->scale[0] = 1;
  u->f[0] = x->d;
}

static void iq4_xs_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_iq4_xs *x = (const block_iq4_xs *)(const void *)xb;
  for (int k = 0; k < 8; k++) {
    const uint8_t *q = x->qs + 16 * k;
    for (int j = 0; j < 16; j++) {
      u->w[32 * k + j] = nllm_iq4nl_values[q[j] & 15];
      u->w[32 * k + j + 16] = nllm_iq4nl_values[q[j] >> 4];
    }
    u->scale[k] = iq4xs_scale(x, k);
  }
  u->f[0] = q_h2f(x->d);
}

#define TILE_CODEC(name, group, sum)           \
  static const nllm_tile_codec name##_tile = { \
      QK_K, group, NLLM_TYPE_Q8_K, sizeof(block_##name), name##_unpack, sum, 1.0f}
TILE_CODEC(q2_K, 16, tile_sum_kmin);
TILE_CODEC(q3_K, 16, tile_sum_k);
TILE_CODEC(q4_K, 32, tile_sum_kmin);
TILE_CODEC(q5_K, 32, tile_sum_kmin);
TILE_CODEC(q6_K, 16, tile_sum_k);
TILE_CODEC(q8_K, QK_K, tile_sum_q8k);
TILE_CODEC(iq4_xs, 32, tile_sum_k);
#undef TILE_CODEC
NLLM_TILE_KERNELS(q2_K, q2_K_tile)
NLLM_TILE_KERNELS(q3_K, q3_K_tile)
NLLM_TILE_KERNELS(q4_K, q4_K_tile)
NLLM_TILE_KERNELS(q5_K, q5_K_tile)
NLLM_TILE_KERNELS(q6_K, q6_K_tile)
NLLM_TILE_KERNELS(q8_K, q8_K_tile)
NLLM_TILE_KERNELS(iq4_xs, iq4_xs_tile)

/* Laid over the scalar tier only (kernels/qtypes.c). */
static const nllm_qtype_kernels kref_tile_rows[] = {
    NLLM_TILE_ROW(NLLM_TYPE_Q2_K, q2_K),     NLLM_TILE_ROW(NLLM_TYPE_Q3_K, q3_K),
    NLLM_TILE_ROW(NLLM_TYPE_Q4_K, q4_K),     NLLM_TILE_ROW(NLLM_TYPE_Q5_K, q5_K),
    NLLM_TILE_ROW(NLLM_TYPE_Q6_K, q6_K),     NLLM_TILE_ROW(NLLM_TYPE_Q8_K, q8_K),
    NLLM_TILE_ROW(NLLM_TYPE_IQ4_XS, iq4_xs),
};
const nllm_kernel_set nllm_kernels_kref_tiles = {kref_tile_rows,
                                                 sizeof kref_tile_rows / sizeof kref_tile_rows[0]};
