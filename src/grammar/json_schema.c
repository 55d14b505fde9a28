/* JSON Schema -> GBNF. Each schema becomes a GBNF expression; named rules hold the shared JSON
 * pieces, $ref targets (so recursive schemas work) and objects. The grammar describes a subset
 * of the valid documents, never more: object properties come in schema order, strings under
 * `pattern` never use escapes, extra keys never use escapes, and what cannot be expressed is
 * refused with the schema location rather than loosened. */
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "grammar/grammar.h"

#define MAX_SCHEMA_DEPTH 64
#define MAX_OUT (4u << 20)
#define MAX_REPEAT 10000

typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} sb;

static void sb_add(sb *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->n + n + 1) nc *= 2;
    char *p = realloc(b->s, nc);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p;
    b->cap = nc;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}
static void sb_str(sb *b, const char *s) {
  sb_add(b, s, strlen(s));
}
NLLM_PRINTF(2, 3) static void sb_fmt(sb *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k <= 0) return;
  if ((size_t)k < sizeof tmp) {
    sb_add(b, tmp, (size_t)k);
    return;
  }
  /* A long piece (a rule body passed through %s): format it again at its full size rather than
   * cut it, which left a grammar that does not compile. */
  char *big = malloc((size_t)k + 1);
  if (!big) {
    b->oom = 1;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)k + 1, fmt, ap);
  va_end(ap);
  sb_add(b, big, (size_t)k);
  free(big);
}

typedef struct {
  const cJSON *doc;
  sb rules;     /* "name ::= body\n" lines */
  char **names; /* rule names defined or being defined */
  const cJSON **ref_targets;
  char **ref_names;
  int n_refs, cap_refs;
  int n_names, cap_names;
  unsigned counter;
  char path[512];
  int failed;
  nllm_status status;
} conv;

NLLM_PRINTF(2, 3) static void fail(conv *c, const char *fmt, ...) {
  if (c->failed) return;
  c->failed = 1;
  c->status = NLLM_ERR_INVALID_ARG;
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nllm_err(NLLM_ERR_INVALID_ARG, "json_schema: %s: %s", c->path[0] ? c->path : "/", msg);
}

static int has_rule(conv *c, const char *name) {
  for (int i = 0; i < c->n_names; i++)
    if (!strcmp(c->names[i], name)) return 1;
  return 0;
}

static void note_rule(conv *c, const char *name) {
  if (c->n_names == c->cap_names) {
    int nc = c->cap_names ? c->cap_names * 2 : 32;
    char **p = realloc(c->names, (size_t)nc * sizeof *p);
    if (!p) {
      c->failed = 1, c->status = NLLM_ERR_NOMEM;
      return;
    }
    c->names = p, c->cap_names = nc;
  }
  char *d = nllm_strdup(name);
  if (!d) {
    c->failed = 1, c->status = NLLM_ERR_NOMEM;
    return;
  }
  c->names[c->n_names++] = d;
}

static void add_rule(conv *c, const char *name, const char *body) {
  if (c->failed) return;
  sb_str(&c->rules, name);
  sb_str(&c->rules, " ::= ");
  sb_str(&c->rules, body);
  sb_str(&c->rules, "\n");
  if (c->rules.n > MAX_OUT) fail(c, "the grammar grows past %u bytes", MAX_OUT);
}

/* The shared pieces, added on first use. */
static const char *prim(conv *c, const char *name) {
  static const struct {
    const char *name, *body;
  } P[] = {
      {"space", "| \" \" | \"\\n\" [ \\t]{0,20}"},
      {"boolean", "(\"true\" | \"false\") space"},
      {"null", "\"null\" space"},
      {"int", "\"-\"? (\"0\" | [1-9] [0-9]{0,15})"},
      {"integer", "int space"},
      {"frac", "\".\" [0-9]{1,16}"},
      {"exp", "[eE] [-+]? [0-9]{1,16}"},
      {"number", "int frac? exp? space"},
      /* No \u escapes of surrogates: validators disagree on how a pair counts in a length. */
      {"char",
       "[^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CeEfF] "
       "[0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))"},
      {"plain", "[^\"\\\\\\x7F\\x00-\\x1F]"},
      {"string", "\"\\\"\" char* \"\\\"\" space"},
      {"value", "object | array | string | number | boolean | null"},
      {"object",
       "\"{\" space (string \":\" space value (\",\" space string \":\" space "
       "value)*)? \"}\" space"},
      {"array", "\"[\" space (value (\",\" space value)*)? \"]\" space"},
      /* Year 0000 is valid RFC 3339 but not a date for most libraries (Python's included). */
      {"date",
       "([1-9] [0-9]{3} | \"0\" [1-9] [0-9]{2} | \"00\" [1-9] [0-9] | \"000\" [1-9]) \"-\" (\"0\" "
       "[13578] \"-\" day31 | \"1\" [02] \"-\" day31 | \"0\" [469] "
       "\"-\" day30 | \"11-\" day30 | \"02-\" day28)"},
      {"day31", "\"0\" [1-9] | [12] [0-9] | \"3\" [01]"},
      {"day30", "\"0\" [1-9] | [12] [0-9] | \"30\""},
      {"day28", "\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]"},
      {"time",
       "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" "
       "[0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"},
      {"hex", "[0-9a-f]"},
      {"uuid", "hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}"},
      {"email", "[a-zA-Z0-9._%+-]+ \"@\" [a-zA-Z0-9-]+ (\".\" [a-zA-Z0-9-]+)+"},
      {"octet", "\"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9] [0-9] | [0-9]"},
      {"ipv4", "octet \".\" octet \".\" octet \".\" octet"},
  };
  static const char *deps[][4] = {
      {"boolean", "space"},
      {"null", "space"},
      {"integer", "int", "space"},
      {"number", "int", "frac", "exp"},
      {"string", "char", "space"},
      {"value", "object", "array", "string"},
      {"object", "string", "value"},
      {"array", "value"},
      {"date", "day31", "day30", "day28"},
      {"uuid", "hex"},
      {"ipv4", "octet"},
  };
  if (c->failed || has_rule(c, name)) return name;
  for (size_t i = 0; i < sizeof P / sizeof *P; i++)
    if (!strcmp(P[i].name, name)) {
      note_rule(c, name);
      add_rule(c, name, P[i].body);
      break;
    }
  for (size_t i = 0; i < sizeof deps / sizeof *deps; i++)
    if (!strcmp(deps[i][0], name))
      for (int k = 1; k < 4 && deps[i][k]; k++) prim(c, deps[i][k]);
  if (!strcmp(name, "value")) prim(c, "number"), prim(c, "boolean"), prim(c, "null");
  if (!strcmp(name, "number")) prim(c, "space");
  return name;
}

static char *new_name(conv *c, const char *hint) {
  char nm[80];
  size_t k = 0;
  for (const char *p = hint; *p && k < 40; p++)
    nm[k++] = ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
                  ? *p
                  : '-';
  snprintf(nm + k, sizeof nm - k, "%s%u", k ? "-" : "r", c->counter++);
  note_rule(c, nm);
  return nllm_strdup(nm);
}

/* A GBNF string literal for raw bytes. */
static void lit(sb *b, const char *s, size_t n) {
  sb_str(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      sb_fmt(b, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      sb_fmt(b, "\\x%02X", ch);
    else
      sb_add(b, (const char *)&ch, 1);
  }
  sb_str(b, "\"");
}

/* A JSON value as a literal (compact form) followed by space. */
static void json_lit(conv *c, sb *b, const cJSON *v) {
  char *t = cJSON_PrintUnformatted(v);
  if (!t) {
    c->failed = 1, c->status = NLLM_ERR_NOMEM;
    return;
  }
  lit(b, t, strlen(t));
  sb_str(b, " ");
  sb_str(b, prim(c, "space"));
  free(t);
}

static char *convert(conv *c, const cJSON *s, const char *forced_type, int depth);

/* Path helpers: push a segment, pop back to a saved length. */
static size_t path_push(conv *c, const char *seg) {
  size_t at = strlen(c->path);
  snprintf(c->path + at, sizeof c->path - at, "/%s", seg);
  return at;
}
static void path_pop(conv *c, size_t at) {
  c->path[at] = 0;
}

static char *convert_at(conv *c, const cJSON *s, const char *seg, int depth) {
  size_t at = path_push(c, seg);
  char *r = convert(c, s, NULL, depth);
  path_pop(c, at);
  return r;
}

static int num(const cJSON *s, const char *key, double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, key);
  if (!cJSON_IsNumber(x)) return 0;
  *v = x->valuedouble;
  return 1;
}

static int count_arg(conv *c, const cJSON *s, const char *key, long def, long *out) {
  double v;
  *out = def;
  if (!num(s, key, &v)) return 1;
  if (v < 0 || v != floor(v) || v > MAX_REPEAT) {
    fail(c, "%s must be an integer in [0, %d] here (got %g)", key, MAX_REPEAT, v);
    return 0;
  }
  *out = (long)v;
  return 1;
}

/* x{min,max} as GBNF; max < 0 is unbounded. */
static void rep(sb *b, const char *x, long min, long max) {
  if (max < 0 && min == 0)
    sb_fmt(b, "(%s)*", x);
  else if (max < 0 && min == 1)
    sb_fmt(b, "(%s)+", x);
  else if (max < 0)
    sb_fmt(b, "(%s){%ld,}", x, min);
  else if (min == max)
    sb_fmt(b, "(%s){%ld}", x, min);
  else
    sb_fmt(b, "(%s){%ld,%ld}", x, min, max);
}

/* ---------------------------------------------------------------- integers in a range */

/* Numbers of exactly the digits of lo..hi (same length, no leading zero unless one digit). */
static void digits_between(sb *b, const char *lo, const char *hi, size_t n) {
  if (n == 0) return;
  if (lo[0] == hi[0]) {
    sb_fmt(b, "\"%c\" ", lo[0]);
    digits_between(b, lo + 1, hi + 1, n - 1);
    return;
  }
  int all_lo0 = 1, all_hi9 = 1;
  for (size_t i = 1; i < n; i++) all_lo0 &= lo[i] == '0', all_hi9 &= hi[i] == '9';
  sb_str(b, "(");
  int first = 1;
  char a = lo[0], z = hi[0];
  if (!all_lo0) {
    sb_fmt(b, "\"%c\" ", a);
    char nines[32];
    memset(nines, '9', n - 1);
    digits_between(b, lo + 1, nines, n - 1);
    a++;
    first = 0;
  }
  if (!all_hi9) z--;
  if (a <= z) {
    if (!first) sb_str(b, "| ");
    sb_fmt(b, "[%c-%c]", a, z);
    if (n > 1) sb_fmt(b, " [0-9]{%zu}", n - 1);
    sb_str(b, " ");
    first = 0;
  }
  if (!all_hi9) {
    if (!first) sb_str(b, "| ");
    sb_fmt(b, "\"%c\" ", hi[0]);
    char zeros[32];
    memset(zeros, '0', n - 1);
    digits_between(b, zeros, hi + 1, n - 1);
  }
  sb_str(b, ") ");
}

/* Non-negative integers in [lo, hi]; hi < 0 = unbounded (up to 18 digits). */
static void nonneg_range(sb *b, long long lo, long long hi) {
  char a[32], z[32];
  int la = snprintf(a, sizeof a, "%lld", lo);
  int lz = hi < 0 ? 18 : snprintf(z, sizeof z, "%lld", hi);
  sb_str(b, "(");
  for (int L = la; L <= lz; L++) {
    char from[32], to[32];
    if (L == la)
      memcpy(from, a, (size_t)L + 1);
    else
      from[0] = '1', memset(from + 1, '0', (size_t)L - 1), from[L] = 0;
    if (hi >= 0 && L == lz)
      memcpy(to, z, (size_t)L + 1);
    else
      memset(to, '9', (size_t)L), to[L] = 0;
    if (L > la) sb_str(b, "| ");
    digits_between(b, from, to, (size_t)L);
  }
  sb_str(b, ")");
}

static char *int_range(conv *c, int has_lo, long long lo, int has_hi, long long hi) {
  sb b = {0};
  if (has_lo && has_hi && lo > hi) {
    fail(c, "minimum %lld is above maximum %lld", lo, hi);
    return NULL;
  }
  int alt = 0;
  sb_str(&b, "(");
  if (!has_lo || lo < 0) {
    /* negatives: -y with y in [max(1, -hi), -lo] */
    long long ylo = has_hi && hi < 0 ? -hi : 1, yhi = has_lo ? -lo : -1;
    sb_str(&b, "\"-\" ");
    nonneg_range(&b, ylo, yhi);
    alt = 1;
  }
  if (!has_hi || hi >= 0) {
    if (alt) sb_str(&b, " | ");
    nonneg_range(&b, has_lo && lo > 0 ? lo : 0, has_hi ? hi : -1);
  }
  sb_str(&b, ") ");
  sb_str(&b, prim(c, "space"));
  if (b.oom) c->failed = 1, c->status = NLLM_ERR_NOMEM;
  return b.s;
}

/* ---------------------------------------------------------------- pattern (regex subset) */

typedef struct {
  conv *c;
  const char *p;
  size_t i, n;
  int depth;
} rx;

/* A class that never includes '"', '\\' or control characters (pattern strings are emitted
 * without escapes). ranges: pairs; neg: complement. */
static void emit_class(sb *b, const uint32_t *r, int nr, int neg) {
  sb_str(b, neg ? "[^\"\\\\\\x00-\\x1F\\x7F" : "[");
  for (int k = 0; k < nr; k++) {
    uint32_t lo = r[2 * k], hi = r[2 * k + 1];
    if (!neg) {
      /* split around the excluded code points */
      static const uint32_t cut[][2] = {{0, 0x1f}, {'"', '"'}, {'\\', '\\'}, {0x7f, 0x7f}};
      uint32_t a = lo;
      for (int q = 0; q < 4 && a <= hi; q++) {
        if (cut[q][1] < a) continue;
        if (cut[q][0] > hi) break;
        if (cut[q][0] > a) sb_fmt(b, "\\U%08X-\\U%08X", a, cut[q][0] - 1);
        a = cut[q][1] + 1;
      }
      if (a <= hi) sb_fmt(b, "\\U%08X-\\U%08X", a, hi);
    } else {
      sb_fmt(b, "\\U%08X-\\U%08X", lo, hi);
    }
  }
  sb_str(b, "]");
}

static int rx_escape_class(char e, uint32_t *r, int *nr, int *neg) {
  *neg = 0;
  *nr = 0;
  switch (e) {
    case 'D': *neg = 1; /* fallthrough */
    case 'd': r[0] = '0', r[1] = '9', *nr = 1; return 1;
    case 'W': *neg = 1; /* fallthrough */
    case 'w':
      r[0] = '0', r[1] = '9', r[2] = 'A', r[3] = 'Z', r[4] = 'a', r[5] = 'z', r[6] = '_',
      r[7] = '_';
      *nr = 4;
      return 1;
    case 'S': *neg = 1; /* fallthrough */
    case 's':
      /* Only the space itself can be written without an escape. */
      r[0] = ' ', r[1] = ' ', *nr = 1;
      if (*neg) r[2] = '\t', r[3] = '\r', *nr = 2;
      return 1;
    default: return 0;
  }
}

static int rx_char(rx *R, uint32_t *cp) {
  const unsigned char *s = (const unsigned char *)R->p;
  unsigned ch = s[R->i];
  int len = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 0;
  if (!len || R->i + (size_t)len > R->n) return 0;
  uint32_t v = len == 1 ? ch : len == 2 ? ch & 0x1f : len == 3 ? ch & 0x0f : ch & 0x07;
  for (int k = 1; k < len; k++) v = v << 6 | (s[R->i + (size_t)k] & 0x3f);
  R->i += (size_t)len;
  *cp = v;
  return 1;
}

/* An escaped literal (after the backslash); 0 if not a literal escape. */
static int rx_literal_escape(rx *R, uint32_t *cp) {
  char e = R->p[R->i];
  const char *plain = ".^$*+?()[]{}|\\/-\"";
  if (e && strchr(plain, e)) {
    R->i++;
    *cp = (uint32_t)e;
    return 1;
  }
  if (e == 'n' || e == 't' || e == 'r') {
    R->i++;
    *cp = e == 'n' ? '\n' : e == 't' ? '\t' : '\r';
    return 1;
  }
  return 0;
}

/* rx_alt and rx_seq return 1 where what they parsed can match the empty string */
static int rx_alt(rx *R, sb *b);

static void rx_atom_cp(sb *b, uint32_t cp) {
  uint32_t r[2] = {cp, cp};
  emit_class(b, r, 1, 0);
}

static int rx_seq(rx *R, sb *b) {
  int nullable = 1;
  while (!R->c->failed && R->i < R->n && R->p[R->i] != '|' && R->p[R->i] != ')') {
    sb atom = {0};
    int atom_nullable = 0;
    char ch = R->p[R->i];
    if (ch == '^' || ch == '$') {
      fail(R->c, "pattern: anchor '%c' only at the very start or end is supported", ch);
    } else if (ch == '(') {
      R->i++;
      if (R->i + 1 < R->n && R->p[R->i] == '?' && R->p[R->i + 1] == ':')
        R->i += 2;
      else if (R->i < R->n && R->p[R->i] == '?')
        fail(R->c, "pattern: lookaround and named groups are not supported");
      if (++R->depth > 64) fail(R->c, "pattern: groups nested too deeply");
      sb inner = {0};
      atom_nullable = rx_alt(R, &inner);
      R->depth--;
      if (R->i >= R->n || R->p[R->i] != ')') fail(R->c, "pattern: unclosed '('");
      R->i++;
      sb_str(&atom, "(");
      if (inner.s) sb_str(&atom, inner.s);
      sb_str(&atom, ")");
      free(inner.s);
    } else if (ch == '[') {
      R->i++;
      int neg = R->i < R->n && R->p[R->i] == '^';
      if (neg) R->i++;
      uint32_t r[512];
      int nr = 0;
      int first = 1;
      while (!R->c->failed && R->i < R->n && (R->p[R->i] != ']' || first) && nr < 250) {
        first = 0;
        uint32_t lo;
        if (R->p[R->i] == '\\') {
          R->i++;
          uint32_t er[8];
          int en, eneg;
          if (R->i < R->n && rx_escape_class(R->p[R->i], er, &en, &eneg)) {
            if (eneg) fail(R->c, "pattern: \\D, \\W, \\S inside [...] are not supported");
            R->i++;
            for (int k = 0; k < en; k++) r[2 * nr] = er[2 * k], r[2 * nr + 1] = er[2 * k + 1], nr++;
            continue;
          }
          if (!rx_literal_escape(R, &lo)) {
            fail(R->c, "pattern: unsupported escape in [...]");
            break;
          }
        } else if (!rx_char(R, &lo)) {
          fail(R->c, "pattern: invalid UTF-8");
          break;
        }
        uint32_t hi = lo;
        if (R->i + 1 < R->n && R->p[R->i] == '-' && R->p[R->i + 1] != ']') {
          R->i++;
          if (R->p[R->i] == '\\') {
            R->i++;
            if (!rx_literal_escape(R, &hi)) fail(R->c, "pattern: unsupported range end");
          } else if (!rx_char(R, &hi)) {
            fail(R->c, "pattern: invalid UTF-8");
          }
          if (hi < lo) fail(R->c, "pattern: range out of order in [...]");
        }
        r[2 * nr] = lo, r[2 * nr + 1] = hi, nr++;
      }
      if (R->i >= R->n || R->p[R->i] != ']') fail(R->c, "pattern: unclosed '[' or class too large");
      R->i++;
      emit_class(&atom, r, nr, neg);
    } else if (ch == '.') {
      R->i++;
      emit_class(&atom, NULL, 0, 1);
    } else if (ch == '\\') {
      R->i++;
      uint32_t r[8], cp;
      int nr, neg;
      if (R->i < R->n && rx_escape_class(R->p[R->i], r, &nr, &neg)) {
        R->i++;
        emit_class(&atom, r, nr, neg);
      } else if (R->i < R->n && rx_literal_escape(R, &cp)) {
        rx_atom_cp(&atom, cp);
      } else {
        fail(R->c, "pattern: escape \\%c is not supported", R->i < R->n ? R->p[R->i] : ' ');
      }
    } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
      fail(R->c, "pattern: quantifier '%c' with nothing before it", ch);
    } else {
      uint32_t cp;
      if (!rx_char(R, &cp))
        fail(R->c, "pattern: invalid UTF-8");
      else
        rx_atom_cp(&atom, cp);
    }
    /* quantifier */
    if (!R->c->failed && R->i < R->n) {
      char q = R->p[R->i];
      long min = -1, max = -1;
      if (q == '*')
        min = 0, max = -1, R->i++;
      else if (q == '+')
        min = 1, max = -1, R->i++;
      else if (q == '?')
        min = 0, max = 1, R->i++;
      else if (q == '{') {
        char *end;
        long a = strtol(R->p + R->i + 1, &end, 10);
        if (end == R->p + R->i + 1 || a < 0 || a > 1000) {
          fail(R->c, "pattern: bad or too large {m,n}");
        } else {
          long z = a;
          if (*end == ',') {
            char *e2;
            z = strtol(end + 1, &e2, 10);
            if (e2 == end + 1) z = -1;
            end = e2;
          }
          if (*end != '}' || (z >= 0 && (z < a || z > 1000))) fail(R->c, "pattern: bad {m,n}");
          R->i = (size_t)(end - R->p) + 1;
          min = a, max = z;
        }
      }
      if (min >= 0 && R->i < R->n && (R->p[R->i] == '?' || R->p[R->i] == '+'))
        fail(R->c, "pattern: lazy and possessive quantifiers are not supported");
      /* an unbounded repeat of what can match nothing ("(ab|)+") would be a rule that reaches
       * itself without reading a character, which the grammar parser rejects */
      if (min >= 0 && max < 0 && atom_nullable)
        fail(R->c,
             "pattern: '%c' repeats a group that can match the empty string (write "
             "(ab)* for (ab|)+)",
             q);
      if (min == 0) atom_nullable = 1;
      if (min >= 0 && atom.s) {
        sb t = {0};
        rep(&t, atom.s, min, max);
        free(atom.s);
        atom = t;
      }
    }
    if (atom.s) {
      sb_str(b, atom.s);
      sb_str(b, " ");
    }
    free(atom.s);
    nullable &= atom_nullable;
  }
  return nullable;
}

static int rx_alt(rx *R, sb *b) {
  sb_str(b, "(");
  int nullable = rx_seq(R, b);
  while (!R->c->failed && R->i < R->n && R->p[R->i] == '|') {
    R->i++;
    sb_str(b, "| ");
    nullable |= rx_seq(R, b);
  }
  sb_str(b, ")");
  return nullable;
}

static char *pattern_string(conv *c, const char *pat) {
  size_t n = strlen(pat);
  int anchored_start = n && pat[0] == '^';
  int anchored_end = n && pat[n - 1] == '$' && (n < 2 || pat[n - 2] != '\\');
  rx R = {c, pat, (size_t)anchored_start, anchored_end ? n - 1 : n, 0};
  sb body = {0};
  (void)rx_alt(&R, &body);
  if (!c->failed && R.i < R.n) fail(c, "pattern: unmatched ')'");
  if (c->failed) {
    free(body.s);
    return NULL;
  }
  sb b = {0};
  const char *pl = prim(c, "plain");
  sb_str(&b, "\"\\\"\" ");
  if (!anchored_start) sb_fmt(&b, "%s* ", pl);
  sb_str(&b, body.s);
  if (!anchored_end) sb_fmt(&b, " %s*", pl);
  sb_str(&b, " \"\\\"\" ");
  sb_str(&b, prim(c, "space"));
  free(body.s);
  return b.s;
}

/* ---------------------------------------------------------------- schema kinds */

static char *string_schema(conv *c, const cJSON *s) {
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
  const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
  long min, max;
  if (!count_arg(c, s, "minLength", 0, &min) || !count_arg(c, s, "maxLength", -1, &max))
    return NULL;
  if (max >= 0 && max < min) {
    fail(c, "maxLength %ld is below minLength %ld", max, min);
    return NULL;
  }
  int has_len = min > 0 || max >= 0;
  if (cJSON_IsString(pat)) {
    if (has_len) {
      fail(c, "pattern together with minLength/maxLength is not supported");
      return NULL;
    }
    static const char *const ENFORCED[] = {"date", "time", "date-time", "uuid", "email", "ipv4"};
    for (size_t i = 0; cJSON_IsString(fmt) && i < sizeof ENFORCED / sizeof *ENFORCED; i++)
      if (!strcmp(fmt->valuestring, ENFORCED[i])) {
        fail(c, "format \"%s\" together with pattern is not supported", ENFORCED[i]);
        return NULL;
      }
    size_t at = path_push(c, "pattern");
    char *r = pattern_string(c, pat->valuestring);
    path_pop(c, at);
    return r;
  }
  if (cJSON_IsString(fmt)) {
    const char *f = fmt->valuestring, *rule = NULL;
    if (!strcmp(f, "date"))
      rule = "date";
    else if (!strcmp(f, "time"))
      rule = "time";
    else if (!strcmp(f, "date-time"))
      rule = "date-time";
    else if (!strcmp(f, "uuid"))
      rule = "uuid";
    else if (!strcmp(f, "email"))
      rule = "email";
    else if (!strcmp(f, "ipv4"))
      rule = "ipv4";
    if (rule) {
      if (has_len) {
        fail(c, "format \"%s\" together with minLength/maxLength is not supported", f);
        return NULL;
      }
      sb b = {0};
      if (!strcmp(rule, "date-time")) {
        prim(c, "date"), prim(c, "time");
        sb_str(&b, "\"\\\"\" date \"T\" time \"\\\"\" ");
      } else {
        sb_fmt(&b, "\"\\\"\" %s \"\\\"\" ", prim(c, rule));
      }
      sb_str(&b, prim(c, "space"));
      return b.s;
    }
    /* Other formats are annotations (the JSON Schema default): a plain string. */
  }
  if (!has_len) return nllm_strdup(prim(c, "string"));
  sb b = {0};
  sb_str(&b, "\"\\\"\" ");
  rep(&b, prim(c, "char"), min, max);
  sb_str(&b, " \"\\\"\" ");
  sb_str(&b, prim(c, "space"));
  return b.s;
}

static int int_bound(conv *c, const cJSON *s, const char *key, long long *out) {
  double v;
  if (!num(s, key, &v)) return 0;
  if (fabs(v) > 9e15) {
    fail(c, "%s %g is beyond the supported integer range", key, v);
    return 0;
  }
  /* Draft 4 spells an exclusive bound as minimum/maximum with exclusiveMinimum/Maximum: true. */
  const int d4 = (!strcmp(key, "minimum") &&
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum"))) ||
                 (!strcmp(key, "maximum") &&
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum")));
  if (!strncmp(key, "exclusiveMin", 12) || (d4 && key[1] == 'i'))
    v = floor(v) + 1;
  else if (!strncmp(key, "exclusiveMax", 12) || (d4 && key[1] == 'a'))
    v = ceil(v) - 1;
  else if (!strcmp(key, "minimum"))
    v = ceil(v);
  else
    v = floor(v);
  *out = (long long)v;
  return 1;
}

static char *integer_schema(conv *c, const cJSON *s) {
  long long lo = 0, hi = 0, t;
  int has_lo = 0, has_hi = 0;
  if (int_bound(c, s, "minimum", &t)) lo = t, has_lo = 1;
  if (int_bound(c, s, "exclusiveMinimum", &t) && (!has_lo || t > lo)) lo = t, has_lo = 1;
  if (int_bound(c, s, "maximum", &t)) hi = t, has_hi = 1;
  if (int_bound(c, s, "exclusiveMaximum", &t) && (!has_hi || t < hi)) hi = t, has_hi = 1;
  if (c->failed) return NULL;
  if (!has_lo && !has_hi) return nllm_strdup(prim(c, "integer"));
  return int_range(c, has_lo, lo, has_hi, hi);
}

static char *number_schema(conv *c, const cJSON *s) {
  double v;
  int bounded = num(s, "maximum", &v) || num(s, "exclusiveMaximum", &v) ||
                num(s, "exclusiveMinimum", &v) ||
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum"));
  double mn = 0;
  int has_min = num(s, "minimum", &mn);
  if (bounded || (has_min && mn != 0)) {
    fail(c, "minimum/maximum on type number are not supported (only on integer, and minimum 0)");
    return NULL;
  }
  if (has_min) {
    /* minimum 0: no sign. */
    prim(c, "number");
    sb b = {0};
    sb_str(&b, "(\"0\" | [1-9] [0-9]{0,15}) frac? exp? space");
    return b.s;
  }
  return nllm_strdup(prim(c, "number"));
}

static char *array_schema(conv *c, const cJSON *s, int depth) {
  long min, max;
  if (!count_arg(c, s, "minItems", 0, &min) || !count_arg(c, s, "maxItems", -1, &max)) return NULL;
  if (max >= 0 && max < min) {
    fail(c, "maxItems %ld is below minItems %ld", max, min);
    return NULL;
  }
  const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
  const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
  const cJSON *rest = items;
  const char *rest_key = "items";
  if (cJSON_IsArray(items)) { /* draft 4-7 tuple form */
    prefix = items;
    rest = cJSON_GetObjectItemCaseSensitive(s, "additionalItems");
    rest_key = "additionalItems";
  }
  sb b = {0};
  sb_str(&b, "\"[\" space ");
  prim(c, "space");
  int k = 0;
  if (cJSON_IsArray(prefix)) {
    const cJSON *it;
    cJSON_ArrayForEach(it, prefix) {
      char seg[32];
      snprintf(seg, sizeof seg, "%s/%d", prefix == items ? "items" : "prefixItems", k);
      char *x = convert_at(c, it, seg, depth + 1);
      if (!x) {
        free(b.s);
        return NULL;
      }
      if (k) sb_str(&b, "\",\" space ");
      sb_fmt(&b, "(%s) ", x);
      free(x);
      k++;
    }
    if (max >= 0 && k > max) {
      fail(c, "%d prefixItems but maxItems %ld", k, max);
      free(b.s);
      return NULL;
    }
  }
  /* Items after the prefix: none unless the rest schema says so (a subset when absent). */
  char *x = NULL;
  if (rest && !cJSON_IsFalse(rest)) {
    if (cJSON_IsTrue(rest))
      x = nllm_strdup(prim(c, "value"));
    else
      x = convert_at(c, rest, rest_key, depth + 1);
    if (!x) {
      free(b.s);
      return NULL;
    }
  } else if (!rest && !cJSON_IsArray(prefix)) {
    x = nllm_strdup(prim(c, "value"));
  }
  long rmin = min > k ? min - k : 0, rmax = max < 0 ? -1 : max - k;
  if (x && rmax != 0) {
    if (k) {
      sb t = {0};
      sb_fmt(&t, "\",\" space (%s)", x);
      rep(&b, t.s, rmin, rmax);
      free(t.s);
    } else {
      /* first item without a comma */
      sb t = {0};
      sb_fmt(&t, "\",\" space (%s)", x);
      if (rmin == 0) {
        sb_fmt(&b, "((%s) ", x);
        rep(&b, t.s, 0, rmax < 0 ? -1 : rmax - 1);
        sb_str(&b, ")?");
      } else {
        sb_fmt(&b, "(%s) ", x);
        rep(&b, t.s, rmin - 1, rmax < 0 ? -1 : rmax - 1);
      }
      free(t.s);
    }
  } else if (rmin > 0) {
    fail(c, "minItems %ld needs items beyond the %d given, but none are allowed", min, k);
  }
  free(x);
  sb_str(&b, " \"]\" space");
  if (c->failed) {
    free(b.s);
    return NULL;
  }
  return b.s;
}

/* Keys that are strings other than the given names, written without escapes: a rule per trie
 * node of the names (code points), each either closing the key (unless a name ends there),
 * leaving the trie with any other character, or following a child. */
typedef struct {
  uint32_t cp[128];
  int n;
} cps;

static char *key_not_in(conv *c, const cps *names, int n, const uint32_t *prefix, int plen,
                        int depth) {
  char *rn = new_name(c, "key");
  if (!rn) return NULL;
  const char *pl = prim(c, "plain");
  sb b = {0};
  int is_name = 0, n_next = 0;
  uint32_t next[256];
  for (int i = 0; i < n; i++) {
    if (names[i].n < plen || (plen && memcmp(names[i].cp, prefix, (size_t)plen * sizeof *prefix)))
      continue;
    if (names[i].n == plen) {
      is_name = 1;
      continue;
    }
    int seen = 0;
    for (int k = 0; k < n_next; k++) seen |= next[k] == names[i].cp[plen];
    if (!seen && n_next < 256) next[n_next++] = names[i].cp[plen];
  }
  if (!is_name) sb_str(&b, "\"\\\"\" | ");
  sb_str(&b, "[^\"\\\\\\x00-\\x1F\\x7F");
  for (int i = 0; i < n_next; i++) sb_fmt(&b, "\\U%08X", next[i]);
  sb_fmt(&b, "] %s* \"\\\"\"", pl);
  for (int i = 0; i < n_next && !c->failed && depth < 128; i++) {
    uint32_t np[129];
    if (plen) memcpy(np, prefix, (size_t)plen * sizeof *np);
    np[plen] = next[i];
    char *child = key_not_in(c, names, n, np, plen + 1, depth + 1);
    if (!child) break;
    sb_fmt(&b, " | [\\U%08X] %s", next[i], child);
    free(child);
  }
  add_rule(c, rn, b.s ? b.s : "\"\"");
  free(b.s);
  return rn;
}

static int to_cps(const char *s, cps *out) {
  const unsigned char *p = (const unsigned char *)s;
  out->n = 0;
  while (*p) {
    unsigned ch = *p;
    int len = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 0;
    if (!len || out->n >= 128) return 0;
    uint32_t v = len == 1 ? ch : len == 2 ? ch & 0x1f : len == 3 ? ch & 0x0f : ch & 0x07;
    for (int k = 1; k < len; k++) {
      if ((p[k] & 0xc0) != 0x80) return 0;
      v = v << 6 | (p[k] & 0x3f);
    }
    out->cp[out->n++] = v;
    p += len;
  }
  return 1;
}

static char *object_schema(conv *c, const cJSON *s, int depth) {
  const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
  const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
  const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
  if (props && !cJSON_IsObject(props)) {
    fail(c, "properties must be an object");
    return NULL;
  }
  if (req && !cJSON_IsArray(req)) {
    fail(c, "required must be an array of strings");
    return NULL;
  }
  int n = cJSON_IsObject(props) ? cJSON_GetArraySize(props) : 0;
  if (n > 256) {
    fail(c, "more than 256 properties");
    return NULL;
  }
  if (!n && (!addl || cJSON_IsTrue(addl)) && !cJSON_GetArraySize(req))
    return nllm_strdup(prim(c, "object"));
  const char *names[256];
  char *kv[256];
  int is_req[256];
  int k = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, props) {
    if (k >= n) break;
    names[k] = p->string;
    is_req[k] = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, req) if (cJSON_IsString(r) && !strcmp(r->valuestring, p->string))
        is_req[k] = 1;
    char seg[300];
    snprintf(seg, sizeof seg, "properties/%.250s", p->string);
    char *v = convert_at(c, p, seg, depth + 1);
    if (!v) {
      for (int i = 0; i < k; i++) free(kv[i]);
      return NULL;
    }
    sb e = {0};
    cJSON *ks = cJSON_CreateString(p->string);
    char *kt = ks ? cJSON_PrintUnformatted(ks) : NULL;
    cJSON_Delete(ks);
    if (!kt) {
      free(v);
      for (int i = 0; i < k; i++) free(kv[i]);
      c->failed = 1, c->status = NLLM_ERR_NOMEM;
      return NULL;
    }
    lit(&e, kt, strlen(kt));
    sb_fmt(&e, " space \":\" space (%s)", v);
    free(kt);
    free(v);
    kv[k++] = e.s;
  }
  const cJSON *r;
  cJSON_ArrayForEach(r, req) {
    int found = 0;
    for (int i = 0; i < k; i++) found |= cJSON_IsString(r) && !strcmp(r->valuestring, names[i]);
    if (!found) {
      fail(c, "required property \"%.100s\" has no schema under properties",
           cJSON_IsString(r) ? r->valuestring : "?");
      for (int i = 0; i < k; i++) free(kv[i]);
      return NULL;
    }
  }
  /* Extra members when additionalProperties is a schema (or true with no properties). */
  char *extra = NULL;
  if (addl && !cJSON_IsFalse(addl)) {
    char *v = cJSON_IsTrue(addl) ? nllm_strdup(prim(c, "value"))
                                 : convert_at(c, addl, "additionalProperties", depth + 1);
    char *key = NULL;
    if (v && k) {
      cps *cn = malloc((size_t)k * sizeof *cn);
      int okn = cn != NULL;
      for (int i = 0; i < k && okn; i++) okn = to_cps(names[i], &cn[i]);
      if (okn)
        key = key_not_in(c, cn, k, NULL, 0, 0);
      else if (!c->failed)
        fail(c, "property names longer than 128 characters or not UTF-8");
      free(cn);
    } else if (v) {
      key = nllm_strdup(prim(c, "string"));
    }
    if (v && key) {
      sb e = {0};
      if (k)
        sb_fmt(&e, "\"\\\"\" %s space \":\" space (%s)", key, v);
      else
        sb_fmt(&e, "%s \":\" space (%s)", key, v);
      extra = e.s;
    }
    free(v);
    free(key);
    if (!extra) {
      for (int i = 0; i < k; i++) free(kv[i]);
      return NULL;
    }
  }
  int first_req = -1;
  for (int i = 0; i < k && first_req < 0; i++)
    if (is_req[i]) first_req = i;
  sb b = {0};
  /* The body names `space` itself, also for an object without properties. */
  sb_fmt(&b, "\"{\" %s (", prim(c, "space"));
  int last_first = first_req >= 0 ? first_req : k - 1;
  for (int f = 0; f <= last_first; f++) {
    if (f) sb_str(&b, " | ");
    sb_fmt(&b, "%s", kv[f]);
    for (int j = f + 1; j < k; j++)
      sb_fmt(&b, is_req[j] ? " \",\" space %s" : " (\",\" space %s)?", kv[j]);
    if (extra) sb_fmt(&b, " (\",\" space %s)*", extra);
  }
  if (extra && first_req < 0) sb_fmt(&b, "%s%s (\",\" space %s)*", k ? " | " : "", extra, extra);
  sb_str(&b, ")");
  if (first_req < 0) sb_str(&b, "?");
  sb_str(&b, " \"}\" space");
  for (int i = 0; i < k; i++) free(kv[i]);
  free(extra);
  if (b.oom) {
    free(b.s);
    c->failed = 1, c->status = NLLM_ERR_NOMEM;
    return NULL;
  }
  /* Objects get a rule of their own: the grammar stays readable and its text small. */
  char *rn = new_name(c, c->path[0] ? strrchr(c->path, '/') + 1 : "object");
  if (rn) add_rule(c, rn, b.s);
  free(b.s);
  return rn;
}

static const cJSON *resolve_ref(conv *c, const char *ref) {
  if (ref[0] != '#') {
    fail(c, "$ref \"%.200s\": only local references (#/...) are supported", ref);
    return NULL;
  }
  const cJSON *at = c->doc;
  const char *p = ref + 1;
  while (*p == '/') {
    p++;
    char seg[256];
    size_t k = 0;
    while (*p && *p != '/' && k < sizeof seg - 1) {
      if (*p == '~' && p[1] == '1')
        seg[k++] = '/', p += 2;
      else if (*p == '~' && p[1] == '0')
        seg[k++] = '~', p += 2;
      else
        seg[k++] = *p++;
    }
    seg[k] = 0;
    if (cJSON_IsArray(at)) {
      char *end;
      long i = strtol(seg, &end, 10);
      at = *end ? NULL : cJSON_GetArrayItem(at, (int)i);
    } else {
      at = cJSON_GetObjectItemCaseSensitive(at, seg);
    }
    if (!at) {
      fail(c, "$ref \"%.200s\" points nowhere", ref);
      return NULL;
    }
  }
  if (*p) { /* "#.x", "#abc": not a JSON pointer (it used to resolve to the root) */
    fail(c, "$ref \"%.200s\" points nowhere", ref);
    return NULL;
  }
  return at;
}

static char *ref_schema(conv *c, const char *ref, int depth) {
  const cJSON *t = resolve_ref(c, ref);
  if (!t) return NULL;
  for (int i = 0; i < c->n_refs; i++)
    if (c->ref_targets[i] == t) return nllm_strdup(c->ref_names[i]);
  if (c->n_refs == c->cap_refs) {
    int nc = c->cap_refs ? c->cap_refs * 2 : 16;
    const cJSON **a = realloc(c->ref_targets, (size_t)nc * sizeof *a);
    if (a) c->ref_targets = a;
    char **b = a ? realloc(c->ref_names, (size_t)nc * sizeof *b) : NULL;
    if (!a || !b) {
      c->failed = 1, c->status = NLLM_ERR_NOMEM;
      return NULL;
    }
    c->ref_names = b;
    c->cap_refs = nc;
  }
  const char *hint = strrchr(ref, '/');
  char *rn = new_name(c, hint ? hint + 1 : "ref");
  if (!rn) return NULL;
  /* Registered before converting, so a recursive reference finds the rule. */
  c->ref_targets[c->n_refs] = t;
  c->ref_names[c->n_refs++] = rn;
  char saved[512];
  memcpy(saved, c->path, sizeof saved);
  snprintf(c->path, sizeof c->path, "%.500s", ref + 1);
  char *body = convert(c, t, NULL, depth + 1);
  memcpy(c->path, saved, sizeof saved);
  if (!body) return NULL;
  add_rule(c, rn, body);
  free(body);
  return nllm_strdup(rn);
}

enum { MAX_MEMBERS = 64, LABEL_LEN = 96 };

/* The members of an allOf, in order, nested allOf flattened and $refs resolved: each member's
 * own allOf members come before it, the schema holding the allOf is last. All must be object
 * schemas. label: the member's place ("allOf/1/allOf/0"; "" for the holder). */
static int allof_members(conv *c, const cJSON *x, const char *label, const cJSON **mem,
                         char (*labels)[LABEL_LEN], int *n_mem, int depth) {
  const char *at = label[0] ? label : "beside allOf";
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(x, "type");
  const cJSON *pp = cJSON_GetObjectItemCaseSensitive(x, "properties");
  const cJSON *all = cJSON_GetObjectItemCaseSensitive(x, "allOf");
  if ((ty && !(cJSON_IsString(ty) && !strcmp(ty->valuestring, "object"))) ||
      (depth && !ty && !pp && !all)) {
    fail(c, "%s: allOf is supported for object schemas only", at);
    return 0;
  }
  if (all && (!cJSON_IsArray(all) || !cJSON_GetArraySize(all))) {
    fail(c, "%s: allOf must be a non-empty array", at);
    return 0;
  }
  if (depth > 8) {
    fail(c, "%s: allOf nested deeper than 8", at);
    return 0;
  }
  int k = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, all) {
    const cJSON *y = m;
    for (int hops = 0; hops < 32 && cJSON_IsObject(y); hops++) {
      const cJSON *r = cJSON_GetObjectItemCaseSensitive(y, "$ref");
      if (!cJSON_IsString(r)) break;
      y = resolve_ref(c, r->valuestring);
    }
    char sub[LABEL_LEN];
    snprintf(sub, sizeof sub, "%.60s%sallOf/%d", label, label[0] ? "/" : "", k++);
    if (!cJSON_IsObject(y)) {
      fail(c, "%s: %s", sub,
           y ? "allOf is supported for object schemas only" : "$ref points nowhere");
      return 0;
    }
    if (!allof_members(c, y, sub, mem, labels, n_mem, depth + 1)) return 0;
  }
  if (*n_mem == MAX_MEMBERS) {
    fail(c, "allOf: more than %d members", MAX_MEMBERS);
    return 0;
  }
  snprintf(labels[*n_mem], LABEL_LEN, "%s", at);
  mem[(*n_mem)++] = x;
  return 1;
}

/* Whether a property schema is an object schema, so that two of them can merge by allOf. */
static int is_object_schema(const cJSON *s) {
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(s, "type");
  if (ty) return cJSON_IsString(ty) && !strcmp(ty->valuestring, "object");
  return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(s, "properties"));
}

/* allOf whose members are all object schemas: one object with the union of properties and
 * required. A property several members define gets the allOf of their schemas (objects only);
 * a member with additionalProperties false removes the properties it does not name, so every
 * document of the merged object validates against each member. */
static char *allof_schema(conv *c, const cJSON *s, const cJSON *all, int depth) {
  if (cJSON_GetArraySize(all) == 1 && !cJSON_GetObjectItemCaseSensitive(s, "properties") &&
      !cJSON_GetObjectItemCaseSensitive(s, "required") &&
      !cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))
    return convert_at(c, cJSON_GetArrayItem(all, 0), "allOf/0", depth + 1);
  const cJSON *mem[MAX_MEMBERS];
  char label[MAX_MEMBERS][LABEL_LEN];
  int n_mem = 0;
  if (!allof_members(c, s, "", mem, label, &n_mem, 0)) return NULL;
  for (int i = 0; i < n_mem; i++) {
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(mem[i], "properties");
    const cJSON *rq = cJSON_GetObjectItemCaseSensitive(mem[i], "required");
    const cJSON *q;
    int bad_req = rq && !cJSON_IsArray(rq);
    cJSON_ArrayForEach(q, rq) bad_req |= !cJSON_IsString(q);
    if ((pp && !cJSON_IsObject(pp)) || bad_req) {
      fail(c, "%s: %s", label[i],
           bad_req ? "required must be an array of strings" : "properties must be an object");
      return NULL;
    }
  }
  cJSON *merged = cJSON_CreateObject(), *props = cJSON_CreateObject(), *req = cJSON_CreateArray();
  if (!merged || !props || !req) {
    cJSON_Delete(merged), cJSON_Delete(props), cJSON_Delete(req);
    c->failed = 1, c->status = NLLM_ERR_NOMEM;
    return NULL;
  }
  cJSON_AddStringToObject(merged, "type", "object");
  cJSON_AddItemToObject(merged, "properties", props);
  cJSON_AddItemToObject(merged, "required", req);
  int nomem = 0;
  for (int i = 0; i < n_mem && !c->failed && !nomem; i++) {
    const cJSON *q;
    cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(mem[i], "properties")) {
      cJSON *old = cJSON_GetObjectItemCaseSensitive(props, q->string);
      if (old && cJSON_Compare(old, q, 1)) continue;
      if (old && !(is_object_schema(old) && is_object_schema(q))) {
        fail(c,
             "%s: property \"%.100s\" has different schemas in several members; they "
             "merge only when all are object schemas",
             label[i], q->string);
        break;
      }
      cJSON *nv = cJSON_Duplicate(q, 1);
      if (old && nv) { /* both objects: the property is the allOf of the two */
        cJSON *w = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        if (!w || !arr || !cJSON_AddItemToArray(arr, cJSON_Duplicate(old, 1)) ||
            !cJSON_AddItemToArray(arr, nv)) {
          cJSON_Delete(w), cJSON_Delete(arr);
          nomem = 1;
          break;
        }
        cJSON_AddStringToObject(w, "type", "object");
        cJSON_AddItemToObject(w, "allOf", arr);
        nv = w;
      }
      if (!nv || !(old ? cJSON_ReplaceItemInObjectCaseSensitive(props, q->string, nv)
                       : cJSON_AddItemToObject(props, q->string, nv))) {
        cJSON_Delete(nv);
        nomem = 1;
        break;
      }
    }
    cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(mem[i], "required")) {
      int dup = 0;
      const cJSON *r;
      cJSON_ArrayForEach(r, req) dup |= !strcmp(r->valuestring, q->valuestring);
      if (!dup && !cJSON_AddItemToArray(req, cJSON_CreateString(q->valuestring))) nomem = 1;
    }
  }
  /* additionalProperties of a member constrains the properties the other members add. */
  for (int i = 0; i < n_mem && !c->failed && !nomem; i++) {
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(mem[i], "additionalProperties");
    if (!ap || cJSON_IsTrue(ap)) continue;
    const cJSON *own = cJSON_GetObjectItemCaseSensitive(mem[i], "properties");
    for (cJSON *q = props->child, *next; q; q = next) {
      next = q->next;
      if (cJSON_GetObjectItemCaseSensitive(own, q->string)) continue;
      if (!cJSON_IsFalse(ap)) {
        fail(c,
             "%s: additionalProperties with a schema, and property \"%.100s\" from "
             "another member, is not supported",
             label[i], q->string);
        break;
      }
      int is_req = 0;
      const cJSON *r;
      cJSON_ArrayForEach(r, req) is_req |= !strcmp(r->valuestring, q->string);
      if (is_req) {
        fail(c,
             "%s: required property \"%.100s\" is excluded by additionalProperties "
             "false (no document matches)",
             label[i], q->string);
        break;
      }
      cJSON_DeleteItemFromObjectCaseSensitive(props, q->string);
    }
  }
  if (nomem) c->failed = 1, c->status = NLLM_ERR_NOMEM;
  char *r = c->failed ? NULL : object_schema(c, merged, depth);
  cJSON_Delete(merged);
  return r;
}

static const char *const UNSUPPORTED[] = {
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "uniqueItems",
    "multipleOf",
    "patternProperties",
    "propertyNames",
    "contains",
    "minContains",
    "maxContains",
    "minProperties",
    "maxProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
};

static char *alternatives(conv *c, const cJSON *list, const char *key, int depth) {
  if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
    fail(c, "%s must be a non-empty array", key);
    return NULL;
  }
  sb b = {0};
  sb_str(&b, "(");
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, list) {
    char seg[48];
    snprintf(seg, sizeof seg, "%s/%d", key, i);
    char *x = convert_at(c, m, seg, depth + 1);
    if (!x) {
      free(b.s);
      return NULL;
    }
    sb_fmt(&b, "%s(%s)", i ? " | " : "", x);
    free(x);
    i++;
  }
  sb_str(&b, ")");
  return b.s;
}

/* Keywords that only describe a schema: they never constrain a document. */
static int is_annotation(const char *k) {
  static const char *const A[] = {
      "title",     "description", "$comment",        "examples",         "default",      "$schema",
      "$id",       "$anchor",     "$defs",           "definitions",      "deprecated",   "readOnly",
      "writeOnly", "nullable",    "contentEncoding", "contentMediaType", "discriminator"};
  for (size_t i = 0; i < sizeof A / sizeof *A; i++)
    if (!strcmp(k, A[i])) return 1;
  return 0;
}

/* The first keyword of s that constrains documents, other than annotations and skip[]
 * (NULL-terminated); NULL when none. */
static const char *constraint_beside(const cJSON *s, const char *const *skip) {
  const cJSON *k;
  cJSON_ArrayForEach(k, s) {
    int skipped = is_annotation(k->string);
    for (int i = 0; skip[i] && !skipped; i++) skipped = !strcmp(k->string, skip[i]);
    if (!skipped) return k->string;
  }
  return NULL;
}

enum {
  T_OBJECT = 1,
  T_ARRAY = 2,
  T_STRING = 4,
  T_NUMBER = 8,
  T_INTEGER = 16,
  T_BOOL = 32,
  T_NULL = 64
};
static const char *const TYPE_NAMES[] = {"object",  "array",   "string", "number",
                                         "integer", "boolean", "null"};

/* A type keyword as a set; integer is in number. -1 for a value that is not a type. */
static int type_set(const cJSON *t) {
  int m = 0;
  const cJSON *one = t;
  if (cJSON_IsArray(t)) one = t->child;
  for (; one; one = cJSON_IsArray(t) ? one->next : NULL) {
    int bit = 0;
    for (int i = 0; i < 7 && cJSON_IsString(one); i++)
      if (!strcmp(one->valuestring, TYPE_NAMES[i])) bit = 1 << i;
    if (!bit) return -1;
    m |= bit;
  }
  return m & T_NUMBER ? m | T_INTEGER : m;
}

static int value_has_type(const cJSON *v, int types) {
  if (cJSON_IsObject(v)) return !!(types & T_OBJECT);
  if (cJSON_IsArray(v)) return !!(types & T_ARRAY);
  if (cJSON_IsString(v)) return !!(types & T_STRING);
  if (cJSON_IsBool(v)) return !!(types & T_BOOL);
  if (cJSON_IsNull(v)) return !!(types & T_NULL);
  if (cJSON_IsNumber(v))
    return (types & T_NUMBER) || ((types & T_INTEGER) && v->valuedouble == floor(v->valuedouble) &&
                                  fabs(v->valuedouble) < 9e15);
  return 0;
}

enum { MERGE_OK = 0, MERGE_UNSAT = 1, MERGE_FAIL = 2 };

static int replace_key(cJSON *b, const char *k, cJSON *v) {
  if (!v) return 0;
  if (cJSON_ReplaceItemInObjectCaseSensitive(b, k, v)) return 1;
  cJSON_Delete(v);
  return 0;
}

/* Adds the constraints of schema a (but its keys in skip[]) to b, a copy the caller owns, so
 * that b accepts only documents both accept: a keyword in both becomes the stricter of the two
 * (bounds, required, type, enum, nested schemas); MERGE_UNSAT when nothing can match both,
 * MERGE_FAIL (reported) when a keyword differs in a way that cannot be combined. */
static int merge_into(conv *c, cJSON *b, const cJSON *a, const char *const *skip, int depth) {
  if (depth > MAX_SCHEMA_DEPTH) {
    fail(c, "schema nested deeper than %d", MAX_SCHEMA_DEPTH);
    return MERGE_FAIL;
  }
  const cJSON *k;
  cJSON_ArrayForEach(k, a) {
    const char *key = k->string;
    int skipped = is_annotation(key);
    for (int i = 0; skip && skip[i] && !skipped; i++) skipped = !strcmp(key, skip[i]);
    if (skipped) continue;
    cJSON *old = cJSON_GetObjectItemCaseSensitive(b, key);
    if (!old) {
      if (!cJSON_AddItemToObject(b, key, cJSON_Duplicate(k, 1))) goto nomem;
      continue;
    }
    if (cJSON_Compare(old, k, 1)) continue;
    if (!strcmp(key, "type")) {
      int x = type_set(old), y = type_set(k);
      if (x < 0 || y < 0) break; /* reported by the conversion */
      int m = x & y;
      if (!(x & T_NUMBER) || !(y & T_NUMBER)) m &= ~T_NUMBER;
      if (m & T_NUMBER) m &= ~T_INTEGER;
      if (!m) return MERGE_UNSAT;
      cJSON *t = cJSON_CreateArray();
      for (int i = 0; i < 7 && t; i++)
        if (m & (1 << i) && !cJSON_AddItemToArray(t, cJSON_CreateString(TYPE_NAMES[i])))
          cJSON_Delete(t), t = NULL;
      if (!replace_key(b, key, t)) goto nomem;
    } else if (!strcmp(key, "required") && cJSON_IsArray(old) && cJSON_IsArray(k)) {
      const cJSON *r;
      cJSON_ArrayForEach(r, k) {
        int dup = 0;
        const cJSON *q;
        cJSON_ArrayForEach(q, old) dup |= cJSON_Compare(q, r, 1);
        if (!dup && !cJSON_AddItemToArray(old, cJSON_Duplicate(r, 1))) goto nomem;
      }
    } else if (!strcmp(key, "enum") && cJSON_IsArray(old) && cJSON_IsArray(k)) {
      for (cJSON *v = old->child, *next; v; v = next) {
        next = v->next;
        int in = 0;
        const cJSON *w;
        cJSON_ArrayForEach(w, k) in |= cJSON_Compare(v, w, 1);
        if (!in) cJSON_Delete(cJSON_DetachItemViaPointer(old, v));
      }
      if (!old->child) return MERGE_UNSAT;
    } else if ((!strncmp(key, "min", 3) || !strncmp(key, "max", 3) ||
                !strncmp(key, "exclusiveM", 10)) &&
               cJSON_IsNumber(old) && cJSON_IsNumber(k)) {
      int lower = !strncmp(key, "min", 3) || !strcmp(key, "exclusiveMinimum");
      if (lower ? k->valuedouble > old->valuedouble : k->valuedouble < old->valuedouble)
        if (!replace_key(b, key, cJSON_Duplicate(k, 1))) goto nomem;
    } else if ((!strcmp(key, "properties") || !strcmp(key, "$defs")) && cJSON_IsObject(old) &&
               cJSON_IsObject(k)) {
      const cJSON *q;
      cJSON_ArrayForEach(q, k) {
        cJSON *o = cJSON_GetObjectItemCaseSensitive(old, q->string);
        if (!o) {
          if (!cJSON_AddItemToObject(old, q->string, cJSON_Duplicate(q, 1))) goto nomem;
        } else if (cJSON_IsFalse(o) || cJSON_IsFalse(q)) {
          return MERGE_UNSAT;
        } else if (cJSON_IsTrue(o)) {
          if (!replace_key(old, q->string, cJSON_Duplicate(q, 1))) goto nomem;
        } else if (cJSON_IsObject(o) && cJSON_IsObject(q)) {
          int r = merge_into(c, o, q, NULL, depth + 1);
          if (r) return r;
        }
      }
    } else if ((!strcmp(key, "items") || !strcmp(key, "additionalProperties")) &&
               (cJSON_IsObject(old) || cJSON_IsBool(old)) &&
               (cJSON_IsObject(k) || cJSON_IsBool(k))) {
      if (cJSON_IsFalse(old) || cJSON_IsTrue(k)) continue;
      if (cJSON_IsFalse(k) || cJSON_IsTrue(old)) {
        if (!replace_key(b, key, cJSON_Duplicate(k, 1))) goto nomem;
        continue;
      }
      int r = merge_into(c, old, k, NULL, depth + 1);
      if (r) return r;
    } else if (!strcmp(key, "const")) {
      return MERGE_UNSAT;
    } else {
      fail(c,
           "\"%.60s\" differs in two schemas that must both hold; combining them is not "
           "supported",
           key);
      return MERGE_FAIL;
    }
  }
  return c->failed ? MERGE_FAIL : MERGE_OK;
nomem:
  c->failed = 1, c->status = NLLM_ERR_NOMEM;
  return MERGE_FAIL;
}

/* anyOf / oneOf with constraining keywords beside it: each alternative with those keywords
 * merged in; alternatives that cannot match them are left out. */
static char *alternatives_with(conv *c, const cJSON *s, const cJSON *list, const char *key,
                               int depth) {
  if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
    fail(c, "%s must be a non-empty array", key);
    return NULL;
  }
  const char *skip[] = {key, NULL};
  sb b = {0};
  sb_str(&b, "(");
  int i = 0, n = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, list) {
    char seg[48];
    snprintf(seg, sizeof seg, "%s/%d", key, i++);
    if (cJSON_IsFalse(m)) continue;
    cJSON *merged = cJSON_IsObject(m) ? cJSON_Duplicate(m, 1) : cJSON_CreateObject();
    if (!merged) {
      c->failed = 1, c->status = NLLM_ERR_NOMEM;
      break;
    }
    size_t at = path_push(c, seg);
    int r = cJSON_IsObject(m) || cJSON_IsTrue(m)
                ? merge_into(c, merged, s, skip, depth + 1)
                : (fail(c, "a schema must be an object or a boolean"), MERGE_FAIL);
    char *x = r == MERGE_OK ? convert(c, merged, NULL, depth + 1) : NULL;
    path_pop(c, at);
    cJSON_Delete(merged);
    if (r == MERGE_UNSAT) continue;
    if (!x) break;
    sb_fmt(&b, "%s(%s)", n++ ? " | " : "", x);
    free(x);
  }
  if (!c->failed && !n)
    fail(c, "no alternative of %s can match the keywords beside it (\"%s\")", key,
         constraint_beside(s, skip));
  if (c->failed) {
    free(b.s);
    return NULL;
  }
  sb_str(&b, ")");
  return b.s;
}

/* enum / const with constraining keywords beside it: the values that satisfy type, the numeric
 * bounds and the string lengths are kept; any other keyword is refused. */
static cJSON *enum_values(conv *c, const cJSON *s, const cJSON *values) {
  static const char *const OK[] = {"type",
                                   "enum",
                                   "const",
                                   "minimum",
                                   "maximum",
                                   "exclusiveMinimum",
                                   "exclusiveMaximum",
                                   "minLength",
                                   "maxLength",
                                   "format",
                                   NULL};
  const char *other = constraint_beside(s, OK);
  if (other) {
    fail(c, "enum/const together with \"%.60s\" is not supported", other);
    return NULL;
  }
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(s, "type");
  int types = ty ? type_set(ty) : 0x7f;
  if (types < 0) {
    fail(c, "type must be a type name or a list of them");
    return NULL;
  }
  cJSON *out = cJSON_CreateArray();
  if (!out) {
    c->failed = 1, c->status = NLLM_ERR_NOMEM;
    return NULL;
  }
  const cJSON *v;
  cJSON_ArrayForEach(v, values) {
    int keep = value_has_type(v, types);
    double x;
    if (cJSON_IsNumber(v)) {
      const double d = v->valuedouble;
      keep &= !(num(s, "minimum", &x) && d < x) && !(num(s, "maximum", &x) && d > x) &&
              !(num(s, "exclusiveMinimum", &x) && d <= x) &&
              !(num(s, "exclusiveMaximum", &x) && d >= x);
    } else if (cJSON_IsString(v)) {
      double n_cp = 0;
      for (const unsigned char *p = (const unsigned char *)v->valuestring; *p; p++)
        n_cp += (*p & 0xc0) != 0x80;
      keep &= !(num(s, "minLength", &x) && n_cp < x) && !(num(s, "maxLength", &x) && n_cp > x);
      const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "format");
      if (cJSON_IsString(f)) { /* an enforced format is checked by a grammar of its own */
        static const char *const ENF[] = {"date", "time", "date-time", "uuid", "email", "ipv4"};
        for (size_t i = 0; i < sizeof ENF / sizeof *ENF; i++)
          if (!strcmp(f->valuestring, ENF[i])) {
            fail(c, "enum/const together with format \"%s\" is not supported", ENF[i]);
            cJSON_Delete(out);
            return NULL;
          }
      }
    }
    if (keep && !cJSON_AddItemToArray(out, cJSON_Duplicate(v, 1))) {
      cJSON_Delete(out);
      c->failed = 1, c->status = NLLM_ERR_NOMEM;
      return NULL;
    }
  }
  if (!out->child) {
    fail(c, "no value of enum/const matches the keywords beside it");
    cJSON_Delete(out);
    return NULL;
  }
  return out;
}

static char *convert(conv *c, const cJSON *s, const char *forced_type, int depth) {
  if (c->failed) return NULL;
  if (depth > MAX_SCHEMA_DEPTH) {
    fail(c, "schema nested deeper than %d", MAX_SCHEMA_DEPTH);
    return NULL;
  }
  if (cJSON_IsTrue(s)) return nllm_strdup(prim(c, "value"));
  if (cJSON_IsFalse(s)) {
    fail(c, "schema false accepts nothing");
    return NULL;
  }
  if (!cJSON_IsObject(s)) {
    fail(c, "a schema must be an object or a boolean");
    return NULL;
  }
  for (size_t i = 0; i < sizeof UNSUPPORTED / sizeof *UNSUPPORTED; i++)
    if (cJSON_GetObjectItemCaseSensitive(s, UNSUPPORTED[i])) {
      fail(c, "keyword \"%s\" is not supported", UNSUPPORTED[i]);
      return NULL;
    }
  const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
  if (ref) {
    if (!cJSON_IsString(ref)) {
      fail(c, "$ref must be a string");
      return NULL;
    }
    /* A schema that is only a reference to itself would be a rule that is its own body. */
    if (resolve_ref(c, ref->valuestring) == s) {
      fail(c, "$ref \"%.200s\" refers to the schema that holds it", ref->valuestring);
      return NULL;
    }
    /* Keywords beside $ref also hold (draft 2019+): they merge into a copy of the target. */
    static const char *const REF_ONLY[] = {"$ref", NULL};
    if (constraint_beside(s, REF_ONLY)) {
      const cJSON *target = resolve_ref(c, ref->valuestring);
      if (!target) return NULL;
      cJSON *merged = cJSON_IsObject(target) ? cJSON_Duplicate(target, 1) : cJSON_CreateObject();
      if (!merged) {
        c->failed = 1, c->status = NLLM_ERR_NOMEM;
        return NULL;
      }
      int r = cJSON_IsFalse(target) ? MERGE_UNSAT : merge_into(c, merged, s, REF_ONLY, depth);
      char *out = r == MERGE_OK ? convert(c, merged, NULL, depth + 1) : NULL;
      cJSON_Delete(merged);
      if (r == MERGE_UNSAT)
        fail(c, "the keywords beside $ref \"%.200s\" contradict its target", ref->valuestring);
      return out;
    }
    return ref_schema(c, ref->valuestring, depth);
  }
  const cJSON *x;
  if ((x = cJSON_GetObjectItemCaseSensitive(s, "const")) ||
      (x = cJSON_GetObjectItemCaseSensitive(s, "enum"))) {
    cJSON *one = NULL;
    if (!strcmp(x->string, "const")) {
      if (!(one = cJSON_CreateArray()) || !cJSON_AddItemToArray(one, cJSON_Duplicate(x, 1))) {
        cJSON_Delete(one);
        c->failed = 1, c->status = NLLM_ERR_NOMEM;
        return NULL;
      }
      x = one;
    } else if (!cJSON_IsArray(x) || !cJSON_GetArraySize(x)) {
      fail(c, "enum must be a non-empty array");
      return NULL;
    }
    cJSON *vals = enum_values(c, s, x);
    cJSON_Delete(one);
    if (!vals) return NULL;
    sb b = {0};
    sb_str(&b, "(");
    const cJSON *v;
    int i = 0;
    cJSON_ArrayForEach(v, vals) {
      if (i++) sb_str(&b, " | ");
      sb_str(&b, "(");
      json_lit(c, &b, v);
      sb_str(&b, ")");
    }
    sb_str(&b, ")");
    cJSON_Delete(vals);
    return b.s;
  }
  static const char *const ANY_ONLY[] = {"anyOf", NULL}, *const ONE_ONLY[] = {"oneOf", NULL};
  if ((x = cJSON_GetObjectItemCaseSensitive(s, "anyOf")))
    return constraint_beside(s, ANY_ONLY) ? alternatives_with(c, s, x, "anyOf", depth)
                                          : alternatives(c, x, "anyOf", depth);
  if ((x = cJSON_GetObjectItemCaseSensitive(s, "oneOf")))
    return constraint_beside(s, ONE_ONLY) ? alternatives_with(c, s, x, "oneOf", depth)
                                          : alternatives(c, x, "oneOf", depth);
  if ((x = cJSON_GetObjectItemCaseSensitive(s, "allOf"))) {
    if (!cJSON_IsArray(x) || !cJSON_GetArraySize(x)) {
      fail(c, "allOf must be a non-empty array");
      return NULL;
    }
    return allof_schema(c, s, x, depth);
  }
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
  const char *t = forced_type;
  if (!t && cJSON_IsArray(type)) {
    sb b = {0};
    sb_str(&b, "(");
    int i = 0;
    const cJSON *ty;
    cJSON_ArrayForEach(ty, type) {
      if (!cJSON_IsString(ty)) {
        fail(c, "type list entries must be strings");
        free(b.s);
        return NULL;
      }
      char *e = convert(c, s, ty->valuestring, depth + 1);
      if (!e) {
        free(b.s);
        return NULL;
      }
      sb_fmt(&b, "%s(%s)", i++ ? " | " : "", e);
      free(e);
    }
    sb_str(&b, ")");
    if (!i) {
      fail(c, "empty type list accepts nothing");
      free(b.s);
      return NULL;
    }
    return b.s;
  }
  if (!t && cJSON_IsString(type)) t = type->valuestring;
  if (!t && type) {
    fail(c, "type must be a string or a list of strings");
    return NULL;
  }
  if (!t) {
    if (cJSON_GetObjectItemCaseSensitive(s, "properties") ||
        cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))
      t = "object";
    else if (cJSON_GetObjectItemCaseSensitive(s, "items") ||
             cJSON_GetObjectItemCaseSensitive(s, "prefixItems"))
      t = "array";
    else
      return nllm_strdup(prim(c, "value"));
  }
  if (!strcmp(t, "object")) return object_schema(c, s, depth);
  if (!strcmp(t, "array")) return array_schema(c, s, depth);
  if (!strcmp(t, "string")) return string_schema(c, s);
  if (!strcmp(t, "integer")) return integer_schema(c, s);
  if (!strcmp(t, "number")) return number_schema(c, s);
  if (!strcmp(t, "boolean")) return nllm_strdup(prim(c, "boolean"));
  if (!strcmp(t, "null")) return nllm_strdup(prim(c, "null"));
  fail(c, "unknown type \"%.60s\"", t);
  return NULL;
}

nllm_status nllm_json_schema_to_gbnf(const char *schema, size_t len, char **out) {
  if (!out) return nllm_err(NLLM_ERR_INVALID_ARG, "json_schema: out is NULL");
  *out = NULL;
  if (!schema) return nllm_err(NLLM_ERR_INVALID_ARG, "json_schema: schema is NULL");
  if (len > MAX_OUT)
    return nllm_err(NLLM_ERR_INVALID_ARG, "json_schema: schema of %zu bytes is too large", len);
  /* Strings of the schema become grammar literals, which must be UTF-8: check every byte, not
   * only those before a NUL, since the parser stops there but the caller's length does not. */
  if (!nllm_utf8_valid(schema, len))
    return nllm_err(NLLM_ERR_INVALID_ARG, "json_schema: the schema is not valid UTF-8");
  const char *end = NULL;
  cJSON *doc = cJSON_ParseWithLengthOpts(schema, len, &end, 0);
  if (!doc) {
    size_t at = end && end >= schema ? (size_t)(end - schema) : 0;
    return nllm_err(NLLM_ERR_INVALID_ARG, "json_schema: not valid JSON (near byte %zu)", at);
  }
  conv c = {.doc = doc};
  note_rule(&c, "root");
  char *body = convert(&c, doc, NULL, 0);
  nllm_status st = NLLM_OK;
  if (body && !c.failed) {
    sb all = {0};
    sb_str(&all, "root ::= ");
    sb_str(&all, body);
    sb_str(&all, "\n");
    if (c.rules.s) sb_str(&all, c.rules.s);
    if (all.oom) {
      free(all.s);
      st = nllm_err(NLLM_ERR_NOMEM, "json_schema: out of memory");
    } else {
      *out = all.s;
    }
  } else {
    st = c.failed ? c.status : NLLM_ERR_NOMEM;
    if (st == NLLM_ERR_NOMEM) nllm_err(st, "json_schema: out of memory");
  }
  if (c.rules.oom && st == NLLM_OK) {
    free(*out);
    *out = NULL;
    st = nllm_err(NLLM_ERR_NOMEM, "json_schema: out of memory");
  }
  free(body);
  free(c.rules.s);
  for (int i = 0; i < c.n_names; i++) free(c.names[i]);
  free(c.names);
  for (int i = 0; i < c.n_refs; i++) free(c.ref_names[i]);
  free(c.ref_names);
  free(c.ref_targets);
  cJSON_Delete(doc);
  return st;
}
