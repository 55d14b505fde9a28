/* Ids -> text: one piece per token, a whole sequence with the leading-space rule, and the
 * streaming form that releases only complete UTF-8. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

/* The bytes token id contributes (NULL/0 for a control token when not rendering specials). */
static const char *piece_of(const nllm_tokenizer *tok, nllm_token id, int render_special,
                            uint32_t *len) {
  const tok_entry *e = &tok->tokens[id];
  if ((e->type == TT_CONTROL || e->type == TT_UNKNOWN) && !render_special) {
    *len = 0;
    return "";
  }
  *len = e->piece_len;
  return tok->strings + e->piece_off;
}

static nllm_status check_id(const nllm_tokenizer *tok, nllm_token id) {
  if (id < 0 || id >= tok->n_vocab)
    return nllm_err(NLLM_ERR_INVALID_ARG, "%s: token id %d outside the vocabulary of %d tokens",
                    tok->name, id, tok->n_vocab);
  return NLLM_OK;
}

nllm_status nllm_tok_token_to_piece(const nllm_tokenizer *tok, nllm_token id, int render_special,
                                    char *buf, int32_t cap, int32_t *n_out) {
  if (!tok || !n_out || cap < 0 || (cap > 0 && !buf))
    return nllm_err(NLLM_ERR_INVALID_ARG, "token_to_piece: NULL argument or negative capacity");
  nllm_status st = check_id(tok, id);
  if (st) return st;
  uint32_t n;
  const char *p = piece_of(tok, id, render_special, &n);
  *n_out = (int32_t)n;
  if (n > (uint32_t)cap)
    return nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "token_to_piece: piece of %u bytes, capacity %d", n,
                    cap);
  if (n) memcpy(buf, p, n); /* buf may be NULL in a size query (cap 0) */
  return NLLM_OK;
}

/* Index of the token whose piece loses its leading space, or -1: the first token, or the one
 * after a leading BOS (which the tokenizer added, not the text). */
static int32_t strip_index(const nllm_tokenizer *tok, const nllm_token *ids, int32_t n,
                           int render_special) {
  if (!tok->strip_leading_space || n == 0) return -1;
  if (tok->model == MODEL_WORDPIECE) { /* the first piece shown: specials may be hidden */
    for (int32_t i = 0; i < n; i++) {
      uint32_t l = 0;
      if (ids[i] >= 0 && ids[i] < tok->n_vocab) piece_of(tok, ids[i], render_special, &l);
      if (l > 0) return i;
    }
    return -1;
  }
  if (ids[0] == tok->special[NLLM_TOKEN_BOS]) return n > 1 ? 1 : -1;
  return 0;
}

nllm_status nllm_tok_detokenize(const nllm_tokenizer *tok, const nllm_token *ids, int32_t n,
                                int render_special, char *buf, int32_t cap, int32_t *n_out) {
  if (!tok || !n_out || cap < 0 || n < 0 || (cap > 0 && !buf) || (n > 0 && !ids))
    return nllm_err(NLLM_ERR_INVALID_ARG, "detokenize: NULL argument or negative count");
  int32_t strip = strip_index(tok, ids, n, render_special);
  uint64_t total = 0;
  for (int32_t i = 0; i < n; i++) {
    nllm_status st = check_id(tok, ids[i]);
    if (st) return st;
    uint32_t l;
    const char *p = piece_of(tok, ids[i], render_special, &l);
    if (i == strip && l > 0 && p[0] == ' ') {
      p++;
      l--;
    }
    /* l > 0 first: in a size query buf is NULL, and NULL + 0 is already undefined */
    if (l && total + l <= (uint64_t)cap) memcpy(buf + total, p, l);
    total += l;
  }
  if (total > INT32_MAX)
    return nllm_err(NLLM_ERR_INVALID_ARG, "detokenize: %llu bytes exceed an int32 count",
                    (unsigned long long)total);
  *n_out = (int32_t)total;
  if (total > (uint64_t)cap)
    return nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "detokenize: %llu bytes, capacity %d",
                    (unsigned long long)total, cap);
  if (total < (uint64_t)cap) buf[total] = 0;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- streaming */

void nllm_detokenizer_init(nllm_detokenizer *s, int render_special) {
  memset(s, 0, sizeof *s);
  s->render_special = render_special;
}

/* Length a sequence starting with lead byte c needs, 0 if c can never start one. */
static int utf8_need(uint8_t c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c < 0xE0) return 2;
  if (c >= 0xE0 && c < 0xF0) return 3;
  if (c >= 0xF0 && c < 0xF5) return 4;
  return 0;
}

/* Whether s[0..n) (n < full length) can still become a valid sequence. */
static int utf8_prefix_ok(const uint8_t *s, int n) {
  char tmp[4];
  int need = utf8_need(s[0]);
  if (!need || n >= need) return 0;
  /* complete it with the smallest continuation bytes allowed and check */
  memcpy(tmp, s, (size_t)n);
  for (int i = n; i < need; i++) tmp[i] = (char)0x80;
  if (tok_utf8_valid_len(tmp, (size_t)need) == need) return 1;
  for (int i = n; i < need; i++) tmp[i] = (char)0xBF;
  if (tok_utf8_valid_len(tmp, (size_t)need) == need) return 1;
  if (need == 3 || need == 4) { /* E0/F0 need a high second byte; try the middle */
    for (int i = n; i < need; i++) tmp[i] = (char)0xA0;
    if (tok_utf8_valid_len(tmp, (size_t)need) == need) return 1;
    for (int i = n; i < need; i++) tmp[i] = (char)0x90;
    if (tok_utf8_valid_len(tmp, (size_t)need) == need) return 1;
  }
  return 0;
}

/* Converts in[0..n) to out: valid sequences copied, impossible bytes as U+FFFD, a possible
 * unfinished tail returned through held. Returns bytes written (out may be NULL to measure). */
static size_t stream_convert(const uint8_t *in, size_t n, char *out, uint8_t *held,
                             int32_t *n_held) {
  size_t o = 0, i = 0;
  *n_held = 0;
  while (i < n) {
    int l = tok_utf8_valid_len((const char *)in + i, n - i);
    if (l > 0) {
      if (out) memcpy(out + o, in + i, (size_t)l);
      o += (size_t)l;
      i += (size_t)l;
      continue;
    }
    if (utf8_prefix_ok(in + i, (int)(n - i))) {
      memcpy(held, in + i, n - i);
      *n_held = (int32_t)(n - i);
      break;
    }
    if (out) memcpy(out + o, "\xEF\xBF\xBD", 3);
    o += 3;
    i++;
  }
  return o;
}

nllm_status nllm_detokenizer_push(const nllm_tokenizer *tok, nllm_detokenizer *s, nllm_token id,
                                  char *buf, int32_t cap, int32_t *n_out) {
  if (!tok || !s || !n_out || cap < 0 || (cap > 0 && !buf) || s->n_held < 0 || s->n_held > 3)
    return nllm_err(NLLM_ERR_INVALID_ARG, "detokenizer push: NULL argument or corrupt state");
  nllm_status st = check_id(tok, id);
  if (st) return st;
  uint32_t l;
  const char *p = piece_of(tok, id, s->render_special, &l);
  /* WordPiece: hidden specials do not count, the first piece shown loses its space */
  int is_bos = tok->model == MODEL_WORDPIECE ? l == 0 : id == tok->special[NLLM_TOKEN_BOS];
  if (tok->strip_leading_space && s->n_pushed == 0 && !is_bos && l > 0 && p[0] == ' ') {
    p++;
    l--;
  }
  size_t n = (size_t)s->n_held + l;
  uint8_t small[256];
  uint8_t *in = n <= sizeof small ? small : nllm_malloc(n);
  if (!in) return nllm_err(NLLM_ERR_NOMEM, "detokenizer push: out of memory");
  memcpy(in, s->held, (size_t)s->n_held);
  memcpy(in + s->n_held, p, l);
  uint8_t held[4];
  int32_t n_held;
  size_t need = stream_convert(in, n, NULL, held, &n_held);
  if (need > (size_t)cap) {
    if (in != small) free(in);
    *n_out = (int32_t)need;
    return nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "detokenizer push: %zu bytes, capacity %d", need,
                    cap);
  }
  stream_convert(in, n, buf, s->held, &s->n_held);
  if (in != small) free(in);
  if (!is_bos || s->n_pushed > 0) s->n_pushed++;
  *n_out = (int32_t)need;
  return NLLM_OK;
}

nllm_status nllm_detokenizer_flush(nllm_detokenizer *s, char *buf, int32_t cap, int32_t *n_out) {
  if (!s || !n_out || cap < 0 || (cap > 0 && !buf))
    return nllm_err(NLLM_ERR_INVALID_ARG, "detokenizer flush: NULL argument");
  int32_t need = s->n_held > 0 ? 3 : 0;
  *n_out = need;
  if (need > cap)
    return nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "detokenizer flush: 3 bytes, capacity %d", cap);
  if (need) memcpy(buf, "\xEF\xBF\xBD", 3);
  s->n_held = 0;
  return NLLM_OK;
}
