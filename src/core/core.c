/* Errors, logging, allocation, file mapping and small utilities used by every layer. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- errors */

static _Thread_local char tl_error[1024];

nllm_status nllm_err(nllm_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tl_error, sizeof tl_error, fmt, ap);
  va_end(ap);
  return status;
}

nllm_status nllm_err_prefix(nllm_status status, const char *fmt, ...) {
  char prefix[512], old[sizeof tl_error];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, tl_error, sizeof old);
  /* Two steps: a single "%s%s" trips gcc's -Wformat-truncation (the sum may exceed the buffer,
   * and cutting the tail is what we want). */
  size_t n = strnlen(prefix, sizeof tl_error - 1);
  memcpy(tl_error, prefix, n);
  size_t rest = strnlen(old, sizeof tl_error - 1 - n);
  memcpy(tl_error + n, old, rest);
  tl_error[n + rest] = 0;
  return status;
}

void nllm_clear_error(void) {
  tl_error[0] = 0;
}

NLLM_API const char *nllm_last_error(void) {
  return tl_error;
}

NLLM_API const char *nllm_status_name(nllm_status status) {
  switch (status) {
    case NLLM_OK: return "NLLM_OK";
    case NLLM_ERR_INVALID_ARG: return "NLLM_ERR_INVALID_ARG";
    case NLLM_ERR_IO: return "NLLM_ERR_IO";
    case NLLM_ERR_FORMAT: return "NLLM_ERR_FORMAT";
    case NLLM_ERR_UNSUPPORTED: return "NLLM_ERR_UNSUPPORTED";
    case NLLM_ERR_NOMEM: return "NLLM_ERR_NOMEM";
    case NLLM_ERR_CONTEXT_FULL: return "NLLM_ERR_CONTEXT_FULL";
    case NLLM_ERR_ABORTED: return "NLLM_ERR_ABORTED";
    case NLLM_ERR_BUFFER_TOO_SMALL: return "NLLM_ERR_BUFFER_TOO_SMALL";
    case NLLM_ERR_NOT_FOUND: return "NLLM_ERR_NOT_FOUND";
    case NLLM_ERR_BACKEND: return "NLLM_ERR_BACKEND";
    case NLLM_ERR_INTERNAL: return "NLLM_ERR_INTERNAL";
    case NLLM_ERR_BUSY: return "NLLM_ERR_BUSY";
    default: return "NLLM_ERR_UNKNOWN";
  }
}

/* ---------------------------------------------------------------- logging */

static nllm_log_fn g_log_fn;
static void *g_log_ud;
static int32_t g_log_level = NLLM_LOG_WARN;

NLLM_API void nllm_set_log_callback(nllm_log_fn fn, void *user_data) {
  g_log_fn = fn;
  g_log_ud = user_data;
}

NLLM_API void nllm_set_log_level(int32_t level) {
  g_log_level = level;
}

void nllm_log(int32_t level, const char *fmt, ...) {
  if (level > g_log_level && !g_log_fn) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_log_fn) {
    if (level <= g_log_level) g_log_fn(level, msg, g_log_ud);
    return;
  }
  static const char *names[] = {"error", "warning", "info", "debug"};
  fprintf(stderr, "nativellm: %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}

/* ---------------------------------------------------------------- memory */

int nllm_alloc_fail_countdown;

static int alloc_should_fail(void) {
  if (nllm_alloc_fail_countdown <= 0) return 0;
  return --nllm_alloc_fail_countdown == 0;
}

void *nllm_malloc(size_t size) {
  return alloc_should_fail() ? NULL : malloc(size ? size : 1);
}

void *nllm_calloc(size_t n, size_t size) {
  return alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *nllm_realloc(void *p, size_t size) {
  return alloc_should_fail() ? NULL : realloc(p, size ? size : 1);
}

char *nllm_strndup(const char *s, size_t n) {
  char *d = nllm_malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

char *nllm_strdup(const char *s) {
  return nllm_strndup(s, strlen(s));
}

/* Decode streams every weight once per token; on 4 KiB pages the hardware prefetchers stop at
 * each page boundary and every page costs a TLB walk (docs/performance.md has the measured
 * difference). Where transparent huge pages are on request only ("madvise"), ask for them over
 * the whole 2 MiB-aligned part of the buffer, before it is written. A no-op where the OS
 * refuses. */
static void advise_huge_pages(void *p, size_t size) {
#if defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)2 << 20;
  uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + size) & ~(huge - 1);
  if (e > a) (void)madvise((void *)a, (size_t)(e - a), MADV_HUGEPAGE);
#else
  (void)p;
  (void)size;
#endif
}

void *nllm_aligned_alloc(size_t size) {
  if (alloc_should_fail()) return NULL;
  if (size > SIZE_MAX - 63) return NULL;
  size_t rounded = (size + 63) & ~(size_t)63;
  void *p = NULL;
  if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) return NULL;
  /* the big ones are weights read or converted at load and KV caches, all streamed */
  if (rounded >= ((size_t)4 << 20)) advise_huge_pages(p, rounded);
  return p;
}

void nllm_aligned_free(void *p) {
  free(p);
}

nllm_status nllm_read_params(void *dst, size_t dst_size, const void *src, const char *what) {
  if (!src) return NLLM_OK;
  uint32_t size;
  memcpy(&size, src, sizeof size);
  if (size < sizeof(uint32_t))
    return nllm_err(NLLM_ERR_INVALID_ARG, "%s: struct_size %u is too small (call %s_init first)",
                    what, size, what);
  if (size > dst_size) {
    const uint8_t *tail = (const uint8_t *)src + dst_size;
    for (size_t i = 0; i < size - dst_size; i++)
      if (tail[i])
        return nllm_err(NLLM_ERR_INVALID_ARG,
                        "%s: struct_size %u is larger than this library's %zu and sets fields it "
                        "does not know (byte %zu is non-zero); upgrade libnativellm",
                        what, size, dst_size, dst_size + i);
    size = (uint32_t)dst_size;
  }
  memcpy(dst, src, size);
  uint32_t full = (uint32_t)dst_size;
  memcpy(dst, &full, sizeof full);
  return NLLM_OK;
}

nllm_status nllm_init_params(void *dst, size_t size, const void *defaults, size_t lib_size,
                             const char *what) {
  if (!dst) return nllm_err(NLLM_ERR_INVALID_ARG, "%s_init: params is NULL", what);
  if (size < sizeof(uint32_t) || size > NLLM_PARAMS_MAX_SIZE)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "%s_init: size %zu is not a struct size (give sizeof the struct, at least %zu "
                    "and at most %d)",
                    what, size, sizeof(uint32_t), NLLM_PARAMS_MAX_SIZE);
  memcpy(dst, defaults, size < lib_size ? size : lib_size);
  if (size > lib_size) memset((uint8_t *)dst + lib_size, 0, size - lib_size);
  uint32_t s = (uint32_t)size;
  memcpy(dst, &s, sizeof s);
  return NLLM_OK;
}

/* ---------------------------------------------------------------- files */

const char *nllm_file_kind(unsigned mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

nllm_status nllm_regular_file(const char *path, int *exists) {
  struct stat st;
  if (stat(path, &st) != 0) {
    if (exists) {
      *exists = 0;
      return NLLM_OK;
    }
    return nllm_err(NLLM_ERR_IO, "%s: %s", path, strerror(errno));
  }
  if (exists) *exists = 1;
  if (!S_ISREG(st.st_mode))
    return nllm_err(NLLM_ERR_IO, "%s: not a regular file (%s)", path, nllm_file_kind(st.st_mode));
  return NLLM_OK;
}

nllm_status nllm_file_map_open(const char *path, int use_mmap, nllm_file_map *out) {
  return nllm_file_map_open_max(path, use_mmap, 0, NULL, out);
}

nllm_status nllm_file_map_open_max(const char *path, int use_mmap, uint64_t max_size,
                                   const char *what, nllm_file_map *out) {
  memset(out, 0, sizeof *out);
  /* O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever when there is
   * none; opened this way it fails the regular-file check below at once. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return nllm_err(NLLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return nllm_err(NLLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return nllm_err(NLLM_ERR_IO, "%s: not a regular file (%s)", path, nllm_file_kind(st.st_mode));
  }
  uint64_t size = (uint64_t)st.st_size;
  if (max_size && size > max_size) {
    close(fd);
    return nllm_err(NLLM_ERR_FORMAT, "%s: %llu bytes is too large for %s (limit %llu bytes)", path,
                    (unsigned long long)size, what ? what : "this file",
                    (unsigned long long)max_size);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  if (size == 0) {
    close(fd);
    out->data = (const uint8_t *)"";
    return NLLM_OK;
  }
  if (use_mmap) {
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      return nllm_err(NLLM_ERR_IO, "%s: mmap of %llu bytes failed: %s", path,
                      (unsigned long long)size, strerror(e));
    }
    close(fd);
    out->data = p;
    out->size = size;
    out->is_mmap = 1;
    return NLLM_OK;
  }
  uint8_t *buf = nllm_aligned_alloc(size);
  if (!buf) {
    close(fd);
    return nllm_err(NLLM_ERR_NOMEM, "%s: cannot allocate %llu bytes to read the file", path,
                    (unsigned long long)size);
  }
  uint64_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got > (1u << 30) ? (1u << 30) : size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = errno;
      close(fd);
      nllm_aligned_free(buf);
      return nllm_err(NLLM_ERR_IO, "%s: read failed at byte %llu: %s", path,
                      (unsigned long long)got, r == 0 ? "file shrank" : strerror(e));
    }
    got += (uint64_t)r;
  }
  close(fd);
  out->data = buf;
  out->size = size;
  return NLLM_OK;
}

void nllm_file_map_close(nllm_file_map *map) {
  if (!map || !map->size) return;
  if (map->is_mmap)
    munmap((void *)map->data, map->size);
  else
    nllm_aligned_free((void *)map->data);
  memset(map, 0, sizeof *map);
}

/* ---------------------------------------------------------------- half floats */

float nllm_fp16_to_fp32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else { /* subnormal: normalize */
      int e = -1;
      do {
        e++;
        mant <<= 1;
      } while (!(mant & 0x400));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t nllm_fp32_to_fp16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) /* inf or nan */
    return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
  if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
  if (absx < 0x38800000u) {                                  /* subnormal or zero in half */
    if (absx < 0x33000000u) return (uint16_t)sign;
    uint32_t e = absx >> 23;
    uint32_t m = (absx & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; /* 14 + (113 - e) */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = absx - 0x38000000u; /* rebias exponent */
  uint32_t out = r >> 13, rem = r & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (out & 1))) out++;
  return (uint16_t)(sign | out);
}

uint16_t nllm_fp32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64); /* quiet nan */
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

/* ---------------------------------------------------------------- misc */

double nllm_time_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int nllm_default_threads(void) {
#ifdef _OPENMP
  int n = omp_get_num_procs();
#else
  long n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
  return n > 0 ? (int)n : 1;
}

int nllm_utf8_valid(const char *s, size_t len) {
  const uint8_t *p = (const uint8_t *)s, *end = p + len;
  while (p < end) {
    uint8_t c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    int n;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0)
      n = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
      n = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
      n = 4, cp = c & 0x07;
    else
      return 0;
    if (end - p < n) return 0;
    for (int i = 1; i < n; i++) {
      if ((p[i] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    p += n;
  }
  return 1;
}
