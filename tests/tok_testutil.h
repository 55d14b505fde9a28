/* Helpers shared by the tokenizer tests: opening tokenizers from the shared test data and running
 * llama.cpp's .inp/.out vocabulary test vectors. */
#ifndef NLLM_TOK_TESTUTIL_H
#define NLLM_TOK_TESTUTIL_H

#include "testutil.h"
#include "tokenizer/tokenizer.h"

/* Opens vocab/<name> (GGUF) or tokenizers/<name> (tokenizer.json); NULL + SKIP if absent. */
static inline nllm_tokenizer *open_tok(const char *rel, nllm_source *src) {
  char path[1024];
  if (!testdata_path(path, sizeof path, rel)) return NULL;
  nllm_tokenizer *tok = NULL;
  nllm_status st;
  size_t n = strlen(path);
  if (n > 5 && strcmp(path + n - 5, ".json") == 0) {
    st = nllm_tokenizer_from_hf(path, &tok);
  } else {
    st = gguf_open(path, 1, src);
    ck_assert_msg(st == NLLM_OK, "gguf_open %s: %s", path, nllm_last_error());
    st = nllm_tokenizer_from_source(src, &tok);
  }
  ck_assert_msg(st == NLLM_OK, "tokenizer %s: %s", path, nllm_last_error());
  return tok;
}

/* Runs the 46 strings of <inp_rel> against the ids of <inp_rel minus .inp>.out; returns the
 * number that match, sets *n_cases; also checks decode(encode(s)) == s for every string. */
static inline int run_vocab_cases(const nllm_tokenizer *tok, const char *inp_rel, int *n_cases,
                                  int *n_roundtrip_ok) {
  char ipath[1024], opath[1024];
  *n_cases = 0;
  *n_roundtrip_ok = 0;
  if (!testdata_path(ipath, sizeof ipath, inp_rel)) return -1;
  snprintf(opath, sizeof opath, "%s", ipath);
  strcpy(opath + strlen(opath) - 4, ".out");
  size_t ilen, olen;
  char *inp = read_file(ipath, &ilen), *outp = read_file(opath, &olen);
  ck_assert(inp && outp);
  const char *sep = "\n__ggml_vocab_test__\n";
  size_t seplen = strlen(sep);
  char *s = inp, *line = outp;
  int pass = 0;
  nllm_token *ids = malloc(1 << 20);
  char *dec = malloc(1 << 20);
  while (*s) {
    char *e = strstr(s, sep);
    if (!e) break;
    size_t len = (size_t)(e - s);
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    int want[4096];
    int nw = parse_ids(line, want, 4096);
    int32_t n = 0;
    nllm_status st = nllm_tok_tokenize(tok, s, len, 0, 0, ids, 1 << 18, &n);
    ck_assert_msg(st == NLLM_OK, "encode: %s", nllm_last_error());
    int ok = n == nw;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    if (ok)
      pass++;
    else {
      fprintf(stderr, "MISMATCH %s case %d '%.*s'\n  want:", inp_rel, *n_cases, (int)len, s);
      for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
      fprintf(stderr, "\n  got: ");
      for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
      fprintf(stderr, "\n");
    }
    int32_t dn = 0;
    st = nllm_tok_detokenize(tok, ids, n, 0, dec, 1 << 20, &dn);
    ck_assert_msg(st == NLLM_OK, "decode: %s", nllm_last_error());
    if ((size_t)dn == len && memcmp(dec, s, len) == 0)
      (*n_roundtrip_ok)++;
    else
      fprintf(stderr, "ROUNDTRIP %s case %d '%.*s' -> '%.*s'\n", inp_rel, *n_cases, (int)len, s,
              (int)dn, dec);
    (*n_cases)++;
    s = e + seplen;
    line = nl ? nl + 1 : line + strlen(line);
  }
  free(ids);
  free(dec);
  free(inp);
  free(outp);
  return pass;
}

#endif
