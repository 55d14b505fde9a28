/* Special tokens, end-of-generation, round trips of random and hostile input, big inputs, and the
 * streaming detokenizer, across the GGUF and tokenizer.json tokenizers. */
#include <utf8proc.h>

#include "tok_testutil.h"
#include "core/core.h"
#include "tokenizer/tok_internal.h"

static int32_t enc(const nllm_tokenizer *tok, const char *s, size_t len, int bos, int special,
                   nllm_token *ids, int32_t cap) {
  int32_t n = -1;
  nllm_status st = nllm_tok_tokenize(tok, s, len, bos, special, ids, cap, &n);
  ck_assert_msg(st == NLLM_OK, "encode: %s", nllm_last_error());
  return n;
}

static int contains(const nllm_token *ids, int32_t n, nllm_token id) {
  for (int32_t i = 0; i < n; i++)
    if (ids[i] == id) return 1;
  return 0;
}

START_TEST(special_parse_on_off) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/qwen2.5/tokenizer.json", NULL);
  if (!tok) return;
  nllm_token ids[64];
  const char *t = "<|im_start|>user<tool_call>x";
  int32_t n = enc(tok, t, strlen(t), 0, 1, ids, 64);
  ck_assert_int_ge(n, 3);
  ck_assert_int_eq(ids[0], 151644);
  ck_assert(contains(ids, n, 151657));
  /* parse_special off: the control token is plain text, the non-special added token still matches
   */
  n = enc(tok, t, strlen(t), 0, 0, ids, 64);
  ck_assert(!contains(ids, n, 151644));
  ck_assert(contains(ids, n, 151657));
  char buf[128];
  int32_t dn;
  ck_assert_int_eq(nllm_tok_detokenize(tok, ids, n, 0, buf, sizeof buf, &dn), NLLM_OK);
  ck_assert_int_eq(dn, (int32_t)strlen(t));
  ck_assert(memcmp(buf, t, (size_t)dn) == 0);
  /* control tokens render only on request */
  nllm_token im[2] = {151644, 151645};
  ck_assert_int_eq(nllm_tok_detokenize(tok, im, 2, 0, buf, sizeof buf, &dn), NLLM_OK);
  ck_assert_int_eq(dn, 0);
  ck_assert_int_eq(nllm_tok_detokenize(tok, im, 2, 1, buf, sizeof buf, &dn), NLLM_OK);
  ck_assert_str_eq(buf, "<|im_start|><|im_end|>");
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(special_llama3_eog_bos) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/llama3/tokenizer.json", NULL);
  if (!tok) return;
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_BOS), 128000);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_EOS), 128001);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_EOT), 128009);
  ck_assert(nllm_tokenizer_is_eog(tok, 128001));
  ck_assert(nllm_tokenizer_is_eog(tok, 128009));
  ck_assert(!nllm_tokenizer_is_eog(tok, 128006));
  ck_assert(!nllm_tokenizer_is_eog(tok, 9906));
  ck_assert(nllm_tokenizer_adds_bos(tok));
  nllm_token ids[64];
  int32_t n = enc(tok, "Hello", 5, 1, 0, ids, 64);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(ids[0], 128000);
  ck_assert_int_eq(ids[1], 9906);
  const char *t = "<|start_header_id|>user<|end_header_id|>";
  n = enc(tok, t, strlen(t), 0, 1, ids, 64);
  ck_assert_int_eq(n, 3);
  ck_assert_int_eq(ids[0], 128006);
  ck_assert_int_eq(ids[2], 128007);
  /* empty input: nothing, or just BOS */
  ck_assert_int_eq(enc(tok, "", 0, 0, 0, ids, 64), 0);
  ck_assert_int_eq(enc(tok, "", 0, 1, 0, ids, 64), 1);
  /* capacity too small reports the count needed */
  int32_t need = 0;
  ck_assert_int_eq(nllm_tok_tokenize(tok, "Hello world", 11, 1, 0, ids, 1, &need),
                   NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_eq(need, 3);
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(special_gguf_spm) {
  nllm_source src = {0};
  nllm_tokenizer *tok = open_tok("vocab/ggml-vocab-llama-spm.gguf", &src);
  if (!tok) return;
  nllm_token ids[64];
  int32_t n = enc(tok, "<s>hi</s>", 9, 0, 1, ids, 64);
  ck_assert_int_ge(n, 3);
  ck_assert_int_eq(ids[0], 1);
  ck_assert_int_eq(ids[n - 1], 2);
  n = enc(tok, "<s>hi</s>", 9, 0, 0, ids, 64);
  ck_assert(!contains(ids, n, 1) && !contains(ids, n, 2));
  ck_assert(nllm_tokenizer_is_eog(tok, 2));
  ck_assert_int_eq(enc(tok, "Hello", 5, 1, 0, ids, 64), 2);
  ck_assert_int_eq(ids[0], 1);
  char p[16];
  int32_t pn;
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, 13, 0, p, sizeof p, &pn), NLLM_OK); /* <0x0A> */
  ck_assert_int_eq(pn, 1);
  ck_assert_int_eq(p[0], '\n');
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, 1, 0, p, sizeof p, &pn), NLLM_OK);
  ck_assert_int_eq(pn, 0);
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, 1, 1, p, sizeof p, &pn), NLLM_OK);
  ck_assert_int_eq(pn, 3);
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, 32000, 0, p, sizeof p, &pn), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, -1, 0, p, sizeof p, &pn), NLLM_ERR_INVALID_ARG);
  nllm_tokenizer_free(tok);
  nllm_source_free(&src);
}
END_TEST

/* ---------------------------------------------------------------- round trips */

static const char *const all_toks[] = {
    "vocab/ggml-vocab-llama-spm.gguf",
    "vocab/ggml-vocab-phi-3.gguf",
    "vocab/ggml-vocab-gpt-2.gguf",
    "vocab/ggml-vocab-deepseek-llm.gguf",
    "vocab/ggml-vocab-mpt.gguf",
    "tokenizers/hf/llama3/tokenizer.json",
    "tokenizers/hf/qwen2.5/tokenizer.json",
    "tokenizers/hf/mistral7b/tokenizer.json",
    "tokenizers/hf/gpt2/tokenizer.json",
};
#define N_TOKS (sizeof all_toks / sizeof *all_toks)

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
  return (uint32_t)test_xorshift(&rng);
}

static size_t random_utf8(char *out, size_t max_cps) {
  static const uint32_t ranges[][2] = {
      {0x20, 0x7E},     {0x20, 0x7E},     {0x20, 0x7E},       {0x0A, 0x0A},   {0x09, 0x0D},
      {0xA0, 0x2FF},    {0x370, 0x52F},   {0x600, 0x6FF},     {0x900, 0x97F}, {0x3040, 0x30FF},
      {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F300, 0x1F6FF}, {0x1, 0xD7FF},  {0xE000, 0x10FFFF}};
  size_t n = 0, k = rnd() % max_cps + 1;
  for (size_t i = 0; i < k; i++) {
    const uint32_t *r = ranges[rnd() % (sizeof ranges / sizeof *ranges)];
    uint32_t cp = r[0] + rnd() % (r[1] - r[0] + 1);
    n += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out + n);
  }
  return n;
}

/* decode(encode(s)) == s, or == NFC(s) for tokenizers that normalize (Qwen). */
static void check_roundtrip(const nllm_tokenizer *tok, const char *name, const char *s, size_t len,
                            int nfc) {
  static nllm_token ids[1 << 16];
  static char dec[1 << 18];
  int32_t n = enc(tok, s, len, 1, 0, ids, 1 << 16), dn = 0;
  ck_assert_int_eq(nllm_tok_detokenize(tok, ids, n, 0, dec, sizeof dec, &dn), NLLM_OK);
  const char *want = s;
  size_t wl = len;
  utf8proc_uint8_t *norm = NULL;
  if (nfc && nllm_utf8_valid(s, len)) {
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &norm,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    ck_assert(r >= 0);
    want = (const char *)norm;
    wl = (size_t)r;
  }
  /* bytes that never occur in valid UTF-8 have no token in some vocabularies (deepseek-llm,
   * mpt); like the reference, those tokenizers drop them */
  static char kept[1 << 16];
  if (tok->byte_level && wl <= sizeof kept) {
    size_t k = 0;
    for (size_t i = 0; i < wl; i++)
      if (tok->byte_token[(uint8_t)want[i]] >= 0) kept[k++] = want[i];
    want = kept;
    wl = k;
  }
  int ok = (size_t)dn == wl && memcmp(dec, want, wl) == 0;
  if (!ok) {
    fprintf(stderr, "%s: round trip of %zu bytes failed:\n in :", name, len);
    for (size_t i = 0; i < len && i < 64; i++) fprintf(stderr, " %02x", (uint8_t)s[i]);
    fprintf(stderr, "\n out:");
    for (int32_t i = 0; i < dn && i < 64; i++) fprintf(stderr, " %02x", (uint8_t)dec[i]);
    fprintf(stderr, "\n");
  }
  free(norm);
  ck_assert(ok);
}

START_TEST(roundtrip_random_and_hostile) {
  const char *rel = all_toks[_i];
  nllm_source src = {0};
  nllm_tokenizer *tok = open_tok(rel, &src);
  if (!tok) return;
  int nfc = strstr(rel, "qwen") != NULL;
  char buf[4096];
  for (int k = 0; k < 200; k++) {
    size_t n = random_utf8(buf, 64);
    check_roundtrip(tok, rel, buf, n, nfc);
  }
  /* invalid UTF-8, NULs, lone continuation bytes, truncated sequences, overlong forms */
  static const char *const bad[] = {"\xff\xfe abc \xc3", "a\0b\0\0c",    "\x80\x80\x80",
                                    "x\xe2\x96",         "\xc0\xaf",     "\xed\xa0\x80 surrogate",
                                    "\xf4\x90\x80\x80",  " \xf0\x9f\xa6"};
  static const size_t bad_len[] = {8, 6, 3, 3, 2, 13, 4, 4};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
    check_roundtrip(tok, rel, bad[k], bad_len[k], nfc);
  for (int k = 0; k < 100; k++) {
    size_t n = rnd() % 48;
    for (size_t i = 0; i < n; i++) buf[i] = (char)rnd();
    check_roundtrip(tok, rel, buf, n, nfc);
  }
  nllm_tokenizer_free(tok);
  nllm_source_free(&src);
}
END_TEST

/* 1 MB of one repeated character (one huge word) and 1 MB without spaces: the merge is
 * O(n log n), so each is a fraction of a second; quadratic work would take minutes. */
START_TEST(big_inputs) {
  const char *rel = all_toks[_i];
  nllm_source src = {0};
  nllm_tokenizer *tok = open_tok(rel, &src);
  if (!tok) return;
  size_t n = 1 << 20;
  char *s = malloc(n);
  nllm_token *ids = malloc((n + 2) * sizeof *ids);
  for (int kind = 0; kind < 2; kind++) {
    if (kind == 0)
      memset(s, 'a', n);
    else {
      static const char *const parts[] = {"abc", "Ω", "日本", "123", ".,", "🦙", "xyz-", "é"};
      size_t k = 0;
      while (k < n) {
        const char *p = parts[rnd() % 8];
        size_t l = strlen(p);
        if (k + l > n) l = n - k, p = "zzzz";
        memcpy(s + k, p, l);
        k += l;
      }
    }
    double t0 = nllm_time_ms();
    int32_t cnt = enc(tok, s, n, 0, 0, ids, (int32_t)(n + 2));
    double ms = nllm_time_ms() - t0;
    fprintf(stderr, "%s: 1 MB %s -> %d tokens in %.0f ms\n", rel, kind ? "no spaces" : "'a'*1M",
            cnt, ms);
    ck_assert_int_gt(cnt, 0);
    ck_assert_msg(ms < 10000, "1 MB took %.0f ms", ms);
  }
  free(s);
  free(ids);
  nllm_tokenizer_free(tok);
  nllm_source_free(&src);
}
END_TEST

/* ---------------------------------------------------------------- streaming */

START_TEST(stream_detok) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/llama3/tokenizer.json", NULL);
  if (!tok) return;
  const char *text = "Hello 🦙 wörld, 日本語! <b>\n";
  nllm_token ids[128];
  int32_t n = enc(tok, text, strlen(text), 1, 0, ids, 128);
  nllm_detokenizer ds;
  nllm_detokenizer_init(&ds, 0);
  char out[256], piece[64];
  size_t o = 0;
  int partial_seen = 0;
  for (int32_t i = 0; i < n; i++) {
    int32_t pn;
    ck_assert_int_eq(nllm_detokenizer_push(tok, &ds, ids[i], piece, sizeof piece, &pn), NLLM_OK);
    ck_assert(nllm_utf8_valid(piece, (size_t)pn)); /* only complete UTF-8 comes out */
    if (ds.n_held) partial_seen = 1;
    memcpy(out + o, piece, (size_t)pn);
    o += (size_t)pn;
  }
  int32_t pn;
  ck_assert_int_eq(nllm_detokenizer_flush(&ds, piece, sizeof piece, &pn), NLLM_OK);
  ck_assert_int_eq(pn, 0);
  ck_assert_int_eq((int)o, (int)strlen(text));
  ck_assert(memcmp(out, text, o) == 0);
  (void)partial_seen;

  /* a lone byte of an emoji: held, then U+FFFD at the flush */
  nllm_token b[8];
  int32_t nb = enc(tok, "\xf0\x9f", 2, 0, 0, b, 8);
  nllm_detokenizer_init(&ds, 0);
  o = 0;
  for (int32_t i = 0; i < nb; i++) {
    ck_assert_int_eq(nllm_detokenizer_push(tok, &ds, b[i], piece, sizeof piece, &pn), NLLM_OK);
    ck_assert_int_eq(pn, 0);
  }
  ck_assert_int_eq(nllm_detokenizer_flush(&ds, piece, sizeof piece, &pn), NLLM_OK);
  ck_assert_int_eq(pn, 3);
  ck_assert(memcmp(piece, "\xEF\xBF\xBD", 3) == 0);
  /* a byte that can never be valid comes out at once */
  nb = enc(tok, "\xff", 1, 0, 0, b, 8);
  nllm_detokenizer_init(&ds, 0);
  ck_assert_int_eq(nllm_detokenizer_push(tok, &ds, b[0], piece, sizeof piece, &pn), NLLM_OK);
  ck_assert_int_eq(pn, 3);
  /* too small a buffer leaves the state as it was */
  nb = enc(tok, "Hello", 5, 0, 0, b, 8);
  nllm_detokenizer_init(&ds, 0);
  ck_assert_int_eq(nllm_detokenizer_push(tok, &ds, b[0], piece, 2, &pn), NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_eq(pn, 5);
  ck_assert_int_eq(ds.n_pushed, 0);
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(stream_detok_spm_space) {
  nllm_source src = {0};
  nllm_tokenizer *tok = open_tok("vocab/ggml-vocab-llama-spm.gguf", &src);
  if (!tok) return;
  const char *text = "Hello wörld 🦙";
  nllm_token ids[64];
  int32_t n = enc(tok, text, strlen(text), 1, 0, ids, 64);
  nllm_detokenizer ds;
  nllm_detokenizer_init(&ds, 0);
  char out[128];
  size_t o = 0;
  for (int32_t i = 0; i < n; i++) {
    int32_t pn;
    ck_assert_int_eq(
        nllm_detokenizer_push(tok, &ds, ids[i], out + o, (int32_t)(sizeof out - o), &pn), NLLM_OK);
    o += (size_t)pn;
  }
  ck_assert_int_eq((int)o, (int)strlen(text));
  ck_assert(memcmp(out, text, o) == 0);
  nllm_tokenizer_free(tok);
  nllm_source_free(&src);
}
END_TEST

START_TEST(bad_files) {
  nllm_tokenizer *tok = NULL;
  ck_assert_int_eq(nllm_tokenizer_from_hf("/nonexistent/tokenizer.json", &tok), NLLM_ERR_IO);
  ck_assert_ptr_null(tok);
  char path[] = "/tmp/nllm_tok_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  static const char *const docs[] = {
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [",     /* truncated */
      "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}",          /* unsupported */
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -5}, \"merges\": []}}", /* bad id */
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}",
      ("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
       "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}"),
  };
  static const nllm_status want[] = {NLLM_ERR_FORMAT, NLLM_ERR_UNSUPPORTED, NLLM_ERR_FORMAT,
                                     NLLM_ERR_FORMAT, NLLM_ERR_FORMAT};
  for (size_t k = 0; k < sizeof docs / sizeof *docs; k++) {
    FILE *f = fopen(path, "wb");
    fputs(docs[k], f);
    fclose(f);
    nllm_status st = nllm_tokenizer_from_hf(path, &tok);
    ck_assert_msg(st == want[k], "doc %zu: status %d (%s)", k, st, nllm_last_error());
    ck_assert_ptr_null(tok);
    ck_assert(strstr(nllm_last_error(), path) != NULL);
  }
  close(fd);
  unlink(path);
}
END_TEST

START_TEST(unknown_pre) {
  /* a copy of the gpt-2 vocabulary keys with an unknown pre-tokenizer name */
  char p[1024];
  if (!testdata_path(p, sizeof p, "vocab/ggml-vocab-gpt-2.gguf")) return;
  nllm_source src = {0};
  ck_assert_int_eq(gguf_open(p, 1, &src), NLLM_OK);
  for (int64_t i = 0; i < src.n_kv; i++) {
    if (strcmp(src.kv[i].key, "tokenizer.ggml.pre") == 0) {
      src.kv[i].val.v.str.s = "made-up-pre";
      src.kv[i].val.v.str.len = 11;
    }
  }
  nllm_tokenizer *tok = NULL;
  ck_assert_int_eq(nllm_tokenizer_from_source(&src, &tok), NLLM_ERR_UNSUPPORTED);
  ck_assert(strstr(nllm_last_error(), "made-up-pre") != NULL);
  nllm_source_free(&src);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tokenizer_special");
  TCase *tc = tcase_create("special");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, special_parse_on_off);
  tcase_add_test(tc, special_llama3_eog_bos);
  tcase_add_test(tc, special_gguf_spm);
  tcase_add_loop_test(tc, roundtrip_random_and_hostile, 0, (int)N_TOKS);
  tcase_add_loop_test(tc, big_inputs, 0, (int)N_TOKS);
  tcase_add_test(tc, stream_detok);
  tcase_add_test(tc, stream_detok_spm_space);
  tcase_add_test(tc, bad_files);
  tcase_add_test(tc, unknown_pre);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
