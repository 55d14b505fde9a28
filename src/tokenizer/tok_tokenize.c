/* Text -> ids: special-token partition, normalizers, pre-tokenizer splits, then the merge
 * engine on every word. All scratch memory belongs to one call (tokenize_state), so concurrent
 * calls on one tokenizer never share mutable state. */
#include <stdlib.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

typedef struct span {
  size_t s, e;
} span;

typedef struct sym {
  size_t start;
  uint32_t len;
  int32_t id, prev, next;
} sym;

/* A candidate merge of two adjacent symbols; lower prio first, then the leftmost. */
typedef struct cand {
  float prio;
  int32_t left, right;
  uint32_t size;
  int32_t result;
} cand;

typedef struct tokenize_state {
  const nllm_tokenizer *tok;
  int32_t *out;
  size_t n_out, cap_out;
  char *nbuf[2];
  size_t ncap[2];
  span *spans[2];
  size_t cap_spans[2];
  sym *syms;
  size_t cap_syms;
  cand *heap;
  size_t n_heap, cap_heap;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jstack;
  char *wp_scratch; /* WordPiece: offsets, ids and candidate text of one word */
  size_t wp_scap;
  int oom;          /* stop: out of memory, or fail says why */
  nllm_status fail; /* an error other than out of memory, its message already recorded */
  size_t norm_max;  /* limit on the normalized text of the current fragment */
} tokenize_state;

/* Records an error (message set by the caller with nllm_err) and stops the encoding. */
static void tokenize_fail(tokenize_state *st, nllm_status status) {
  if (!st->fail) st->fail = status;
  st->oom = 1;
}

/* Normalized text may grow (NFKC expands one ligature to up to 18 characters; Replace and
 * Metaspace substitute longer strings), but a normalizer that multiplies the text (a Sequence
 * of Replace steps each turning "i" into 2000 copies) would take gigabytes for a short prompt:
 * past this factor of the input (plus a constant for prepended text) encoding fails. */
#define NORM_GROWTH_MAX 64
#define NORM_SLACK 4096

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 1;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = nllm_realloc(*p, c * elem);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

static void push_id(tokenize_state *st, int32_t id) {
  if (st->n_out == st->cap_out &&
      !grow((void **)&st->out, &st->cap_out, st->n_out + 1, sizeof *st->out)) {
    st->oom = 1;
    return;
  }
  st->out[st->n_out++] = id;
}

/* ---------------------------------------------------------------- merge engine */

static void heap_push(tokenize_state *st, cand c) {
  if (!grow((void **)&st->heap, &st->cap_heap, st->n_heap + 1, sizeof *st->heap)) {
    st->oom = 1;
    return;
  }
  cand *h = st->heap;
  size_t i = st->n_heap++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p].prio < c.prio || (h[p].prio == c.prio && h[p].left < c.left)) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static cand heap_pop(tokenize_state *st) {
  cand *h = st->heap;
  cand top = h[0];
  cand last = h[--st->n_heap];
  size_t n = st->n_heap, i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const cand *best = &last;
    if (l < n && (h[l].prio < best->prio || (h[l].prio == best->prio && h[l].left < best->left))) {
      m = l;
      best = &h[l];
    }
    if (r < n && (h[r].prio < best->prio || (h[r].prio == best->prio && h[r].left < best->left)))
      m = r;
    if (m == i) break;
    h[i] = h[m];
    i = m;
  }
  if (n) h[i] = last;
  return top;
}

static const tok_merge *merge_find(const nllm_tokenizer *tok, int32_t a, int32_t b) {
  if (!tok->merges) return NULL;
  uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  uint64_t h = k;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  uint32_t i = (uint32_t)h & tok->merges_mask;
  for (;;) {
    const tok_merge *m = &tok->merges[i];
    if (m->key == k) return m;
    if (m->key == UINT64_MAX) return NULL;
    i = (i + 1) & tok->merges_mask;
  }
}

static void try_pair(tokenize_state *st, const char *text, int32_t l, int32_t r) {
  if (l < 0 || r < 0) return;
  const nllm_tokenizer *tok = st->tok;
  const sym *a = &st->syms[l], *b = &st->syms[r];
  cand c = {0, l, r, a->len + b->len, -1};
  if (tok->model == MODEL_SPM) {
    /* SentencePiece: any adjacent pair whose concatenation is a token, best score first */
    int32_t id = tok_map_find(tok, &tok->map, text + a->start, c.size);
    if (id < 0) return;
    c.prio = -tok->tokens[id].score;
    c.result = id;
  } else {
    if (a->id < 0 || b->id < 0) return;
    const tok_merge *m = merge_find(tok, a->id, b->id);
    if (!m) return;
    c.prio = (float)m->rank;
    c.result = m->result;
  }
  heap_push(st, c);
}

static void emit_fallback(tokenize_state *st, const char *p, size_t n) {
  const nllm_tokenizer *tok = st->tok;
  int32_t unk = tok->special[NLLM_TOKEN_UNK];
  int any_missing = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t b = tok->byte_token[(uint8_t)p[i]];
    if (b >= 0)
      push_id(st, b);
    else
      any_missing = 1;
  }
  if (any_missing && unk >= 0) {
    if (!(tok->fuse_unk && st->n_out > 0 && st->out[st->n_out - 1] == unk)) push_id(st, unk);
  } else if (any_missing) {
    /* Bytes that are not UTF-8 text (a stray 0xFF, a broken sequence) have no character to
     * lose: they are dropped, as the reference tokenizers do for vocabularies without them
     * (deepseek-llm and mpt lack 0xF5..0xFF). A real character dropped would make the model
     * see another prompt than the caller wrote, so that fails. */
    uint32_t cp = 0;
    int l = tok_utf8_valid_len(p, n) > 0 ? tok_utf8_decode(p, n, &cp) : 0;
    uint8_t b = (uint8_t)p[0];
    if (l <= 0 && (!tok->byte_level || b == 0xC0 || b == 0xC1 || b >= 0xF5)) return;
    if (l > 0)
      nllm_err(NLLM_ERR_INVALID_ARG,
               "%s: cannot tokenize U+%04X '%.*s': the vocabulary has no token for it, no "
               "byte-fallback tokens and no unknown token",
               tok->name, cp, l, p);
    else
      nllm_err(NLLM_ERR_INVALID_ARG,
               "%s: cannot tokenize byte 0x%02x of the text: the vocabulary has no token for it "
               "and no unknown token",
               tok->name, b);
    tokenize_fail(st, NLLM_ERR_INVALID_ARG);
  }
}

/* One pre-tokenized word: symbols are bytes (byte-level) or UTF-8 characters, merged pairwise
 * by a priority queue, O(n log n) in the word length. */
static void tokenize_word(tokenize_state *st, const char *text, size_t len) {
  const nllm_tokenizer *tok = st->tok;
  if (len == 0) return;
  if (tok->ignore_merges) {
    int32_t id = tok_map_find(tok, &tok->map, text, len);
    if (id >= 0) {
      push_id(st, id);
      return;
    }
  }
  if (!grow((void **)&st->syms, &st->cap_syms, len, sizeof *st->syms)) {
    st->oom = 1;
    return;
  }
  int32_t n = 0;
  for (size_t i = 0; i < len;) {
    sym *s = &st->syms[n];
    s->start = i;
    if (tok->byte_level) {
      s->len = 1;
      s->id = tok->byte_token[(uint8_t)text[i]];
    } else {
      int l = tok_utf8_valid_len(text + i, len - i);
      s->len = (uint32_t)(l ? l : 1);
      s->id = tok_map_find(tok, &tok->map, text + i, s->len);
    }
    s->prev = n - 1;
    s->next = n + 1;
    i += s->len;
    n++;
  }
  st->syms[n - 1].next = -1;
  st->n_heap = 0;
  for (int32_t i = 0; i + 1 < n; i++) try_pair(st, text, i, i + 1);
  while (st->n_heap > 0 && !st->oom) {
    cand c = heap_pop(st);
    sym *a = &st->syms[c.left], *b = &st->syms[c.right];
    /* stale: a side was merged away or grew since this candidate was queued */
    if (a->len == 0 || b->len == 0 || a->next != c.right || a->len + b->len != c.size) continue;
    a->len += b->len;
    a->id = c.result;
    b->len = 0;
    a->next = b->next;
    if (b->next >= 0) st->syms[b->next].prev = c.left;
    try_pair(st, text, a->prev, c.left);
    try_pair(st, text, c.left, a->next);
  }
  for (int32_t i = 0; i >= 0; i = st->syms[i].next) {
    const sym *s = &st->syms[i];
    if (s->id >= 0)
      push_id(st, s->id);
    else
      emit_fallback(st, text + s->start, s->len);
  }
}

/* ---------------------------------------------------------------- normalizers */

static int buf_reserve(tokenize_state *st, int which, size_t need) {
  if (!grow((void **)&st->nbuf[which], &st->ncap[which], need + 1, 1)) {
    st->oom = 1;
    return 0;
  }
  return 1;
}

static int is_ascii(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((uint8_t)s[i] >= 0x80) return 0;
  return 1;
}

/* Unicode normalization of the valid UTF-8 runs; invalid bytes are copied through. */
static size_t norm_unicode(tokenize_state *st, const char *src, size_t n, int dst, int options) {
  size_t k = 0;
  if (!buf_reserve(st, dst, n)) return 0;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    int l;
    while (j < n && (l = tok_utf8_valid_len(src + j, n - j)) > 0) j += (size_t)l;
    if (j > i) {
      utf8proc_uint8_t *m = NULL;
      utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)src + i,
                                        (utf8proc_ssize_t)(j - i), &m, (utf8proc_option_t)options);
      if (r < 0) { /* cannot happen on valid input; keep the text as is */
        if (!buf_reserve(st, dst, k + (j - i))) return 0;
        memcpy(st->nbuf[dst] + k, src + i, j - i);
        k += j - i;
      } else {
        if (!buf_reserve(st, dst, k + (size_t)r)) {
          free(m);
          return 0;
        }
        memcpy(st->nbuf[dst] + k, m, (size_t)r);
        k += (size_t)r;
      }
      free(m);
    }
    if (j < n) {
      if (!buf_reserve(st, dst, k + 1)) return 0;
      st->nbuf[dst][k++] = src[j];
      j++;
    }
    i = j;
  }
  return k;
}

static size_t norm_too_large(tokenize_state *st, size_t n) {
  nllm_err(NLLM_ERR_INVALID_ARG,
           "%s: the normalizer would grow the text past %zu bytes (more than %d times the "
           "input): refusing a normalizer that multiplies text",
           st->tok->name, n > st->norm_max ? n : st->norm_max, NORM_GROWTH_MAX);
  tokenize_fail(st, NLLM_ERR_INVALID_ARG);
  return 0;
}

static size_t norm_replace(tokenize_state *st, const tok_norm *nm, const char *src, size_t n,
                           int dst) {
  size_t k = 0;
  if (nm->from_len == 0) {
    if (!buf_reserve(st, dst, n)) return 0;
    memcpy(st->nbuf[dst], src, n);
    return n;
  }
  size_t worst = n;
  if (nm->to_len > nm->from_len) {
    /* exact size first, so a hostile replacement is refused before anything is allocated */
    for (size_t i = 0; i + nm->from_len <= n;) {
      if (src[i] == nm->from[0] && memcmp(src + i, nm->from, nm->from_len) == 0) {
        worst += nm->to_len - nm->from_len;
        i += nm->from_len;
        if (worst > st->norm_max) return norm_too_large(st, worst);
      } else {
        i++;
      }
    }
  }
  if (!buf_reserve(st, dst, worst)) return 0;
  char *o = st->nbuf[dst];
  for (size_t i = 0; i < n;) {
    if (src[i] == nm->from[0] && i + nm->from_len <= n &&
        memcmp(src + i, nm->from, nm->from_len) == 0) {
      memcpy(o + k, nm->to, nm->to_len);
      k += nm->to_len;
      i += nm->from_len;
    } else {
      o[k++] = src[i++];
    }
  }
  return k;
}

static size_t norm_lower(tokenize_state *st, const char *src, size_t n, int dst) {
  if (!buf_reserve(st, dst, n * 2 + 4)) return 0;
  char *o = st->nbuf[dst];
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    int vl = tok_utf8_valid_len(src + i, n - i);
    if (!vl) {
      o[k++] = src[i++];
      continue;
    }
    uint32_t cp;
    tok_utf8_decode(src + i, n - i, &cp);
    utf8proc_int32_t lc = utf8proc_tolower((utf8proc_int32_t)cp);
    char tmp[4];
    int el = tok_utf8_encode((uint32_t)lc, tmp);
    if (k + (size_t)el > n * 2 + 4) break;
    memcpy(o + k, tmp, (size_t)el);
    k += (size_t)el;
    i += (size_t)vl;
  }
  return k;
}

/* Drops nonspacing marks (Mn); invalid bytes are copied through. */
static size_t norm_strip_accents(tokenize_state *st, const char *src, size_t n, int dst) {
  if (!buf_reserve(st, dst, n)) return 0;
  char *o = st->nbuf[dst];
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    int vl = tok_utf8_valid_len(src + i, n - i);
    if (!vl) {
      o[k++] = src[i++];
      continue;
    }
    uint32_t cp;
    tok_utf8_decode(src + i, n - i, &cp);
    if (utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_MN) {
      memcpy(o + k, src + i, (size_t)vl);
      k += (size_t)vl;
    }
    i += (size_t)vl;
  }
  return k;
}

static size_t norm_bert(tokenize_state *st, const tok_norm *nm, const char *src, size_t n,
                        int dst) {
  if (!buf_reserve(st, dst, n)) return 0;
  size_t r = tok_bert_normalize(nm->flags, src, n, &st->nbuf[dst], &st->ncap[dst], st->norm_max);
  if (r == SIZE_MAX - 1) return norm_too_large(st, st->norm_max);
  if (r == SIZE_MAX) {
    st->oom = 1;
    return 0;
  }
  return r;
}

/* Runs the normalizer chain; returns the text to pre-tokenize (maybe the input itself). */
static const char *normalize(tokenize_state *st, const char *text, size_t len, size_t *out_len) {
  const nllm_tokenizer *tok = st->tok;
  const char *cur = text;
  size_t n = len;
  int dst = 0;
  for (int k = 0; k < tok->n_norms && !st->oom; k++) {
    const tok_norm *nm = &tok->norms[k];
    size_t r = 0;
    switch (nm->kind) {
      case NORM_NFC:
      case NORM_NFKC:
        if (is_ascii(cur, n)) continue; /* ASCII is already in every normal form */
        r = norm_unicode(
            st, cur, n, dst,
            UTF8PROC_STABLE | UTF8PROC_COMPOSE | (nm->kind == NORM_NFKC ? UTF8PROC_COMPAT : 0));
        break;
      case NORM_REPLACE: r = norm_replace(st, nm, cur, n, dst); break;
      case NORM_PREPEND:
        if (n == 0) continue;
        if (!buf_reserve(st, dst, n + nm->to_len)) break;
        memcpy(st->nbuf[dst], nm->to, nm->to_len);
        memcpy(st->nbuf[dst] + nm->to_len, cur, n);
        r = n + nm->to_len;
        break;
      case NORM_LOWERCASE: r = norm_lower(st, cur, n, dst); break;
      case NORM_NFD:
        if (is_ascii(cur, n)) continue;
        r = norm_unicode(st, cur, n, dst, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
        break;
      case NORM_STRIP_ACCENTS:
        if (is_ascii(cur, n)) continue;
        r = norm_strip_accents(st, cur, n, dst);
        break;
      case NORM_BERT: r = norm_bert(st, nm, cur, n, dst); break;
      default: continue;
    }
    if (st->oom) break;
    if (r > st->norm_max) {
      norm_too_large(st, r);
      break;
    }
    cur = st->nbuf[dst];
    n = r;
    dst ^= 1;
  }
  *out_len = n;
  return cur;
}

/* ---------------------------------------------------------------- pre-tokenizer */

static int add_span(tokenize_state *st, int which, size_t *n, size_t s, size_t e) {
  if (e <= s) return 1;
  if (!grow((void **)&st->spans[which], &st->cap_spans[which], *n + 1, sizeof(span))) {
    st->oom = 1;
    return 0;
  }
  st->spans[which][(*n)++] = (span){s, e};
  return 1;
}

/* Receives the pieces of one regex split in order (delimiters = the regex matches, or the gaps
 * when inverted) and turns them into spans according to the split behaviour. */
typedef struct split_out {
  tokenize_state *st;
  int dst, behavior, prev_delim, has_carry;
  size_t *n, run_start, carry_s, carry_e;
} split_out;

static void split_piece(split_out *o, size_t s, size_t e, int delim) {
  if (e <= s) return;
  tokenize_state *st = o->st;
  span *last = *o->n > o->run_start ? &st->spans[o->dst][*o->n - 1] : NULL;
  switch (o->behavior) {
    case SPLIT_REMOVED:
      if (!delim) add_span(st, o->dst, o->n, s, e);
      break;
    case SPLIT_MERGE_PREV:
      if (delim && last && last->e == s)
        last->e = e;
      else
        add_span(st, o->dst, o->n, s, e);
      break;
    case SPLIT_MERGE_NEXT:
      if (o->has_carry) {
        if (delim) {
          add_span(st, o->dst, o->n, o->carry_s, o->carry_e);
          o->carry_s = s;
          o->carry_e = e;
        } else {
          add_span(st, o->dst, o->n, o->carry_s, e);
          o->has_carry = 0;
        }
      } else if (delim) {
        o->has_carry = 1;
        o->carry_s = s;
        o->carry_e = e;
      } else {
        add_span(st, o->dst, o->n, s, e);
      }
      break;
    case SPLIT_CONTIGUOUS:
      if (delim && o->prev_delim && last && last->e == s)
        last->e = e;
      else
        add_span(st, o->dst, o->n, s, e);
      break;
    default: add_span(st, o->dst, o->n, s, e); break;
  }
  o->prev_delim = delim;
}

/* Splits text[s, e) (valid UTF-8) by one regex into spans[dst]. */
static void split_run(tokenize_state *st, const tok_pre *p, const char *text, size_t s, size_t e,
                      int dst, size_t *n) {
  const uint8_t *subj = (const uint8_t *)text + s;
  size_t len = e - s, off = 0, prev = 0;
  split_out o = {st, dst, p->behavior, 0, 0, n, *n, 0, 0};
  int md = !p->invert; /* is a regex match a delimiter? */
  while (off <= len) {
    int rc = p->jit ? pcre2_jit_match(p->re, subj, len, off, 0, st->md, st->mctx)
                    : pcre2_match(p->re, subj, len, off, PCRE2_NO_UTF_CHECK, st->md, st->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      /* a match or depth limit, JIT stack exhaustion: ending the split here would silently
       * tokenize the rest of the text as one word */
      PCRE2_UCHAR msg[128];
      if (pcre2_get_error_message(rc, msg, sizeof msg) < 0) strcpy((char *)msg, "unknown error");
      nllm_err(NLLM_ERR_INVALID_ARG,
               "%s: pre-tokenizer regex failed at byte %zu of a %zu-byte piece: PCRE2 error %d "
               "(%s)",
               st->tok->name, off, len, rc, (const char *)msg);
      tokenize_fail(st, NLLM_ERR_INVALID_ARG);
      break;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
    size_t ms = ov[0], me = ov[1];
    if (me <= ms) { /* empty match: step one character */
      if (ms >= len) break;
      int l = tok_utf8_valid_len((const char *)subj + ms, len - ms);
      off = ms + (size_t)(l ? l : 1);
      continue;
    }
    split_piece(&o, s + prev, s + ms, !md);
    split_piece(&o, s + ms, s + me, md);
    prev = off = me;
  }
  split_piece(&o, s + prev, e, !md);
  if (o.has_carry) add_span(st, dst, n, o.carry_s, o.carry_e);
}

/* Applies one split step to every span; invalid UTF-8 bytes become one-byte spans of their own
 * (the regex engine only sees valid text). */
static void split_spans(tokenize_state *st, const tok_pre *p, const char *text, int src,
                        size_t n_src, int dst, size_t *n_dst) {
  *n_dst = 0;
  for (size_t k = 0; k < n_src && !st->oom; k++) {
    span sp = st->spans[src][k];
    size_t i = sp.s;
    while (i < sp.e) {
      size_t j = i;
      int l;
      while (j < sp.e && (l = tok_utf8_valid_len(text + j, sp.e - j)) > 0) j += (size_t)l;
      if (j > i) split_run(st, p, text, i, j, dst, n_dst);
      if (j < sp.e) {
        add_span(st, dst, n_dst, j, j + 1);
        j++;
      }
      i = j;
    }
  }
}

typedef struct bert_words {
  tokenize_state *st;
  int dst;
  size_t n;
} bert_words;

static void bert_word(void *user, size_t s, size_t e) {
  bert_words *w = user;
  add_span(w->st, w->dst, &w->n, s, e);
}

static int push_cb(void *user, int32_t id) {
  tokenize_state *st = user;
  push_id(st, id);
  return !st->oom;
}

static void tokenize_fragment(tokenize_state *st, const char *text, size_t len, int first) {
  const nllm_tokenizer *tok = st->tok;
  size_t n;
  st->norm_max = len > (SIZE_MAX - NORM_SLACK) / NORM_GROWTH_MAX
                     ? SIZE_MAX
                     : len * NORM_GROWTH_MAX + NORM_SLACK;
  const char *norm = normalize(st, text, len, &n);
  if (st->oom || n == 0) return;

  /* text transforms of the pre-tokenizer (they come first in every known configuration) */
  char *own = NULL;
  for (int k = 0; k < tok->n_pres; k++) {
    const tok_pre *p = &tok->pres[k];
    if (p->kind == PRE_ADD_PREFIX_SPACE && norm[0] != ' ') {
      char *b = nllm_malloc(n + 1);
      if (!b) {
        st->oom = 1;
        free(own);
        return;
      }
      b[0] = ' ';
      memcpy(b + 1, norm, n);
      free(own);
      own = b;
      norm = b;
      n++;
    } else if (p->kind == PRE_METASPACE) {
      size_t cnt = 0;
      for (size_t i = 0; i < n; i++) cnt += norm[i] == ' ';
      size_t cap = n + cnt * (size_t)p->repl_len + (size_t)p->repl_len;
      if (cap > st->norm_max) {
        norm_too_large(st, cap);
        free(own);
        return;
      }
      char *b = nllm_malloc(cap + 1);
      if (!b) {
        st->oom = 1;
        free(own);
        return;
      }
      size_t o = 0;
      int starts = n >= (size_t)p->repl_len && memcmp(norm, p->repl, (size_t)p->repl_len) == 0;
      if ((p->prepend_scheme == PREPEND_ALWAYS || (p->prepend_scheme == PREPEND_FIRST && first)) &&
          !starts && norm[0] != ' ') {
        memcpy(b, p->repl, (size_t)p->repl_len);
        o = (size_t)p->repl_len;
      }
      for (size_t i = 0; i < n; i++) {
        if (norm[i] == ' ') {
          memcpy(b + o, p->repl, (size_t)p->repl_len);
          o += (size_t)p->repl_len;
        } else {
          b[o++] = norm[i];
        }
      }
      free(own);
      own = b;
      norm = b;
      n = o;
    }
  }

  size_t n_sp = 0;
  int cur = 0;
  add_span(st, cur, &n_sp, 0, n);
  for (int k = 0; k < tok->n_pres && !st->oom; k++) {
    const tok_pre *p = &tok->pres[k];
    if (p->kind == PRE_SPLIT) {
      size_t nn;
      split_spans(st, p, norm, cur, n_sp, cur ^ 1, &nn);
      cur ^= 1;
      n_sp = nn;
    } else if (p->kind == PRE_BERT) {
      bert_words bw = {st, cur ^ 1, 0};
      for (size_t q = 0; q < n_sp && !st->oom; q++)
        tok_bert_pre_split(norm, st->spans[cur][q].s, st->spans[cur][q].e, bert_word, &bw);
      cur ^= 1;
      n_sp = bw.n;
    } else if (p->kind == PRE_METASPACE && p->split) {
      /* each word starts at a replacement character */
      size_t nn = 0;
      for (size_t q = 0; q < n_sp; q++) {
        span sp = st->spans[cur][q];
        size_t ws = sp.s;
        for (size_t i = sp.s + 1; i + (size_t)p->repl_len <= sp.e; i++) {
          if (memcmp(norm + i, p->repl, (size_t)p->repl_len) == 0) {
            add_span(st, cur ^ 1, &nn, ws, i);
            ws = i;
          }
        }
        add_span(st, cur ^ 1, &nn, ws, sp.e);
      }
      cur ^= 1;
      n_sp = nn;
    }
  }
  for (size_t q = 0; q < n_sp && !st->oom; q++) {
    span sp = st->spans[cur][q];
    if (tok->model == MODEL_WORDPIECE) {
      nllm_status ws = tok_wordpiece_word(tok, norm + sp.s, sp.e - sp.s, &st->wp_scratch,
                                          &st->wp_scap, push_cb, st);
      if (ws == NLLM_ERR_NOMEM)
        st->oom = 1;
      else if (ws)
        tokenize_fail(st, ws);
      continue;
    }
    if (!tok->split_metaspace) {
      tokenize_word(st, norm + sp.s, sp.e - sp.s);
      continue;
    }
    size_t ws = sp.s;
    for (size_t i = sp.s + 1; i + 3 <= sp.e; i++) {
      if ((uint8_t)norm[i] == 0xE2 && memcmp(norm + i, "\xe2\x96\x81", 3) == 0 &&
          (i < sp.s + 3 || memcmp(norm + i - 3, "\xe2\x96\x81", 3) != 0)) {
        tokenize_word(st, norm + ws, i - ws);
        ws = i;
      }
    }
    tokenize_word(st, norm + ws, sp.e - ws);
  }
  free(own);
}

/* ---------------------------------------------------------------- special tokens */

static int allowed_token(const nllm_tokenizer *tok, int32_t id, int parse_special) {
  int t = tok->tokens[id].type;
  if (t == TT_USER) return 1;
  return parse_special && (t == TT_CONTROL || t == TT_UNKNOWN);
}

/* Longest allowed trie token starting at text[i]; returns its id and end, or -1. */
static int32_t match_token(const nllm_tokenizer *tok, const char *text, size_t len, size_t i,
                           int parse_special, size_t *end) {
  int32_t node = 0, best = -1;
  for (size_t j = i; j < len; j++) {
    int32_t c = tok->trie[node].child;
    uint8_t b = (uint8_t)text[j];
    while (c >= 0 && tok->trie[c].byte != b) c = tok->trie[c].sibling;
    if (c < 0) break;
    node = c;
    int32_t t = tok->trie[node].token;
    if (t >= 0 && allowed_token(tok, t, parse_special)) {
      best = t;
      *end = j + 1;
    }
  }
  return best;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

nllm_status nllm_tok_tokenize(const nllm_tokenizer *tok, const char *text, size_t len, int add_bos,
                              int parse_special, nllm_token *out, int32_t cap, int32_t *n_out) {
  if (!tok || (!text && len) || !n_out || (cap > 0 && !out) || cap < 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "tokenize: NULL argument or negative capacity");
  tokenize_state st;
  memset(&st, 0, sizeof st);
  st.tok = tok;
  int has_regex = 0;
  for (int k = 0; k < tok->n_pres; k++) has_regex |= tok->pres[k].kind == PRE_SPLIT;
  if (has_regex) {
    st.md = pcre2_match_data_create(4, NULL);
    st.mctx = pcre2_match_context_create(NULL);
    st.jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!st.md || !st.mctx || !st.jstack)
      st.oom = 1;
    else
      pcre2_jit_stack_assign(st.mctx, NULL, st.jstack);
  }
  if (tok->model == MODEL_WORDPIECE) {
    /* BERT's steps are defined on characters: a byte that is not UTF-8 has no meaning there
     * (the reference library only accepts Unicode strings) */
    for (size_t i = 0; i < len && !st.fail;) {
      if ((uint8_t)text[i] < 0x80) {
        i++;
        continue;
      }
      int l = tok_utf8_valid_len(text + i, len - i);
      if (!l) {
        nllm_err(NLLM_ERR_INVALID_ARG,
                 "%s: the text is not valid UTF-8 (byte 0x%02x at offset %zu); a WordPiece "
                 "tokenizer needs Unicode text",
                 tok->name, (unsigned)(uint8_t)text[i], i);
        tokenize_fail(&st, NLLM_ERR_INVALID_ARG);
      }
      i += (size_t)(l ? l : 1);
    }
  }
  if (add_bos && tok->add_bos && tok->special[NLLM_TOKEN_BOS] >= 0)
    push_id(&st, tok->special[NLLM_TOKEN_BOS]);

  size_t frag = 0, i = 0;
  int first = 1;
  while (i < len && tok->n_trie > 0 && !st.oom) {
    size_t end = 0;
    int32_t id = tok->trie_first[(uint8_t)text[i]]
                     ? match_token(tok, text, len, i, parse_special, &end)
                     : -1;
    if (id < 0) {
      i++;
      continue;
    }
    size_t fe = i;
    if (tok->tokens[id].flags & TF_LSTRIP)
      while (fe > frag && is_space(text[fe - 1])) fe--;
    if (fe > frag) tokenize_fragment(&st, text + frag, fe - frag, first);
    push_id(&st, id);
    first = 0;
    if (tok->tokens[id].flags & TF_RSTRIP)
      while (end < len && is_space(text[end])) end++;
    frag = i = end;
  }
  if (frag < len && !st.oom) tokenize_fragment(&st, text + frag, len - frag, first);

  if (add_bos && tok->add_eos && tok->special[NLLM_TOKEN_EOS] >= 0)
    push_id(&st, tok->special[NLLM_TOKEN_EOS]);

  nllm_status rc = NLLM_OK;
  if (st.fail) {
    rc = st.fail;
  } else if (st.oom) {
    rc = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory tokenizing %zu bytes", tok->name, len);
  } else if (st.n_out > INT32_MAX) {
    rc = nllm_err(NLLM_ERR_INVALID_ARG, "%s: %zu tokens do not fit an int32 count", tok->name,
                  st.n_out);
  } else {
    *n_out = (int32_t)st.n_out;
    if (st.n_out > (size_t)cap)
      rc = nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "tokenize: %zu tokens, capacity %d", st.n_out, cap);
    else if (st.n_out)
      memcpy(out, st.out, st.n_out * sizeof *out);
  }
  free(st.out);
  free(st.nbuf[0]);
  free(st.nbuf[1]);
  free(st.spans[0]);
  free(st.spans[1]);
  free(st.syms);
  free(st.heap);
  free(st.wp_scratch);
  if (st.md) pcre2_match_data_free(st.md);
  if (st.mctx) pcre2_match_context_free(st.mctx);
  if (st.jstack) pcre2_jit_stack_free(st.jstack);
  return rc;
}
