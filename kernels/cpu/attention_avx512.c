/* The attention pipeline of attention_avx2.c (cpu/attention_body.h) built for the AVX-512 tier:
 * the V pass in sixteen-lane tiles of up to sixteen zmm accumulators, which take the same fused
 * multiply-adds per output element in the same order as the eight-lane tiles, so the results
 * are the AVX2 tier's bit for bit (test_attention compares them). Why: on the Zen 5 cores here
 * a zmm FMA does twice a ymm one's work in the same slot, and the V pass is about half of the
 * attention (a long prompt's or a many-sequence step's). The score tiles stay eight lanes wide:
 * widening them would change their reduction tree, hence the bits. */
#define ATTN_FN(name) name##_avx512
#define ATTN_WIDE 1
#include "cpu/attention_body.h"
