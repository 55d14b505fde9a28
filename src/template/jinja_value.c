/* Values of the template interpreter and their Python behaviour: truth, equality, ordering,
 * str()/repr(), json.dumps and a JSON reader that keeps key order and integer-ness (the two
 * things a rendered tojson must reproduce). Also the per-render arena and error exit. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "template/jinja.h"

jv jv_undef_v = {.t = JV_UNDEF}, jv_none_v = {.t = JV_NONE}, jv_true_v = {.t = JV_BOOL, .u.b = 1},
   jv_false_v = {.t = JV_BOOL, .u.b = 0};

/* ---------------------------------------------------------------- arena and errors */

struct jarena_chunk {
  jarena_chunk *next;
  size_t size, used;
  _Alignas(16) unsigned char data[];
};

void jfail(jctx *c, nllm_status st, int line, int col, const char *fmt, ...) {
  char m[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  if (line > 0)
    snprintf(c->msg, sizeof c->msg, "template line %d column %d: %s", line, col, m);
  else
    snprintf(c->msg, sizeof c->msg, "template: %s", m);
  c->status = st;
  longjmp(c->fail, 1);
}

void *jalloc(jctx *c, size_t n) {
  n = (n + 15) & ~(size_t)15;
  jarena_chunk *ch = c->chunks;
  if (!ch || ch->size - ch->used < n) {
    size_t sz = n > 65536 ? n : 65536;
    if (c->used + sz > c->cap_bytes)
      jfail(c, NLLM_ERR_NOMEM, 0, 0, "memory limit of %zu MiB reached", c->cap_bytes >> 20);
    ch = nllm_malloc(sizeof *ch + sz);
    if (!ch) jfail(c, NLLM_ERR_NOMEM, 0, 0, "out of memory");
    ch->size = sz;
    ch->used = 0;
    ch->next = c->chunks;
    c->chunks = ch;
    c->used += sz;
  }
  void *p = ch->data + ch->used;
  ch->used += n;
  memset(p, 0, n);
  return p;
}

char *jstrndup(jctx *c, const char *s, size_t n) {
  char *p = jalloc(c, n + 1);
  if (n) memcpy(p, s, n);
  p[n] = 0;
  return p;
}

void jarena_free(jctx *c) {
  while (c->chunks) {
    jarena_chunk *nx = c->chunks->next;
    free(c->chunks);
    c->chunks = nx;
  }
  c->used = 0;
}

double jclock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- buffers */

void jb_put(jctx *c, jbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    if (b->n + n + 1 > c->max_output + 1024)
      jfail(c, NLLM_ERR_ABORTED, 0, 0, "output exceeds the limit of %zu bytes", c->max_output);
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = jalloc(c, cap);
    if (b->n) memcpy(q, b->p, b->n);
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void jb_puts(jctx *c, jbuf *b, const char *s) {
  jb_put(c, b, s, strlen(s));
}

void jb_putc(jctx *c, jbuf *b, char ch) {
  jb_put(c, b, &ch, 1);
}

/* ---------------------------------------------------------------- construction */

jv *jv_new(jctx *c, jv_type t) {
  jv *v = jalloc(c, sizeof *v);
  v->t = t;
  return v;
}

jv *jv_int(jctx *c, int64_t i) {
  jv *v = jv_new(c, JV_INT);
  v->u.i = i;
  return v;
}

jv *jv_float(jctx *c, double f) {
  jv *v = jv_new(c, JV_FLOAT);
  v->u.f = f;
  return v;
}

jv *jv_str_own(jctx *c, const char *s, size_t n) {
  jv *v = jv_new(c, JV_STR);
  v->u.str.s = s;
  v->u.str.n = n;
  return v;
}

jv *jv_strn(jctx *c, const char *s, size_t n) {
  return jv_str_own(c, jstrndup(c, s, n), n);
}

jv *jv_list(jctx *c) {
  return jv_new(c, JV_LIST);
}

jv *jv_dict(jctx *c) {
  return jv_new(c, JV_DICT);
}

void jv_list_push(jctx *c, jv *l, jv *x) {
  if (l->u.list.n == l->u.list.cap) {
    size_t cap = l->u.list.cap ? l->u.list.cap * 2 : 4;
    jv **q = jalloc(c, cap * sizeof *q);
    if (l->u.list.n) memcpy(q, l->u.list.v, l->u.list.n * sizeof *q);
    l->u.list.v = q;
    l->u.list.cap = cap;
  }
  l->u.list.v[l->u.list.n++] = x;
}

jv *jv_dict_getv(jv *d, jv *k) {
  for (size_t i = 0; i < d->u.dict.n; i++)
    if (jv_equal(d->u.dict.k[i], k)) return d->u.dict.v[i];
  return NULL;
}

jv *jv_dict_get(jv *d, const char *k, size_t n) {
  for (size_t i = 0; i < d->u.dict.n; i++) {
    jv *key = d->u.dict.k[i];
    if (key->t == JV_STR && key->u.str.n == n && memcmp(key->u.str.s, k, n) == 0)
      return d->u.dict.v[i];
  }
  return NULL;
}

void jv_dict_set(jctx *c, jv *d, jv *k, jv *v) {
  for (size_t i = 0; i < d->u.dict.n; i++)
    if (jv_equal(d->u.dict.k[i], k)) {
      d->u.dict.v[i] = v;
      return;
    }
  if (d->u.dict.n == d->u.dict.cap) {
    size_t cap = d->u.dict.cap ? d->u.dict.cap * 2 : 4;
    jv **nk = jalloc(c, cap * sizeof *nk), **nv = jalloc(c, cap * sizeof *nv);
    if (d->u.dict.n) {
      memcpy(nk, d->u.dict.k, d->u.dict.n * sizeof *nk);
      memcpy(nv, d->u.dict.v, d->u.dict.n * sizeof *nv);
    }
    d->u.dict.k = nk;
    d->u.dict.v = nv;
    d->u.dict.cap = cap;
  }
  d->u.dict.k[d->u.dict.n] = k;
  d->u.dict.v[d->u.dict.n++] = v;
}

/* ---------------------------------------------------------------- Python semantics */

int jv_truthy(jv *v) {
  switch (v->t) {
    case JV_UNDEF:
    case JV_NONE: return 0;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0;
    case JV_STR: return v->u.str.n != 0;
    case JV_LIST: return v->u.list.n != 0;
    case JV_DICT: return v->u.dict.n != 0;
    default: return 1;
  }
}

static int is_num(jv *v) {
  return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
}

static double num_f(jv *v) {
  return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b;
}

int jv_equal(jv *a, jv *b) {
  if (is_num(a) && is_num(b)) {
    if (a->t != JV_FLOAT && b->t != JV_FLOAT)
      return (a->t == JV_INT ? a->u.i : a->u.b) == (b->t == JV_INT ? b->u.i : b->u.b);
    return num_f(a) == num_f(b);
  }
  if (a->t != b->t) return 0;
  switch (a->t) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a->u.str.n == b->u.str.n && memcmp(a->u.str.s, b->u.str.s, a->u.str.n) == 0;
    case JV_LIST:
      if (a->u.list.n != b->u.list.n) return 0;
      for (size_t i = 0; i < a->u.list.n; i++)
        if (!jv_equal(a->u.list.v[i], b->u.list.v[i])) return 0;
      return 1;
    case JV_DICT:
      if (a->u.dict.n != b->u.dict.n) return 0;
      for (size_t i = 0; i < a->u.dict.n; i++) {
        jv *o = jv_dict_getv(b, a->u.dict.k[i]);
        if (!o || !jv_equal(a->u.dict.v[i], o)) return 0;
      }
      return 1;
    default: return a == b;
  }
}

const char *jv_type_name(jv *v) {
  static const char *names[] = {"undefined", "NoneType", "bool",     "int",
                                "float",     "str",      "list",     "dict",
                                "Namespace", "macro",    "function", "LoopContext"};
  if (v->t == JV_LIST && v->u.list.is_tuple) return "tuple";
  return names[v->t];
}

int jv_compare(jctx *c, jv *a, jv *b, int line, int col) {
  if (is_num(a) && is_num(b)) {
    if (a->t == JV_INT && b->t == JV_INT) return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    double x = num_f(a), y = num_f(b);
    return (x > y) - (x < y);
  }
  if (a->t == JV_STR && b->t == JV_STR) {
    size_t n = a->u.str.n < b->u.str.n ? a->u.str.n : b->u.str.n;
    int r = memcmp(a->u.str.s, b->u.str.s, n);
    if (r) return r < 0 ? -1 : 1;
    return (a->u.str.n > b->u.str.n) - (a->u.str.n < b->u.str.n);
  }
  if (a->t == JV_LIST && b->t == JV_LIST) {
    for (size_t i = 0; i < a->u.list.n && i < b->u.list.n; i++)
      if (!jv_equal(a->u.list.v[i], b->u.list.v[i]))
        return jv_compare(c, a->u.list.v[i], b->u.list.v[i], line, col);
    return (a->u.list.n > b->u.list.n) - (a->u.list.n < b->u.list.n);
  }
  jfail(c, NLLM_ERR_INVALID_ARG, line, col, "cannot order %s and %s", jv_type_name(a),
        jv_type_name(b));
}

/* ---------------------------------------------------------------- printing */

void jv_format_float(char *out, size_t cap, double f) {
  if (isnan(f)) {
    snprintf(out, cap, "nan");
    return;
  }
  if (isinf(f)) {
    snprintf(out, cap, f < 0 ? "-inf" : "inf");
    return;
  }
  /* the shortest %.Ne that reads back the same, then laid out the way Python's repr does */
  char e[40];
  int prec = 0;
  for (prec = 0; prec < 17; prec++) {
    snprintf(e, sizeof e, "%.*e", prec, f);
    if (strtod(e, NULL) == f) break;
  }
  snprintf(e, sizeof e, "%.*e", prec, f);
  char digits[24];
  int nd = 0, neg = e[0] == '-';
  const char *p = e + neg;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') digits[nd++] = *p;
  int exp10 = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  char *o = out;
  size_t left = cap;
#define EMIT(...)                             \
  do {                                        \
    int w_ = snprintf(o, left, __VA_ARGS__);  \
    if (w_ < 0 || (size_t)w_ >= left) return; \
    o += w_;                                  \
    left -= (size_t)w_;                       \
  } while (0)
  if (neg) EMIT("-");
  if (exp10 < -4 || exp10 >= 16) {
    EMIT("%c", digits[0]);
    if (nd > 1) EMIT(".%s", digits + 1);
    EMIT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  } else if (exp10 < 0) {
    EMIT("0.");
    for (int i = 0; i < -exp10 - 1; i++) EMIT("0");
    EMIT("%s", digits);
  } else {
    for (int i = 0; i <= exp10; i++) EMIT("%c", i < nd ? digits[i] : '0');
    EMIT(".");
    if (nd > exp10 + 1)
      EMIT("%s", digits + exp10 + 1);
    else
      EMIT("0");
  }
#undef EMIT
}

static void put_repr_str(jctx *c, jbuf *b, const char *s, size_t n) {
  int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
  char q = has_sq && !has_dq ? '"' : '\'';
  jb_putc(c, b, q);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    char tmp[8];
    if (ch == '\\')
      jb_puts(c, b, "\\\\");
    else if (ch == (unsigned char)q) {
      jb_putc(c, b, '\\');
      jb_putc(c, b, q);
    } else if (ch == '\n')
      jb_puts(c, b, "\\n");
    else if (ch == '\r')
      jb_puts(c, b, "\\r");
    else if (ch == '\t')
      jb_puts(c, b, "\\t");
    else if (ch < 0x20 || ch == 0x7f) {
      snprintf(tmp, sizeof tmp, "\\x%02x", ch);
      jb_puts(c, b, tmp);
    } else
      jb_putc(c, b, (char)ch);
  }
  jb_putc(c, b, q);
}

void jv_repr(jctx *c, jbuf *b, jv *v) {
  if (v->t == JV_STR) {
    put_repr_str(c, b, v->u.str.s, v->u.str.n);
  } else if (v->t == JV_LIST) {
    jb_putc(c, b, v->u.list.is_tuple ? '(' : '[');
    for (size_t i = 0; i < v->u.list.n; i++) {
      if (i) jb_puts(c, b, ", ");
      jv_repr(c, b, v->u.list.v[i]);
    }
    if (v->u.list.is_tuple && v->u.list.n == 1) jb_putc(c, b, ',');
    jb_putc(c, b, v->u.list.is_tuple ? ')' : ']');
  } else if (v->t == JV_DICT) {
    jb_putc(c, b, '{');
    for (size_t i = 0; i < v->u.dict.n; i++) {
      if (i) jb_puts(c, b, ", ");
      jv_repr(c, b, v->u.dict.k[i]);
      jb_puts(c, b, ": ");
      jv_repr(c, b, v->u.dict.v[i]);
    }
    jb_putc(c, b, '}');
  } else {
    jv_to_str(c, b, v);
  }
}

void jv_to_str(jctx *c, jbuf *b, jv *v) {
  char tmp[64];
  switch (v->t) {
    case JV_UNDEF: break;
    case JV_NONE: jb_puts(c, b, "None"); break;
    case JV_BOOL: jb_puts(c, b, v->u.b ? "True" : "False"); break;
    case JV_INT:
      snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
      jb_puts(c, b, tmp);
      break;
    case JV_FLOAT:
      jv_format_float(tmp, sizeof tmp, v->u.f);
      jb_puts(c, b, tmp);
      break;
    case JV_STR: jb_put(c, b, v->u.str.s, v->u.str.n); break;
    case JV_LIST:
    case JV_DICT: jv_repr(c, b, v); break;
    case JV_NS:
      jb_puts(c, b, "<Namespace ");
      {
        jv d = *v;
        d.t = JV_DICT;
        jv_repr(c, b, &d);
      }
      jb_puts(c, b, ">");
      break;
    case JV_MACRO: jb_puts(c, b, "<Macro>"); break;
    case JV_FUNC: jb_puts(c, b, "<built-in function>"); break;
    case JV_LOOP: jb_puts(c, b, "<LoopContext>"); break;
  }
}

jv *jv_as_str(jctx *c, jv *v) {
  if (v->t == JV_STR) return v;
  jbuf b = {0};
  jv_to_str(c, &b, v);
  return jv_str_own(c, b.p ? b.p : "", b.n);
}

static void json_str(jctx *c, jbuf *b, const char *s, size_t n) {
  jb_putc(c, b, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    jb_put(c, b, s + run, i - run);
    run = i + 1;
    char tmp[8];
    switch (ch) {
      case '"': jb_puts(c, b, "\\\""); break;
      case '\\': jb_puts(c, b, "\\\\"); break;
      case '\n': jb_puts(c, b, "\\n"); break;
      case '\r': jb_puts(c, b, "\\r"); break;
      case '\t': jb_puts(c, b, "\\t"); break;
      case '\b': jb_puts(c, b, "\\b"); break;
      case '\f': jb_puts(c, b, "\\f"); break;
      default: snprintf(tmp, sizeof tmp, "\\u%04x", ch); jb_puts(c, b, tmp);
    }
  }
  jb_put(c, b, s + run, n - run);
  jb_putc(c, b, '"');
}

static void json_indent(jctx *c, jbuf *b, int indent, int level) {
  jb_putc(c, b, '\n');
  for (int i = 0; i < indent * level; i++) jb_putc(c, b, ' ');
}

static int str_cmp_jv(const void *x, const void *y) {
  jv *a = *(jv *const *)x, *bb = *(jv *const *)y;
  size_t n = a->u.str.n < bb->u.str.n ? a->u.str.n : bb->u.str.n;
  int r = memcmp(a->u.str.s, bb->u.str.s, n);
  return r ? r : (a->u.str.n > bb->u.str.n) - (a->u.str.n < bb->u.str.n);
}

static void json_rec(jctx *c, jbuf *b, jv *v, int indent, int sort_keys, const char *isep,
                     const char *ksep, int level, int line, int col) {
  char tmp[64];
  if (level > 256) jfail(c, NLLM_ERR_INVALID_ARG, line, col, "tojson: nesting too deep");
  switch (v->t) {
    case JV_NONE: jb_puts(c, b, "null"); return;
    case JV_BOOL: jb_puts(c, b, v->u.b ? "true" : "false"); return;
    case JV_INT:
    case JV_FLOAT:
      if (v->t == JV_FLOAT && isnan(v->u.f))
        jb_puts(c, b, "NaN");
      else if (v->t == JV_FLOAT && isinf(v->u.f))
        jb_puts(c, b, v->u.f < 0 ? "-Infinity" : "Infinity");
      else
        jv_to_str(c, b, v);
      return;
    case JV_STR: json_str(c, b, v->u.str.s, v->u.str.n); return;
    case JV_LIST:
      if (!v->u.list.n) {
        jb_puts(c, b, "[]");
        return;
      }
      jb_putc(c, b, '[');
      for (size_t i = 0; i < v->u.list.n; i++) {
        if (i) jb_puts(c, b, isep);
        if (indent >= 0) json_indent(c, b, indent, level + 1);
        json_rec(c, b, v->u.list.v[i], indent, sort_keys, isep, ksep, level + 1, line, col);
      }
      if (indent >= 0) json_indent(c, b, indent, level);
      jb_putc(c, b, ']');
      return;
    case JV_DICT:
    case JV_NS: {
      if (!v->u.dict.n) {
        jb_puts(c, b, "{}");
        return;
      }
      size_t n = v->u.dict.n;
      size_t *order = jalloc(c, n * sizeof *order);
      for (size_t i = 0; i < n; i++) order[i] = i;
      if (sort_keys) {
        for (size_t i = 0; i < n; i++)
          if (v->u.dict.k[i]->t != JV_STR)
            jfail(c, NLLM_ERR_INVALID_ARG, line, col, "tojson: sort_keys needs string keys");
        jv **keys = jalloc(c, n * sizeof *keys);
        memcpy(keys, v->u.dict.k, n * sizeof *keys);
        qsort(keys, n, sizeof *keys, str_cmp_jv);
        for (size_t i = 0; i < n; i++)
          for (size_t j = 0; j < n; j++)
            if (v->u.dict.k[j] == keys[i]) order[i] = j;
      }
      jb_putc(c, b, '{');
      for (size_t i = 0; i < n; i++) {
        jv *k = v->u.dict.k[order[i]];
        if (i) jb_puts(c, b, isep);
        if (indent >= 0) json_indent(c, b, indent, level + 1);
        if (k->t == JV_STR)
          json_str(c, b, k->u.str.s, k->u.str.n);
        else if (k->t == JV_NONE)
          jb_puts(c, b, "\"null\"");
        else if (k->t == JV_BOOL)
          jb_puts(c, b, k->u.b ? "\"true\"" : "\"false\"");
        else if (k->t == JV_INT || k->t == JV_FLOAT) {
          jbuf kb = {0};
          jv_to_str(c, &kb, k);
          json_str(c, b, kb.p, kb.n);
        } else
          jfail(c, NLLM_ERR_INVALID_ARG, line, col, "tojson: keys must be str, not %s",
                jv_type_name(k));
        jb_puts(c, b, ksep);
        json_rec(c, b, v->u.dict.v[order[i]], indent, sort_keys, isep, ksep, level + 1, line, col);
      }
      if (indent >= 0) json_indent(c, b, indent, level);
      jb_putc(c, b, '}');
      return;
    }
    default:
      snprintf(tmp, sizeof tmp, "%s", jv_type_name(v));
      jfail(c, NLLM_ERR_INVALID_ARG, line, col,
            "tojson: object of type %s is not JSON serializable", tmp);
  }
}

void jv_to_json(jctx *c, jbuf *b, jv *v, int indent, int sort_keys, const char *item_sep,
                const char *key_sep, int line, int col) {
  if (!item_sep) item_sep = indent >= 0 ? "," : ", ";
  if (!key_sep) key_sep = ": ";
  json_rec(c, b, v, indent, sort_keys, item_sep, key_sep, 0, line, col);
}

/* ---------------------------------------------------------------- JSON reader */

typedef struct {
  jctx *c;
  const char *s;
  size_t n, i;
  char *err;
  size_t err_cap;
  int depth;
} jrd;

static void skip_ws(jrd *r) {
  while (r->i < r->n &&
         (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' || r->s[r->i] == '\r'))
    r->i++;
}

static jv *rd_fail(jrd *r, const char *what) {
  snprintf(r->err, r->err_cap, "%s at offset %zu", what, r->i);
  return NULL;
}

static void put_utf8(jctx *c, jbuf *b, uint32_t cp) {
  char t[4];
  size_t n;
  if (cp < 0x80) {
    t[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    t[0] = (char)(0xC0 | (cp >> 6));
    t[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    t[0] = (char)(0xE0 | (cp >> 12));
    t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    t[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    t[0] = (char)(0xF0 | (cp >> 18));
    t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    t[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  jb_put(c, b, t, n);
}

static int hex4(const char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) {
    char h = s[k];
    v <<= 4;
    if (h >= '0' && h <= '9')
      v |= (uint32_t)(h - '0');
    else if (h >= 'a' && h <= 'f')
      v |= (uint32_t)(h - 'a' + 10);
    else if (h >= 'A' && h <= 'F')
      v |= (uint32_t)(h - 'A' + 10);
    else
      return 0;
  }
  *out = v;
  return 1;
}

static jv *rd_string(jrd *r) {
  jbuf b = {0};
  r->i++; /* opening quote */
  size_t run = r->i;
  while (r->i < r->n) {
    char ch = r->s[r->i];
    if (ch == '"') {
      jb_put(r->c, &b, r->s + run, r->i - run);
      r->i++;
      return jv_str_own(r->c, b.p ? b.p : "", b.n);
    }
    if ((unsigned char)ch < 0x20) return rd_fail(r, "control character in string");
    if (ch != '\\') {
      r->i++;
      continue;
    }
    jb_put(r->c, &b, r->s + run, r->i - run);
    if (r->i + 1 >= r->n) return rd_fail(r, "unterminated escape");
    char e = r->s[r->i + 1];
    r->i += 2;
    switch (e) {
      case '"': jb_putc(r->c, &b, '"'); break;
      case '\\': jb_putc(r->c, &b, '\\'); break;
      case '/': jb_putc(r->c, &b, '/'); break;
      case 'b': jb_putc(r->c, &b, '\b'); break;
      case 'f': jb_putc(r->c, &b, '\f'); break;
      case 'n': jb_putc(r->c, &b, '\n'); break;
      case 'r': jb_putc(r->c, &b, '\r'); break;
      case 't': jb_putc(r->c, &b, '\t'); break;
      case 'u': {
        uint32_t cp, lo;
        if (r->i + 4 > r->n || !hex4(r->s + r->i, &cp)) return rd_fail(r, "bad \\u escape");
        r->i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && r->i + 6 <= r->n && r->s[r->i] == '\\' &&
            r->s[r->i + 1] == 'u' && hex4(r->s + r->i + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          r->i += 6;
        } else if (cp >= 0xD800 && cp < 0xE000) {
          cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
        }
        put_utf8(r->c, &b, cp);
        break;
      }
      default: return rd_fail(r, "bad escape");
    }
    run = r->i;
  }
  return rd_fail(r, "unterminated string");
}

static jv *rd_value(jrd *r);

static jv *rd_number(jrd *r) {
  size_t st = r->i;
  int is_float = 0;
  if (r->s[r->i] == '-') r->i++;
  if (r->i >= r->n || r->s[r->i] < '0' || r->s[r->i] > '9') return rd_fail(r, "bad number");
  while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
  if (r->i < r->n && r->s[r->i] == '.') {
    is_float = 1;
    r->i++;
    if (r->i >= r->n || r->s[r->i] < '0' || r->s[r->i] > '9') return rd_fail(r, "bad number");
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
  }
  if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
    is_float = 1;
    r->i++;
    if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-')) r->i++;
    if (r->i >= r->n || r->s[r->i] < '0' || r->s[r->i] > '9') return rd_fail(r, "bad number");
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
  }
  char tmp[64];
  size_t len = r->i - st;
  if (len >= sizeof tmp) {
    if (!is_float) return rd_fail(r, "integer too long");
    len = sizeof tmp - 1;
  }
  memcpy(tmp, r->s + st, len);
  tmp[len] = 0;
  if (!is_float) {
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno == 0) return jv_int(r->c, v);
  }
  return jv_float(r->c, strtod(tmp, NULL));
}

static int rd_lit(jrd *r, const char *w) {
  size_t n = strlen(w);
  if (r->i + n <= r->n && memcmp(r->s + r->i, w, n) == 0) {
    r->i += n;
    return 1;
  }
  return 0;
}

static jv *rd_value(jrd *r) {
  skip_ws(r);
  if (r->i >= r->n) return rd_fail(r, "unexpected end of JSON");
  if (++r->depth > 200) return rd_fail(r, "JSON nested too deeply");
  char ch = r->s[r->i];
  jv *v = NULL;
  if (ch == '{') {
    v = jv_dict(r->c);
    r->i++;
    skip_ws(r);
    if (r->i < r->n && r->s[r->i] == '}')
      r->i++;
    else
      for (;;) {
        skip_ws(r);
        if (r->i >= r->n || r->s[r->i] != '"') return rd_fail(r, "expected a string key");
        jv *k = rd_string(r);
        if (!k) return NULL;
        skip_ws(r);
        if (r->i >= r->n || r->s[r->i] != ':') return rd_fail(r, "expected ':'");
        r->i++;
        jv *x = rd_value(r);
        if (!x) return NULL;
        jv_dict_set(r->c, v, k, x);
        skip_ws(r);
        if (r->i < r->n && r->s[r->i] == ',') {
          r->i++;
          continue;
        }
        if (r->i < r->n && r->s[r->i] == '}') {
          r->i++;
          break;
        }
        return rd_fail(r, "expected ',' or '}'");
      }
  } else if (ch == '[') {
    v = jv_list(r->c);
    r->i++;
    skip_ws(r);
    if (r->i < r->n && r->s[r->i] == ']')
      r->i++;
    else
      for (;;) {
        jv *x = rd_value(r);
        if (!x) return NULL;
        jv_list_push(r->c, v, x);
        skip_ws(r);
        if (r->i < r->n && r->s[r->i] == ',') {
          r->i++;
          continue;
        }
        if (r->i < r->n && r->s[r->i] == ']') {
          r->i++;
          break;
        }
        return rd_fail(r, "expected ',' or ']'");
      }
  } else if (ch == '"') {
    v = rd_string(r);
  } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
    v = rd_number(r);
  } else if (rd_lit(r, "true")) {
    v = JV_BOOL_P(1);
  } else if (rd_lit(r, "false")) {
    v = JV_BOOL_P(0);
  } else if (rd_lit(r, "null")) {
    v = JV_NONE_P;
  } else {
    return rd_fail(r, "unexpected character");
  }
  r->depth--;
  return v;
}

jv *jv_parse_json(jctx *c, const char *s, size_t n, size_t *end, char *err, size_t err_cap) {
  jrd r = {.c = c, .s = s, .n = n, .err = err, .err_cap = err_cap};
  jv *v = rd_value(&r);
  if (!v) return NULL;
  skip_ws(&r);
  if (end)
    *end = r.i;
  else if (r.i != n)
    return rd_fail(&r, "trailing text after JSON");
  return v;
}

/* ---------------------------------------------------------------- UTF-8 */

size_t ju_len(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
  return k;
}

size_t ju_offset(const char *s, size_t n, size_t i) {
  size_t k = 0;
  for (size_t b = 0; b < n; b++)
    if (((unsigned char)s[b] & 0xC0) != 0x80) {
      if (k == i) return b;
      k++;
    }
  return n;
}
