/* BERT's text steps and WordPiece: the BertNormalizer (clean control characters, space out CJK
 * ideographs, strip accents through NFD, lowercase), the BertPreTokenizer (whitespace and
 * punctuation) and the greedy longest-match WordPiece model, with the character classes of the
 * Hugging Face tokenizers library, whose ids the references are. Also the "phantom space"
 * spelling GGUF files give WordPiece vocabularies. */
#include <stdlib.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

/* ---------------------------------------------------------------- character classes */

/* Unicode "other" (Cc, Cf, Cs, Co, Cn) except the whitespace controls \t \n \r. */
static int bert_is_control(uint32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return 0;
  switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: return 1;
    default: return 0;
  }
}

/* The Unicode White_Space property (Rust's char::is_whitespace). */
static int bert_is_whitespace(uint32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The CJK ideograph blocks BERT spaces out. 0x2B920 (not the block start 0x2B820) is the
 * reference library's bound, kept so that the ids agree. */
static int bert_is_chinese(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ASCII punctuation (which includes symbols such as $ + < = > ^ ` | ~) or Unicode P*. */
static int bert_is_punct(uint32_t c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return 1;
    default: return 0;
  }
}

/* ---------------------------------------------------------------- normalizer */

typedef struct norm_out {
  char **buf;
  size_t *cap, n, max_len;
  int fail;
  unsigned flags;
  /* combining marks (not Mn, which are dropped) waiting for canonical ordering */
  uint32_t pend[32];
  int n_pend;
} norm_out;

static void out_cp(norm_out *o, uint32_t c) {
  if (o->fail) return;
  if (o->n + 4 > o->max_len) {
    o->fail = 2;
    return;
  }
  if (o->n + 4 > *o->cap) {
    size_t c2 = *o->cap ? *o->cap * 2 : 256;
    while (c2 < o->n + 4) c2 *= 2;
    char *p = nllm_realloc(*o->buf, c2);
    if (!p) {
      o->fail = 1;
      return;
    }
    *o->buf = p;
    *o->cap = c2;
  }
  o->n += (size_t)tok_utf8_encode(c, *o->buf + o->n);
}

/* Last step: lowercase char by char (the full mapping: U+0130 becomes two characters). */
static void out_lower(norm_out *o, uint32_t c) {
  if (o->flags & BERT_LOWERCASE) {
    if (c == 0x130) {
      out_cp(o, 'i');
      out_cp(o, 0x307);
      return;
    }
    c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
  }
  out_cp(o, c);
}

static int ccc(uint32_t c) {
  return utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

/* Canonical ordering of the pending marks: a stable sort by combining class. */
static void flush_marks(norm_out *o) {
  for (int i = 1; i < o->n_pend; i++) {
    uint32_t v = o->pend[i];
    int k = ccc(v), j = i;
    while (j > 0 && ccc(o->pend[j - 1]) > k) {
      o->pend[j] = o->pend[j - 1];
      j--;
    }
    o->pend[j] = v;
  }
  for (int i = 0; i < o->n_pend; i++) out_lower(o, o->pend[i]);
  o->n_pend = 0;
}

/* Strip accents: NFD, then nonspacing marks (Mn) dropped. Dropping Mn before the canonical
 * ordering gives the same text, since a stable sort keeps the order of what remains. */
static void out_strip(norm_out *o, uint32_t c) {
  if (!(o->flags & BERT_STRIP_ACCENTS)) {
    out_lower(o, c);
    return;
  }
  utf8proc_int32_t d[32];
  int bound = 0;
  utf8proc_ssize_t nd =
      utf8proc_decompose_char((utf8proc_int32_t)c, d, 32, UTF8PROC_DECOMPOSE, &bound);
  if (nd <= 0 || nd > 32) {
    d[0] = (utf8proc_int32_t)c;
    nd = 1;
  }
  for (utf8proc_ssize_t i = 0; i < nd; i++) {
    uint32_t x = (uint32_t)d[i];
    if (utf8proc_category(d[i]) == UTF8PROC_CATEGORY_MN) continue;
    if (ccc(x) == 0) {
      flush_marks(o);
      out_lower(o, x);
    } else {
      if (o->n_pend == (int)(sizeof o->pend / sizeof o->pend[0])) flush_marks(o);
      o->pend[o->n_pend++] = x;
    }
  }
}

size_t tok_bert_normalize(unsigned flags, const char *src, size_t n, char **dst, size_t *cap,
                          size_t max_len) {
  norm_out o = {dst, cap, 0, max_len, 0, flags, {0}, 0};
  for (size_t i = 0; i < n && !o.fail;) {
    uint32_t c = (uint8_t)src[i];
    if (c < 0x80) { /* ASCII: no decomposition, no marks, a one-byte lowercase */
      i++;
      if (flags & BERT_CLEAN) {
        if (c == '\t' || c == '\n' || c == '\r')
          c = ' ';
        else if (c < 0x20 || c == 0x7F)
          continue;
      }
      if (o.n_pend) flush_marks(&o);
      if ((flags & BERT_LOWERCASE) && c >= 'A' && c <= 'Z') c += 32;
      out_cp(&o, c);
      continue;
    }
    i += (size_t)tok_utf8_decode(src + i, n - i, &c);
    if (flags & BERT_CLEAN) {
      if (c == 0 || c == 0xFFFD || bert_is_control(c)) continue;
      if (bert_is_whitespace(c)) c = ' ';
    }
    if ((flags & BERT_CHINESE) && bert_is_chinese(c)) {
      flush_marks(&o);
      out_cp(&o, ' ');
      out_strip(&o, c);
      flush_marks(&o);
      out_cp(&o, ' ');
    } else {
      out_strip(&o, c);
    }
  }
  flush_marks(&o);
  if (o.fail) return o.fail == 2 ? SIZE_MAX - 1 : SIZE_MAX;
  if (!*dst) { /* empty result: still a valid buffer */
    char *p = nllm_malloc(1);
    if (!p) return SIZE_MAX;
    *dst = p;
    *cap = 1;
  }
  return o.n;
}

/* ---------------------------------------------------------------- pre-tokenizer */

void tok_bert_pre_split(const char *text, size_t s, size_t e, tok_word_fn emit, void *user) {
  size_t ws = s; /* start of the current word */
  for (size_t i = s; i < e;) {
    uint32_t c = (uint8_t)text[i];
    size_t l = 1;
    if (c >= 0x80) l = (size_t)tok_utf8_decode(text + i, e - i, &c);
    if (bert_is_whitespace(c)) {
      if (i > ws) emit(user, ws, i);
      ws = i + l;
    } else if (bert_is_punct(c)) {
      if (i > ws) emit(user, ws, i);
      emit(user, i, i + l);
      ws = i + l;
    }
    i += l;
  }
  if (e > ws) emit(user, ws, e);
}

/* ---------------------------------------------------------------- WordPiece */

static nllm_status unk_or_fail(const nllm_tokenizer *tok, const char *word, size_t len,
                               const char *why, int (*push)(void *, int32_t), void *user) {
  int32_t unk = tok->special[NLLM_TOKEN_UNK];
  if (unk < 0)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "%s: cannot tokenize the word '%.*s' (%s) and the vocabulary has no unknown "
                    "token",
                    tok->name, (int)(len > 60 ? 60 : len), word, why);
  if (!push(user, unk)) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  return NLLM_OK;
}

nllm_status tok_wordpiece_word(const nllm_tokenizer *tok, const char *word, size_t len,
                               char **scratch, size_t *scap, int (*push)(void *, int32_t),
                               void *user) {
  if (len == 0) return NLLM_OK;
  size_t nch = 0;
  for (size_t i = 0; i < len; nch++) {
    int l = tok_utf8_valid_len(word + i, len - i);
    i += (size_t)(l ? l : 1);
  }
  if (nch > (size_t)tok->wp_max_chars) return unk_or_fail(tok, word, len, "too long", push, user);

  /* scratch: char offsets [nch + 1], the word's ids [nch], then the prefixed candidate text */
  size_t pl = tok->wp_prefix_len;
  size_t need = (nch + 1) * sizeof(uint32_t) + nch * sizeof(int32_t) + pl + len;
  if (need > *scap) {
    char *p = nllm_realloc(*scratch, need);
    if (!p) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
    *scratch = p;
    *scap = need;
  }
  uint32_t *off = (uint32_t *)(void *)*scratch;
  int32_t *ids = (int32_t *)(void *)(off + nch + 1);
  char *key = (char *)(ids + nch);
  size_t k = 0;
  for (size_t i = 0; i < len; k++) {
    off[k] = (uint32_t)i;
    int l = tok_utf8_valid_len(word + i, len - i);
    i += (size_t)(l ? l : 1);
  }
  off[nch] = (uint32_t)len;
  memcpy(key, tok->wp_prefix, pl);

  size_t n_ids = 0, start = 0;
  while (start < nch) {
    const char *base = word + off[start];
    size_t extra = 0;
    if (start > 0) { /* a continuation: look up prefix + piece */
      memcpy(key + pl, base, len - off[start]);
      base = key;
      extra = pl;
    }
    int32_t found = -1;
    size_t end = nch;
    for (; end > start; end--) {
      size_t bl = extra + off[end] - off[start];
      if (bl > tok->wp_max_token_len) continue;
      found = tok_map_find(tok, &tok->map, base, bl);
      if (found >= 0) break;
    }
    if (found < 0) return unk_or_fail(tok, word, len, "no piece matches", push, user);
    ids[n_ids++] = found;
    start = end;
  }
  for (size_t i = 0; i < n_ids; i++)
    if (!push(user, ids[i])) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  return NLLM_OK;
}

/* ---------------------------------------------------------------- GGUF spelling */

static int is_bracketed(const char *t, size_t n) {
  return n >= 2 && t[0] == '[' && t[n - 1] == ']';
}

size_t tok_wordpiece_from_phantom(const char *t, size_t n, int type, char *out) {
  if (n >= 3 && memcmp(t, "\xe2\x96\x81", 3) == 0) {
    memcpy(out, t + 3, n - 3);
    return n - 3;
  }
  if (n == 0 || (type != TT_NORMAL && type != TT_UNDEFINED) || is_bracketed(t, n)) {
    memcpy(out, t, n);
    return n;
  }
  memcpy(out, "##", 2);
  memcpy(out + 2, t, n);
  return n + 2;
}

size_t tok_wordpiece_to_phantom(const nllm_tokenizer *tok, int32_t id, char *out) {
  const tok_entry *e = &tok->tokens[id];
  const char *t = tok_text(tok, id);
  size_t n = e->text_len, pl = tok->wp_prefix_len;
  if (n == 0 || (e->type != TT_NORMAL && e->type != TT_UNDEFINED) || is_bracketed(t, n)) {
    memcpy(out, t, n);
    return n;
  }
  if (pl && n > pl && memcmp(t, tok->wp_prefix, pl) == 0) {
    memcpy(out, t + pl, n - pl);
    return n - pl;
  }
  memcpy(out, "\xe2\x96\x81", 3);
  memcpy(out + 3, t, n);
  return n + 3;
}
