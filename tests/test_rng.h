/* Deterministic test data for every test program (plain C: the aarch64 kernel test has no
 * Check): xorshift64, so a failure reproduces from the seed. */
#ifndef NLLM_TEST_RNG_H
#define NLLM_TEST_RNG_H

#include <stdint.h>

/* One step on *state; returns the new state. */
static inline uint64_t test_xorshift(uint64_t *state) {
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

/* Uniform in [-1, 1). */
static inline float test_frand(uint64_t *state) {
  return (float)((double)(test_xorshift(state) >> 11) / 4503599627370496.0 - 1.0);
}

#endif
