/* Codebooks (grids) of the IQ weight formats, in one place (lowbit_grids.c). Internal to the
 * kernels. */
#ifndef NLLM_LOWBIT_GRIDS_H
#define NLLM_LOWBIT_GRIDS_H

#include <stdint.h>

extern const uint64_t nllm_iq2xxs_grid[256];
extern const uint64_t nllm_iq2xs_grid[512];
extern const uint64_t nllm_iq2s_grid[1024];
extern const uint32_t nllm_iq3xxs_grid[256];
extern const uint32_t nllm_iq3s_grid[512];
extern const uint64_t nllm_iq1s_grid[2048]; /* bytes are int8 -1, 0, 1 */

/* The 8 signs of a group of 8 from a 7-bit index: bits 0..6 flip elements 0..6, and element 7
 * takes the bit that makes the number of minus signs even (the IQ2/IQ3 formats' sign coding). */
static inline uint8_t nllm_iq_signs8(unsigned idx7) {
  return (uint8_t)(idx7 | (unsigned)(__builtin_popcount(idx7 & 127) & 1) << 7);
}

#endif
