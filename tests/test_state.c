/* Saved states (nllm_state_*): a save -> load round trip puts a context back exactly (the next
 * decode's logits bit-identical), a sequence's state loads into another id and another
 * context, and a damaged, forged, truncated or mismatched state is refused with the context
 * left as it was. Real models of ../shared/testdata and the bundled stories260K. */
#include <unistd.h>

#include "engine/engine.h"
#include "modelutil.h"

static const struct {
  const char *rel;
  int local;
  int32_t kv_k, kv_v;
} cases[] = {
    {"models/stories260K.gguf", 1, NLLM_TYPE_F16, NLLM_TYPE_F16},
    {"golden/models/tiny-a-F16.gguf", 0, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_0},
    {"golden/models/tiny-a-Q8_0.gguf", 0, NLLM_TYPE_F32, NLLM_TYPE_BF16},
    {"hf/tiny-qwen3", 0, NLLM_TYPE_F16, NLLM_TYPE_F16},
};

static nllm_context *ctx_make(nllm_model *m, int n_seq, int n_ctx, int32_t k, int32_t v) {
  return seq_context(m, n_seq, n_ctx, 16, k, v);
}

/* Sequences 0 and 1 with prompts of different lengths, 2 sharing 0's first 5 cells then going
 * its own way: shared cells, a gap-free and a branched sequence in one state. */
static void fill(nllm_context *c, int nv) {
  nllm_token tok[32];
  int32_t sid[32];
  int n = 0;
  for (int i = 0; i < 9; i++) tok[n] = (nllm_token)(5 + i * 7 % (nv - 5)), sid[n++] = 0;
  for (int i = 0; i < 13; i++) tok[n] = (nllm_token)(3 + i * 11 % (nv - 3)), sid[n++] = 1;
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = n;
  b.tokens = tok;
  b.seq_id = sid;
  ck_assert_msg(nllm_decode_batch(c, &b) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(nllm_seq_copy(c, 0, 2, 0, 5), NLLM_OK);
  nllm_token t2[3] = {4, 9, 2};
  int32_t s2[3] = {2, 2, 2};
  b.n_tokens = 3;
  b.tokens = t2;
  b.seq_id = s2;
  ck_assert_msg(nllm_decode_batch(c, &b) == NLLM_OK, "%s", nllm_last_error());
}

/* One token into each of seqs[0..n) in one batch; the rows' logits into out[n][nv]. */
static void step(nllm_context *c, const int32_t *seqs, int n, nllm_token t, float *out, int nv) {
  nllm_token tok[8];
  for (int i = 0; i < n; i++) tok[i] = t + i;
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = n;
  b.tokens = tok;
  b.seq_id = seqs;
  ck_assert_msg(nllm_decode_batch(c, &b) == NLLM_OK, "%s", nllm_last_error());
  for (int i = 0; i < n; i++) {
    const float *row = nllm_get_logits_ith(c, i);
    ck_assert_ptr_nonnull(row);
    memcpy(out + (size_t)i * nv, row, sizeof(float) * (size_t)nv);
  }
}

static void *save(nllm_context *c, int32_t seq, uint64_t *size) {
  ck_assert_int_eq(nllm_state_size(c, seq, size), NLLM_OK);
  void *buf = malloc(*size);
  uint64_t n = 0;
  ck_assert_int_eq(nllm_state_save(c, seq, buf, *size, &n), NLLM_OK);
  ck_assert_uint_eq(n, *size);
  return buf;
}

static void assert_same(const float *a, const float *b, size_t n, const char *what) {
  ck_assert_msg(memcmp(a, b, n * sizeof(float)) == 0, "%s: logits differ (rel rms %g)", what,
                rel_rms(a, b, (int)n));
}

/* Save the whole context, decode more (sequences change, cells move), load: the saved logits
 * are back and the next step's logits are bit-identical to those of a step taken right after
 * the save. */
START_TEST(whole_round_trip) {
  nllm_model *m = load_test_model(cases[_i].rel, cases[_i].local);
  if (!m) return;
  const int nv = nllm_model_n_vocab(m);
  nllm_context *c = ctx_make(m, 3, 64, cases[_i].kv_k, cases[_i].kv_v);
  fill(c, nv);
  float *before = malloc(sizeof(float) * (size_t)nv * 3);
  float *after = malloc(sizeof(float) * (size_t)nv * 3);
  float *last = malloc(sizeof(float) * (size_t)nv);
  memcpy(last, nllm_get_logits_seq(c, 2), sizeof(float) * (size_t)nv);
  int32_t used0 = 0;
  nllm_context_kv_cells(c, &used0, NULL);
  ck_assert_int_eq(used0, 9 + 13 + 3); /* the copied prefix is stored once */
  uint64_t size = 0;
  void *st = save(c, NLLM_SEQ_ALL, &size);
  const int32_t seqs[3] = {0, 1, 2};
  step(c, seqs, 3, 17, before, nv);
  /* change everything: drop, shift, decode more */
  ck_assert_int_eq(nllm_seq_remove(c, 1, 0, 4), NLLM_OK);
  ck_assert_int_eq(nllm_seq_shift(c, 1, 4, -1, -4), NLLM_OK);
  step(c, seqs, 3, 40, after, nv);
  ck_assert_int_eq(nllm_state_load(c, NLLM_SEQ_ALL, st, size), NLLM_OK);
  int32_t used = 0;
  nllm_context_kv_cells(c, &used, NULL);
  ck_assert_int_eq(used, used0);
  ck_assert_int_eq(nllm_seq_pos_max(c, 0), 8);
  ck_assert_int_eq(nllm_seq_pos_max(c, 1), 12);
  ck_assert_int_eq(nllm_seq_pos_max(c, 2), 7);
  ck_assert_int_eq(nllm_context_pos(c), 9);
  ck_assert_ptr_nonnull(nllm_get_logits_seq(c, 2));
  assert_same(nllm_get_logits_seq(c, 2), last, (size_t)nv, "saved logits");
  step(c, seqs, 3, 17, after, nv);
  assert_same(after, before, (size_t)nv * 3, "step after load");
  /* through a file: the same */
  char path[] = "/tmp/nllm_state_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  ck_assert_int_eq(nllm_state_load(c, NLLM_SEQ_ALL, st, size), NLLM_OK);
  ck_assert_msg(nllm_state_save_file(c, NLLM_SEQ_ALL, path) == NLLM_OK, "%s", nllm_last_error());
  size_t flen = 0;
  char *file = read_file(path, &flen);
  ck_assert_uint_eq(flen, size);
  ck_assert(memcmp(file, st, size) == 0);
  free(file);
  step(c, seqs, 3, 40, after, nv);
  ck_assert_msg(nllm_state_load_file(c, NLLM_SEQ_ALL, path) == NLLM_OK, "%s", nllm_last_error());
  step(c, seqs, 3, 17, after, nv);
  assert_same(after, before, (size_t)nv * 3, "step after file load");
  unlink(path);
  /* a state with only sequence 0 also loads into a one-sequence context (no n_seq_max
   * match needed), with a larger n_ctx */
  ck_assert_int_eq(nllm_seq_keep(c, 0), NLLM_OK);
  free(st);
  st = save(c, NLLM_SEQ_ALL, &size);
  nllm_context *c1 = ctx_make(m, 1, 128, cases[_i].kv_k, cases[_i].kv_v);
  ck_assert_msg(nllm_state_load(c1, NLLM_SEQ_ALL, st, size) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(nllm_context_pos(c1), nllm_context_pos(c));
  nllm_context_free(c1);
  free(st);
  free(before);
  free(after);
  free(last);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

/* A sequence's state loads into another sequence id of another context (n_seq_max, n_ctx and
 * cell layout all different) and continues exactly as the original. */
START_TEST(sequence_into_other_id) {
  nllm_model *m = load_test_model(cases[_i].rel, cases[_i].local);
  if (!m) return;
  const int nv = nllm_model_n_vocab(m);
  nllm_context *c = ctx_make(m, 3, 64, cases[_i].kv_k, cases[_i].kv_v);
  fill(c, nv);
  float *ref = malloc(sizeof(float) * (size_t)nv);
  float *got = malloc(sizeof(float) * (size_t)nv);
  for (int32_t s = 1; s <= 2; s++) {
    uint64_t size = 0;
    void *st = save(c, s, &size);
    nllm_context *d = ctx_make(m, 4, 48, cases[_i].kv_k, cases[_i].kv_v);
    /* occupy some cells first so the loaded sequence lands elsewhere in the pool */
    nllm_token junk[5] = {7, 8, 9, 10, 11};
    ck_assert_int_eq(nllm_decode(d, junk, 5), NLLM_OK);
    ck_assert_msg(nllm_state_load(d, 3, st, size) == NLLM_OK, "%s", nllm_last_error());
    ck_assert_int_eq(nllm_seq_pos_max(d, 3), nllm_seq_pos_max(c, s));
    ck_assert_int_eq(nllm_seq_n_tokens(d, 3), nllm_seq_n_tokens(c, s));
    ck_assert_int_eq(nllm_seq_pos_max(d, 0), 4); /* the other sequence untouched */
    /* the sequence's last logits came along (2 had a row in the last decode, 1 not) */
    if (s == 2) {
      ck_assert_ptr_nonnull(nllm_get_logits_seq(d, 3));
      assert_same(nllm_get_logits_seq(d, 3), nllm_get_logits_seq(c, 2), (size_t)nv, "logits");
    } else {
      ck_assert_ptr_null(nllm_get_logits_seq(d, 3));
    }
    ck_assert_ptr_null(nllm_get_logits_seq(d, 0));
    /* one row alone in both: the same kernels, bit-identical */
    const int32_t from[1] = {s}, into[1] = {3};
    nllm_context *c2 = ctx_make(m, 3, 64, cases[_i].kv_k, cases[_i].kv_v);
    fill(c2, nv);
    step(c2, from, 1, 21, ref, nv);
    step(d, into, 1, 21, got, nv);
    assert_same(got, ref, (size_t)nv, "sequence loaded into another id");
    /* loading over a sequence that holds cells replaces them */
    ck_assert_int_eq(nllm_state_load(d, 0, st, size), NLLM_OK);
    ck_assert_int_eq(nllm_seq_pos_max(d, 0), nllm_seq_pos_max(c, s));
    nllm_context_free(c2);
    nllm_context_free(d);
    free(st);
  }
  /* an empty sequence saves and loads as empty */
  uint64_t size = 0;
  nllm_context *e = ctx_make(m, 2, 32, cases[_i].kv_k, cases[_i].kv_v);
  void *st = save(e, 1, &size);
  ck_assert_int_eq(nllm_state_load(c, 1, st, size), NLLM_OK);
  ck_assert_int_eq(nllm_seq_pos_max(c, 1), -1);
  free(st);
  nllm_context_free(e);
  free(ref);
  free(got);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

/* What a refused load must leave: cells, positions and the next step's logits as before. */
typedef struct snapshot {
  int32_t used, pos_max[3], n_tok[3];
} snapshot;

static void snap(nllm_context *c, snapshot *s) {
  nllm_context_kv_cells(c, &s->used, NULL);
  for (int i = 0; i < 3; i++) {
    s->pos_max[i] = nllm_seq_pos_max(c, i);
    s->n_tok[i] = nllm_seq_n_tokens(c, i);
  }
}

static void expect_refused(nllm_context *c, int32_t seq, const void *buf, uint64_t size,
                           const snapshot *s0, const char *what) {
  nllm_status st = nllm_state_load(c, seq, buf, size);
  ck_assert_msg(st != NLLM_OK, "%s: accepted", what);
  ck_assert_msg(strlen(nllm_last_error()) > 10, "%s: no message", what);
  snapshot s1;
  snap(c, &s1);
  ck_assert_msg(memcmp(s0, &s1, sizeof s1) == 0, "%s: the context changed", what);
}

static void put32(uint8_t *p, uint32_t v) {
  memcpy(p, &v, 4);
}

static void reseal(uint8_t *st, uint64_t size) {
  const uint64_t h = nllm_state_checksum(st, size);
  memcpy(st + 64, &h, 8);
}

START_TEST(hostile_states) {
  nllm_model *m = load_test_model("models/stories260K.gguf", 1);
  const int nv = nllm_model_n_vocab(m);
  nllm_context *c = ctx_make(m, 3, 64, NLLM_TYPE_F16, NLLM_TYPE_F16);
  fill(c, nv);
  uint64_t size = 0, ssize = 0;
  uint8_t *st = save(c, NLLM_SEQ_ALL, &size);
  uint8_t *sq = save(c, 1, &ssize);
  uint8_t *bad = malloc(size);
  /* the target: a context with other contents, which every refusal must leave alone */
  nllm_context *t = ctx_make(m, 3, 64, NLLM_TYPE_F16, NLLM_TYPE_F16);
  nllm_token ids[6] = {9, 8, 7, 6, 5, 4};
  ck_assert_int_eq(nllm_decode(t, ids, 6), NLLM_OK);
  ck_assert_int_eq(nllm_seq_copy(t, 0, 1, 0, 3), NLLM_OK);
  snapshot s0;
  snap(t, &s0);
  float *ref = malloc(sizeof(float) * (size_t)nv);
  memcpy(ref, nllm_get_logits(t), sizeof(float) * (size_t)nv);

  /* every truncation of the header and of a sample of lengths of the payload */
  for (uint64_t n = 0; n < size; n += n < 100 ? 1 : 97) {
    expect_refused(t, NLLM_SEQ_ALL, st, n, &s0, "truncated");
    ck_assert_int_eq(nllm_state_load(t, NLLM_SEQ_ALL, st, n), NLLM_ERR_FORMAT);
  }
  expect_refused(t, NLLM_SEQ_ALL, st, size - 1, &s0, "one byte short");
  /* bytes past the end */
  uint8_t *longer = calloc(1, size + 8);
  memcpy(longer, st, size);
  expect_refused(t, NLLM_SEQ_ALL, longer, size + 8, &s0, "trailing bytes");
  free(longer);
  /* a flipped bit anywhere: the checksum */
  uint64_t rng = 77;
  for (int k = 0; k < 300; k++) {
    memcpy(bad, st, size);
    const uint64_t at = k < 72 ? (uint64_t)k : test_xorshift(&rng) % size;
    bad[at] ^= (uint8_t)(1u << (test_xorshift(&rng) % 8));
    expect_refused(t, NLLM_SEQ_ALL, bad, size, &s0, "flipped bit");
  }
  /* forged with a valid checksum: the structural checks. Layout (docs/formats.md): header
   * 72 bytes, then n_cells, n_seqs, n_entries[n_seqs], (pos, cell) pairs. */
  const uint32_t n_cells = 25;
  memcpy(bad, st, size);
  ck_assert_int_eq(memcmp(bad + 72, &n_cells, 4), 0);
  const uint64_t entries = 72 + 8 + 3 * 4;
  struct {
    uint64_t off;
    uint32_t val;
    const char *what;
    nllm_status want;
  } forged[] = {
      {8, 2, "newer version", NLLM_ERR_UNSUPPORTED},
      {12, 5, "unknown kind", NLLM_ERR_FORMAT},
      {12, 1, "kind: one sequence", NLLM_ERR_FORMAT},
      {16, 0x1234, "another model's fingerprint", NLLM_ERR_INVALID_ARG},
      {24, 3, "another layer count", NLLM_ERR_INVALID_ARG},
      {40, NLLM_TYPE_F32, "another K type", NLLM_ERR_INVALID_ARG},
      {56, 1000, "payload size", NLLM_ERR_FORMAT},
      {72, 24, "one cell fewer", NLLM_ERR_FORMAT},
      {72, 0xFFFFFFFFu, "huge cell count", NLLM_ERR_FORMAT},
      {76, 0, "no sequences", NLLM_ERR_FORMAT},
      {76, 100000, "too many sequences", NLLM_ERR_FORMAT},
      {80, 0xFFFFFFF0u, "huge entry count", NLLM_ERR_FORMAT},
      {entries, 0x7FFFFFFF, "position out of range", NLLM_ERR_FORMAT},
      {entries + 8, 0, "positions not ascending", NLLM_ERR_FORMAT},
      {entries + 4, 999, "cell index out of range", NLLM_ERR_FORMAT},
      {entries + 4, 1, "cell at two positions", NLLM_ERR_FORMAT},
  };
  for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
    memcpy(bad, st, size);
    put32(bad + forged[i].off, forged[i].val);
    reseal(bad, size);
    nllm_status got = nllm_state_load(t, NLLM_SEQ_ALL, bad, size);
    ck_assert_msg(got == forged[i].want, "%s: status %d, want %d (%s)", forged[i].what, got,
                  forged[i].want, nllm_last_error());
    expect_refused(t, NLLM_SEQ_ALL, bad, size, &s0, forged[i].what);
  }
  /* the wrong kind of state for the call */
  ck_assert_int_eq(nllm_state_load(t, 1, st, size), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_state_load(t, NLLM_SEQ_ALL, sq, ssize), NLLM_ERR_INVALID_ARG);
  expect_refused(t, 2, st, size, &s0, "whole state into a sequence");
  /* bad arguments */
  ck_assert_int_eq(nllm_state_load(t, 3, sq, ssize), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_state_load(t, -2, sq, ssize), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_state_load(t, 0, NULL, 10), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_state_load(NULL, 0, sq, ssize), NLLM_ERR_INVALID_ARG);
  uint64_t n = 0;
  ck_assert_int_eq(nllm_state_save(c, NLLM_SEQ_ALL, bad, size - 1, &n), NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_uint_eq(n, size);
  ck_assert_int_eq(nllm_state_save(c, 0, NULL, 0, &n), NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_eq(nllm_state_size(c, 5, &n), NLLM_ERR_INVALID_ARG);
  /* no room: 25 cells into a pool of 16, a sequence's 13 into a pool with 10 free */
  nllm_context *small = ctx_make(m, 3, 16, NLLM_TYPE_F16, NLLM_TYPE_F16);
  ck_assert_int_eq(nllm_state_load(small, NLLM_SEQ_ALL, st, size), NLLM_ERR_CONTEXT_FULL);
  ck_assert_int_eq(nllm_decode(small, ids, 6), NLLM_OK);
  ck_assert_int_eq(nllm_state_load(small, 2, sq, ssize), NLLM_ERR_CONTEXT_FULL);
  ck_assert_int_eq(nllm_seq_pos_max(small, 2), -1);
  nllm_context_free(small);
  /* another KV type, another model */
  nllm_context *q8 = ctx_make(m, 3, 64, NLLM_TYPE_F16, NLLM_TYPE_F32);
  ck_assert_int_eq(nllm_state_load(q8, NLLM_SEQ_ALL, st, size), NLLM_ERR_INVALID_ARG);
  nllm_context_free(q8);
  nllm_model *other = load_test_model("golden/models/tiny-a-Q8_0.gguf", 0);
  if (other) {
    nllm_context *o = ctx_make(other, 3, 64, NLLM_TYPE_F16, NLLM_TYPE_F16);
    ck_assert_int_eq(nllm_state_load(o, NLLM_SEQ_ALL, st, size), NLLM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(nllm_last_error(), "another model"));
    nllm_context_free(o);
    nllm_model_free(other);
  }
  /* files: missing, a directory, an unwritable place; a state file left intact by a failed
   * save is not tested here (atomic_file's own tests) */
  ck_assert_int_eq(nllm_state_load_file(t, NLLM_SEQ_ALL, "/nonexistent/state"), NLLM_ERR_IO);
  ck_assert_int_ne(nllm_state_load_file(t, NLLM_SEQ_ALL, "/tmp"), NLLM_OK);
  ck_assert_int_eq(nllm_state_save_file(t, NLLM_SEQ_ALL, "/nonexistent/dir/state"), NLLM_ERR_IO);
  snapshot s1;
  snap(t, &s1);
  ck_assert(memcmp(&s0, &s1, sizeof s1) == 0);
  /* and the target still decodes as before every refusal */
  ck_assert_int_eq(nllm_seq_remove(t, 0, 5, -1), NLLM_OK);
  ck_assert_int_eq(nllm_decode(t, ids + 5, 1), NLLM_OK);
  assert_same(nllm_get_logits(t), ref, (size_t)nv, "target after refusals");
  free(ref);
  free(bad);
  free(st);
  free(sq);
  nllm_context_free(t);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

/* Batched decode steps count as generated tokens, prompt chunks as prompt. */
START_TEST(timings_split) {
  nllm_model *m = load_test_model("models/stories260K.gguf", 1);
  nllm_context *c = ctx_make(m, 4, 64, NLLM_TYPE_F16, NLLM_TYPE_F16);
  nllm_token tok[8] = {5, 6, 7, 8, 9, 10, 11, 12};
  int32_t sid[8] = {0, 0, 0, 1, 1, 2, 3, 3};
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = 8;
  b.tokens = tok;
  b.seq_id = sid;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  int32_t one[4] = {0, 1, 2, 3};
  b.n_tokens = 4;
  b.seq_id = one;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  nllm_timings tm = {.struct_size = sizeof tm};
  ck_assert_int_eq(nllm_context_timings(c, &tm), NLLM_OK);
  ck_assert_int_eq(tm.n_prompt_tokens, 7); /* seq 2's single row of the first call is a step */
  ck_assert_int_eq(tm.n_gen_tokens, 5);
  ck_assert(tm.prompt_ms > 0 && tm.gen_ms > 0);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("state");
  TCase *tc = tcase_create("state");
  tcase_set_timeout(tc, 600);
  const int n = (int)(sizeof cases / sizeof cases[0]);
  tcase_add_loop_test(tc, whole_round_trip, 0, n);
  tcase_add_loop_test(tc, sequence_into_other_id, 0, n);
  tcase_add_test(tc, hostile_states);
  tcase_add_test(tc, timings_split);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
