/* Filters, tests, str/dict methods and global functions of the template interpreter, each
 * behaving as Jinja2 (and the Python method it wraps) does for the values chat templates use.
 * tojson is transformers' version (json.dumps, no HTML escaping, ensure_ascii off). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <utf8proc.h>

#include "template/jinja.h"

#define FAIL(...) jfail(c, NLLM_ERR_INVALID_ARG, a->line, a->col, __VA_ARGS__)

/* ---------------------------------------------------------------- argument helpers */

/* Positional argument i, else keyword name, else NULL. */
static jv *arg(jargs *a, int i, const char *name) {
  if (i >= 0 && i < a->n) return a->v[i];
  for (int k = 0; k < a->nkw; k++)
    if (name && strcmp(a->kwn[k], name) == 0) return a->kwv[k];
  return NULL;
}

static jv *arg_or(jargs *a, int i, const char *name, jv *dflt) {
  jv *v = arg(a, i, name);
  return v ? v : dflt;
}

static jv *need_str(jctx *c, jargs *a, jv *v, const char *what) {
  if (v->t != JV_STR) FAIL("%s expects a string, got %s", what, jv_type_name(v));
  return v;
}

static int64_t need_int(jctx *c, jargs *a, jv *v, const char *what) {
  if (v->t == JV_INT) return v->u.i;
  if (v->t == JV_BOOL) return v->u.b;
  FAIL("%s expects an integer, got %s", what, jv_type_name(v));
}

static jv *str0(jctx *c, jbuf *b) {
  return jv_str_own(c, b->p ? b->p : "", b->n);
}

jv *jinja_iter_list(jctx *c, jv *v, int line, int col) {
  if (v->t == JV_LIST) return v;
  jv *l = jv_list(c);
  if (v->t == JV_UNDEF) return l;
  if (v->t == JV_DICT || v->t == JV_NS) {
    for (size_t i = 0; i < v->u.dict.n; i++) jv_list_push(c, l, v->u.dict.k[i]);
    return l;
  }
  if (v->t == JV_STR) {
    size_t i = 0;
    while (i < v->u.str.n) {
      size_t j = i + 1;
      while (j < v->u.str.n && ((unsigned char)v->u.str.s[j] & 0xC0) == 0x80) j++;
      jv_list_push(c, l, jv_strn(c, v->u.str.s + i, j - i));
      i = j;
    }
    return l;
  }
  jfail(c, NLLM_ERR_INVALID_ARG, line, col, "'%s' object is not iterable", jv_type_name(v));
}

/* Python str.isspace for one code point starting at s[i]; sets *len. */
static int py_space(const char *s, size_t n, size_t i, size_t *len) {
  utf8proc_int32_t cp;
  utf8proc_ssize_t k =
      utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
  if (k <= 0) {
    *len = 1;
    return 0;
  }
  *len = (size_t)k;
  if ((cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xA0) return 1;
  if (cp < 0x80) return 0;
  utf8proc_category_t cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

/* Python's strip family: chars NULL = whitespace. */
static jv *py_strip(jctx *c, jv *s, jv *chars, int left, int right) {
  const char *p = s->u.str.s;
  size_t a = 0, b = s->u.str.n, len;
  if (!chars || chars->t == JV_NONE) {
    while (left && a < b && py_space(p, b, a, &len)) a += len;
    while (right && b > a) {
      size_t st = b - 1;
      while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
      if (!py_space(p, b, st, &len)) break;
      b = st;
    }
  } else {
    const char *cs = chars->u.str.s;
    size_t cn = chars->u.str.n;
    /* chars as a set of code points */
    for (;;) {
      if (!left || a >= b) break;
      size_t j = a + 1;
      while (j < b && ((unsigned char)p[j] & 0xC0) == 0x80) j++;
      int hit = 0;
      for (size_t k = 0; k + (j - a) <= cn && !hit; k++)
        if (memcmp(cs + k, p + a, j - a) == 0 && ((unsigned char)cs[k] & 0xC0) != 0x80) hit = 1;
      if (!hit) break;
      a = j;
    }
    for (;;) {
      if (!right || b <= a) break;
      size_t st = b - 1;
      while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
      int hit = 0;
      for (size_t k = 0; k + (b - st) <= cn && !hit; k++)
        if (memcmp(cs + k, p + st, b - st) == 0 && ((unsigned char)cs[k] & 0xC0) != 0x80) hit = 1;
      if (!hit) break;
      b = st;
    }
  }
  return jv_str_own(c, p + a, b - a);
}

static jv *case_map(jctx *c, jv *s, int mode /* 0 lower 1 upper 2 title 3 capitalize */) {
  jbuf b = {0};
  const char *p = s->u.str.s;
  size_t n = s->u.str.n, i = 0;
  int prev_cased = 0, first = 1;
  while (i < n) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)p + i, (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0) {
      jb_putc(c, &b, p[i++]);
      continue;
    }
    if (cp == 0xDF && mode != 0 && (mode == 1 || !prev_cased)) { /* full case mapping of ß */
      jb_puts(c, &b, mode == 1 ? "SS" : "Ss");
      prev_cased = 1;
      first = 0;
      i += (size_t)k;
      continue;
    }
    utf8proc_int32_t o = cp;
    if (mode == 0)
      o = utf8proc_tolower(cp);
    else if (mode == 1)
      o = utf8proc_toupper(cp);
    else if (mode == 2)
      o = prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp);
    else
      o = first ? utf8proc_totitle(cp) : utf8proc_tolower(cp);
    utf8proc_category_t cat = utf8proc_category(cp);
    prev_cased =
        cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
    first = 0;
    utf8proc_uint8_t enc[4];
    utf8proc_ssize_t m = utf8proc_encode_char(o, enc);
    jb_put(c, &b, (const char *)enc, (size_t)m);
    i += (size_t)k;
  }
  return str0(c, &b);
}

static const char *memfind(const char *h, size_t hn, const char *nd, size_t nn) {
  if (nn == 0) return h;
  for (size_t i = 0; i + nn <= hn; i++)
    if (memcmp(h + i, nd, nn) == 0) return h + i;
  return NULL;
}

static jv *py_replace(jctx *c, jargs *a, jv *s, jv *old, jv *new_, int64_t count) {
  need_str(c, a, old, "replace");
  need_str(c, a, new_, "replace");
  jbuf b = {0};
  const char *p = s->u.str.s, *end = p + s->u.str.n;
  if (old->u.str.n == 0) { /* Python inserts between every character */
    int64_t done = 0;
    size_t i = 0;
    if (count != 0) {
      jb_put(c, &b, new_->u.str.s, new_->u.str.n);
      done++;
    }
    while (i < s->u.str.n) {
      size_t j = i + 1;
      while (j < s->u.str.n && ((unsigned char)p[j] & 0xC0) == 0x80) j++;
      jb_put(c, &b, p + i, j - i);
      if (count < 0 || done < count) {
        jb_put(c, &b, new_->u.str.s, new_->u.str.n);
        done++;
      }
      i = j;
    }
    return str0(c, &b);
  }
  int64_t done = 0;
  while (p < end) {
    const char *hit = (count < 0 || done < count)
                          ? memfind(p, (size_t)(end - p), old->u.str.s, old->u.str.n)
                          : NULL;
    if (!hit) break;
    jb_put(c, &b, p, (size_t)(hit - p));
    jb_put(c, &b, new_->u.str.s, new_->u.str.n);
    p = hit + old->u.str.n;
    done++;
  }
  jb_put(c, &b, p, (size_t)(end - p));
  return str0(c, &b);
}

static jv *py_split(jctx *c, jargs *a, jv *s, jv *sep, int64_t maxsplit, int from_right) {
  jv *l = jv_list(c);
  const char *p = s->u.str.s;
  size_t n = s->u.str.n;
  if (!sep || sep->t == JV_NONE) {
    /* runs of whitespace; no empty strings */
    size_t i = 0, len;
    int64_t done = 0;
    if (from_right) {
      /* rare in templates: split everything, then join the leading parts */
      jv *all = py_split(c, a, s, NULL, -1, 0);
      if (maxsplit < 0 || (size_t)maxsplit + 1 >= all->u.list.n) return all;
      FAIL("rsplit with maxsplit on whitespace is not supported");
    }
    while (i < n) {
      while (i < n && py_space(p, n, i, &len)) i += len;
      if (i >= n) break;
      if (maxsplit >= 0 && done >= maxsplit) {
        size_t e = n;
        while (e > i) {
          size_t st = e - 1;
          while (st > i && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
          if (!py_space(p, n, st, &len)) break;
          e = st;
        }
        jv_list_push(c, l, jv_strn(c, p + i, e - i));
        break;
      }
      size_t st = i;
      while (i < n && !py_space(p, n, i, &len)) i += len;
      jv_list_push(c, l, jv_strn(c, p + st, i - st));
      done++;
    }
    return l;
  }
  need_str(c, a, sep, "split");
  if (sep->u.str.n == 0) FAIL("empty separator");
  const char *sp = sep->u.str.s;
  size_t sn = sep->u.str.n;
  if (!from_right) {
    size_t i = 0;
    int64_t done = 0;
    for (;;) {
      const char *hit = (maxsplit < 0 || done < maxsplit) ? memfind(p + i, n - i, sp, sn) : NULL;
      if (!hit) {
        jv_list_push(c, l, jv_strn(c, p + i, n - i));
        return l;
      }
      jv_list_push(c, l, jv_strn(c, p + i, (size_t)(hit - (p + i))));
      i = (size_t)(hit - p) + sn;
      done++;
    }
  }
  /* rsplit: collect from the right, then reverse */
  jv *rev = jv_list(c);
  size_t e = n;
  int64_t done = 0;
  for (;;) {
    const char *hit = NULL;
    if (maxsplit < 0 || done < maxsplit)
      for (size_t k = e; k >= sn; k--)
        if (memcmp(p + k - sn, sp, sn) == 0) {
          hit = p + k - sn;
          break;
        }
    if (!hit) {
      jv_list_push(c, rev, jv_strn(c, p, e));
      break;
    }
    jv_list_push(c, rev, jv_strn(c, hit + sn, (size_t)(p + e - (hit + sn))));
    e = (size_t)(hit - p);
    done++;
  }
  for (size_t k = rev->u.list.n; k > 0; k--) jv_list_push(c, l, rev->u.list.v[k - 1]);
  return l;
}

static int affix_match(jv *s, jv *x, int suffix) {
  if (x->t != JV_STR || x->u.str.n > s->u.str.n) return 0;
  const char *at = suffix ? s->u.str.s + s->u.str.n - x->u.str.n : s->u.str.s;
  return memcmp(at, x->u.str.s, x->u.str.n) == 0;
}

/* ---------------------------------------------------------------- methods */

#define IS(w) (n == strlen(w) && memcmp(name, w, n) == 0)

static jv *m_str(jctx *c, jv *fn, jargs *a);
static jv *m_dict(jctx *c, jv *fn, jargs *a);

static const char *const str_methods[] = {
    "strip",   "lstrip",     "rstrip",  "split",      "rsplit",  "startswith", "endswith",
    "lower",   "upper",      "title",   "capitalize", "replace", "find",       "rfind",
    "count",   "join",       "isdigit", "isalpha",    "isalnum", "isspace",    "islower",
    "isupper", "splitlines", "index",   NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", NULL};

jv *jinja_method(jctx *c, jv *obj, const char *name, size_t n) {
  const char *const *tab = obj->t == JV_STR ? str_methods : obj->t == JV_DICT ? dict_methods : NULL;
  if (!tab) return NULL;
  for (; *tab; tab++)
    if (IS(*tab)) {
      jv *f = jv_new(c, JV_FUNC);
      f->u.func.fn = obj->t == JV_STR ? m_str : m_dict;
      f->u.func.self = obj;
      f->u.func.name = *tab;
      return f;
    }
  return NULL;
}

static jv *m_str(jctx *c, jv *fn, jargs *a) {
  const char *name = fn->u.func.name;
  size_t n = strlen(name);
  int line = a->line, col = a->col;
  jv *s = fn->u.func.self;
  if (IS("strip") || IS("lstrip") || IS("rstrip")) {
    jv *chars = arg(a, 0, "chars");
    if (chars && chars->t != JV_NONE) need_str(c, a, chars, name);
    return py_strip(c, s, chars, !IS("rstrip"), !IS("lstrip"));
  }
  if (IS("split") || IS("rsplit")) {
    jv *ms = arg(a, 1, "maxsplit");
    return py_split(c, a, s, arg(a, 0, "sep"), ms ? need_int(c, a, ms, name) : -1, IS("rsplit"));
  }
  if (IS("startswith") || IS("endswith")) {
    jv *x = arg(a, 0, NULL);
    if (!x) FAIL("%s needs an argument", name);
    int suf = IS("endswith");
    if (x->t == JV_LIST) {
      for (size_t i = 0; i < x->u.list.n; i++)
        if (affix_match(s, x->u.list.v[i], suf)) return JV_BOOL_P(1);
      return JV_BOOL_P(0);
    }
    need_str(c, a, x, name);
    return JV_BOOL_P(affix_match(s, x, suf));
  }
  if (IS("lower")) return case_map(c, s, 0);
  if (IS("upper")) return case_map(c, s, 1);
  if (IS("title")) return case_map(c, s, 2);
  if (IS("capitalize")) return case_map(c, s, 3);
  if (IS("replace")) {
    jv *o = arg(a, 0, NULL), *w = arg(a, 1, NULL), *cnt = arg(a, 2, "count");
    if (!o || !w) FAIL("replace needs two arguments");
    return py_replace(c, a, s, o, w, cnt ? need_int(c, a, cnt, name) : -1);
  }
  if (IS("find") || IS("rfind") || IS("index") || IS("count")) {
    jv *x = arg(a, 0, NULL);
    if (!x) FAIL("%s needs an argument", name);
    need_str(c, a, x, name);
    if (IS("count")) {
      if (x->u.str.n == 0) return jv_int(c, (int64_t)ju_len(s->u.str.s, s->u.str.n) + 1);
      int64_t k = 0;
      const char *p = s->u.str.s, *end = p + s->u.str.n, *h;
      while ((h = memfind(p, (size_t)(end - p), x->u.str.s, x->u.str.n))) {
        k++;
        p = h + x->u.str.n;
      }
      return jv_int(c, k);
    }
    const char *h = NULL;
    if (IS("rfind")) {
      for (size_t k = s->u.str.n + 1; k-- > 0;)
        if (k + x->u.str.n <= s->u.str.n && memcmp(s->u.str.s + k, x->u.str.s, x->u.str.n) == 0) {
          h = s->u.str.s + k;
          break;
        }
    } else {
      h = memfind(s->u.str.s, s->u.str.n, x->u.str.s, x->u.str.n);
    }
    if (!h && IS("index")) FAIL("substring not found");
    return jv_int(c, h ? (int64_t)ju_len(s->u.str.s, (size_t)(h - s->u.str.s)) : -1);
  }
  if (IS("join")) {
    jv *x = arg(a, 0, NULL);
    if (!x) FAIL("join needs an argument");
    jv *items = jinja_iter_list(c, x, line, col);
    jbuf b = {0};
    for (size_t i = 0; i < items->u.list.n; i++) {
      if (i) jb_put(c, &b, s->u.str.s, s->u.str.n);
      jv *it = items->u.list.v[i];
      if (it->t != JV_STR)
        FAIL("sequence item %zu: expected str instance, %s found", i, jv_type_name(it));
      jb_put(c, &b, it->u.str.s, it->u.str.n);
    }
    return str0(c, &b);
  }
  if (IS("splitlines")) {
    jv *l = jv_list(c);
    size_t i = 0, st = 0;
    const char *p = s->u.str.s;
    while (i < s->u.str.n) {
      if (p[i] == '\n' || p[i] == '\r') {
        jv_list_push(c, l, jv_strn(c, p + st, i - st));
        if (p[i] == '\r' && i + 1 < s->u.str.n && p[i + 1] == '\n') i++;
        st = ++i;
      } else {
        i++;
      }
    }
    if (st < s->u.str.n) jv_list_push(c, l, jv_strn(c, p + st, s->u.str.n - st));
    return l;
  }
  /* is* predicates: every character of a non-empty string */
  if (s->u.str.n == 0) return JV_BOOL_P(0);
  int any_cased = 0;
  for (size_t i = 0; i < s->u.str.n;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s->u.str.s + i,
                                          (utf8proc_ssize_t)(s->u.str.n - i), &cp);
    if (k <= 0) return JV_BOOL_P(0);
    utf8proc_category_t cat = utf8proc_category(cp);
    int letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    int digit = cat == UTF8PROC_CATEGORY_ND;
    size_t len;
    int ok = 1;
    if (IS("isdigit"))
      ok = digit;
    else if (IS("isalpha"))
      ok = letter;
    else if (IS("isalnum"))
      ok = letter || digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
    else if (IS("isspace"))
      ok = py_space(s->u.str.s, s->u.str.n, i, &len);
    else if (IS("islower")) {
      if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) ok = 0;
      if (cat == UTF8PROC_CATEGORY_LL) any_cased = 1;
    } else if (IS("isupper")) {
      if (cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) ok = 0;
      if (cat == UTF8PROC_CATEGORY_LU) any_cased = 1;
    }
    if (!ok) return JV_BOOL_P(0);
    i += (size_t)k;
  }
  if (IS("islower") || IS("isupper")) return JV_BOOL_P(any_cased);
  return JV_BOOL_P(1);
}

static jv *m_dict(jctx *c, jv *fn, jargs *a) {
  const char *name = fn->u.func.name;
  size_t n = strlen(name);
  jv *self = fn->u.func.self;
  if (IS("get")) {
    jv *k = arg(a, 0, NULL);
    if (!k) FAIL("get needs a key");
    jv *v = jv_dict_getv(self, k);
    return v ? v : arg_or(a, 1, "default", JV_NONE_P);
  }
  jv *l = jv_list(c);
  for (size_t i = 0; i < self->u.dict.n; i++) {
    if (IS("keys"))
      jv_list_push(c, l, self->u.dict.k[i]);
    else if (IS("values"))
      jv_list_push(c, l, self->u.dict.v[i]);
    else {
      jv *t = jv_list(c);
      t->u.list.is_tuple = 1;
      jv_list_push(c, t, self->u.dict.k[i]);
      jv_list_push(c, t, self->u.dict.v[i]);
      jv_list_push(c, l, t);
    }
  }
  return l;
}

#undef IS

/* ---------------------------------------------------------------- globals */

static jv *g_range(jctx *c, jv *fn, jargs *a) {
  jv **av = a->v;
  int na = a->n;
  if (na < 1 || na > 3) FAIL("range takes 1 to 3 arguments");
  int64_t st = 0, en, sp = 1;
  if (na == 1)
    en = need_int(c, a, av[0], "range");
  else {
    st = need_int(c, a, av[0], "range");
    en = need_int(c, a, av[1], "range");
    if (na == 3) sp = need_int(c, a, av[2], "range");
  }
  if (sp == 0) FAIL("range step must not be zero");
  double count =
      sp > 0 ? ((double)en - (double)st) / (double)sp : ((double)st - (double)en) / (double)-sp;
  if (count > (double)(c->max_steps - c->steps))
    jfail(c, NLLM_ERR_ABORTED, a->line, a->col, "range of %.0f items exceeds the loop limit",
          count);
  jv *l = jv_list(c);
  for (int64_t i = st; sp > 0 ? i < en : i > en;) {
    if (++c->steps > c->max_steps)
      jfail(c, NLLM_ERR_ABORTED, a->line, a->col, "range longer than the loop limit");
    jv_list_push(c, l, jv_int(c, i));
    if (__builtin_add_overflow(i, sp, &i)) break;
  }
  return l;
}

static jv *g_namespace(jctx *c, jv *fn, jargs *a) {
  jv **av = a->v, **kwv = a->kwv;
  int na = a->n, nkw = a->nkw, line = a->line, col = a->col;
  const char **kwn = a->kwn;
  jv *ns = jv_new(c, JV_NS);
  for (int i = 0; i < na; i++) {
    if (av[i]->t != JV_DICT && av[i]->t != JV_NS)
      jfail(c, NLLM_ERR_INVALID_ARG, line, col, "namespace() takes a dict, not %s",
            jv_type_name(av[i]));
    for (size_t k = 0; k < av[i]->u.dict.n; k++)
      jv_dict_set(c, ns, av[i]->u.dict.k[k], av[i]->u.dict.v[k]);
  }
  for (int k = 0; k < nkw; k++) jv_dict_set(c, ns, jv_strn(c, kwn[k], strlen(kwn[k])), kwv[k]);
  if (fn->u.func.self) ns->t = JV_DICT; /* dict() shares the code; self marks it */
  return ns;
}

static jv *g_raise(jctx *c, jv *fn, jargs *a) {
  jbuf b = {0};
  (void)fn;
  if (a->n > 0) jv_to_str(c, &b, a->v[0]);
  jfail(c, NLLM_ERR_INVALID_ARG, a->line, a->col, "raise_exception: %s", b.p ? b.p : "");
}

static jv *g_strftime(jctx *c, jv *fn, jargs *a) {
  jv **av = a->v;
  int na = a->n;
  (void)fn;
  if (na < 1) FAIL("strftime_now needs a format");
  need_str(c, a, av[0], "strftime_now");
  struct tm tmv;
  time_t t = c->now ? (time_t)c->now : time(NULL);
  if (c->now)
    gmtime_r(&t, &tmv);
  else
    localtime_r(&t, &tmv);
  char out[512];
  char *fmt = jstrndup(c, av[0]->u.str.s, av[0]->u.str.n);
  size_t k = strftime(out, sizeof out, fmt, &tmv);
  if (k == 0 && av[0]->u.str.n) FAIL("strftime_now: result too long or empty");
  return jv_strn(c, out, k);
}

static jv *mkfunc(jctx *c, jfunc_fn fn, jv *self, const char *name) {
  jv *f = jv_new(c, JV_FUNC);
  f->u.func.fn = fn;
  f->u.func.self = self;
  f->u.func.name = name;
  return f;
}

void jinja_add_globals(jctx *c, jv *g) {
  jv_dict_set(c, g, jv_strn(c, "range", 5), mkfunc(c, g_range, NULL, "range"));
  jv_dict_set(c, g, jv_strn(c, "namespace", 9), mkfunc(c, g_namespace, NULL, "namespace"));
  jv_dict_set(c, g, jv_strn(c, "dict", 4), mkfunc(c, g_namespace, JV_NONE_P, "dict"));
  jv_dict_set(c, g, jv_strn(c, "raise_exception", 15), mkfunc(c, g_raise, NULL, "raise_exception"));
  jv_dict_set(c, g, jv_strn(c, "strftime_now", 12), mkfunc(c, g_strftime, NULL, "strftime_now"));
}

/* ---------------------------------------------------------------- tests */

int jinja_test(jctx *c, const char *name, jv *v, jargs *a) {
#define IS(w) (strcmp(name, w) == 0)
  jv *x = arg(a, 0, NULL);
  if (IS("defined")) return v->t != JV_UNDEF;
  if (IS("undefined")) return v->t == JV_UNDEF;
  if (IS("none")) return v->t == JV_NONE;
  if (IS("boolean")) return v->t == JV_BOOL;
  if (IS("true")) return v->t == JV_BOOL && v->u.b;
  if (IS("false")) return v->t == JV_BOOL && !v->u.b;
  if (IS("integer")) return v->t == JV_INT;
  if (IS("float")) return v->t == JV_FLOAT;
  if (IS("number")) return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
  if (IS("string")) return v->t == JV_STR;
  if (IS("mapping")) return v->t == JV_DICT;
  if (IS("iterable"))
    return v->t == JV_STR || v->t == JV_LIST || v->t == JV_DICT || v->t == JV_UNDEF;
  if (IS("sequence"))
    return v->t == JV_STR || v->t == JV_LIST || v->t == JV_DICT || v->t == JV_UNDEF;
  if (IS("callable")) return v->t == JV_MACRO || v->t == JV_FUNC;
  if (IS("lower") || IS("upper")) {
    if (v->t != JV_STR) return 0;
    jv *m = case_map(c, v, IS("upper"));
    return jv_equal(m, v);
  }
  if (IS("odd") || IS("even")) {
    int64_t k = need_int(c, a, v, name);
    return IS("odd") ? (k % 2 != 0) : (k % 2 == 0);
  }
  static const char *const with_arg[] = {
      "divisibleby", "equalto", "eq", "==", "ne", "!=",          "sameas", "in", "lt", "<",
      "lessthan",    "le",      "<=", "gt", ">",  "greaterthan", "ge",     ">=", NULL};
  int known = 0;
  for (const char *const *w = with_arg; *w; w++) known |= IS(*w);
  if (!known) FAIL("unknown test '%s'", name);
  if (!x) FAIL("test '%s' needs an argument", name);
  if (IS("divisibleby")) {
    int64_t d = need_int(c, a, x, name);
    if (d == 0) FAIL("divisibleby 0");
    return d == -1 || need_int(c, a, v, name) % d == 0;
  }
  if (IS("equalto") || IS("eq") || IS("==")) return jv_equal(v, x);
  if (IS("ne") || IS("!=")) return !jv_equal(v, x);
  if (IS("sameas")) { /* scalars compare by value (Python interns them), containers by identity */
    if (v->t != x->t) return 0;
    if (v->t == JV_LIST || v->t == JV_DICT || v->t == JV_NS) return v == x;
    return jv_equal(v, x);
  }
  if (IS("in")) {
    if (x->t == JV_STR)
      return v->t == JV_STR && memfind(x->u.str.s, x->u.str.n, v->u.str.s, v->u.str.n);
    jv *l = jinja_iter_list(c, x, a->line, a->col);
    for (size_t i = 0; i < l->u.list.n; i++)
      if (jv_equal(l->u.list.v[i], v)) return 1;
    return 0;
  }
  int r = 0;
  if (IS("lt") || IS("<") || IS("lessthan") || IS("le") || IS("<=") || IS("gt") || IS(">") ||
      IS("greaterthan") || IS("ge") || IS(">="))
    r = jv_compare(c, v, x, a->line, a->col);
  if (IS("lt") || IS("<") || IS("lessthan")) return r < 0;
  if (IS("le") || IS("<=")) return r <= 0;
  if (IS("gt") || IS(">") || IS("greaterthan")) return r > 0;
  if (IS("ge") || IS(">=")) return r >= 0;
  FAIL("unknown test '%s'", name);
#undef IS
}

/* ---------------------------------------------------------------- filters */

typedef struct {
  jctx *c;
  jv *attr;
  int fold_case;
  int line, col;
} sortctx;

static jv *sort_key(sortctx *sc, jv *v) {
  jv *k = v;
  if (sc->attr)
    k = jinja_getattr(sc->c, v, sc->attr->u.str.s, sc->attr->u.str.n, sc->line, sc->col);
  if (sc->fold_case && k->t == JV_STR) k = case_map(sc->c, k, 0);
  return k;
}

/* Stable like Python's sort; keys are computed once. */
static void sort_items(sortctx *sc, jv **v, size_t n) {
  if (n < 2) return;
  jctx *c = sc->c;
  jv **keys = jalloc(c, n * sizeof *keys), **tk = jalloc(c, n * sizeof *tk),
     **tv = jalloc(c, n * sizeof *tv);
  for (size_t i = 0; i < n; i++) keys[i] = sort_key(sc, v[i]);
  for (size_t w = 1; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        if (++c->steps > c->max_steps)
          jfail(c, NLLM_ERR_ABORTED, sc->line, sc->col, "sort exceeds the loop limit");
        if (jv_compare(c, keys[j], keys[i], sc->line, sc->col) < 0)
          tk[k] = keys[j], tv[k++] = v[j++];
        else
          tk[k] = keys[i], tv[k++] = v[i++];
      }
      while (i < mid) tk[k] = keys[i], tv[k++] = v[i++];
      while (j < hi) tk[k] = keys[j], tv[k++] = v[j++];
    }
    memcpy(keys, tk, n * sizeof *keys);
    memcpy(v, tv, n * sizeof *v);
  }
}

static jv *apply_filter_on(jctx *c, jv *item, jv *filter_name, jargs *rest) {
  if (filter_name->t != JV_STR)
    jfail(c, NLLM_ERR_INVALID_ARG, rest->line, rest->col, "map/select needs a filter or test name");
  char *nm = jstrndup(c, filter_name->u.str.s, filter_name->u.str.n);
  return jinja_filter(c, nm, item, rest);
}

/* select/reject/selectattr/rejectattr share this: keep items whose test result == keep. */
static jv *select_items(jctx *c, jv *v, jargs *a, int by_attr, int keep) {
  jv *items = jinja_iter_list(c, v, a->line, a->col);
  jv *attr = NULL, *test = NULL;
  int first = 0;
  if (by_attr) {
    attr = arg(a, 0, NULL);
    if (!attr || attr->t != JV_STR) FAIL("selectattr/rejectattr need an attribute name");
    first = 1;
  }
  test = arg(a, first, NULL);
  jargs rest = {
      a->v + first + 1, a->n > first + 1 ? a->n - first - 1 : 0, NULL, NULL, 0, a->line, a->col};
  if (test && test->t != JV_STR) FAIL("select needs a test name");
  char *tname = test ? jstrndup(c, test->u.str.s, test->u.str.n) : NULL;
  jv *out = jv_list(c);
  for (size_t i = 0; i < items->u.list.n; i++) {
    jv *it = items->u.list.v[i], *x = it;
    if (attr) x = jinja_getattr(c, it, attr->u.str.s, attr->u.str.n, a->line, a->col);
    int r = tname ? jinja_test(c, tname, x, &rest) : jv_truthy(x);
    if (!!r == keep) jv_list_push(c, out, it);
  }
  return out;
}

/* A float as an int64, or NULL when it has none (NaN, infinite, beyond 64 bits). */
static jv *float_to_int(jctx *c, double f) {
  if (!(f > -9223372036854775808.0 && f < 9223372036854775808.0)) return NULL;
  return jv_int(c, (int64_t)f);
}

static jv *to_number(jctx *c, jv *v, int want_float, jv *dflt) {
  if (v->t == JV_INT || v->t == JV_BOOL)
    return want_float ? jv_float(c, (double)(v->t == JV_INT ? v->u.i : v->u.b))
                      : jv_int(c, v->t == JV_INT ? v->u.i : v->u.b);
  if (v->t == JV_FLOAT) {
    if (want_float) return v;
    jv *i = float_to_int(c, v->u.f);
    return i ? i : dflt;
  }
  if (v->t == JV_STR) {
    char *s = jstrndup(c, v->u.str.s, v->u.str.n), *end;
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    if (!want_float) {
      errno = 0;
      long long k = strtoll(s, &end, 10);
      while (*end == ' ' || *end == '\t' || *end == '\n') end++;
      if (end != s && !*end && !errno) return jv_int(c, k);
    }
    double d = strtod(s, &end);
    while (*end == ' ' || *end == '\t' || *end == '\n') end++;
    if (end != s && !*end) {
      if (want_float) return jv_float(c, d);
      jv *i = float_to_int(c, d);
      return i ? i : dflt;
    }
  }
  return dflt;
}

jv *jinja_filter(jctx *c, const char *name, jv *v, jargs *a) {
#define IS(w) (strcmp(name, w) == 0)
  if (IS("safe") || IS("string")) return IS("string") ? jv_as_str(c, v) : v;
  if (IS("default") || IS("d")) {
    jv *d = arg_or(a, 0, "default_value", jv_strn(c, "", 0));
    jv *boolean = arg(a, 1, "boolean");
    if (v->t == JV_UNDEF || (boolean && jv_truthy(boolean) && !jv_truthy(v))) return d;
    return v;
  }
  if (IS("length") || IS("count")) {
    if (v->t == JV_STR) return jv_int(c, (int64_t)ju_len(v->u.str.s, v->u.str.n));
    if (v->t == JV_LIST) return jv_int(c, (int64_t)v->u.list.n);
    if (v->t == JV_DICT || v->t == JV_NS) return jv_int(c, (int64_t)v->u.dict.n);
    if (v->t == JV_UNDEF) return jv_int(c, 0);
    FAIL("object of type '%s' has no len()", jv_type_name(v));
  }
  if (IS("tojson")) {
    jv *ind = arg(a, 0, "indent"), *sk = arg(a, -1, "sort_keys"), *sep = arg(a, -1, "separators");
    int indent = -1;
    if (ind && ind->t != JV_NONE) indent = (int)need_int(c, a, ind, "tojson indent");
    if (indent > 64) FAIL("tojson indent too large");
    const char *isep = NULL, *ksep = NULL;
    if (sep && sep->t != JV_NONE) {
      if (sep->t != JV_LIST || sep->u.list.n != 2 || sep->u.list.v[0]->t != JV_STR ||
          sep->u.list.v[1]->t != JV_STR)
        FAIL("tojson separators must be two strings");
      isep = jstrndup(c, sep->u.list.v[0]->u.str.s, sep->u.list.v[0]->u.str.n);
      ksep = jstrndup(c, sep->u.list.v[1]->u.str.s, sep->u.list.v[1]->u.str.n);
    }
    if (v->t == JV_UNDEF) FAIL("tojson: object of type Undefined is not JSON serializable");
    jbuf b = {0};
    jv_to_json(c, &b, v, indent, sk && jv_truthy(sk), isep, ksep, a->line, a->col);
    return str0(c, &b);
  }
  if (IS("trim") || IS("upper") || IS("lower") || IS("title") || IS("capitalize")) {
    jv *s = jv_as_str(c, v);
    if (IS("trim")) {
      jv *chars = arg(a, 0, "chars");
      if (chars && chars->t != JV_NONE) need_str(c, a, chars, "trim");
      return py_strip(c, s, chars, 1, 1);
    }
    return case_map(c, s, IS("lower") ? 0 : IS("upper") ? 1 : IS("title") ? 2 : 3);
  }
  if (IS("replace")) {
    jv *o = arg(a, 0, "old"), *w = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
    if (!o || !w) FAIL("replace needs two arguments");
    return py_replace(c, a, jv_as_str(c, v), o, w,
                      cnt && cnt->t != JV_NONE ? need_int(c, a, cnt, "replace") : -1);
  }
  if (IS("join")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col);
    jv *sep = arg_or(a, 0, "d", NULL), *attr = arg(a, 1, "attribute");
    jbuf b = {0};
    for (size_t i = 0; i < items->u.list.n; i++) {
      if (i && sep) jv_to_str(c, &b, sep);
      jv *it = items->u.list.v[i];
      if (attr) it = jinja_getattr(c, it, attr->u.str.s, attr->u.str.n, a->line, a->col);
      jv_to_str(c, &b, it);
    }
    return str0(c, &b);
  }
  if (IS("first") || IS("last")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col);
    if (!items->u.list.n) return JV_UNDEF_P;
    return items->u.list.v[IS("first") ? 0 : items->u.list.n - 1];
  }
  if (IS("list")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col), *l = jv_list(c);
    for (size_t i = 0; i < items->u.list.n; i++) jv_list_push(c, l, items->u.list.v[i]);
    return l;
  }
  if (IS("items") || IS("dictsort")) {
    jv *l = jv_list(c);
    if (v->t == JV_UNDEF) return l;
    if (v->t != JV_DICT && v->t != JV_NS)
      FAIL("%s expects a mapping, got %s", name, jv_type_name(v));
    for (size_t i = 0; i < v->u.dict.n; i++) {
      jv *t = jv_list(c);
      t->u.list.is_tuple = 1;
      jv_list_push(c, t, v->u.dict.k[i]);
      jv_list_push(c, t, v->u.dict.v[i]);
      jv_list_push(c, l, t);
    }
    if (IS("dictsort") && l->u.list.n > 1) {
      jv *keys = jv_list(c);
      for (size_t i = 0; i < l->u.list.n; i++) jv_list_push(c, keys, l->u.list.v[i]);
      sortctx sc = {c, NULL, 1, a->line, a->col};
      /* dictsort orders by key: sort the (key, value) tuples by their first item */
      sort_items(&sc, keys->u.list.v, keys->u.list.n);
      return keys;
    }
    return l;
  }
  if (IS("selectattr") || IS("rejectattr")) return select_items(c, v, a, 1, IS("selectattr"));
  if (IS("select") || IS("reject")) return select_items(c, v, a, 0, IS("select"));
  if (IS("map")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col), *out = jv_list(c);
    jv *attr = arg(a, -1, "attribute");
    jv *dflt = arg(a, -1, "default");
    for (size_t i = 0; i < items->u.list.n; i++) {
      jv *it = items->u.list.v[i];
      if (attr) {
        if (attr->t != JV_STR) FAIL("map attribute must be a string");
        jv *x = jinja_getattr(c, it, attr->u.str.s, attr->u.str.n, a->line, a->col);
        jv_list_push(c, out, x->t == JV_UNDEF && dflt ? dflt : x);
      } else {
        jv *fname = arg(a, 0, NULL);
        if (!fname) FAIL("map needs a filter name or attribute=");
        jargs rest = {a->v + 1, a->n - 1, a->kwn, a->kwv, a->nkw, a->line, a->col};
        jv_list_push(c, out, apply_filter_on(c, it, fname, &rest));
      }
    }
    return out;
  }
  if (IS("unique")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col), *out = jv_list(c);
    for (size_t i = 0; i < items->u.list.n; i++) {
      int seen = 0;
      for (size_t k = 0; k < out->u.list.n && !seen; k++)
        seen = jv_equal(out->u.list.v[k], items->u.list.v[i]);
      if (!seen) jv_list_push(c, out, items->u.list.v[i]);
    }
    return out;
  }
  if (IS("reverse")) {
    if (v->t == JV_STR) {
      jv *chars = jinja_iter_list(c, v, a->line, a->col);
      jbuf b = {0};
      for (size_t i = chars->u.list.n; i > 0; i--) jv_to_str(c, &b, chars->u.list.v[i - 1]);
      return str0(c, &b);
    }
    jv *items = jinja_iter_list(c, v, a->line, a->col), *out = jv_list(c);
    for (size_t i = items->u.list.n; i > 0; i--) jv_list_push(c, out, items->u.list.v[i - 1]);
    return out;
  }
  if (IS("sort")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col), *out = jv_list(c);
    for (size_t i = 0; i < items->u.list.n; i++) jv_list_push(c, out, items->u.list.v[i]);
    jv *rev = arg(a, 0, "reverse"), *cs = arg(a, 1, "case_sensitive"),
       *attr = arg(a, 2, "attribute");
    sortctx sc = {c, attr && attr->t == JV_STR ? attr : NULL, !(cs && jv_truthy(cs)), a->line,
                  a->col};
    sort_items(&sc, out->u.list.v, out->u.list.n);
    if (rev && jv_truthy(rev))
      for (size_t i = 0, j = out->u.list.n - 1; out->u.list.n && i < j; i++, j--) {
        jv *t = out->u.list.v[i];
        out->u.list.v[i] = out->u.list.v[j];
        out->u.list.v[j] = t;
      }
    return out;
  }
  if (IS("int")) {
    jv *d = arg_or(a, 0, "default", jv_int(c, 0));
    return to_number(c, v, 0, d);
  }
  if (IS("float")) {
    jv *d = arg_or(a, 0, "default", jv_float(c, 0.0));
    return to_number(c, v, 1, d);
  }
  if (IS("abs")) {
    if (v->t == JV_INT)
      return v->u.i == INT64_MIN ? jv_float(c, 9223372036854775808.0)
                                 : jv_int(c, v->u.i < 0 ? -v->u.i : v->u.i);
    if (v->t == JV_FLOAT) return jv_float(c, fabs(v->u.f));
    FAIL("bad operand type for abs(): '%s'", jv_type_name(v));
  }
  if (IS("round")) {
    jv *pr = arg(a, 0, "precision"), *method = arg(a, 1, "method");
    int64_t p = pr ? need_int(c, a, pr, "round") : 0;
    if (p < -20 || p > 20) FAIL("round precision out of range");
    double x = v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : 0;
    if (v->t != JV_FLOAT && v->t != JV_INT) FAIL("round expects a number");
    double m = pow(10.0, (double)p), r;
    const char *md = method && method->t == JV_STR ? method->u.str.s : "common";
    if (strncmp(md, "floor", 5) == 0)
      r = floor(x * m) / m;
    else if (strncmp(md, "ceil", 4) == 0)
      r = ceil(x * m) / m;
    else
      r = nearbyint(x * m) / m; /* Python's round: ties to even */
    return jv_float(c, r);
  }
  if (IS("sum")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col);
    jv *attr = arg(a, 0, "attribute"), *acc = arg_or(a, 1, "start", jv_int(c, 0));
    for (size_t i = 0; i < items->u.list.n; i++) {
      jv *it = items->u.list.v[i];
      if (attr) it = jinja_getattr(c, it, attr->u.str.s, attr->u.str.n, a->line, a->col);
      if ((acc->t != JV_INT && acc->t != JV_FLOAT) || (it->t != JV_INT && it->t != JV_FLOAT))
        FAIL("sum needs numbers");
      int64_t r;
      if (acc->t == JV_INT && it->t == JV_INT && !__builtin_add_overflow(acc->u.i, it->u.i, &r))
        acc = jv_int(c, r);
      else
        acc = jv_float(c, (acc->t == JV_INT ? (double)acc->u.i : acc->u.f) +
                              (it->t == JV_INT ? (double)it->u.i : it->u.f));
    }
    return acc;
  }
  if (IS("min") || IS("max")) {
    jv *items = jinja_iter_list(c, v, a->line, a->col);
    if (!items->u.list.n) return JV_UNDEF_P;
    jv *best = items->u.list.v[0];
    for (size_t i = 1; i < items->u.list.n; i++) {
      int r = jv_compare(c, items->u.list.v[i], best, a->line, a->col);
      if (IS("min") ? r < 0 : r > 0) best = items->u.list.v[i];
    }
    return best;
  }
  if (IS("attr")) {
    jv *nm = arg(a, 0, "name");
    if (!nm || nm->t != JV_STR) FAIL("attr needs a name");
    return jinja_getattr(c, v, nm->u.str.s, nm->u.str.n, a->line, a->col);
  }
  if (IS("indent")) {
    jv *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
    jbuf pad = {0};
    if (w && w->t == JV_STR)
      jb_put(c, &pad, w->u.str.s, w->u.str.n);
    else {
      int64_t k = w ? need_int(c, a, w, "indent") : 4;
      if (k < 0 || k > 256) FAIL("indent width out of range");
      for (int64_t i = 0; i < k; i++) jb_putc(c, &pad, ' ');
    }
    jv *s = jv_as_str(c, v);
    jbuf b = {0};
    size_t i = 0, line = 0;
    while (i <= s->u.str.n) {
      size_t e = i;
      while (e < s->u.str.n && s->u.str.s[e] != '\n') e++;
      int is_blank = e == i;
      if ((line > 0 || (first && jv_truthy(first))) && (!is_blank || (blank && jv_truthy(blank))))
        jb_put(c, &b, pad.p ? pad.p : "", pad.n);
      jb_put(c, &b, s->u.str.s + i, e - i);
      if (e < s->u.str.n) jb_putc(c, &b, '\n');
      i = e + 1;
      line++;
    }
    return str0(c, &b);
  }
  if (IS("escape") || IS("e") || IS("forceescape")) {
    jv *s = jv_as_str(c, v);
    jbuf b = {0};
    for (size_t i = 0; i < s->u.str.n; i++) {
      char ch = s->u.str.s[i];
      if (ch == '&')
        jb_puts(c, &b, "&amp;");
      else if (ch == '<')
        jb_puts(c, &b, "&lt;");
      else if (ch == '>')
        jb_puts(c, &b, "&gt;");
      else if (ch == '"')
        jb_puts(c, &b, "&#34;");
      else if (ch == '\'')
        jb_puts(c, &b, "&#39;");
      else
        jb_putc(c, &b, ch);
    }
    return str0(c, &b);
  }
  if (IS("wordcount")) {
    jv *s = jv_as_str(c, v);
    return jv_int(c, (int64_t)py_split(c, a, s, NULL, -1, 0)->u.list.n);
  }
  if (IS("batch") || IS("slice") || IS("groupby") || IS("format") || IS("truncate") ||
      IS("wordwrap") || IS("urlencode") || IS("xmlattr") || IS("pprint") || IS("random") ||
      IS("striptags") || IS("center") || IS("filesizeformat") || IS("urlize"))
    jfail(c, NLLM_ERR_UNSUPPORTED, a->line, a->col, "filter '%s' is not supported", name);
  FAIL("unknown filter '%s'", name);
#undef IS
}
