/* Regressions of the outside robustness campaign (issue 24): hostile folders and files that
 * used to hang, burn CPU or memory, or load with silent damage; undefined behaviour found by
 * UBSan; misuse that returned success with garbage. Every input is tiny and crafted here. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "convert/convert.h"
#include "convert/gguf_write.h"
#include "formats/hf.h"
#include "formats/source.h"
#include "nativellm.h"
#include "testutil.h"

#define MODEL "models/stories260K.gguf"
#define HF_MODEL "tests/data/hf/tiny-mistral"

/* ---------------------------------------------------------------- helpers */

static char tmpdir[256];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(p);
}

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/nllm_test_robust_XXXXXX");
  ck_assert(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void) {
  nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s", path);
  ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void write_text(const char *path, const char *text) {
  write_bytes(path, text, strlen(text));
}

/* Copies the tiny HF folder into tmpdir, so a test can replace one of its files. */
static void copy_hf_folder(void) {
  static const char *files[] = {"config.json", "generation_config.json", "model.safetensors",
                                "tokenizer.json", "tokenizer_config.json"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char src[512];
    snprintf(src, sizeof src, "%s/%s", HF_MODEL, files[i]);
    size_t n;
    char *d = read_file(src, &n);
    ck_assert_msg(d != NULL, "cannot read %s", src);
    write_bytes(tmp(files[i]), d, n);
    free(d);
  }
}

static void assert_err(nllm_status got, nllm_status want, const char *substr) {
  ck_assert_msg(got == want, "status %s, expected %s (%s)", nllm_status_name(got),
                nllm_status_name(want), nllm_last_error());
  ck_assert_msg(strstr(nllm_last_error(), substr) != NULL, "message '%s' lacks '%s'",
                nllm_last_error(), substr);
}

static nllm_status load(const char *path, nllm_model **m) {
  *m = NULL;
  return nllm_model_load(path, NULL, m);
}

/* Rewrites the tiny GGUF model with edit() applied to a writer holding all its keys and
 * tensors, under tmpdir/name. */
static const char *rewrite_model(const char *name, void (*edit)(gguf_writer *w)) {
  nllm_source src;
  ck_assert_int_eq(gguf_open(MODEL, 1, &src), NLLM_OK);
  gguf_writer *w = gguf_writer_new();
  ck_assert_ptr_nonnull(w);
  ck_assert_int_eq(gguf_writer_copy_kv(w, &src), NLLM_OK);
  for (int64_t i = 0; i < src.n_tensors; i++) {
    const nllm_tensor *t = &src.tensors[i];
    ck_assert_int_eq(
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes), NLLM_OK);
  }
  if (edit) edit(w);
  const char *path = tmp(name);
  ck_assert_msg(gguf_writer_write(w, path) == NLLM_OK, "%s", nllm_last_error());
  gguf_writer_free(w);
  nllm_source_free(&src);
  return path;
}

/* ---------------------------------------------------------------- FIFOs (item 6) */

/* Each of these used to block in open() waiting for a writer that never comes; Check's
 * per-test timeout turns a regression into a failure. */
START_TEST(fifo_anywhere_fails_at_once) {
  make_tmpdir();
  nllm_model *m;
  /* a model path */
  ck_assert_int_eq(mkfifo(tmp("model.gguf"), 0600), 0);
  assert_err(load(tmp("model.gguf"), &m), NLLM_ERR_IO, "FIFO");
  /* a lone tokenizer file */
  ck_assert_int_eq(mkfifo(tmp("tok.json"), 0600), 0);
  assert_err(load(tmp("tok.json"), &m), NLLM_ERR_IO, "FIFO");
  remove_tmpdir();

  /* each file of a Hugging Face folder in turn */
  static const char *files[] = {"config.json", "generation_config.json", "tokenizer_config.json",
                                "model.safetensors", "tokenizer.json"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    make_tmpdir();
    copy_hf_folder();
    ck_assert_int_eq(unlink(tmp(files[i])), 0);
    ck_assert_int_eq(mkfifo(tmp(files[i]), 0600), 0);
    assert_err(load(tmpdir, &m), NLLM_ERR_IO, "FIFO");
    ck_assert_msg(strstr(nllm_last_error(), files[i]) != NULL, "%s", nllm_last_error());
    remove_tmpdir();
  }
  /* a shard named by an index */
  make_tmpdir();
  copy_hf_folder();
  ck_assert_int_eq(rename(tmp("model.safetensors"), tmp("a.safetensors")), 0);
  ck_assert_int_eq(mkfifo(tmp("b.safetensors"), 0600), 0);
  write_text(tmp("model.safetensors.index.json"),
             "{\"weight_map\": {\"model.norm.weight\": \"a.safetensors\", "
             "\"lm_head.weight\": \"b.safetensors\"}}");
  assert_err(load(tmpdir, &m), NLLM_ERR_IO, "FIFO");
  ck_assert_msg(strstr(nllm_last_error(), "b.safetensors") != NULL, "%s", nllm_last_error());
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- sizes before reads (item 7) */

START_TEST(oversized_config_refused_before_reading) {
  make_tmpdir();
  copy_hf_folder();
  /* sparse: 65 MiB of holes costs no disk and no time to create */
  int fd = open(tmp("config.json"), O_WRONLY | O_TRUNC);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ftruncate(fd, (off_t)65 << 20), 0);
  close(fd);
  nllm_model *m;
  assert_err(load(tmpdir, &m), NLLM_ERR_FORMAT, "68157440 bytes is too large");
  /* the same for a tokenizer.json past its own limit */
  fd = open(tmp("tokenizer.json"), O_WRONLY | O_TRUNC);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ftruncate(fd, (off_t)300 << 20), 0);
  close(fd);
  assert_err(load(tmp("tokenizer.json"), &m), NLLM_ERR_FORMAT, "314572800 bytes is too large");
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- shard indexes (item 5) */

/* 200k distinct shard names: the de-duplication was quadratic (108 s of CPU). The bound here is
 * the test's timeout; the work is now O(n log n) and the first missing shard ends it. */
START_TEST(index_with_many_shard_names_is_fast) {
  make_tmpdir();
  copy_hf_folder();
  enum { N = 200000 };
  size_t cap = (size_t)N * 48 + 64, n = 0;
  char *j = malloc(cap);
  ck_assert_ptr_nonnull(j);
  n += (size_t)snprintf(j + n, cap - n, "{\"weight_map\": {");
  for (int i = 0; i < N; i++)
    n += (size_t)snprintf(j + n, cap - n, "%s\"t%d\": \"s%06d.safetensors\"", i ? "," : "", i,
                          N - i);
  n += (size_t)snprintf(j + n, cap - n, "}}");
  write_bytes(tmp("model.safetensors.index.json"), j, n);
  free(j);
  nllm_model *m;
  assert_err(load(tmpdir, &m), NLLM_ERR_IO, "shard 's000001.safetensors' named by");
  remove_tmpdir();
}
END_TEST

/* Many index entries reaching one shard through symlinks: refused before any shard is read
 * (it used to read the shard once per link, 1.4 GB for 300 links to a 4.7 MB shard). */
START_TEST(index_shards_that_are_one_file_refused) {
  make_tmpdir();
  copy_hf_folder();
  ck_assert_int_eq(rename(tmp("model.safetensors"), tmp("real.safetensors")), 0);
  char j[8192];
  size_t n = (size_t)snprintf(j, sizeof j, "{\"weight_map\": {");
  for (int i = 0; i < 50; i++) {
    char name[64];
    snprintf(name, sizeof name, "link%02d.safetensors", i);
    ck_assert_int_eq(symlink("real.safetensors", tmp(name)), 0);
    n += (size_t)snprintf(j + n, sizeof j - n, "%s\"t%d\": \"%s\"", i ? "," : "", i, name);
  }
  snprintf(j + n, sizeof j - n, "}}");
  write_text(tmp("model.safetensors.index.json"), j);
  nllm_model *m;
  assert_err(load(tmpdir, &m), NLLM_ERR_FORMAT, "are one file");
  /* a hard link is the same file too */
  write_text(tmp("model.safetensors.index.json"),
             "{\"weight_map\": {\"a\": \"real.safetensors\", \"b\": \"hard.safetensors\"}}");
  ck_assert_int_eq(link(tmp("real.safetensors"), tmp("hard.safetensors")), 0);
  assert_err(load(tmpdir, &m), NLLM_ERR_FORMAT, "are one file");
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- sizes that overflow (item 8) */

static void b_le(uint8_t **p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) *(*p)++ = (uint8_t)(v >> (8 * i));
}

/* A GGUF holding one tensor info of the given shape and type and no data. */
static size_t one_tensor_gguf(uint8_t *buf, uint32_t type, int n_dims, const uint64_t *ne) {
  uint8_t *p = buf;
  memcpy(p, "GGUF", 4);
  p += 4;
  b_le(&p, 3, 4);
  b_le(&p, 1, 8); /* tensors */
  b_le(&p, 0, 8); /* keys */
  b_le(&p, 1, 8);
  *p++ = 'w';
  b_le(&p, (uint64_t)n_dims, 4);
  for (int d = 0; d < n_dims; d++) b_le(&p, ne[d], 8);
  b_le(&p, type, 4);
  b_le(&p, 0, 8);
  while ((p - buf) % 32) *p++ = 0;
  return (size_t)(p - buf);
}

START_TEST(tensor_byte_size_overflow_refused) {
  uint8_t buf[256];
  nllm_source src;
  /* F32 [2^62]: 2^62 * 4 bytes wrapped to 0 and loaded as an empty tensor */
  const uint64_t a[] = {1ull << 62};
  size_t n = one_tensor_gguf(buf, 0 /* F32 */, 1, a);
  assert_err(gguf_parse_buffer(buf, n, "w.gguf", &src), NLLM_ERR_FORMAT, "too large");
  /* F32 [2^63 - 1]: the row alone overflows */
  const uint64_t b[] = {(1ull << 63) - 1};
  n = one_tensor_gguf(buf, 0 /* F32 */, 1, b);
  assert_err(gguf_parse_buffer(buf, n, "w.gguf", &src), NLLM_ERR_FORMAT, "too large");
  /* Q8_0 [2^62 + 32, 1]: what quantize was asked to allocate 4.9e18 bytes for */
  const uint64_t c[] = {(1ull << 62) + 32, 1};
  n = one_tensor_gguf(buf, 8 /* Q8_0 */, 2, c);
  assert_err(gguf_parse_buffer(buf, n, "w.gguf", &src), NLLM_ERR_FORMAT, "extends past end");
}
END_TEST

/* A tensor whose own size fits (Q4_0, 2^62 elements: 2.6e18 bytes) but whose conversion to F32
 * would need 2^64 bytes: the output size wrapped to 0 and the conversion went on. */
START_TEST(conversion_size_overflow_refused) {
  make_tmpdir();
  static const uint8_t dummy[64];
  nllm_kv kv = {.key = "general.architecture"};
  kv.val.type = NLLM_V_STRING;
  kv.val.v.str.s = "llama";
  kv.val.v.str.len = 5;
  nllm_tensor t = {.name = "blk.0.ffn_down.weight",
                   .type = NLLM_TYPE_Q4_0,
                   .n_dims = 2,
                   .ne = {1ll << 62, 1, 1, 1},
                   .nbytes = (1ull << 57) * 18,
                   .data = dummy};
  nllm_source src = {.path = "hostile", .kv = &kv, .n_kv = 1, .tensors = &t, .n_tensors = 1};
  assert_err(nllm_convert_source(&src, tmp("out.gguf"), "F32", 1, NULL, NULL), NLLM_ERR_FORMAT,
             "cannot be stored as F32");
  ck_assert_int_ne(access(tmp("out.gguf"), F_OK), 0);
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- vocabulary vs rows (item 9) */

/* The embedding has more rows than the tokenizer has tokens (padding in many real models):
 * greedy sampling used to pick a row past the vocabulary, which then failed to detokenize.
 * Here the extra rows are made the most likely, and must never be chosen. */
START_TEST(sampling_stays_inside_the_vocabulary) {
  make_tmpdir();
  nllm_source src;
  ck_assert_int_eq(gguf_open(MODEL, 1, &src), NLLM_OK);
  gguf_writer *w = gguf_writer_new();
  ck_assert_int_eq(gguf_writer_copy_kv(w, &src), NLLM_OK);
  float *embd = NULL, *out = NULL;
  int32_t n_tok = 0;
  for (int64_t i = 0; i < src.n_tensors; i++) {
    const nllm_tensor *t = &src.tensors[i];
    if (strcmp(t->name, "token_embd.weight") != 0 && strcmp(t->name, "output.weight") != 0) {
      ck_assert_int_eq(
          gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes),
          NLLM_OK);
      continue;
    }
    /* F32 copy with 8 extra rows; for the output head, those rows are huge so they win */
    ck_assert_int_eq(t->type, NLLM_TYPE_F32);
    n_tok = (int32_t)t->ne[1];
    int64_t ne[2] = {t->ne[0], t->ne[1] + 8};
    float *f = calloc((size_t)(ne[0] * ne[1]), sizeof *f);
    memcpy(f, t->data, t->nbytes);
    int is_out = strcmp(t->name, "output.weight") == 0;
    for (int64_t r = t->ne[1]; r < ne[1]; r++)
      for (int64_t c = 0; c < ne[0]; c++) f[r * ne[0] + c] = is_out ? 1e3f * (c % 2 ? 1 : -1) : 0;
    if (is_out)
      out = f;
    else
      embd = f;
    ck_assert_int_eq(
        gguf_writer_add_tensor(w, t->name, NLLM_TYPE_F32, 2, ne, f, (uint64_t)(ne[0] * ne[1]) * 4),
        NLLM_OK);
  }
  ck_assert_int_eq(gguf_writer_write(w, tmp("padded.gguf")), NLLM_OK);
  gguf_writer_free(w);
  nllm_source_free(&src);
  free(embd);
  free(out);

  nllm_model *m;
  ck_assert_int_eq(load(tmp("padded.gguf"), &m), NLLM_OK);
  ck_assert_int_eq(nllm_model_n_vocab(m), n_tok + 8);
  nllm_context *ctx;
  ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  for (int greedy = 0; greedy < 2; greedy++) {
    sp.temperature = greedy ? 0.0f : 1.0f;
    sp.seed = 7;
    nllm_sampler *s;
    ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_OK);
    nllm_context_reset(ctx);
    nllm_token t = 1;
    for (int i = 0; i < 16; i++) {
      ck_assert_int_eq(nllm_decode(ctx, &t, 1), NLLM_OK);
      ck_assert_int_eq(nllm_sampler_sample(s, ctx, &t), NLLM_OK);
      ck_assert_msg(t >= 0 && t < n_tok, "sampled id %d outside the %d-token vocabulary", t, n_tok);
    }
    nllm_sampler_free(s);
  }
  nllm_context_free(ctx);
  nllm_model_free(m);
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- n_ctx_default (item 10) */

START_TEST(n_ctx_default_has_the_n_ctx_limit) {
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.n_ctx_default = INT32_MAX;
  nllm_model *m = NULL;
  assert_err(nllm_model_load(MODEL, &mp, &m), NLLM_ERR_INVALID_ARG, "n_ctx_default");
  ck_assert_ptr_null(m);
  mp.n_ctx_default = (1 << 24) + 1;
  assert_err(nllm_model_load(MODEL, &mp, &m), NLLM_ERR_INVALID_ARG, "n_ctx_default");
  mp.n_ctx_default = 64;
  ck_assert_int_eq(nllm_model_load(MODEL, &mp, &m), NLLM_OK);
  nllm_context *ctx;
  ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_context_n_ctx(ctx), 64);
  nllm_context_free(ctx);
  nllm_model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- tokenizer text (items 4, 11) */

/* A minimal BPE tokenizer.json: vocab a, b, i, and what the caller adds. */
static const char *tokenizer_json(const char *normalizer, const char *pre,
                                  const char *model_extra) {
  static char buf[16384];
  snprintf(buf, sizeof buf,
           "{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": %s, "
           "\"pre_tokenizer\": %s, \"post_processor\": null, \"decoder\": null, "
           "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"i\": 2}, "
           "\"merges\": []%s}}",
           normalizer, pre, model_extra);
  return buf;
}

static nllm_status tokenize_with(const char *json, const char *text, int32_t *n_out) {
  write_text(tmp("tokenizer.json"), json);
  nllm_model *m;
  nllm_status st = load(tmp("tokenizer.json"), &m);
  ck_assert_msg(st == NLLM_OK, "%s", nllm_last_error());
  nllm_token ids[64];
  st = nllm_tokenize(m, text, -1, 0, 0, ids, 64, n_out);
  nllm_model_free(m); /* leaves nllm_last_error() as the tokenizer set it */
  return st;
}

START_TEST(normalizer_that_multiplies_text_refused) {
  make_tmpdir();
  char rep[2100] = {0};
  memset(rep, 'i', 2000);
  char norm[7000];
  snprintf(norm, sizeof norm,
           "{\"type\": \"Sequence\", \"normalizers\": ["
           "{\"type\": \"Replace\", \"pattern\": {\"String\": \"i\"}, \"content\": \"%s\"},"
           "{\"type\": \"Replace\", \"pattern\": {\"String\": \"i\"}, \"content\": \"%s\"},"
           "{\"type\": \"Replace\", \"pattern\": {\"String\": \"i\"}, \"content\": \"%s\"}]}",
           rep, rep, rep);
  int32_t n = 0;
  /* 8 bytes in would be 64 GB out; refused before the big allocation */
  assert_err(tokenize_with(tokenizer_json(norm, "null", ""), "iiiiiiii", &n), NLLM_ERR_INVALID_ARG,
             "normalizer would grow the text");
  /* a modest growth (one Replace to 3 bytes) still works */
  ck_assert_int_eq(tokenize_with(tokenizer_json("{\"type\": \"Replace\", \"pattern\": {\"String\": "
                                                "\"a\"}, \"content\": \"iii\"}",
                                                "null", ""),
                                 "ab", &n),
                   NLLM_OK);
  ck_assert_int_eq(n, 4);
  remove_tmpdir();
}
END_TEST

START_TEST(unencodable_character_reported) {
  make_tmpdir();
  int32_t n = 0;
  /* no unknown token, no byte fallback: 'c' and U+00E9 have no token */
  assert_err(tokenize_with(tokenizer_json("null", "null", ""), "abc", &n), NLLM_ERR_INVALID_ARG,
             "U+0063 'c'");
  assert_err(tokenize_with(tokenizer_json("null", "null", ""), "a\xc3\xa9", &n),
             NLLM_ERR_INVALID_ARG, "U+00E9");
  /* encodable text is unaffected */
  ck_assert_int_eq(tokenize_with(tokenizer_json("null", "null", ""), "abia", &n), NLLM_OK);
  ck_assert_int_eq(n, 4);
  remove_tmpdir();
}
END_TEST

START_TEST(regex_match_limit_reported) {
  make_tmpdir();
  /* catastrophic backtracking: (a+)+$ on a run of a's that ends otherwise exhausts PCRE2's
   * match limit */
  const char *pre =
      "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a+)+$\"}, "
      "\"behavior\": \"Isolated\", \"invert\": false}";
  char text[64];
  memset(text, 'a', 40);
  text[40] = 'b';
  text[41] = 0;
  int32_t n = 0;
  assert_err(tokenize_with(tokenizer_json("null", pre, ""), text, &n), NLLM_ERR_INVALID_ARG,
             "PCRE2 error");
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- UBSan findings (12-14) */

static void align_one(gguf_writer *w) {
  ck_assert_int_eq(gguf_writer_set_u32(w, "general.alignment", 1), NLLM_OK);
}

/* general.alignment = 1 leaves F32 tensors at odd addresses; they are realigned at load, and the
 * model computes the same logits as the original. */
START_TEST(misaligned_tensors_realigned) {
  make_tmpdir();
  const char *path = rewrite_model("align1.gguf", align_one);
  float ref[512], got[512];
  int n_vocab = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (int mmap = 0; mmap < 2; mmap++) {
      nllm_model_params mp;
      nllm_model_params_init(&mp);
      mp.use_mmap = mmap;
      nllm_model *m;
      ck_assert_msg(nllm_model_load(pass ? path : MODEL, &mp, &m) == NLLM_OK, "%s",
                    nllm_last_error());
      n_vocab = nllm_model_n_vocab(m);
      ck_assert_int_le(n_vocab, 512);
      nllm_context *ctx;
      ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
      nllm_token ids[3] = {1, 20, 30};
      ck_assert_int_eq(nllm_decode(ctx, ids, 3), NLLM_OK);
      memcpy(pass ? got : ref, nllm_get_logits(ctx), (size_t)n_vocab * sizeof(float));
      nllm_context_free(ctx);
      nllm_model_free(m);
    }
  }
  for (int i = 0; i < n_vocab; i++) ck_assert_float_eq(got[i], ref[i]);
  /* every tensor of the parsed source is 4-byte aligned */
  nllm_source src;
  ck_assert_int_eq(gguf_open(path, 1, &src), NLLM_OK);
  ck_assert_uint_eq(src.alignment, 1);
  for (int64_t i = 0; i < src.n_tensors; i++)
    ck_assert_uint_eq((uintptr_t)src.tensors[i].data % 4, 0);
  nllm_source_free(&src);
  remove_tmpdir();
}
END_TEST

static void eog_nan(gguf_writer *w) {
  const float ids[2] = {2.0f, NAN};
  ck_assert_int_eq(gguf_writer_set_arr_f32(w, "nllm.eog_token_ids", ids, 2), NLLM_OK);
}

static void eog_negative(gguf_writer *w) {
  const int32_t ids[2] = {2, -5};
  ck_assert_int_eq(gguf_writer_set_arr_i32(w, "nllm.eog_token_ids", ids, 2), NLLM_OK);
}

static void eog_ok(gguf_writer *w) {
  const int32_t ids[2] = {2, 5};
  ck_assert_int_eq(gguf_writer_set_arr_i32(w, "nllm.eog_token_ids", ids, 2), NLLM_OK);
}

START_TEST(eog_ids_validated) {
  make_tmpdir();
  nllm_model *m;
  assert_err(load(rewrite_model("nan.gguf", eog_nan), &m), NLLM_ERR_FORMAT,
             "must be an array of integer token ids");
  assert_err(load(rewrite_model("neg.gguf", eog_negative), &m), NLLM_ERR_FORMAT,
             "is not a token id");
  ck_assert_int_eq(load(rewrite_model("ok.gguf", eog_ok), &m), NLLM_OK);
  ck_assert(nllm_model_token_is_eog(m, 5));
  nllm_model_free(m);
  /* the array reader itself never converts NaN or out-of-range floats */
  const float f[3] = {NAN, 1e30f, -3.0f};
  nllm_value v = {.type = NLLM_V_ARRAY};
  v.v.arr.elem_type = NLLM_V_F32;
  v.v.arr.n = 3;
  v.v.arr.data = f;
  ck_assert_int_eq(nllm_value_arr_int(&v, 0), 0);
  ck_assert_int_eq(nllm_value_arr_int(&v, 1), 0);
  ck_assert_int_eq(nllm_value_arr_int(&v, 2), -3);
  remove_tmpdir();
}
END_TEST

START_TEST(size_queries_with_null_buffers) {
  nllm_model *m;
  ck_assert_int_eq(load(MODEL, &m), NLLM_OK);
  nllm_token ids[4] = {1, 20, 30, 40};
  int32_t n = -1;
  ck_assert_int_eq(nllm_detokenize(m, ids, 4, 0, NULL, 0, &n), NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_gt(n, 0);
  /* a sequence of nothing but a control token is 0 bytes: NULL/0 is then a complete answer */
  n = -1;
  ck_assert_int_eq(nllm_detokenize(m, ids, 1, 0, NULL, 0, &n), NLLM_OK);
  ck_assert_int_eq(n, 0);
  n = -1;
  ck_assert_int_eq(nllm_token_to_piece(m, 1, 0, NULL, 0, &n), NLLM_OK);
  ck_assert_int_eq(n, 0);
  n = -1;
  ck_assert_int_eq(nllm_tokenize(m, "", 0, 0, 0, NULL, 0, &n), NLLM_OK);
  ck_assert_int_eq(n, 0);
  nllm_model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- one call at a time (18) */

typedef struct reenter {
  nllm_context *ctx;
  nllm_status inner;
  int calls;
} reenter;

static int32_t abort_reenters(void *ud) {
  reenter *r = ud;
  if (r->ctx && r->calls++ == 0) {
    nllm_token t = 3;
    r->inner = nllm_decode(r->ctx, &t, 1);
  }
  return 0;
}

static int32_t token_reenters(nllm_token tok, const char *piece, int32_t n, void *ud) {
  reenter *r = ud;
  if (r->calls++ == 0) r->inner = nllm_decode(r->ctx, &tok, 1);
  return 0;
}

typedef struct hammer {
  nllm_context *ctx;
  atomic_int ok, busy, other;
} hammer;

static void *hammer_thread(void *arg) {
  hammer *h = arg;
  for (int i = 0; i < 40; i++) {
    nllm_token t = (nllm_token)(1 + i % 50);
    nllm_status st = nllm_decode(h->ctx, &t, 1);
    if (st == NLLM_OK)
      atomic_fetch_add(&h->ok, 1);
    else if (st == NLLM_ERR_BUSY)
      atomic_fetch_add(&h->busy, 1);
    else
      atomic_fetch_add(&h->other, 1);
  }
  return NULL;
}

START_TEST(concurrent_use_of_a_context_is_busy) {
  nllm_model *m;
  ck_assert_int_eq(load(MODEL, &m), NLLM_OK);
  /* re-entered from its own abort callback, on the same thread: deterministic */
  reenter r = {0};
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.abort_callback = abort_reenters;
  cp.abort_user_data = &r;
  nllm_context *ctx;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  r.ctx = ctx;
  nllm_token ids[2] = {1, 2};
  ck_assert_int_eq(nllm_decode(ctx, ids, 2), NLLM_OK);
  ck_assert_int_eq(r.calls > 0, 1);
  assert_err(r.inner, NLLM_ERR_BUSY, "in use by another call");
  ck_assert_int_eq(nllm_context_pos(ctx), 2);
  ck_assert_str_eq(nllm_status_name(NLLM_ERR_BUSY), "NLLM_ERR_BUSY");
  nllm_context_free(ctx);

  /* re-entered from generate's token callback */
  ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
  nllm_sampler *s;
  ck_assert_int_eq(nllm_sampler_create(m, NULL, &s), NLLM_OK);
  reenter g = {ctx, NLLM_OK, 0};
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.max_tokens = 3;
  gp.stop_at_eog = 0;
  gp.on_token = token_reenters;
  gp.user_data = &g;
  ck_assert_int_eq(nllm_generate(ctx, s, "Once", -1, &gp, NULL), NLLM_OK);
  assert_err(g.inner, NLLM_ERR_BUSY, "nllm_decode");
  /* the flag is released after every call, failed ones included */
  nllm_token bad = -1;
  ck_assert_int_eq(nllm_decode(ctx, &bad, 1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_rewind(ctx, 1000000), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_rewind(ctx, 1), NLLM_OK);
  nllm_token one = 5;
  ck_assert_int_eq(nllm_decode(ctx, &one, 1), NLLM_OK);
  nllm_sampler_free(s);
  nllm_context_free(ctx);

  /* eight threads at once: every call succeeds whole or is refused, and the position counts
   * exactly the successful ones */
  nllm_context_params_init(&cp);
  cp.n_ctx = 8 * 40;
  cp.n_threads = 1;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  hammer h = {.ctx = ctx};
  pthread_t th[8];
  for (int i = 0; i < 8; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_thread, &h), 0);
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(atomic_load(&h.other), 0);
  ck_assert_int_eq(atomic_load(&h.ok) + atomic_load(&h.busy), 8 * 40);
  ck_assert_int_eq(nllm_context_pos(ctx), atomic_load(&h.ok));
  nllm_context_free(ctx);
  nllm_model_free(m);
}
END_TEST

/* The getters, reset and free while a call runs: from the call's own callback (same thread)
 * the getters read as always; from another thread they report busy instead of reading arrays
 * the call may reallocate, and reset and free are refused instead of pulling the cache from
 * under the call. */
typedef struct held {
  nllm_context *ctx;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inside, release;
  const float *own_logits;
  int32_t own_pos_max;
  nllm_status own_kv;
} held;

static int32_t token_waits(nllm_token tok, const char *piece, int32_t n, void *ud) {
  held *h = ud;
  h->own_logits = nllm_get_logits(h->ctx);
  h->own_pos_max = nllm_seq_pos_max(h->ctx, 0);
  int32_t used;
  h->own_kv = nllm_context_kv_cells(h->ctx, &used, NULL);
  pthread_mutex_lock(&h->mu);
  h->inside = 1;
  pthread_cond_broadcast(&h->cv);
  while (!h->release) pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
  return 0;
}

typedef struct gen_call {
  nllm_context *ctx;
  nllm_sampler *s;
  held *h;
  nllm_status st;
} gen_call;

static void *generate_thread(void *arg) {
  gen_call *g = arg;
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.max_tokens = 1;
  gp.stop_at_eog = 0;
  gp.on_token = token_waits;
  gp.user_data = g->h;
  g->st = nllm_generate(g->ctx, g->s, "Once upon a time", -1, &gp, NULL);
  return NULL;
}

START_TEST(getters_reset_and_free_during_a_call) {
  nllm_model *m;
  ck_assert_int_eq(load(MODEL, &m), NLLM_OK);
  nllm_context *ctx;
  ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
  nllm_sampler *s;
  ck_assert_int_eq(nllm_sampler_create(m, NULL, &s), NLLM_OK);
  held h = {.ctx = ctx};
  pthread_mutex_init(&h.mu, NULL);
  pthread_cond_init(&h.cv, NULL);
  gen_call g = {ctx, s, &h, NLLM_ERR_INTERNAL};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, generate_thread, &g), 0);
  pthread_mutex_lock(&h.mu);
  while (!h.inside) pthread_cond_wait(&h.cv, &h.mu);
  pthread_mutex_unlock(&h.mu);

  /* another thread, while generate waits in its token callback */
  ck_assert_ptr_null(nllm_get_logits(ctx));
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "inside a call on another thread"));
  ck_assert_ptr_null(nllm_get_logits_ith(ctx, 0));
  ck_assert_ptr_null(nllm_get_logits_seq(ctx, 0));
  ck_assert_int_eq(nllm_seq_pos_min(ctx, 0), -1);
  ck_assert_int_eq(nllm_seq_pos_max(ctx, 0), -1);
  ck_assert_int_eq(nllm_seq_n_tokens(ctx, 0), 0);
  int32_t used = -1;
  assert_err(nllm_context_kv_cells(ctx, &used, NULL), NLLM_ERR_BUSY, "nllm_context_kv_cells");
  ck_assert_int_eq(used, -1);
  nllm_timings tm = {.struct_size = sizeof tm};
  assert_err(nllm_context_timings(ctx, &tm), NLLM_ERR_BUSY, "nllm_context_timings");
  /* what never changes after creation reads at any time */
  ck_assert_int_gt(nllm_context_n_ctx(ctx), 0);
  ck_assert_ptr_eq(nllm_context_model(ctx), m);
  int32_t pos = nllm_context_pos(ctx);
  ck_assert_int_gt(pos, 0);
  nllm_context_reset(ctx);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "nllm_context_reset"));
  nllm_context_free(ctx);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "nllm_context_free"));

  pthread_mutex_lock(&h.mu);
  h.release = 1;
  pthread_cond_broadcast(&h.cv);
  pthread_mutex_unlock(&h.mu);
  pthread_join(th, NULL);
  ck_assert_int_eq(g.st, NLLM_OK);
  /* the callback, on the call's own thread, read as always */
  ck_assert_ptr_nonnull(h.own_logits);
  ck_assert_int_ge(h.own_pos_max, 0);
  ck_assert_int_eq(h.own_kv, NLLM_OK);
  /* neither the reset nor the free happened: the context goes on where it was */
  ck_assert_int_ge(nllm_context_pos(ctx), pos);
  ck_assert_ptr_nonnull(nllm_get_logits(ctx));
  ck_assert_int_eq(nllm_context_kv_cells(ctx, &used, NULL), NLLM_OK);
  ck_assert_int_eq(used, nllm_context_pos(ctx));
  nllm_token t = 5;
  ck_assert_int_eq(nllm_decode(ctx, &t, 1), NLLM_OK);
  nllm_context_reset(ctx);
  ck_assert_int_eq(nllm_context_pos(ctx), 0);
  nllm_sampler_free(s);
  nllm_context_free(ctx);
  nllm_model_free(m);
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);
}
END_TEST

/* ---------------------------------------------------------------- messages (19) */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifndef UNDER_ASAN
static long vm_size_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}
#endif

/* cJSON failing to allocate was reported as "invalid JSON near byte N". Runs in Check's
 * forked child, whose address space is capped a little above what it uses. */
START_TEST(json_out_of_memory_is_not_a_syntax_error) {
#ifdef UNDER_ASAN
  fprintf(stderr, "SKIP: an address-space limit cannot be set under AddressSanitizer\n");
#else
  make_tmpdir();
  enum { N = 1 << 20 };
  char *j = malloc(2 * N + 16);
  ck_assert_ptr_nonnull(j);
  size_t n = (size_t)sprintf(j, "{\"a\": [");
  for (int i = 0; i < N; i++) j[n++] = '0', j[n++] = ',';
  j[n - 1] = ']';
  j[n++] = '}';
  write_bytes(tmp("big.json"), j, n);
  free(j);
  long kb = vm_size_kb();
  ck_assert_int_gt(kb, 0);
  /* a million cJSON nodes need ~80 MB; the file itself 2 MB */
  struct rlimit rl = {(rlim_t)(kb + 24 * 1024) * 1024, (rlim_t)(kb + 24 * 1024) * 1024};
  ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
  nllm_model *m;
  assert_err(load(tmp("big.json"), &m), NLLM_ERR_NOMEM, "out of memory parsing");
  remove_tmpdir();
#endif
}
END_TEST

START_TEST(messages_say_what_happened) {
  /* generate with an empty prompt after a rewind: there were tokens, just no logits */
  nllm_model *m;
  ck_assert_int_eq(load(MODEL, &m), NLLM_OK);
  nllm_context *ctx;
  ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
  nllm_sampler *s;
  ck_assert_int_eq(nllm_sampler_create(m, NULL, &s), NLLM_OK);
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.add_bos = 0;
  assert_err(nllm_generate(ctx, s, "", 0, &gp, NULL), NLLM_ERR_INVALID_ARG, "nothing decoded yet");
  nllm_token ids[3] = {1, 20, 30};
  ck_assert_int_eq(nllm_decode(ctx, ids, 3), NLLM_OK);
  ck_assert_int_eq(nllm_context_rewind(ctx, 2), NLLM_OK);
  assert_err(nllm_generate(ctx, s, "", 0, &gp, NULL), NLLM_ERR_INVALID_ARG,
             "no logits at position 2");
  nllm_sampler_free(s);
  nllm_context_free(ctx);
  nllm_model_free(m);

  /* a model folder whose name ends in .json is a folder, not a lone tokenizer file */
  make_tmpdir();
  char saved[sizeof tmpdir];
  memcpy(saved, tmpdir, sizeof saved);
  ck_assert_uint_lt(strlen(tmpdir) + 12, sizeof tmpdir);
  strcat(tmpdir, "/model.json");
  ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
  copy_hf_folder();
  ck_assert_msg(load(tmpdir, &m) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_gt(nllm_model_n_layer(m), 0);
  nllm_model_free(m);
  memcpy(tmpdir, saved, sizeof tmpdir);
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- writes that fail (15) */

/* `nllm logits -o FILE` on a disk that fills up (a file-size limit here) used to truncate the
 * existing FILE, fail, and delete it. It now writes a temporary file and renames. */
START_TEST(logits_output_survives_a_full_disk) {
  make_tmpdir();
  const char *out = tmp("golden.txt");
  write_text(out, "precious\n");
  const char *b = getenv("NLLM_BUILD");
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "sh -c \"trap '' XFSZ; ulimit -f 8; exec %s/nllm logits -m %s -p 'Once upon a time' "
           "-n 8 -o %s\" 2>/dev/null",
           b && *b ? b : "build", MODEL, out);
  int rc = system(cmd);
  ck_assert_msg(rc != 0, "the write was expected to fail under a 4 KiB file-size limit");
  size_t n = 0;
  char *got = read_file(out, &n);
  ck_assert_ptr_nonnull(got);
  ck_assert_str_eq(got, "precious\n");
  free(got);
  /* and no temporary file is left behind */
  char ls[600];
  snprintf(ls, sizeof ls, "test $(ls -A %s | wc -l) -eq 1", tmpdir);
  ck_assert_int_eq(system(ls), 0);
  /* without the limit it is replaced whole */
  snprintf(cmd, sizeof cmd, "%s/nllm logits -m %s -p 'Once upon a time' -n 2 -o %s",
           b && *b ? b : "build", MODEL, out);
  ck_assert_int_eq(system(cmd), 0);
  got = read_file(out, &n);
  ck_assert_ptr_nonnull(got);
  ck_assert(strncmp(got, "# nllm logits", 13) == 0);
  free(got);
  struct stat sb;
  ck_assert_int_eq(stat(out, &sb), 0);
  mode_t um = umask(0);
  umask(um);
  ck_assert_uint_eq(sb.st_mode & 0777, 0666 & ~um);
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- temporary files (16) */

static void tiny_writer_file(const char *path) {
  gguf_writer *w = gguf_writer_new();
  ck_assert_int_eq(gguf_writer_set_str(w, "general.architecture", "llama"), NLLM_OK);
  static const float x[4] = {1, 2, 3, 4};
  const int64_t ne[1] = {4};
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t", NLLM_TYPE_F32, 1, ne, x, sizeof x), NLLM_OK);
  ck_assert_msg(gguf_writer_write(w, path) == NLLM_OK, "%s", nllm_last_error());
  gguf_writer_free(w);
}

START_TEST(temporary_files_are_created_safely) {
  make_tmpdir();
  char out[512], victim[512];
  snprintf(out, sizeof out, "%s", tmp("out.gguf"));
  snprintf(victim, sizeof victim, "%s", tmp("victim"));
  /* symlinks planted under every temporary name this process could pick (the old fixed one
   * and the first new ones) point at a file that must survive */
  write_text(victim, "keep me\n");
  char name[600];
  snprintf(name, sizeof name, "%s.tmp.%ld", out, (long)getpid());
  ck_assert_int_eq(symlink(victim, name), 0);
  for (int i = 0; i < 8; i++) {
    snprintf(name, sizeof name, "%s.tmp.%ld.%d", out, (long)getpid(), i);
    ck_assert_int_eq(symlink(victim, name), 0);
  }
  /* leftovers of a writer killed with -9 (a pid that has exited) and of a live one */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  ck_assert_int_gt(dead, 0);
  ck_assert_int_eq(waitpid(dead, NULL, 0), dead);
  char stale1[600], stale2[600], live[600];
  snprintf(stale1, sizeof stale1, "%s.tmp.%ld", out, (long)dead);
  snprintf(stale2, sizeof stale2, "%s.tmp.%ld.3", out, (long)dead);
  snprintf(live, sizeof live, "%s.tmp.%ld.0", out, (long)getppid());
  write_text(stale1, "partial");
  write_text(stale2, "partial");
  write_text(live, "in progress");

  tiny_writer_file(out);
  size_t n;
  char *v = read_file(victim, &n);
  ck_assert_str_eq(v, "keep me\n");
  free(v);
  nllm_source src;
  ck_assert_int_eq(gguf_open(out, 1, &src), NLLM_OK);
  ck_assert_int_eq(src.n_tensors, 1);
  nllm_source_free(&src);
  ck_assert_int_ne(access(stale1, F_OK), 0);
  ck_assert_int_ne(access(stale2, F_OK), 0);
  ck_assert_int_eq(access(live, F_OK), 0);
  /* overwriting an existing file replaces it whole, and nothing but the planted names stays */
  tiny_writer_file(out);
  char ls[600];
  snprintf(ls, sizeof ls, "test $(ls -A %s | wc -l) -eq 12", tmpdir);
  ck_assert_int_eq(system(ls), 0);
  remove_tmpdir();
}
END_TEST

/* An error while the progress line ("\r 42%") is on screen used to be glued to it. */
START_TEST(error_after_progress_starts_a_new_line) {
  const char *b = getenv("NLLM_BUILD");
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "%s/nllm quantize %s /nonexistent-dir-of-nllm-tests/out.gguf Q8_0 2>&1 >/dev/null",
           b && *b ? b : "build", MODEL);
  FILE *p = popen(cmd, "r");
  ck_assert_ptr_nonnull(p);
  char out[8192];
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = 0;
  ck_assert_int_ne(pclose(p), 0);
  const char *e = strstr(out, "nllm: error:");
  ck_assert_msg(e != NULL, "no error message in '%s'", out);
  ck_assert_msg(e == out || e[-1] == '\n', "error glued to the progress line: '%s'", out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("robust");
  TCase *tc = tcase_create("robust");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, fifo_anywhere_fails_at_once);
  tcase_add_test(tc, oversized_config_refused_before_reading);
  tcase_add_test(tc, index_with_many_shard_names_is_fast);
  tcase_add_test(tc, index_shards_that_are_one_file_refused);
  tcase_add_test(tc, tensor_byte_size_overflow_refused);
  tcase_add_test(tc, conversion_size_overflow_refused);
  tcase_add_test(tc, sampling_stays_inside_the_vocabulary);
  tcase_add_test(tc, n_ctx_default_has_the_n_ctx_limit);
  tcase_add_test(tc, normalizer_that_multiplies_text_refused);
  tcase_add_test(tc, unencodable_character_reported);
  tcase_add_test(tc, regex_match_limit_reported);
  tcase_add_test(tc, misaligned_tensors_realigned);
  tcase_add_test(tc, eog_ids_validated);
  tcase_add_test(tc, size_queries_with_null_buffers);
  tcase_add_test(tc, concurrent_use_of_a_context_is_busy);
  tcase_add_test(tc, getters_reset_and_free_during_a_call);
  tcase_add_test(tc, json_out_of_memory_is_not_a_syntax_error);
  tcase_add_test(tc, messages_say_what_happened);
  tcase_add_test(tc, logits_output_survives_a_full_disk);
  tcase_add_test(tc, temporary_files_are_created_safely);
  tcase_add_test(tc, error_after_progress_starts_a_new_line);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
