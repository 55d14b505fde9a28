/* WordPiece (BERT) tokenization: the ids of the 8 texts of embed/tiny-bert.embeddings.txt from
 * the tiny-bert tokenizer.json, from its vocab.txt alone, and from the GGUF "bert" vocabulary
 * conversion writes of it (the Hangul text gives the reference's 22 ids, jamo by jamo), BERT's
 * normalizer edge cases, the error paths, and decoding. Small inline vocabularies cover what
 * needs no real one. */
#include <unistd.h>

#include "convert/convert.h"
#include "tok_testutil.h"

#define TINY_BERT "embed/tiny-bert/tokenizer.json"
#define TINY_BERT_REF "embed/tiny-bert.embeddings.txt"

enum { MAX_TEXTS = 8, MAX_IDS = 256 };

typedef struct ref_text {
  char *text;
  int ids[MAX_IDS];
  int n_ids;
} ref_text;

/* Decodes the JSON string of a "text S: ..." line (the escapes the file uses). */
static char *json_unquote(const char *s) {
  ck_assert(*s == '"');
  s++;
  char *out = malloc(strlen(s) * 4 + 1), *o = out;
  while (*s && *s != '"') {
    if (*s != '\\') {
      *o++ = *s++;
      continue;
    }
    s++;
    char c = *s++;
    switch (c) {
      case 'n': *o++ = '\n'; break;
      case 't': *o++ = '\t'; break;
      case 'r': *o++ = '\r'; break;
      case 'u': {
        unsigned cp = (unsigned)strtoul((char[5]){s[0], s[1], s[2], s[3], 0}, NULL, 16);
        s += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && s[0] == '\\' && s[1] == 'u') {
          unsigned lo = (unsigned)strtoul((char[5]){s[2], s[3], s[4], s[5], 0}, NULL, 16);
          s += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (cp < 0x80) {
          *o++ = (char)cp;
        } else if (cp < 0x800) {
          *o++ = (char)(0xC0 | (cp >> 6));
          *o++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          *o++ = (char)(0xE0 | (cp >> 12));
          *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
          *o++ = (char)(0x80 | (cp & 0x3F));
        } else {
          *o++ = (char)(0xF0 | (cp >> 18));
          *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
          *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
          *o++ = (char)(0x80 | (cp & 0x3F));
        }
        break;
      }
      default: *o++ = c; break;
    }
  }
  *o = 0;
  return out;
}

/* The texts and ids of tiny-bert.embeddings.txt; 0 (and SKIP) when absent. */
static int load_refs(ref_text *refs) {
  char path[1024];
  if (!testdata_path(path, sizeof path, TINY_BERT_REF)) return 0;
  size_t len;
  char *f = read_file(path, &len);
  ck_assert(f);
  int n = 0;
  for (char *line = strtok(f, "\n"); line; line = strtok(NULL, "\n")) {
    int s;
    char *colon = strstr(line, ": ");
    if (!colon) continue;
    if (sscanf(line, "text %d:", &s) == 1 && s >= 0 && s < MAX_TEXTS) {
      refs[s].text = json_unquote(colon + 2);
      if (s + 1 > n) n = s + 1;
    } else if (sscanf(line, "ids %d:", &s) == 1 && s >= 0 && s < MAX_TEXTS) {
      refs[s].n_ids = parse_ids(colon + 2, refs[s].ids, MAX_IDS);
    }
  }
  free(f);
  ck_assert_int_eq(n, MAX_TEXTS);
  for (int i = 0; i < n; i++) ck_assert(refs[i].text && refs[i].n_ids > 0);
  return n;
}

static void free_refs(ref_text *refs, int n) {
  for (int i = 0; i < n; i++) free(refs[i].text);
}

static int encode(const nllm_tokenizer *tok, const char *text, int add_special, int parse_special,
                  nllm_token *ids, int cap) {
  int32_t n = -1;
  nllm_status st =
      nllm_tok_tokenize(tok, text, strlen(text), add_special, parse_special, ids, cap, &n);
  ck_assert_msg(st == NLLM_OK, "encode '%s': %s", text, nllm_last_error());
  return n;
}

static void expect(const nllm_tokenizer *tok, const char *text, int add_special, int parse_special,
                   const int *want, int nw) {
  nllm_token ids[MAX_IDS];
  int n = encode(tok, text, add_special, parse_special, ids, MAX_IDS);
  int ok = n == nw;
  for (int i = 0; ok && i < n; i++) ok = ids[i] == want[i];
  if (!ok) {
    fprintf(stderr, "'%s': got", text);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n want");
    for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
    fprintf(stderr, "\n");
  }
  ck_assert_msg(ok, "ids of '%s'", text);
}

static void check_refs(const nllm_tokenizer *tok, const char *what) {
  ref_text refs[MAX_TEXTS] = {0};
  int n = load_refs(refs);
  for (int i = 0; i < n; i++) expect(tok, refs[i].text, 1, 0, refs[i].ids, refs[i].n_ids);
  if (n) {
    /* Hangul syllables split into conjoining jamo (NFD): 22 ids, not 19 */
    ck_assert_int_eq(refs[4].n_ids, 22);
    fprintf(stderr, "%s: %d/%d reference texts\n", what, n, n);
  }
  free_refs(refs, n);
}

START_TEST(hf_reference_ids) {
  nllm_tokenizer *tok = open_tok(TINY_BERT, NULL);
  if (!tok) return;
  check_refs(tok, "tokenizer.json");
  ck_assert_int_eq(nllm_tokenizer_n_vocab(tok), 30522);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_BOS), 101);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_EOS), 102);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_UNK), 100);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_PAD), 0);
  ck_assert(nllm_tokenizer_adds_bos(tok));
  nllm_tokenizer_free(tok);
}
END_TEST

/* Writes the tokenizer keys conversion writes for tok into a GGUF file and loads it back. */
static nllm_tokenizer *via_gguf(const nllm_tokenizer *tok, nllm_source *src, char *path,
                                size_t cap) {
  static int n_files;
  snprintf(path, cap, "/tmp/nllm-test-wordpiece-%d-%d.gguf", (int)getpid(), n_files++);
  gguf_writer *w = gguf_writer_new();
  ck_assert(w);
  ck_assert_int_eq(gguf_writer_set_str(w, "general.architecture", "bert"), NLLM_OK);
  ck_assert_msg(nllm_convert_tokenizer_keys(w, tok, 0) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_msg(gguf_writer_write(w, path) == NLLM_OK, "%s", nllm_last_error());
  gguf_writer_free(w);
  ck_assert_msg(gguf_open(path, 1, src) == NLLM_OK, "%s", nllm_last_error());
  nllm_tokenizer *g = NULL;
  ck_assert_msg(nllm_tokenizer_from_source(src, &g) == NLLM_OK, "%s", nllm_last_error());
  return g;
}

static const char *gguf_token(const nllm_source *src, uint64_t id) {
  const nllm_value *v = nllm_source_get(src, "tokenizer.ggml.tokens");
  ck_assert(v && v->type == NLLM_V_ARRAY && id < v->v.arr.n);
  static char buf[256];
  const nllm_str *s = nllm_value_arr_str(v, id);
  snprintf(buf, sizeof buf, "%.*s", (int)s->len, s->s);
  return buf;
}

static int64_t gguf_int(const nllm_source *src, const char *key) {
  int64_t v = -2;
  ck_assert_msg(nllm_source_get_int(src, key, &v) == NLLM_OK, "%s", key);
  return v;
}

START_TEST(gguf_round_trip) {
  nllm_tokenizer *tok = open_tok(TINY_BERT, NULL);
  if (!tok) return;
  nllm_source src;
  char path[256];
  nllm_tokenizer *g = via_gguf(tok, &src, path, sizeof path);
  /* llama.cpp's spelling: phantom space on word starts, continuations bare, [names] kept */
  const char *model;
  ck_assert_int_eq(nllm_source_get_str(&src, "tokenizer.ggml.model", &model), NLLM_OK);
  ck_assert_str_eq(model, "bert");
  ck_assert_str_eq(gguf_token(&src, 7592), "\xe2\x96\x81hello");
  ck_assert_str_eq(gguf_token(&src, 2015), "s"); /* ##s */
  ck_assert_str_eq(gguf_token(&src, 101), "[CLS]");
  ck_assert_str_eq(gguf_token(&src, 1), "[unused0]");
  ck_assert_str_eq(gguf_token(&src, 1012), "\xe2\x96\x81.");
  const nllm_value *types = nllm_source_get(&src, "tokenizer.ggml.token_type");
  ck_assert(types);
  for (int id = 0; id < 30522; id++) {
    int want = id == 0 || (id >= 100 && id <= 103) ? 3 : 1;
    ck_assert_int_eq(nllm_value_arr_int(types, (uint64_t)id), want);
  }
  ck_assert_int_eq(gguf_int(&src, "tokenizer.ggml.unknown_token_id"), 100);
  ck_assert_int_eq(gguf_int(&src, "tokenizer.ggml.seperator_token_id"), 102);
  ck_assert_int_eq(gguf_int(&src, "tokenizer.ggml.padding_token_id"), 0);
  ck_assert_int_eq(gguf_int(&src, "tokenizer.ggml.mask_token_id"), 103);
  ck_assert_int_eq(gguf_int(&src, "tokenizer.ggml.bos_token_id"), 101);

  check_refs(g, "GGUF bert vocabulary");
  /* every token renders and re-reads alike */
  for (int32_t id = 0; id < nllm_tokenizer_n_vocab(tok); id++) {
    char a[128], b[128];
    int32_t na = 0, nb = 0;
    ck_assert_int_eq(nllm_tok_token_to_piece(tok, id, 1, a, sizeof a, &na), NLLM_OK);
    ck_assert_int_eq(nllm_tok_token_to_piece(g, id, 1, b, sizeof b, &nb), NLLM_OK);
    ck_assert_msg(na == nb && !memcmp(a, b, (size_t)na), "piece of %d", id);
  }
  for (int w = NLLM_TOKEN_BOS; w <= NLLM_TOKEN_PAD; w++)
    ck_assert_int_eq(nllm_tokenizer_special(g, w), nllm_tokenizer_special(tok, w));

  /* and once more: GGUF -> GGUF keeps the same file content for the vocabulary */
  nllm_source src2;
  char path2[256];
  nllm_tokenizer *g2 = via_gguf(g, &src2, path2, sizeof path2);
  for (uint64_t id = 0; id < 30522; id += 97) {
    char a[256];
    snprintf(a, sizeof a, "%s", gguf_token(&src, id));
    ck_assert_str_eq(a, gguf_token(&src2, id));
  }
  nllm_tokenizer_free(g2);
  nllm_source_free(&src2);
  unlink(path2);
  nllm_tokenizer_free(g);
  nllm_source_free(&src);
  unlink(path);
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(normalizer_edges) {
  nllm_tokenizer *tok = open_tok(TINY_BERT, NULL);
  if (!tok) return;
  nllm_token ids[MAX_IDS];
  /* empty text: only the template */
  static const int empty[] = {101, 102};
  expect(tok, "", 1, 0, empty, 2);
  ck_assert_int_eq(encode(tok, "", 0, 0, ids, MAX_IDS), 0);
  ck_assert_int_eq(encode(tok, " \t\n ", 0, 0, ids, MAX_IDS), 0);
  /* control and format characters vanish (U+0001, DEL, U+200B, U+FEFF, NUL); \v and \f are
   * controls, not whitespace, so they join the words around them */
  static const int hello_world[] = {7592, 2088};
  expect(tok, "\x01hello\x7f world\xe2\x80\x8b\xef\xbb\xbf", 0, 0, hello_world, 2);
  {
    static const char nul[] = "hello\0 world";
    int32_t n = 0;
    ck_assert_int_eq(nllm_tok_tokenize(tok, nul, sizeof nul - 1, 0, 0, ids, MAX_IDS, &n), NLLM_OK);
    ck_assert_int_eq(n, 2);
    ck_assert(ids[0] == 7592 && ids[1] == 2088);
  }
  int n_vt = encode(tok, "hello\vworld\f", 0, 0, ids, MAX_IDS);
  nllm_token joined[MAX_IDS];
  ck_assert_int_eq(encode(tok, "helloworld", 0, 0, joined, MAX_IDS), n_vt);
  ck_assert(n_vt == 2 && !memcmp(ids, joined, sizeof *ids * 2));
  /* Unicode whitespace splits (NBSP, ideographic space, U+2028) */
  expect(tok, "hello\xc2\xa0world", 0, 0, hello_world, 2);
  expect(tok, "hello\xe3\x80\x80world", 0, 0, hello_world, 2);
  expect(tok, "hello\xe2\x80\xa8world", 0, 0, hello_world, 2);
  /* accents stripped and lowercased, precomposed or combining alike */
  int n1 = encode(tok, "CAF\xc3\x89", 0, 0, ids, MAX_IDS);
  nllm_token ids2[MAX_IDS];
  int n2 = encode(tok, "cafe\xcc\x81", 0, 0, ids2, MAX_IDS);
  int n3 = encode(tok, "cafe", 0, 0, ids2 + 64, MAX_IDS - 64);
  ck_assert(n1 == n2 && n1 == n3 && !memcmp(ids, ids2, (size_t)n1 * sizeof *ids) &&
            !memcmp(ids, ids2 + 64, (size_t)n1 * sizeof *ids));
  /* U+0130 (I with dot): NFD then lowercase is "i" */
  static const int i_word[] = {1045};
  expect(tok, "\xc4\xb0", 0, 0, i_word, 1);
  /* CJK ideographs are words of their own even without spaces: 我想 = 2 ids */
  ck_assert_int_eq(encode(tok, "\xe6\x88\x91\xe6\x83\xb3", 0, 0, ids, MAX_IDS), 2);
  /* punctuation of every kind is isolated: ASCII symbols count as punctuation */
  static const int dollar[] = {1002, 1017};
  expect(tok, "$3", 0, 0, dollar, 2);
  /* a word of 100 characters is split; 101 is one [UNK] */
  char word[128];
  memset(word, 'a', 101);
  word[101] = 0;
  static const int unk[] = {100};
  expect(tok, word, 0, 0, unk, 1);
  word[100] = 0;
  int n100 = encode(tok, word, 0, 0, ids, MAX_IDS);
  ck_assert(n100 >= 1);
  for (int i = 0; i < n100; i++) ck_assert_int_ne(ids[i], 100);
  /* a multi-byte word counts characters, not bytes: 60 x "é" (120 bytes) is not too long */
  char acc[256] = {0};
  for (int i = 0; i < 60; i++) memcpy(acc + 2 * i, "\xc3\xa9", 2);
  n100 = encode(tok, acc, 0, 0, ids, MAX_IDS);
  for (int i = 0; i < n100; i++) ck_assert_int_ne(ids[i], 100);
  /* emoji have no piece: the whole word is one [UNK] */
  static const int emoji[] = {100, 1998, 100};
  expect(tok, "x\xf0\x9f\xa6\x99 and \xe2\x9c\x85", 0, 0, emoji, 3);
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(specials_and_errors) {
  nllm_tokenizer *tok = open_tok(TINY_BERT, NULL);
  if (!tok) return;
  /* special token text is matched literally (before normalization) only when asked */
  static const int only[] = {101, 103, 102};
  expect(tok, "[CLS][MASK][SEP]", 0, 1, only, 3);
  static const int around[] = {101, 101, 7592, 103, 102, 102};
  expect(tok, "[CLS] hello [MASK] [SEP]", 1, 1, around, 6);
  nllm_token ids[MAX_IDS];
  int n = encode(tok, "[CLS]", 0, 0, ids, MAX_IDS);
  ck_assert_int_eq(n, 4); /* [ cl ##s ] */
  ck_assert_int_eq(ids[0], 1031);
  ck_assert_int_eq(ids[3], 1033);
  /* invalid UTF-8: a clear error, whatever the position */
  static const char *bad[] = {"abc\xff", "\xc3", "ok \xed\xa0\x80 surrogate", "\xc0\xaf"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int32_t nn = 0;
    nllm_status st = nllm_tok_tokenize(tok, bad[i], strlen(bad[i]), 1, 0, ids, MAX_IDS, &nn);
    ck_assert_int_eq(st, NLLM_ERR_INVALID_ARG);
    ck_assert_msg(strstr(nllm_last_error(), "UTF-8"), "%s", nllm_last_error());
  }
  /* too small an output buffer reports the size */
  int32_t need = 0;
  ck_assert_int_eq(nllm_tok_tokenize(tok, "hello world", 11, 1, 0, ids, 2, &need),
                   NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_eq(need, 4);
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(decode) {
  nllm_tokenizer *tok = open_tok(TINY_BERT, NULL);
  if (!tok) return;
  const char *text = "Hello, World! Unbelievably [yes] 3.50 caf\xc3\xa9?";
  nllm_token ids[MAX_IDS];
  int n = encode(tok, text, 1, 0, ids, MAX_IDS);
  char buf[256];
  int32_t dn = 0;
  ck_assert_int_eq(nllm_tok_detokenize(tok, ids, n, 0, buf, sizeof buf, &dn), NLLM_OK);
  ck_assert_str_eq(buf, "hello, world! unbelievably [ yes ] 3. 50 cafe?");
  ck_assert_int_eq(nllm_tok_detokenize(tok, ids, n, 1, buf, sizeof buf, &dn), NLLM_OK);
  ck_assert_str_eq(buf, "[CLS] hello, world! unbelievably [ yes ] 3. 50 cafe? [SEP]");
  /* streaming gives the same text */
  for (int render = 0; render <= 1; render++) {
    nllm_detokenizer s;
    nllm_detokenizer_init(&s, render);
    char out[256];
    size_t k = 0;
    for (int i = 0; i < n; i++) {
      int32_t pn = 0;
      ck_assert_int_eq(
          nllm_detokenizer_push(tok, &s, ids[i], out + k, (int32_t)(sizeof out - k), &pn), NLLM_OK);
      k += (size_t)pn;
    }
    out[k] = 0;
    ck_assert_int_eq(nllm_tok_detokenize(tok, ids, n, render, buf, sizeof buf, &dn), NLLM_OK);
    ck_assert_str_eq(out, buf);
  }
  /* one piece: a word start has its space, a continuation none */
  char p[32];
  int32_t pn = 0;
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, 7592, 0, p, sizeof p, &pn), NLLM_OK);
  ck_assert(pn == 6 && !memcmp(p, " hello", 6));
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, 2015, 0, p, sizeof p, &pn), NLLM_OK);
  ck_assert(pn == 1 && p[0] == 's');
  nllm_tokenizer_free(tok);
}
END_TEST

/* ---------------------------------------------------------------- inline vocabularies */

static nllm_status tok_from_json(const char *json, nllm_tokenizer **out) {
  char dir[] = "/tmp/nllm-wp-XXXXXX";
  ck_assert(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  FILE *f = fopen(path, "wb");
  ck_assert(f);
  fputs(json, f);
  fclose(f);
  nllm_status st = nllm_tokenizer_from_hf(path, out);
  unlink(path);
  rmdir(dir);
  return st;
}

#define SMALL_VOCAB \
  "{\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"un\": 3, \"##aff\": 4, \"##able\": 5, \"a\": 6}"

START_TEST(inline_vocabularies) {
  nllm_tokenizer *tok = NULL;
  /* BertProcessing, a Sequence of NFD + StripAccents + Lowercase, WhitespaceSplit */
  ck_assert_msg(tok_from_json("{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
                              "{\"type\": \"NFD\"}, {\"type\": \"StripAccents\"}, "
                              "{\"type\": \"Lowercase\"}]},"
                              "\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"},"
                              "\"post_processor\": {\"type\": \"BertProcessing\", "
                              "\"sep\": [\"[SEP]\", 2], \"cls\": [\"[CLS]\", 1]},"
                              "\"added_tokens\": [{\"id\": 0, \"content\": \"[UNK]\", "
                              "\"special\": true}],"
                              "\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", "
                              "\"max_input_chars_per_word\": 9, \"vocab\": " SMALL_VOCAB "}}",
                              &tok) == NLLM_OK,
                "%s", nllm_last_error());
  static const int w1[] = {1, 3, 4, 5, 6, 2};
  expect(tok, "UN\xc3\x80\x66\x66\x61\x62le a", 1, 0, w1, 6); /* "UNÀffable a" */
  static const int w2[] = {0, 0};
  expect(tok, "unaffables unb", 0, 0, w2, 2); /* 10 chars > 9; "unb" has no piece */
  nllm_tokenizer_free(tok);

  /* no unknown token: a word without pieces is an error, not a silent drop */
  ck_assert_int_eq(
      tok_from_json("{\"model\": {\"type\": \"WordPiece\", \"vocab\": " SMALL_VOCAB "}}", &tok),
      NLLM_OK);
  nllm_token ids[16];
  int32_t n = 0;
  ck_assert_int_eq(nllm_tok_tokenize(tok, "un zzz", 6, 0, 0, ids, 16, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_msg(strstr(nllm_last_error(), "zzz") && strstr(nllm_last_error(), "unknown"), "%s",
                nllm_last_error());
  nllm_tokenizer_free(tok);

  /* BertNormalizer options one by one: accents kept when strip_accents is false, CJK not
   * spaced out without handle_chinese_chars, case kept without lowercase */
  static const char *const norm_json =
      "{\"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true, "
      "\"handle_chinese_chars\": %s, \"strip_accents\": %s, \"lowercase\": %s},"
      "\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
      "\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": "
      "{\"[UNK]\": 0, \"caf\": 1, \"##e\": 2, \"##\xc3\xa9\": 3, \"Caf\": 4, "
      "\"\xe6\x88\x91\": 5, \"##\xe6\x83\xb3\": 6, \"\xe6\x83\xb3\": 7}}}";
  static const struct {
    const char *chinese, *strip, *lower, *text;
    int want[3], n;
  } cases[] = {
      {"true", "false", "true", "CAF\xc3\x89", {1, 3}, 2},
      {"true", "null", "true", "CAF\xc3\x89", {1, 2}, 2},
      {"true", "true", "false", "Caf\xc3\xa9", {4, 2}, 2},
      {"true", "null", "false", "Caf\xc3\xa9", {4, 3}, 2},
      {"true", "null", "true", "\xe6\x88\x91\xe6\x83\xb3", {5, 7}, 2},
      {"false", "null", "true", "\xe6\x88\x91\xe6\x83\xb3", {5, 6}, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char json[1024];
    snprintf(json, sizeof json, norm_json, cases[i].chinese, cases[i].strip, cases[i].lower);
    ck_assert_msg(tok_from_json(json, &tok) == NLLM_OK, "%s", nllm_last_error());
    expect(tok, cases[i].text, 0, 0, cases[i].want, cases[i].n);
    nllm_tokenizer_free(tok);
  }

  /* a custom continuation prefix */
  ck_assert_int_eq(tok_from_json("{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", "
                                 "\"continuing_subword_prefix\": \"++\", \"vocab\": {\"[UNK]\": "
                                 "0, \"ab\": 1, \"++c\": 2}}}",
                                 &tok),
                   NLLM_OK);
  static const int w3[] = {1, 2};
  expect(tok, "abc", 0, 0, w3, 2);
  nllm_tokenizer_free(tok);

  /* bad model parameters are refused with a reason */
  ck_assert_int_eq(tok_from_json("{\"model\": {\"type\": \"WordPiece\", "
                                 "\"max_input_chars_per_word\": 0, \"vocab\": " SMALL_VOCAB "}}",
                                 &tok),
                   NLLM_ERR_FORMAT);
  ck_assert(strstr(nllm_last_error(), "max_input_chars_per_word"));
  ck_assert_int_eq(tok_from_json("{\"model\": {\"type\": \"WordPiece\", "
                                 "\"continuing_subword_prefix\": \"################\", "
                                 "\"vocab\": " SMALL_VOCAB "}}",
                                 &tok),
                   NLLM_ERR_UNSUPPORTED);
  ck_assert_int_eq(tok_from_json("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", &tok),
                   NLLM_ERR_UNSUPPORTED);
  ck_assert(strstr(nllm_last_error(), "WordPiece"));
}
END_TEST

static void write_text(const char *dir, const char *name, const char *text, size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  ck_assert(f);
  ck_assert_uint_eq(fwrite(text, 1, len, f), len);
  fclose(f);
}

static void remove_files(const char *dir) {
  static const char *const names[] = {"vocab.txt", "tokenizer_config.json"};
  char path[512];
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

/* A folder with vocab.txt and no tokenizer.json (older BERT uploads) */
START_TEST(vocab_txt_folder) {
  char vpath[1024], cpath[1024];
  if (!testdata_path(vpath, sizeof vpath, "embed/tiny-bert/vocab.txt") ||
      !testdata_path(cpath, sizeof cpath, "embed/tiny-bert/tokenizer_config.json"))
    return;
  char dir[] = "/tmp/nllm-wp-vocab-XXXXXX";
  ck_assert(mkdtemp(dir));
  size_t vl, cl;
  char *v = read_file(vpath, &vl), *c = read_file(cpath, &cl);
  ck_assert(v && c);
  write_text(dir, "vocab.txt", v, vl);
  write_text(dir, "tokenizer_config.json", c, cl);
  free(v);
  free(c);
  char path[512];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  nllm_tokenizer *tok = NULL;
  ck_assert_msg(nllm_tokenizer_from_hf(path, &tok) == NLLM_OK, "%s", nllm_last_error());
  check_refs(tok, "vocab.txt");
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_UNK), 100);
  static const int only[] = {101, 103, 102};
  expect(tok, "[CLS][MASK][SEP]", 0, 1, only, 3);
  nllm_tokenizer_free(tok);
  remove_files(dir);
}
END_TEST

START_TEST(vocab_txt_cased) {
  char dir[] = "/tmp/nllm-wp-cased-XXXXXX";
  ck_assert(mkdtemp(dir));
  static const char vocab[] =
      "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nHello\r\nhello\r\nCaf\r\n"
      "##\xc3\xa9\r\n!\r\n";
  static const char cfg[] = "{\"do_lower_case\": false, \"unk_token\": \"[UNK]\"}";
  write_text(dir, "vocab.txt", vocab, sizeof vocab - 1);
  write_text(dir, "tokenizer_config.json", cfg, sizeof cfg - 1);
  char path[512];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  nllm_tokenizer *tok = NULL;
  ck_assert_msg(nllm_tokenizer_from_hf(path, &tok) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(nllm_tokenizer_n_vocab(tok), 9);
  /* cased, accents kept (strip_accents follows do_lower_case), \r\n line ends */
  static const int want[] = {2, 4, 5, 6, 7, 8, 1, 3};
  expect(tok, "Hello hello Caf\xc3\xa9! cafe", 1, 0, want, 8);
  nllm_tokenizer_free(tok);
  remove_files(dir);
  /* neither file: the error names tokenizer.json */
  ck_assert_int_ne(nllm_tokenizer_from_hf(path, &tok), NLLM_OK);
  ck_assert(strstr(nllm_last_error(), "tokenizer.json"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("tokenizer_wordpiece");
  TCase *tc = tcase_create("wordpiece");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, hf_reference_ids);
  tcase_add_test(tc, gguf_round_trip);
  tcase_add_test(tc, normalizer_edges);
  tcase_add_test(tc, specials_and_errors);
  tcase_add_test(tc, decode);
  tcase_add_test(tc, inline_vocabularies);
  tcase_add_test(tc, vocab_txt_folder);
  tcase_add_test(tc, vocab_txt_cased);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
