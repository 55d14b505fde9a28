/* NEON kernels of LoRA's low-rank products: lowrank_body.h at 4 floats a vector (F16 by
 * vcvt_f32_f16, baseline ARMv8-A). 32 registers: a dot tile is four rows by four tokens. */
#include <arm_neon.h>

#include "cpu/quant.h"

#define LR_VEC float32x4_t
#define LR_WIDTH 4
#define LR_DOT_TOKENS 4
#define LR_ZERO() vdupq_n_f32(0)
#define LR_LOAD(p) vld1q_f32(p)
#define LR_STORE(p, v) vst1q_f32((p), (v))
#define LR_SET1(x) vdupq_n_f32(x)
#define LR_HSUM(v) vaddvq_f32(v)
#define LR_FMA(acc, a, b) vfmaq_f32((acc), (a), (b))

static inline __attribute__((always_inline)) float32x4_t lr_load_f16(const uint16_t *p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static inline __attribute__((always_inline)) float32x4_t lr_load_bf16(const uint16_t *p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

#define LR_DOT_NAME lowrank_dot_neon
#define LR_AXPY_NAME lowrank_axpy_neon
#include "cpu/lowrank_body.h"

const nllm_cpu_ops nllm_cpu_ops_neon = {.lowrank_dot = lowrank_dot_neon,
                                        .lowrank_axpy = lowrank_axpy_neon};
