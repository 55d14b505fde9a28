/* Internal foundation shared by every layer: errors, logging, memory, file mapping, half floats.
 * Nothing here is exported. */
#ifndef NLLM_CORE_H
#define NLLM_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nativellm.h"

#if defined(__GNUC__)
#define NLLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define NLLM_PRINTF(a, b)
#endif

/* Records a thread-local message for nllm_last_error() and returns status, so error paths read
 * `return nllm_err(NLLM_ERR_FORMAT, "%s: ...", path);`. */
nllm_status nllm_err(nllm_status status, const char *fmt, ...) NLLM_PRINTF(2, 3);
/* Prefixes the current message ("ctx: " + old message) keeping the status. */
nllm_status nllm_err_prefix(nllm_status status, const char *fmt, ...) NLLM_PRINTF(2, 3);
void nllm_clear_error(void);

void nllm_log(int32_t level, const char *fmt, ...) NLLM_PRINTF(2, 3);

/* Cache-line aligned allocation (64 bytes); sizes are rounded up. NULL on failure or overflow. */
void *nllm_aligned_alloc(size_t size);
void nllm_aligned_free(void *p);

/* Test hook: when > 0, the Nth following allocation through nllm_malloc/nllm_calloc/
 * nllm_aligned_alloc fails (counts down). Lets tests prove that load frees what it took. */
extern int nllm_alloc_fail_countdown;
void *nllm_malloc(size_t size);
void *nllm_calloc(size_t n, size_t size);
void *nllm_realloc(void *p, size_t size);
char *nllm_strdup(const char *s);
char *nllm_strndup(const char *s, size_t n);

/* Overflow-checked arithmetic: return 0 on overflow. */
static inline int nllm_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline int nllm_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

/* A read-only view of a whole file: mmap'ed, or read into memory when use_mmap is 0. */
typedef struct nllm_file_map {
  const uint8_t *data;
  uint64_t size;
  int is_mmap;
} nllm_file_map;

nllm_status nllm_file_map_open(const char *path, int use_mmap, nllm_file_map *out);
/* Same, refusing (NLLM_ERR_FORMAT, naming the real size and `what`, e.g. "a JSON config") a
 * file larger than max_size before reading any of it; 0 = no limit. Every open is non-blocking
 * and checks for a regular file first, so a FIFO or device fails at once instead of hanging. */
nllm_status nllm_file_map_open_max(const char *path, int use_mmap, uint64_t max_size,
                                   const char *what, nllm_file_map *out);
/* "a FIFO", "a directory", ... for messages about a st_mode. */
const char *nllm_file_kind(unsigned mode);
/* NLLM_OK when path is a regular file (following symlinks); else NLLM_ERR_IO naming what it is.
 * With exists non-NULL a missing path is not an error: *exists says whether it is there. */
nllm_status nllm_regular_file(const char *path, int *exists);
void nllm_file_map_close(nllm_file_map *map);

/* Half-precision conversions (IEEE binary16 and bfloat16), exact and rounding to nearest even. */
float nllm_fp16_to_fp32(uint16_t h);
uint16_t nllm_fp32_to_fp16(float f);
static inline float nllm_bf16_to_fp32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
uint16_t nllm_fp32_to_bf16(float f);

/* Monotonic clock in milliseconds. */
double nllm_time_ms(void);

/* Number of threads to use when the caller says 0. */
int nllm_default_threads(void);

/* Validates that ptr[0..len) is well-formed UTF-8; returns 1 if so. */
int nllm_utf8_valid(const char *s, size_t len);
/* Length of the UTF-8 sequence starting with byte c (1 for invalid lead bytes). */
static inline int nllm_utf8_len(uint8_t c) {
  static const int lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

/* Reads the first struct_size bytes the caller filled into a full-size defaults struct:
 * smaller (older caller) keeps defaults for the rest; larger is accepted only if the unknown
 * tail is all zero. Returns NLLM_OK or NLLM_ERR_INVALID_ARG with a message naming `what`. */
nllm_status nllm_read_params(void *dst, size_t dst_size, const void *src, const char *what);
/* The sized params inits: writes the library's defaults (lib_size bytes) into the caller's
 * struct of `size` bytes, never past it: the known fields that fit, zeros after the library's
 * struct, struct_size = size. */
nllm_status nllm_init_params(void *dst, size_t size, const void *defaults, size_t lib_size,
                             const char *what);
/* The size a legacy (unsized) params init writes: its struct up to and including `last`, the
 * field that ended it when the sized inits came (ABI 1.0); it never grows with new fields. */
#define NLLM_PARAMS_V1_SIZE(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))

#endif
