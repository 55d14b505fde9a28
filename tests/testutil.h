/* Shared helpers for the Check test programs: where the golden data lives, skipping cleanly
 * when it is absent, reading golden logits files, comparing rows. */
#ifndef NLLM_TESTUTIL_H
#define NLLM_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_rng.h"

/* Check's ck_assert_msg (and every ck_assert_* built on it) calls _mark_point on each assertion
 * that PASSES: a message with its file and line written to the runner's pipe, so that a later
 * crash can be placed after the last good assertion. The kernel, model and conversion tests
 * assert per element inside loops, millions of times: those writes were most of make test's
 * time (test_kernels 12 s user + 15 s system) and under ASan far more (its memmove interceptor
 * copies byte by byte). Here a passing assertion costs only its comparison; a failing one
 * reports the same file, line, expression and message. A crash is located by its signal report
 * and, in the sanitizer builds, by the sanitizer's stack. */
#undef ck_assert_msg
#define ck_assert_msg(expr, ...)                                                                   \
  ((expr) ? (void)0                                                                                \
          : _ck_assert_failed(__FILE__, __LINE__, "Assertion '" #expr "' failed", ##__VA_ARGS__))

/* 1 in an AddressSanitizer or ThreadSanitizer build. Loops that repeat the same code paths many
 * times for statistical coverage (generations validated in bulk, masks against brute force) run
 * fewer rounds there: each costs several times as much, and the normal build runs them all. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifndef TEST_SANITIZED
#define TEST_SANITIZED 0
#endif

/* The committed subset of the references (tests/data/testdata/README.md). */
#define TESTDATA_SUBSET "tests/data/testdata"

/* Where the golden data is, relative to the project root (tests run from there): $NLLM_TESTDATA,
 * else ../shared/testdata (the full set), and where that folder does not exist the subset
 * committed in the repository, so a plain clone still runs the main golden checks. */
static inline const char *testdata_dir(void) {
  const char *d = getenv("NLLM_TESTDATA");
  if (d && *d && access(d, F_OK) == 0) return d;
  if (!(d && *d) && access("../shared/testdata", F_OK) == 0) return "../shared/testdata";
  return TESTDATA_SUBSET;
}

/* 1 when the tests read the committed subset (checks that count the files of the full set skip). */
static inline int testdata_is_subset(void) {
  return !strcmp(testdata_dir(), TESTDATA_SUBSET);
}

/* tests/run_tests.sh counts each line starting with "SKIP: " as one skipped check. Check runs
 * every check in a process of its own, so a check that misses several files is counted once:
 * its later misses print "  also skipped: " instead. */
static int testutil_skipped;

/* Fills buf with testdata_dir()/rel; returns 1 if the file exists, else prints a SKIP line. */
static inline int testdata_path(char *buf, size_t cap, const char *rel) {
  snprintf(buf, cap, "%s/%s", testdata_dir(), rel);
  if (access(buf, R_OK) == 0) return 1;
  fprintf(stderr, "%s%s not found (set NLLM_TESTDATA to the shared testdata folder)\n",
          testutil_skipped++ ? "  also skipped: " : "SKIP: ", buf);
  return 0;
}

/* Whole file into a NUL-terminated heap buffer. */
static inline char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) {
    b[n] = 0;
    if (len) *len = (size_t)n;
  }
  return b;
}

/* A golden logits file (format in ../shared/testdata/README.md). */
typedef struct golden_logits {
  int prompt_ids[4096], n_prompt;
  int gen_ids[4096], n_gen;
  int n_vocab, n_pos;
  float *rows; /* n_pos x n_vocab */
} golden_logits;

static inline int parse_ids(const char *s, int *ids, int max) {
  int n = 0;
  char *end;
  for (;;) {
    long v = strtol(s, &end, 10);
    if (end == s || n >= max) break;
    ids[n++] = (int)v;
    s = end;
  }
  return n;
}

static inline golden_logits *golden_logits_load(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  golden_logits *g = calloc(1, sizeof *g);
  size_t cap = 1 << 20;
  char *line = malloc(cap);
  int row = 0;
  while (fgets(line, (int)cap, f)) {
    size_t l = strlen(line);
    while (l == cap - 1 && line[l - 1] != '\n') {
      cap *= 2;
      line = realloc(line, cap);
      if (!fgets(line + l, (int)(cap - l), f)) break;
      l = strlen(line);
    }
    if (line[0] == '#' || line[0] == '\n') continue;
    if (!strncmp(line, "prompt_ids:", 11))
      g->n_prompt = parse_ids(line + 11, g->prompt_ids, 4096);
    else if (!strncmp(line, "gen_ids:", 8))
      g->n_gen = parse_ids(line + 8, g->gen_ids, 4096);
    else if (!strncmp(line, "n_vocab:", 8))
      g->n_vocab = atoi(line + 8);
    else if (!strncmp(line, "n_pos:", 6)) {
      g->n_pos = atoi(line + 6);
      g->rows = calloc((size_t)g->n_pos * (size_t)g->n_vocab + 1, sizeof(float));
    } else if (g->rows && row < g->n_pos) {
      char *s = line, *end;
      for (int i = 0; i < g->n_vocab; i++) {
        g->rows[(size_t)row * (size_t)g->n_vocab + (size_t)i] = strtof(s, &end);
        s = end;
      }
      row++;
    }
  }
  free(line);
  fclose(f);
  return g;
}

static inline void golden_logits_free(golden_logits *g) {
  if (g) free(g->rows);
  free(g);
}

/* rms(a - ref) / rms(ref) */
static inline double rel_rms(const float *a, const float *ref, int n) {
  double d = 0, r = 0;
  for (int i = 0; i < n; i++) {
    double e = (double)a[i] - (double)ref[i];
    d += e * e;
    r += (double)ref[i] * ref[i];
  }
  return sqrt(d / (r > 0 ? r : 1));
}

/* Runs a suite with Check, printing its summary; returns failures count (for main). */
static inline int run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf ? 1 : 0;
}

#endif
