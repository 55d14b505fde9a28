/* Building the tokenizer object: token table, string arena, hash maps, merge table, the trie of
 * tokens matched before normalization, pieces for decoding and the end-of-generation set. */
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

uint64_t tok_hash(const char *s, size_t len) {
  /* 64-bit multiply-xorshift over 8-byte words: token texts are short, so speed per call
   * (not quality on huge keys) is what matters. */
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xFF51AFD7ED558CCDull);
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    s += 8;
    len -= 8;
  }
  uint64_t w = 0;
  for (size_t i = 0; i < len; i++) w |= (uint64_t)(uint8_t)s[i] << (8 * i);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 32;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 29;
  return h;
}

static uint64_t pair_hash(uint64_t k) {
  k ^= k >> 33;
  k *= 0xFF51AFD7ED558CCDull;
  k ^= k >> 33;
  k *= 0xC4CEB9FE1A85EC53ull;
  k ^= k >> 33;
  return k;
}

nllm_tokenizer *tok_alloc(const char *name, int32_t n_vocab) {
  nllm_tokenizer *tok = nllm_calloc(1, sizeof *tok);
  if (!tok) return NULL;
  tok->name = nllm_strdup(name ? name : "tokenizer");
  tok->n_vocab = n_vocab;
  tok->tokens = nllm_calloc((size_t)(n_vocab > 0 ? n_vocab : 1), sizeof *tok->tokens);
  if (!tok->name || !tok->tokens) {
    nllm_tokenizer_free(tok);
    return NULL;
  }
  for (int i = 0; i < 6; i++) tok->special[i] = -1;
  tok->sep_id = tok->mask_id = -1;
  tok->wp_max_chars = 100;
  memcpy(tok->wp_prefix, "##", 3);
  tok->wp_prefix_len = 2;
  for (int i = 0; i < 256; i++) tok->byte_token[i] = -1;
  tok->strip_leading_space = 0;
  tok->fuse_unk = 0;
  /* offset 0 is an empty string shared by every unset token */
  if (tok_store(tok, "", 0) == UINT32_MAX) {
    nllm_tokenizer_free(tok);
    return NULL;
  }
  return tok;
}

uint32_t tok_store(nllm_tokenizer *tok, const char *s, size_t len) {
  if (tok->strings_len + len + 1 > UINT32_MAX) return UINT32_MAX;
  if (tok->strings_len + len + 1 > tok->strings_cap) {
    size_t cap = tok->strings_cap ? tok->strings_cap * 2 : 1 << 16;
    while (cap < tok->strings_len + len + 1) cap *= 2;
    char *p = nllm_realloc(tok->strings, cap);
    if (!p) return UINT32_MAX;
    tok->strings = p;
    tok->strings_cap = cap;
  }
  uint32_t off = (uint32_t)tok->strings_len;
  if (len) memcpy(tok->strings + off, s, len);
  tok->strings[off + len] = 0;
  tok->strings_len += len + 1;
  return off;
}

nllm_status tok_set_token(nllm_tokenizer *tok, int32_t id, const char *text, size_t len,
                          float score, int type) {
  if (id < 0 || id >= tok->n_vocab)
    return nllm_err(NLLM_ERR_FORMAT, "%s: token id %d outside the vocabulary of %d", tok->name, id,
                    tok->n_vocab);
  if (len > 65536)
    return nllm_err(NLLM_ERR_FORMAT, "%s: token %d is %zu bytes long (limit 65536)", tok->name, id,
                    len);
  uint32_t off = tok_store(tok, text, len);
  if (off == UINT32_MAX)
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory storing tokens", tok->name);
  tok_entry *e = &tok->tokens[id];
  e->text_off = off;
  e->text_len = (uint32_t)len;
  e->score = score;
  e->type = (uint8_t)type;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- string maps */

static const char *map_key(const nllm_tokenizer *tok, const tok_strmap *m, int32_t id,
                           uint32_t *len) {
  const tok_entry *e = &tok->tokens[id];
  if (m->use_piece) {
    *len = e->piece_len;
    return tok->strings + e->piece_off;
  }
  *len = e->text_len;
  return tok->strings + e->text_off;
}

int32_t tok_map_find(const nllm_tokenizer *tok, const tok_strmap *m, const char *s, size_t len) {
  if (!m->slots) return -1;
  uint32_t i = (uint32_t)tok_hash(s, len) & m->mask;
  for (;;) {
    int32_t id = m->slots[i];
    if (id < 0) return -1;
    uint32_t kl;
    const char *k = map_key(tok, m, id, &kl);
    if (kl == len && memcmp(k, s, len) == 0) return id;
    i = (i + 1) & m->mask;
  }
}

/* Inserts the ids accepted by keep(); the first id wins for duplicate keys. */
static nllm_status map_build(const nllm_tokenizer *tok, tok_strmap *m, int use_piece,
                             int (*keep)(const tok_entry *)) {
  uint32_t cap = 64;
  while (cap < (uint32_t)tok->n_vocab * 2u + 2u) cap *= 2;
  m->slots = nllm_malloc((size_t)cap * sizeof *m->slots);
  if (!m->slots)
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory for the vocabulary map", tok->name);
  memset(m->slots, 0xff, (size_t)cap * sizeof *m->slots);
  m->mask = cap - 1;
  m->use_piece = use_piece;
  for (int32_t id = 0; id < tok->n_vocab; id++) {
    if (keep && !keep(&tok->tokens[id])) continue;
    uint32_t kl;
    const char *k = map_key(tok, m, id, &kl);
    if (kl == 0) continue;
    uint32_t i = (uint32_t)tok_hash(k, kl) & m->mask;
    int dup = 0;
    while (m->slots[i] >= 0) {
      uint32_t ol;
      const char *o = map_key(tok, m, m->slots[i], &ol);
      if (ol == kl && memcmp(o, k, kl) == 0) {
        dup = 1;
        break;
      }
      i = (i + 1) & m->mask;
    }
    if (!dup) m->slots[i] = id;
  }
  return NLLM_OK;
}

nllm_status tok_text_map_build(const nllm_tokenizer *tok, tok_strmap *m) {
  return map_build(tok, m, 0, NULL);
}

void tok_map_free(tok_strmap *m) {
  free(m->slots);
  m->slots = NULL;
}

/* ---------------------------------------------------------------- merges */

nllm_status tok_merges_alloc(nllm_tokenizer *tok, size_t n_merges) {
  uint32_t cap = 64;
  while (cap < n_merges * 2 + 2 && cap < (1u << 31)) cap *= 2;
  free(tok->merges);
  tok->merges = nllm_malloc((size_t)cap * sizeof *tok->merges);
  if (!tok->merges)
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory for %zu merges", tok->name, n_merges);
  for (uint32_t i = 0; i < cap; i++) tok->merges[i].key = UINT64_MAX;
  tok->merges_mask = cap - 1;
  return NLLM_OK;
}

void tok_merge_add(nllm_tokenizer *tok, const tok_strmap *text_map, int32_t a, int32_t b,
                   int32_t rank) {
  if (a < 0 || b < 0) return;
  const tok_entry *ea = &tok->tokens[a], *eb = &tok->tokens[b];
  size_t n = (size_t)ea->text_len + eb->text_len;
  char small[256];
  char *cat = n <= sizeof small ? small : nllm_malloc(n);
  if (!cat) return;
  memcpy(cat, tok->strings + ea->text_off, ea->text_len);
  memcpy(cat + ea->text_len, tok->strings + eb->text_off, eb->text_len);
  int32_t r = tok_map_find(tok, text_map, cat, n);
  if (cat != small) free(cat);
  if (r < 0) return;
  uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  uint32_t i = (uint32_t)pair_hash(key) & tok->merges_mask;
  while (tok->merges[i].key != UINT64_MAX) {
    if (tok->merges[i].key == key) return; /* the first (lowest rank) listing wins */
    i = (i + 1) & tok->merges_mask;
  }
  tok->merges[i].key = key;
  tok->merges[i].rank = rank;
  tok->merges[i].result = r;
}

/* ---------------------------------------------------------------- normalizers, pre-tokenizers */

nllm_status tok_add_norm(nllm_tokenizer *tok, int kind, const char *from, size_t from_len,
                         const char *to, size_t to_len) {
  if (tok->n_norms >= TOK_MAX_NORM)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: more than %d normalizers", tok->name, TOK_MAX_NORM);
  tok_norm *n = &tok->norms[tok->n_norms];
  memset(n, 0, sizeof *n);
  n->kind = kind;
  if (from) {
    n->from = nllm_strndup(from, from_len);
    n->from_len = from_len;
    if (!n->from) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  }
  if (to) {
    n->to = nllm_strndup(to, to_len);
    n->to_len = to_len;
    if (!n->to) {
      free(n->from);
      return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
    }
  }
  tok->n_norms++;
  return NLLM_OK;
}

nllm_status tok_add_pre_regex(nllm_tokenizer *tok, const char *pattern, int behavior, int invert) {
  if (tok->n_pres >= TOK_MAX_PRE)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", tok->name,
                    TOK_MAX_PRE);
  int errc;
  PCRE2_SIZE erroff;
  pcre2_code *re =
      pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                    PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &errc, &erroff, NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(errc, msg, sizeof msg);
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: pre-tokenizer regex '%s' does not compile at offset %zu: %s", tok->name,
                    pattern, (size_t)erroff, (const char *)msg);
  }
  char *copy = nllm_strdup(pattern);
  if (!copy) {
    pcre2_code_free(re);
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  }
  tok_pre *p = &tok->pres[tok->n_pres++];
  memset(p, 0, sizeof *p);
  p->kind = PRE_SPLIT;
  p->re = re;
  p->pattern = copy;
  p->behavior = behavior;
  p->invert = invert;
  p->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- bytes_to_unicode */

uint32_t tok_byte_to_cp(uint8_t b) {
  /* printable Latin-1 bytes stand for themselves; the other 68 are numbered from U+0100 in
   * byte order */
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
  uint32_t n = 0;
  for (uint32_t c = 0; c < b; c++)
    if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) n++;
  return 0x100 + n;
}

int tok_cp_to_byte(uint32_t cp) {
  static int16_t inv[0x144];
  static int ready;
  if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
    int16_t t[0x144];
    for (int i = 0; i < 0x144; i++) t[i] = -1;
    for (int b = 0; b < 256; b++) t[tok_byte_to_cp((uint8_t)b)] = (int16_t)b;
    memcpy(inv, t, sizeof t); /* every thread writes the same values */
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
  }
  return cp < 0x144 ? inv[cp] : -1;
}

int tok_utf8_valid_len(const char *str, size_t len) {
  const uint8_t *s = (const uint8_t *)str;
  if (len == 0) return 0;
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return len >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (len < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;
    if (c == 0xED && s[1] >= 0xA0) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (len < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;
    if (c == 0xF4 && s[1] >= 0x90) return 0;
    return 4;
  }
  return 0;
}

int tok_utf8_decode(const char *str, size_t len, uint32_t *cp) {
  const uint8_t *s = (const uint8_t *)str;
  int n = tok_utf8_valid_len(str, len);
  switch (n) {
    case 1: *cp = s[0]; return 1;
    case 2: *cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F); return 2;
    case 3:
      *cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
      return 3;
    case 4:
      *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
            ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
      return 4;
    default: *cp = 0xFFFD; return 1;
  }
}

int tok_utf8_encode(uint32_t cp, char *out) {
  uint8_t *o = (uint8_t *)out;
  if (cp < 0x80) {
    o[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (uint8_t)(0xC0 | (cp >> 6));
    o[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (uint8_t)(0xE0 | (cp >> 12));
    o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | (cp >> 18));
  o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

/* ---------------------------------------------------------------- finalize */

static int parse_byte_token(const char *s, size_t len) {
  /* "<0xNN>" */
  if (len != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* WordPiece drops the spaces between words, so decoding puts one before every token that starts
 * a word; a continuation ("##ing") joins the previous piece, and . , ? ! join it as the
 * reference decoder's cleanup does. */
static nllm_status wordpiece_piece(nllm_tokenizer *tok, int32_t id) {
  tok_entry *e = &tok->tokens[id];
  const char *t = tok->strings + e->text_off;
  size_t n = e->text_len, pl = tok->wp_prefix_len;
  int normal = e->type == TT_NORMAL || e->type == TT_UNUSED || e->type == TT_UNDEFINED;
  if (n == 0 || (normal && n == 1 && strchr(".,?!", t[0]))) {
    e->piece_off = e->text_off;
    e->piece_len = e->text_len;
    return NLLM_OK;
  }
  if (normal && pl && n > pl && memcmp(t, tok->wp_prefix, pl) == 0) {
    e->piece_off = e->text_off + (uint32_t)pl;
    e->piece_len = (uint32_t)(n - pl);
    return NLLM_OK;
  }
  char *b = nllm_malloc(n + 1);
  if (!b) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  b[0] = ' ';
  memcpy(b + 1, t, n);
  uint32_t off = tok_store(tok, b, n + 1);
  free(b);
  if (off == UINT32_MAX) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  tok->tokens[id].piece_off = off;
  tok->tokens[id].piece_len = (uint32_t)(n + 1);
  return NLLM_OK;
}

/* The bytes a token stands for: "▁" -> ' ' for SentencePiece vocabularies, GPT-2 code points
 * back to bytes for byte-level ones, <0xNN> -> the byte; control and added tokens as written. */
static nllm_status compute_piece(nllm_tokenizer *tok, int32_t id, char **scratch, size_t *scap) {
  tok_entry *e = &tok->tokens[id];
  const char *t = tok->strings + e->text_off;
  size_t n = e->text_len;
  if (tok->model == MODEL_WORDPIECE) return wordpiece_piece(tok, id);
  if (e->type == TT_BYTE) {
    int b = parse_byte_token(t, n);
    if (b >= 0) {
      char c = (char)b;
      uint32_t off = tok_store(tok, &c, 1);
      if (off == UINT32_MAX) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
      tok->tokens[id].piece_off = off;
      tok->tokens[id].piece_len = 1;
      return NLLM_OK;
    }
  }
  if (e->type != TT_NORMAL && e->type != TT_UNUSED && e->type != TT_UNDEFINED) {
    e->piece_off = e->text_off;
    e->piece_len = e->text_len;
    return NLLM_OK;
  }
  if (*scap < n + 1) {
    size_t c = n + 64;
    char *p = nllm_realloc(*scratch, c);
    if (!p) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
    *scratch = p;
    *scap = c;
  }
  char *o = *scratch;
  size_t k = 0, i = 0;
  while (i < n) {
    uint32_t cp;
    int l = tok_utf8_decode(t + i, n - i, &cp);
    if (tok->byte_level) {
      int b = tok_utf8_valid_len(t + i, n - i) ? tok_cp_to_byte(cp) : -1;
      if (b >= 0)
        o[k++] = (char)b;
      else {
        memcpy(o + k, t + i, (size_t)l);
        k += (size_t)l;
      }
    } else if (cp == 0x2581 && l == 3) {
      o[k++] = ' ';
    } else {
      memcpy(o + k, t + i, (size_t)l);
      k += (size_t)l;
    }
    i += (size_t)l;
  }
  if (k == n && memcmp(o, t, n) == 0) {
    e->piece_off = e->text_off;
    e->piece_len = e->text_len;
    return NLLM_OK;
  }
  uint32_t off = tok_store(tok, o, k);
  if (off == UINT32_MAX) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  tok->tokens[id].piece_off = off;
  tok->tokens[id].piece_len = (uint32_t)k;
  return NLLM_OK;
}

static nllm_status trie_insert(nllm_tokenizer *tok, int32_t id) {
  const tok_entry *e = &tok->tokens[id];
  if (e->text_len == 0) return NLLM_OK;
  if (tok->n_trie == 0) {
    tok->cap_trie = 256;
    tok->trie = nllm_malloc((size_t)tok->cap_trie * sizeof *tok->trie);
    if (!tok->trie) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
    tok->trie[0] = (tok_trie_node){-1, -1, -1, 0};
    tok->n_trie = 1;
  }
  int32_t node = 0;
  for (uint32_t i = 0; i < e->text_len; i++) {
    uint8_t b = (uint8_t)tok->strings[e->text_off + i];
    int32_t c = tok->trie[node].child;
    while (c >= 0 && tok->trie[c].byte != b) c = tok->trie[c].sibling;
    if (c < 0) {
      if (tok->n_trie == tok->cap_trie) {
        tok_trie_node *p = nllm_realloc(tok->trie, (size_t)tok->cap_trie * 2 * sizeof *p);
        if (!p) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
        tok->trie = p;
        tok->cap_trie *= 2;
      }
      c = tok->n_trie++;
      tok->trie[c] = (tok_trie_node){-1, tok->trie[node].child, -1, b};
      tok->trie[node].child = c;
    }
    node = c;
  }
  if (tok->trie[node].token < 0) tok->trie[node].token = id;
  tok->trie_first[(uint8_t)tok->strings[e->text_off]] = 1;
  return NLLM_OK;
}

static int keep_for_model(const tok_entry *e) {
  /* control, unknown and byte tokens come only from special parsing or byte fallback, never
   * from merging ordinary text */
  return e->type == TT_NORMAL || e->type == TT_USER || e->type == TT_UNUSED ||
         e->type == TT_UNDEFINED;
}

nllm_token tok_find_text(const nllm_tokenizer *tok, const char *s) {
  size_t n = strlen(s);
  for (int32_t id = 0; id < tok->n_vocab; id++) {
    const tok_entry *e = &tok->tokens[id];
    if (e->text_len == n && memcmp(tok->strings + e->text_off, s, n) == 0) return id;
  }
  return -1;
}

nllm_status tok_finalize(nllm_tokenizer *tok) {
  char *scratch = NULL;
  size_t scap = 0;
  nllm_status st = NLLM_OK;
  for (int32_t id = 0; id < tok->n_vocab && st == NLLM_OK; id++) {
    if (tok->byte_fallback && tok->tokens[id].type == TT_NORMAL &&
        parse_byte_token(tok_text(tok, id), tok->tokens[id].text_len) >= 0)
      tok->tokens[id].type = TT_BYTE;
    st = compute_piece(tok, id, &scratch, &scap);
  }
  free(scratch);
  if (st) return st;

  st = map_build(tok, &tok->map, tok->byte_level, keep_for_model);
  if (st) return st;

  if (tok->model == MODEL_WORDPIECE) {
    for (int32_t id = 0; id < tok->n_vocab; id++)
      if (keep_for_model(&tok->tokens[id]) && tok->tokens[id].text_len > tok->wp_max_token_len)
        tok->wp_max_token_len = tok->tokens[id].text_len;
  } else if (!tok->byte_level) {
    tok->split_metaspace = 1;
    for (int32_t id = 0; id < tok->n_vocab && tok->split_metaspace; id++) {
      const tok_entry *e = &tok->tokens[id];
      if (!keep_for_model(e)) continue;
      const char *t = tok_text(tok, id);
      for (uint32_t i = 1; i + 3 <= e->text_len; i++) {
        if (memcmp(t + i, "\xe2\x96\x81", 3) == 0 &&
            (i < 3 || memcmp(t + i - 3, "\xe2\x96\x81", 3) != 0)) {
          tok->split_metaspace = 0;
          break;
        }
      }
    }
  }

  for (int32_t id = 0; id < tok->n_vocab; id++) {
    const tok_entry *e = &tok->tokens[id];
    if (e->type == TT_BYTE) {
      int b = parse_byte_token(tok_text(tok, id), e->text_len);
      if (b >= 0 && tok->byte_token[b] < 0) tok->byte_token[b] = id;
    }
    if (e->type == TT_CONTROL || e->type == TT_USER || e->type == TT_UNKNOWN) {
      st = trie_insert(tok, id);
      if (st) return st;
    }
  }
  if (tok->byte_level) {
    for (int b = 0; b < 256; b++) {
      char c = (char)b;
      tok->byte_token[b] = tok_map_find(tok, &tok->map, &c, 1);
    }
  }
  if (tok->special[NLLM_TOKEN_NEWLINE] < 0) {
    int32_t nl = tok_map_find(tok, &tok->map, "\n", 1);
    if (nl < 0) nl = tok->byte_token['\n'];
    tok->special[NLLM_TOKEN_NEWLINE] = nl;
  }

  tok->eog = nllm_calloc((size_t)(tok->n_vocab > 0 ? tok->n_vocab : 1), 1);
  if (!tok->eog) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  static const char *const eog_texts[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>",         "<end_of_turn>",         "<|endoftext|>",
      "<|eom_id|>", "<EOT>",      "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<|EOT|>",
      "</s>",
  };
  for (int32_t id = 0; id < tok->n_vocab; id++) {
    const tok_entry *e = &tok->tokens[id];
    if (e->type != TT_CONTROL && e->type != TT_USER) continue;
    for (size_t k = 0; k < sizeof eog_texts / sizeof *eog_texts; k++) {
      size_t n = strlen(eog_texts[k]);
      if (e->text_len == n && memcmp(tok_text(tok, id), eog_texts[k], n) == 0) tok->eog[id] = 1;
    }
  }
  if (tok->special[NLLM_TOKEN_EOS] >= 0) tok->eog[tok->special[NLLM_TOKEN_EOS]] = 1;
  if (tok->special[NLLM_TOKEN_EOT] >= 0) tok->eog[tok->special[NLLM_TOKEN_EOT]] = 1;
  return NLLM_OK;
}

void nllm_tokenizer_free(nllm_tokenizer *tok) {
  if (!tok) return;
  free(tok->name);
  free(tok->tokens);
  free(tok->strings);
  tok_map_free(&tok->map);
  free(tok->merges);
  free(tok->trie);
  for (int i = 0; i < tok->n_norms; i++) {
    free(tok->norms[i].from);
    free(tok->norms[i].to);
  }
  for (int i = 0; i < tok->n_pres; i++) {
    if (tok->pres[i].re) pcre2_code_free(tok->pres[i].re);
    free(tok->pres[i].pattern);
  }
  free(tok->eog);
  free(tok->chat_template);
  free(tok);
}

int32_t nllm_tokenizer_n_vocab(const nllm_tokenizer *tok) {
  return tok->n_vocab;
}

nllm_token nllm_tokenizer_special(const nllm_tokenizer *tok, int32_t which) {
  if (which < 0 || which >= 6) return -1;
  return tok->special[which];
}

int nllm_tokenizer_is_eog(const nllm_tokenizer *tok, nllm_token id) {
  return id >= 0 && id < tok->n_vocab && tok->eog[id];
}

int nllm_tokenizer_adds_bos(const nllm_tokenizer *tok) {
  return tok->add_bos && tok->special[NLLM_TOKEN_BOS] >= 0;
}

const char *nllm_tokenizer_chat_template(const nllm_tokenizer *tok) {
  return tok->chat_template;
}
