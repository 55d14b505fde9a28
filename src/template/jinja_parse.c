/* Lexer and parser of the Jinja2 subset: template text -> AST in the render's arena.
 *
 * Whitespace follows Jinja2 as Hugging Face configures it (trim_blocks and lstrip_blocks on,
 * keep_trailing_newline off): a block or comment tag eats one newline after it, spaces and tabs
 * before a block or comment tag that starts its line are dropped, '-' inside a delimiter strips
 * all whitespace on that side, '+' turns lstrip off for one tag. Expression precedence is
 * Jinja2's: filters and tests bind tighter than unary minus's operand, then ** * / // %, ~,
 * + -, comparisons, not, and, or, and the conditional expression.
 *
 * Kid layouts by node kind: IF cond, body, else; FOR target, iter, body, else, filter; SET
 * target, value; SET_BLOCK target, body; MACRO body (params in kwn/kwv); CALL_BLOCK call, body
 * (caller params in kwn/kwv); FILTER_BLOCK body, filters...; ATTR obj (name in s); ITEM obj,
 * key; SLICE obj, start, stop, step; CALL fn, args...; FILTER and TEST operand, args...;
 * COND then, cond, else; DICT k0, v0, k1, v1...; COMPARE e0, e1... (operators in kwn). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "template/jinja.h"

typedef enum {
  T_DATA,
  T_VAR_BEGIN,
  T_VAR_END,
  T_BLOCK_BEGIN,
  T_BLOCK_END,
  T_NAME,
  T_STRING,
  T_INT,
  T_FLOAT,
  T_OP,
  T_EOF
} tkind;

typedef struct {
  tkind k;
  int line, col;
  const char *s;
  size_t n;
  int64_t i;
  double f;
} tok;

typedef struct {
  jctx *c;
  const char *src;
  size_t n;
  tok *t;
  size_t nt, cap, pos;
  int depth;
  size_t lc_off; /* line_col's cursor: tokens come in source order, so counting resumes here */
  int lc_line, lc_col;
} P;

#define MAX_PARSE_DEPTH 200

/* ---------------------------------------------------------------- lexer */

static void line_col(P *p, size_t off, int *line, int *col) {
  if (off < p->lc_off) p->lc_off = 0, p->lc_line = 1, p->lc_col = 1; /* an earlier offset */
  for (size_t i = p->lc_off; i < off; i++) {
    if (p->src[i] == '\n') {
      p->lc_line++;
      p->lc_col = 1;
    } else if (((unsigned char)p->src[i] & 0xC0) != 0x80)
      p->lc_col++;
  }
  p->lc_off = off;
  *line = p->lc_line;
  *col = p->lc_col;
}

static tok *push_tok(P *p, tkind k, size_t off) {
  if (p->nt == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 256;
    tok *q = jalloc(p->c, cap * sizeof *q);
    if (p->nt) memcpy(q, p->t, p->nt * sizeof *q);
    p->t = q;
    p->cap = cap;
  }
  tok *t = &p->t[p->nt++];
  memset(t, 0, sizeof *t);
  t->k = k;
  line_col(p, off, &t->line, &t->col);
  return t;
}

_Noreturn static void lex_fail(P *p, size_t off, const char *what) {
  int l, c;
  line_col(p, off, &l, &c);
  jfail(p->c, NLLM_ERR_FORMAT, l, c, "%s", what);
}

static int is_ws(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static int is_name0(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int is_digit(char ch) {
  return ch >= '0' && ch <= '9';
}

static void put_cp(jctx *c, jbuf *b, uint32_t cp) {
  char t[4];
  size_t n;
  if (cp < 0x80)
    t[0] = (char)cp, n = 1;
  else if (cp < 0x800)
    t[0] = (char)(0xC0 | (cp >> 6)), t[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000)
    t[0] = (char)(0xE0 | (cp >> 12)), t[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
    t[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  else
    t[0] = (char)(0xF0 | (cp >> 18)), t[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
    t[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), t[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  jb_put(c, b, t, n);
}

/* A quoted literal with Python's escapes; returns the offset after the closing quote. */
static size_t lex_string(P *p, size_t i, tok *t) {
  char q = p->src[i];
  size_t st = i++;
  jbuf b = {0};
  while (i < p->n && p->src[i] != q) {
    char ch = p->src[i];
    if (ch != '\\') {
      jb_putc(p->c, &b, ch);
      i++;
      continue;
    }
    if (i + 1 >= p->n) break;
    char e = p->src[i + 1];
    i += 2;
    uint32_t cp = 0;
    int nhex = 0;
    switch (e) {
      case 'n': jb_putc(p->c, &b, '\n'); break;
      case 't': jb_putc(p->c, &b, '\t'); break;
      case 'r': jb_putc(p->c, &b, '\r'); break;
      case '\\': jb_putc(p->c, &b, '\\'); break;
      case '\'': jb_putc(p->c, &b, '\''); break;
      case '"': jb_putc(p->c, &b, '"'); break;
      case 'a': jb_putc(p->c, &b, '\a'); break;
      case 'b': jb_putc(p->c, &b, '\b'); break;
      case 'f': jb_putc(p->c, &b, '\f'); break;
      case 'v': jb_putc(p->c, &b, '\v'); break;
      case '\n': break;
      case 'x': nhex = 2; break;
      case 'u': nhex = 4; break;
      case 'U': nhex = 8; break;
      default:
        if (e >= '0' && e <= '7') {
          cp = (uint32_t)(e - '0');
          for (int k = 0; k < 2 && i < p->n && p->src[i] >= '0' && p->src[i] <= '7'; k++)
            cp = cp * 8 + (uint32_t)(p->src[i++] - '0');
          put_cp(p->c, &b, cp);
        } else {
          jb_putc(p->c, &b, '\\');
          jb_putc(p->c, &b, e);
        }
    }
    if (nhex) {
      for (int k = 0; k < nhex; k++, i++) {
        char h = i < p->n ? p->src[i] : 0;
        int d = is_digit(h)              ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                         : -1;
        if (d < 0) lex_fail(p, i, "truncated \\x, \\u or \\U escape in a string");
        cp = cp * 16 + (uint32_t)d;
      }
      if (cp > 0x10FFFF) lex_fail(p, i, "escape beyond U+10FFFF");
      put_cp(p->c, &b, cp);
    }
  }
  if (i >= p->n) lex_fail(p, st, "unterminated string");
  t->s = b.p ? b.p : "";
  t->n = b.n;
  return i + 1;
}

/* Tokens of one tag up to its closing delimiter; returns the offset after the delimiter and
 * whether it asked to strip the whitespace after it. */
static size_t lex_tag(P *p, size_t i, int is_block, int *strip_after) {
  const char *end = is_block ? "%}" : "}}";
  int brackets = 0;
  for (;;) {
    while (i < p->n && is_ws(p->src[i])) i++;
    if (i >= p->n) lex_fail(p, i, is_block ? "missing '%}'" : "missing '}}'");
    const char *s = p->src + i;
    if (brackets == 0 || is_block) {
      if (s[0] == '-' && i + 2 < p->n && s[1] == end[0] && s[2] == end[1]) {
        push_tok(p, is_block ? T_BLOCK_END : T_VAR_END, i);
        *strip_after = 1;
        return i + 3;
      }
      if (i + 1 < p->n && s[0] == end[0] && s[1] == end[1]) {
        push_tok(p, is_block ? T_BLOCK_END : T_VAR_END, i);
        *strip_after = 0;
        return i + 2;
      }
    }
    if (is_name0(s[0])) {
      size_t st = i;
      while (i < p->n && (is_name0(p->src[i]) || is_digit(p->src[i]))) i++;
      tok *t = push_tok(p, T_NAME, st);
      t->s = p->src + st;
      t->n = i - st;
    } else if (is_digit(s[0])) {
      size_t st = i;
      int is_f = 0;
      while (i < p->n && (is_digit(p->src[i]) || p->src[i] == '_')) i++;
      if (i + 1 < p->n && p->src[i] == '.' && is_digit(p->src[i + 1])) {
        is_f = 1;
        i++;
        while (i < p->n && (is_digit(p->src[i]) || p->src[i] == '_')) i++;
      }
      if (i < p->n && (p->src[i] == 'e' || p->src[i] == 'E')) {
        size_t k = i + 1;
        if (k < p->n && (p->src[k] == '+' || p->src[k] == '-')) k++;
        if (k < p->n && is_digit(p->src[k])) {
          is_f = 1;
          i = k;
          while (i < p->n && is_digit(p->src[i])) i++;
        }
      }
      char tmp[64];
      size_t len = 0;
      for (size_t k = st; k < i && len < sizeof tmp - 1; k++)
        if (p->src[k] != '_') tmp[len++] = p->src[k];
      tmp[len] = 0;
      tok *t = push_tok(p, is_f ? T_FLOAT : T_INT, st);
      if (is_f)
        t->f = strtod(tmp, NULL);
      else {
        errno = 0;
        t->i = strtoll(tmp, NULL, 10);
        if (errno) lex_fail(p, st, "integer literal too large");
      }
    } else if (s[0] == '\'' || s[0] == '"') {
      tok *t = push_tok(p, T_STRING, i);
      i = lex_string(p, i, t);
    } else {
      static const char *ops2[] = {"**", "//", "==", "!=", "<=", ">="};
      size_t len = 0;
      for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
        if (i + 1 < p->n && s[0] == ops2[k][0] && s[1] == ops2[k][1]) len = 2;
      if (!len) {
        if (!strchr("+-*/%~()[]{},.:|=<>", s[0]) || !s[0]) {
          char m[64];
          snprintf(m, sizeof m, "unexpected character '%c' in a tag", s[0]);
          lex_fail(p, i, m);
        }
        len = 1;
        if (s[0] == '(' || s[0] == '[' || s[0] == '{') brackets++;
        if ((s[0] == ')' || s[0] == ']' || s[0] == '}') && brackets > 0) brackets--;
      }
      tok *t = push_tok(p, T_OP, i);
      t->s = s;
      t->n = len;
      i += len;
    }
  }
}

static void lex(P *p) {
  size_t i = 0;
  int line_starting = 1;
  while (i < p->n) {
    /* data up to the next tag start */
    size_t st = i, tag = i;
    while (tag < p->n &&
           !(p->src[tag] == '{' && tag + 1 < p->n &&
             (p->src[tag + 1] == '{' || p->src[tag + 1] == '%' || p->src[tag + 1] == '#')))
      tag++;
    size_t dend = tag;
    if (tag < p->n) {
      char kind = p->src[tag + 1], mod = tag + 2 < p->n ? p->src[tag + 2] : 0;
      if (mod == '-') {
        while (dend > st && is_ws(p->src[dend - 1])) dend--;
      } else if (mod != '+' && kind != '{') {
        /* lstrip_blocks: only spaces and tabs between the line start and the tag */
        size_t l = dend;
        while (l > st && (p->src[l - 1] == ' ' || p->src[l - 1] == '\t')) l--;
        if ((l > st && p->src[l - 1] == '\n') || (l == st && line_starting)) dend = l;
      }
    }
    if (dend > st) {
      tok *t = push_tok(p, T_DATA, st);
      t->s = p->src + st;
      t->n = dend - st;
    }
    if (tag >= p->n) break;
    char kind = p->src[tag + 1];
    i = tag + 2;
    if (i < p->n && (p->src[i] == '-' || p->src[i] == '+')) i++;
    int strip_after = 0;
    if (kind == '#') {
      const char *e = NULL;
      for (size_t k = i; k + 1 < p->n; k++)
        if (p->src[k] == '#' && p->src[k + 1] == '}') {
          e = p->src + k;
          break;
        }
      if (!e) lex_fail(p, tag, "unterminated comment");
      strip_after = e > p->src + i && e[-1] == '-';
      i = (size_t)(e - p->src) + 2;
    } else {
      push_tok(p, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, tag);
      i = lex_tag(p, i, kind == '%', &strip_after);
    }
    if (strip_after) {
      while (i < p->n && is_ws(p->src[i])) i++;
    } else if (kind != '{' && i < p->n && p->src[i] == '\n') {
      i++; /* trim_blocks */
    }
    line_starting = i > 0 && p->src[i - 1] == '\n';
  }
  push_tok(p, T_EOF, p->n);
}

/* ---------------------------------------------------------------- parser helpers */

static tok *cur(P *p) {
  return &p->t[p->pos];
}

static tok *peek_at(P *p, size_t k) {
  size_t i = p->pos + k;
  return &p->t[i < p->nt ? i : p->nt - 1];
}

static int is_op(tok *t, const char *op) {
  return t->k == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}

static int is_name(tok *t, const char *w) {
  return t->k == T_NAME && t->n == strlen(w) && memcmp(t->s, w, t->n) == 0;
}

static const char *tok_desc(tok *t, char *buf, size_t cap) {
  switch (t->k) {
    case T_EOF: return "end of template";
    case T_DATA: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    case T_INT:
    case T_FLOAT: return "a number";
    default: snprintf(buf, cap, "'%.*s'", (int)(t->n < 40 ? t->n : 40), t->s); return buf;
  }
}

_Noreturn static void perr(P *p, tok *t, const char *fmt, const char *arg) {
  char d[64], m[200];
  snprintf(m, sizeof m, fmt, arg ? arg : tok_desc(t, d, sizeof d));
  jfail(p->c, NLLM_ERR_FORMAT, t->line, t->col, "%s", m);
}

static void expect_op(P *p, const char *op) {
  if (!is_op(cur(p), op)) {
    char m[64];
    snprintf(m, sizeof m, "expected '%s', found %%s", op);
    perr(p, cur(p), m, NULL);
  }
  p->pos++;
}

static tok *expect_name(P *p) {
  if (cur(p)->k != T_NAME) perr(p, cur(p), "expected a name, found %s", NULL);
  return &p->t[p->pos++];
}

static void expect_block_end(P *p) {
  if (cur(p)->k != T_BLOCK_END) perr(p, cur(p), "expected '%%}', found %s", NULL);
  p->pos++;
}

static jnode *mk(P *p, jnode_kind k, tok *at) {
  jnode *n = jalloc(p->c, sizeof *n);
  n->k = k;
  n->line = at->line;
  n->col = at->col;
  return n;
}

/* Arrays grow when their count reaches a power of two, so no capacity field is needed. */
static void add_kid(P *p, jnode *n, jnode *kid) {
  if (n->nkids == 0 || (n->nkids & (n->nkids - 1)) == 0) {
    int cap = n->nkids ? n->nkids * 2 : 1;
    jnode **q = jalloc(p->c, (size_t)cap * sizeof *q);
    if (n->nkids) memcpy(q, n->kids, (size_t)n->nkids * sizeof *q);
    n->kids = q;
  }
  n->kids[n->nkids++] = kid;
}

static void add_kw(P *p, jnode *n, const char *name, jnode *val) {
  if (n->nkw == 0 || (n->nkw & (n->nkw - 1)) == 0) {
    int cap = n->nkw ? n->nkw * 2 : 1;
    const char **qn = jalloc(p->c, (size_t)cap * sizeof *qn);
    jnode **qv = jalloc(p->c, (size_t)cap * sizeof *qv);
    if (n->nkw) {
      memcpy(qn, n->kwn, (size_t)n->nkw * sizeof *qn);
      memcpy(qv, n->kwv, (size_t)n->nkw * sizeof *qv);
    }
    n->kwn = qn;
    n->kwv = qv;
  }
  n->kwn[n->nkw] = name;
  n->kwv[n->nkw++] = val;
}

static const char *tok_str(P *p, tok *t) {
  return jstrndup(p->c, t->s, t->n);
}

static void enter(P *p) {
  if (++p->depth > MAX_PARSE_DEPTH)
    jfail(p->c, NLLM_ERR_FORMAT, cur(p)->line, cur(p)->col, "nesting deeper than %d levels",
          MAX_PARSE_DEPTH);
}

/* ---------------------------------------------------------------- expressions */

static jnode *parse_expr(P *p, int with_cond);
static jnode *parse_or(P *p);
static jnode *parse_unary(P *p, int with_filter);

/* Positional and keyword arguments after an opening parenthesis, up to ')'. */
static void parse_args(P *p, jnode *n) {
  expect_op(p, "(");
  while (!is_op(cur(p), ")")) {
    if (n->nkids > 1 || n->nkw) expect_op(p, ",");
    if (is_op(cur(p), ")")) break;
    if (is_op(cur(p), "*") || is_op(cur(p), "**"))
      perr(p, cur(p), "*args and **kwargs in calls are not supported", NULL);
    if (cur(p)->k == T_NAME && is_op(peek_at(p, 1), "=")) {
      const char *name = tok_str(p, cur(p));
      p->pos += 2;
      add_kw(p, n, name, parse_expr(p, 1));
    } else {
      if (n->nkw) perr(p, cur(p), "positional argument after a keyword argument", NULL);
      add_kid(p, n, parse_expr(p, 1));
    }
  }
  p->pos++;
}

static jnode *parse_primary(P *p) {
  tok *t = cur(p);
  jnode *n;
  if (t->k == T_NAME) {
    p->pos++;
    if (is_name(t, "true") || is_name(t, "True")) {
      n = mk(p, JN_LIT, t);
      n->lit = JV_BOOL_P(1);
    } else if (is_name(t, "false") || is_name(t, "False")) {
      n = mk(p, JN_LIT, t);
      n->lit = JV_BOOL_P(0);
    } else if (is_name(t, "none") || is_name(t, "None")) {
      n = mk(p, JN_LIT, t);
      n->lit = JV_NONE_P;
    } else {
      n = mk(p, JN_NAME, t);
      n->s = tok_str(p, t);
      n->n = t->n;
    }
    return n;
  }
  if (t->k == T_STRING) {
    jbuf b = {0};
    jb_put(p->c, &b, t->s, t->n);
    p->pos++;
    while (cur(p)->k == T_STRING) { /* adjacent literals concatenate */
      jb_put(p->c, &b, cur(p)->s, cur(p)->n);
      p->pos++;
    }
    n = mk(p, JN_LIT, t);
    n->lit = jv_str_own(p->c, b.p ? b.p : "", b.n);
    return n;
  }
  if (t->k == T_INT || t->k == T_FLOAT) {
    p->pos++;
    n = mk(p, JN_LIT, t);
    n->lit = t->k == T_INT ? jv_int(p->c, t->i) : jv_float(p->c, t->f);
    return n;
  }
  if (is_op(t, "(")) {
    p->pos++;
    if (is_op(cur(p), ")")) {
      p->pos++;
      return mk(p, JN_TUPLE, t);
    }
    jnode *e = parse_expr(p, 1);
    if (is_op(cur(p), ",")) {
      n = mk(p, JN_TUPLE, t);
      add_kid(p, n, e);
      while (is_op(cur(p), ",")) {
        p->pos++;
        if (is_op(cur(p), ")")) break;
        add_kid(p, n, parse_expr(p, 1));
      }
      e = n;
    }
    expect_op(p, ")");
    return e;
  }
  if (is_op(t, "[")) {
    p->pos++;
    n = mk(p, JN_LIST, t);
    while (!is_op(cur(p), "]")) {
      if (n->nkids) expect_op(p, ",");
      if (is_op(cur(p), "]")) break;
      add_kid(p, n, parse_expr(p, 1));
    }
    p->pos++;
    return n;
  }
  if (is_op(t, "{")) {
    p->pos++;
    n = mk(p, JN_DICT, t);
    while (!is_op(cur(p), "}")) {
      if (n->nkids) expect_op(p, ",");
      if (is_op(cur(p), "}")) break;
      add_kid(p, n, parse_expr(p, 1));
      expect_op(p, ":");
      add_kid(p, n, parse_expr(p, 1));
    }
    p->pos++;
    return n;
  }
  perr(p, t, "unexpected %s in an expression", NULL);
}

static jnode *parse_subscript(P *p, jnode *obj, tok *at) {
  /* after '[' */
  jnode *idx[3] = {NULL, NULL, NULL};
  int is_slice = 0, part = 0;
  for (;;) {
    if (is_op(cur(p), "]")) break;
    if (is_op(cur(p), ":")) {
      is_slice = 1;
      if (++part > 2) perr(p, cur(p), "too many ':' in a slice", NULL);
      p->pos++;
      continue;
    }
    if (idx[part]) perr(p, cur(p), "expected ':' or ']', found %s", NULL);
    idx[part] = parse_expr(p, 1);
  }
  p->pos++;
  jnode *n = mk(p, is_slice ? JN_SLICE : JN_ITEM, at);
  add_kid(p, n, obj);
  if (!is_slice) {
    if (!idx[0]) perr(p, at, "empty subscript", NULL);
    add_kid(p, n, idx[0]);
  } else {
    for (int k = 0; k < 3; k++) add_kid(p, n, idx[k]);
  }
  return n;
}

static jnode *parse_postfix(P *p, jnode *n) {
  for (;;) {
    tok *t = cur(p);
    if (is_op(t, ".")) {
      p->pos++;
      tok *a = cur(p);
      if (a->k == T_NAME) {
        jnode *x = mk(p, JN_ATTR, t);
        add_kid(p, x, n);
        x->s = tok_str(p, a);
        x->n = a->n;
        p->pos++;
        n = x;
      } else if (a->k == T_INT) {
        jnode *x = mk(p, JN_ITEM, t), *k = mk(p, JN_LIT, a);
        k->lit = jv_int(p->c, a->i);
        add_kid(p, x, n);
        add_kid(p, x, k);
        p->pos++;
        n = x;
      } else
        perr(p, a, "expected an attribute name after '.', found %s", NULL);
    } else if (is_op(t, "[")) {
      p->pos++;
      n = parse_subscript(p, n, t);
    } else if (is_op(t, "(")) {
      jnode *x = mk(p, JN_CALL, t);
      add_kid(p, x, n);
      parse_args(p, x);
      n = x;
    } else {
      return n;
    }
  }
}

static jnode *parse_filter(P *p, jnode *operand, tok *at) {
  tok *nm = expect_name(p);
  jnode *f = mk(p, JN_FILTER, at);
  jbuf b = {0};
  jb_put(p->c, &b, nm->s, nm->n);
  while (is_op(cur(p), ".")) { /* dotted filter names */
    p->pos++;
    tok *x = expect_name(p);
    jb_putc(p->c, &b, '.');
    jb_put(p->c, &b, x->s, x->n);
  }
  f->s = b.p;
  f->n = b.n;
  add_kid(p, f, operand);
  if (is_op(cur(p), "(")) parse_args(p, f);
  return f;
}

static jnode *parse_filter_expr(P *p, jnode *n) {
  for (;;) {
    tok *t = cur(p);
    if (is_op(t, "|")) {
      p->pos++;
      n = parse_filter(p, n, t);
    } else if (is_name(t, "is")) {
      p->pos++;
      jnode *x = mk(p, JN_TEST, t);
      if (is_name(cur(p), "not")) {
        x->negate = 1;
        p->pos++;
      }
      tok *nm = expect_name(p);
      x->s = tok_str(p, nm);
      x->n = nm->n;
      add_kid(p, x, n);
      tok *a = cur(p);
      if (is_op(a, "(")) {
        parse_args(p, x);
      } else if ((a->k == T_NAME || a->k == T_STRING || a->k == T_INT || a->k == T_FLOAT ||
                  is_op(a, "[") || is_op(a, "{")) &&
                 !is_name(a, "else") && !is_name(a, "or") && !is_name(a, "and") &&
                 !is_name(a, "if") && !is_name(a, "in") && !is_name(a, "is") &&
                 !is_name(a, "not")) {
        add_kid(p, x, parse_postfix(p, parse_primary(p)));
      }
      n = x;
    } else if (is_op(t, "(")) {
      jnode *x = mk(p, JN_CALL, t);
      add_kid(p, x, n);
      parse_args(p, x);
      n = x;
    } else {
      return n;
    }
  }
}

static jnode *parse_unary(P *p, int with_filter) {
  enter(p);
  tok *t = cur(p);
  jnode *n;
  if (is_op(t, "-") || is_op(t, "+")) {
    p->pos++;
    n = mk(p, is_op(t, "-") ? JN_NEG : JN_POS, t);
    add_kid(p, n, parse_unary(p, 0));
  } else {
    n = parse_primary(p);
  }
  n = parse_postfix(p, n);
  if (with_filter) n = parse_filter_expr(p, n);
  p->depth--;
  return n;
}

static jnode *binop(P *p, tok *t, jnode *a, jnode *b) {
  jnode *n = mk(p, JN_BINOP, t);
  n->s = tok_str(p, t);
  n->n = t->n;
  add_kid(p, n, a);
  add_kid(p, n, b);
  return n;
}

static jnode *parse_pow(P *p) {
  jnode *n = parse_unary(p, 1);
  while (is_op(cur(p), "**")) {
    tok *t = &p->t[p->pos++];
    n = binop(p, t, n, parse_unary(p, 1));
  }
  return n;
}

static jnode *parse_math2(P *p) {
  jnode *n = parse_pow(p);
  while (is_op(cur(p), "*") || is_op(cur(p), "/") || is_op(cur(p), "//") || is_op(cur(p), "%")) {
    tok *t = &p->t[p->pos++];
    n = binop(p, t, n, parse_pow(p));
  }
  return n;
}

static jnode *parse_concat(P *p) {
  jnode *n = parse_math2(p);
  while (is_op(cur(p), "~")) {
    tok *t = &p->t[p->pos++];
    n = binop(p, t, n, parse_math2(p));
  }
  return n;
}

static jnode *parse_math1(P *p) {
  jnode *n = parse_concat(p);
  while (is_op(cur(p), "+") || is_op(cur(p), "-")) {
    tok *t = &p->t[p->pos++];
    n = binop(p, t, n, parse_concat(p));
  }
  return n;
}

static jnode *parse_compare(P *p) {
  jnode *first = parse_math1(p), *n = NULL;
  for (;;) {
    tok *t = cur(p);
    const char *op = NULL;
    if (is_op(t, "==") || is_op(t, "!=") || is_op(t, "<") || is_op(t, ">") || is_op(t, "<=") ||
        is_op(t, ">=")) {
      op = tok_str(p, t);
      p->pos++;
    } else if (is_name(t, "in")) {
      op = "in";
      p->pos++;
    } else if (is_name(t, "not") && is_name(peek_at(p, 1), "in")) {
      op = "notin";
      p->pos += 2;
    } else {
      break;
    }
    if (!n) {
      n = mk(p, JN_COMPARE, t);
      add_kid(p, n, first);
    }
    add_kid(p, n, parse_math1(p));
    add_kw(p, n, op, NULL);
  }
  return n ? n : first;
}

static jnode *parse_not(P *p) {
  if (is_name(cur(p), "not")) {
    tok *t = &p->t[p->pos++];
    enter(p);
    jnode *n = mk(p, JN_NOT, t);
    add_kid(p, n, parse_not(p));
    p->depth--;
    return n;
  }
  return parse_compare(p);
}

static jnode *parse_and(P *p) {
  jnode *n = parse_not(p);
  while (is_name(cur(p), "and")) {
    tok *t = &p->t[p->pos++];
    jnode *x = mk(p, JN_AND, t);
    add_kid(p, x, n);
    add_kid(p, x, parse_not(p));
    n = x;
  }
  return n;
}

static jnode *parse_or(P *p) {
  jnode *n = parse_and(p);
  while (is_name(cur(p), "or")) {
    tok *t = &p->t[p->pos++];
    jnode *x = mk(p, JN_OR, t);
    add_kid(p, x, n);
    add_kid(p, x, parse_and(p));
    n = x;
  }
  return n;
}

static jnode *parse_expr(P *p, int with_cond) {
  enter(p);
  jnode *n = parse_or(p);
  while (with_cond && is_name(cur(p), "if")) {
    tok *t = &p->t[p->pos++];
    jnode *x = mk(p, JN_COND, t);
    add_kid(p, x, n);
    add_kid(p, x, parse_or(p));
    if (is_name(cur(p), "else")) {
      p->pos++;
      add_kid(p, x, parse_expr(p, 1));
    } else {
      add_kid(p, x, NULL);
    }
    n = x;
  }
  p->depth--;
  return n;
}

/* An expression, or a tuple when commas follow ("set a = 1, 2"). */
static jnode *parse_tuple(P *p, int with_cond) {
  tok *t = cur(p);
  jnode *e = parse_expr(p, with_cond);
  if (!is_op(cur(p), ",")) return e;
  jnode *n = mk(p, JN_TUPLE, t);
  add_kid(p, n, e);
  while (is_op(cur(p), ",")) {
    p->pos++;
    if (cur(p)->k == T_BLOCK_END || cur(p)->k == T_VAR_END || is_name(cur(p), "if")) break;
    add_kid(p, n, parse_expr(p, with_cond));
  }
  return n;
}

/* Assignment targets: a name, "ns.attr", or names separated by commas (optionally in parens). */
static jnode *parse_target(P *p, int allow_attr) {
  int paren = is_op(cur(p), "(");
  tok *t = cur(p);
  if (paren) p->pos++;
  jnode *first = NULL, *tuple = NULL;
  for (;;) {
    tok *nm = expect_name(p);
    jnode *x = mk(p, JN_NAME, nm);
    x->s = tok_str(p, nm);
    x->n = nm->n;
    if (allow_attr && !first && !paren && is_op(cur(p), ".")) {
      p->pos++;
      tok *a = expect_name(p);
      jnode *at = mk(p, JN_ATTR, a);
      add_kid(p, at, x);
      at->s = tok_str(p, a);
      at->n = a->n;
      return at;
    }
    if (!first)
      first = x;
    else
      add_kid(p, tuple, x);
    if (!is_op(cur(p), ",")) break;
    p->pos++;
    if (!tuple) {
      tuple = mk(p, JN_TUPLE, t);
      add_kid(p, tuple, first);
    }
    if (paren && is_op(cur(p), ")")) break;
  }
  if (paren) expect_op(p, ")");
  return tuple ? tuple : first;
}

/* ---------------------------------------------------------------- statements */

static jnode *parse_body(P *p, const char *const *ends, const char **which);

static int name_in(tok *t, const char *const *names) {
  for (; *names; names++)
    if (is_name(t, *names)) return 1;
  return 0;
}

static jnode *parse_if(P *p, tok *at) {
  static const char *const ends[] = {"elif", "else", "endif", NULL};
  jnode *n = mk(p, JN_IF, at);
  add_kid(p, n, parse_tuple(p, 1));
  expect_block_end(p);
  const char *which = NULL;
  add_kid(p, n, parse_body(p, ends, &which));
  tok *t = &p->t[p->pos++];
  if (strcmp(which, "elif") == 0) {
    enter(p);
    add_kid(p, n, parse_if(p, t));
    p->depth--;
  } else if (strcmp(which, "else") == 0) {
    static const char *const ends2[] = {"endif", NULL};
    expect_block_end(p);
    add_kid(p, n, parse_body(p, ends2, &which));
    p->pos++;
    expect_block_end(p);
  } else {
    add_kid(p, n, NULL);
    expect_block_end(p);
  }
  return n;
}

static jnode *parse_for(P *p, tok *at) {
  static const char *const ends[] = {"else", "endfor", NULL};
  static const char *const ends2[] = {"endfor", NULL};
  jnode *n = mk(p, JN_FOR, at);
  add_kid(p, n, parse_target(p, 0));
  if (!is_name(cur(p), "in")) perr(p, cur(p), "expected 'in' in a for loop, found %s", NULL);
  p->pos++;
  add_kid(p, n, parse_tuple(p, 0));
  jnode *filter = NULL;
  if (is_name(cur(p), "if")) {
    p->pos++;
    filter = parse_expr(p, 1);
  }
  if (is_name(cur(p), "recursive")) perr(p, cur(p), "recursive loops are not supported", NULL);
  expect_block_end(p);
  const char *which = NULL;
  add_kid(p, n, parse_body(p, ends, &which));
  p->pos++;
  expect_block_end(p);
  if (strcmp(which, "else") == 0) {
    add_kid(p, n, parse_body(p, ends2, &which));
    p->pos++;
    expect_block_end(p);
  } else {
    add_kid(p, n, NULL);
  }
  add_kid(p, n, filter);
  return n;
}

static void parse_params(P *p, jnode *n) {
  expect_op(p, "(");
  while (!is_op(cur(p), ")")) {
    if (n->nkw) expect_op(p, ",");
    tok *nm = expect_name(p);
    jnode *def = NULL;
    if (is_op(cur(p), "=")) {
      p->pos++;
      def = parse_expr(p, 1);
    }
    add_kw(p, n, tok_str(p, nm), def);
  }
  p->pos++;
}

static jnode *parse_stmt(P *p) {
  p->pos++; /* the '{%' */
  tok *t = cur(p);
  if (t->k != T_NAME) perr(p, t, "expected a statement name, found %s", NULL);
  p->pos++;
  const char *which = NULL;
  if (is_name(t, "if")) return parse_if(p, t);
  if (is_name(t, "for")) return parse_for(p, t);
  if (is_name(t, "set")) {
    jnode *target = parse_target(p, 1);
    if (is_op(cur(p), "=")) {
      p->pos++;
      jnode *n = mk(p, JN_SET, t);
      add_kid(p, n, target);
      add_kid(p, n, parse_tuple(p, 1));
      expect_block_end(p);
      return n;
    }
    if (target->k != JN_NAME) perr(p, cur(p), "a block set takes one name", NULL);
    static const char *const ends[] = {"endset", NULL};
    jnode *n = mk(p, JN_SET_BLOCK, t);
    add_kid(p, n, target);
    expect_block_end(p);
    add_kid(p, n, parse_body(p, ends, &which));
    p->pos++;
    expect_block_end(p);
    return n;
  }
  if (is_name(t, "macro")) {
    static const char *const ends[] = {"endmacro", NULL};
    tok *nm = expect_name(p);
    jnode *n = mk(p, JN_MACRO, t);
    n->s = tok_str(p, nm);
    n->n = nm->n;
    parse_params(p, n);
    expect_block_end(p);
    add_kid(p, n, parse_body(p, ends, &which));
    p->pos++;
    if (cur(p)->k == T_NAME) p->pos++; /* {% endmacro name %} */
    expect_block_end(p);
    return n;
  }
  if (is_name(t, "call")) {
    static const char *const ends[] = {"endcall", NULL};
    jnode *n = mk(p, JN_CALL_BLOCK, t);
    if (is_op(cur(p), "(")) parse_params(p, n);
    jnode *call = parse_expr(p, 1);
    if (call->k != JN_CALL) perr(p, t, "'call' needs a macro call", NULL);
    add_kid(p, n, call);
    expect_block_end(p);
    add_kid(p, n, parse_body(p, ends, &which));
    p->pos++;
    expect_block_end(p);
    return n;
  }
  if (is_name(t, "filter")) {
    static const char *const ends[] = {"endfilter", NULL};
    jnode *n = mk(p, JN_FILTER_BLOCK, t);
    jnode *filters[32];
    int nf = 0;
    do {
      if (nf) p->pos++;
      if (nf == 32) perr(p, cur(p), "too many filters", NULL);
      filters[nf++] = parse_filter(p, NULL, cur(p));
    } while (is_op(cur(p), "|"));
    expect_block_end(p);
    add_kid(p, n, parse_body(p, ends, &which));
    for (int k = 0; k < nf; k++) add_kid(p, n, filters[k]);
    p->pos++;
    expect_block_end(p);
    return n;
  }
  if (is_name(t, "generation")) {
    /* transformers' assistant-mask marker: renders its body unchanged */
    static const char *const ends[] = {"endgeneration", NULL};
    expect_block_end(p);
    jnode *body = parse_body(p, ends, &which);
    p->pos++;
    expect_block_end(p);
    return body;
  }
  if (is_name(t, "break") || is_name(t, "continue")) {
    jnode *n = mk(p, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, t);
    expect_block_end(p);
    return n;
  }
  char nm[64];
  snprintf(nm, sizeof nm, "%.*s", (int)(t->n < 40 ? t->n : 40), t->s);
  perr(p, t, "unknown or unsupported statement '%s'", nm);
}

/* Statements until a '{%' whose name is in ends (NULL-terminated; none = end of template).
 * Stops on that name token and reports which one through *which. */
static jnode *parse_body(P *p, const char *const *ends, const char **which) {
  enter(p);
  jnode *body = mk(p, JN_BODY, cur(p));
  for (;;) {
    tok *t = cur(p);
    if (t->k == T_EOF) {
      if (ends && ends[0]) {
        const char *last = ends[0];
        for (const char *const *e = ends; *e; e++) last = *e;
        jfail(p->c, NLLM_ERR_FORMAT, t->line, t->col,
              "missing '{%% %s %%}' before the end of the template", last);
      }
      break;
    }
    if (t->k == T_DATA) {
      jnode *x = mk(p, JN_TEXT, t);
      x->s = t->s;
      x->n = t->n;
      add_kid(p, body, x);
      p->pos++;
    } else if (t->k == T_VAR_BEGIN) {
      p->pos++;
      jnode *x = mk(p, JN_OUTPUT, t);
      add_kid(p, x, parse_tuple(p, 1));
      if (cur(p)->k != T_VAR_END) perr(p, cur(p), "expected '}}', found %s", NULL);
      p->pos++;
      add_kid(p, body, x);
    } else if (t->k == T_BLOCK_BEGIN) {
      tok *nm = peek_at(p, 1);
      if (ends && name_in(nm, ends)) {
        p->pos++;
        for (const char *const *e = ends; *e; e++)
          if (is_name(nm, *e)) *which = *e;
        break;
      }
      add_kid(p, body, parse_stmt(p));
    } else {
      perr(p, t, "unexpected %s", NULL);
    }
  }
  p->depth--;
  return body;
}

jnode *jinja_parse(jctx *c, const char *src, size_t n) {
  /* Jinja normalizes line endings to \n and drops one trailing newline of the source */
  char *s = jalloc(c, n + 1);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (src[i] == '\r') {
      s[m++] = '\n';
      if (i + 1 < n && src[i + 1] == '\n') i++;
    } else {
      s[m++] = src[i];
    }
  }
  if (m && s[m - 1] == '\n') m--;
  s[m] = 0;
  P p = {.c = c, .src = s, .n = m, .lc_line = 1, .lc_col = 1};
  lex(&p);
  const char *which = NULL;
  return parse_body(&p, NULL, &which);
}
