/* GBNF text -> compiled grammar. Groups and repetitions become generated rules, so the matcher
 * only knows three element kinds (character set, rule reference, end of alternative).
 * Repetitions expand right-recursively (x* is R ::= x R | ""), which the matcher follows without
 * growing its stacks. Left recursion would make expansion loop, so it is found and refused here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_internal.h"

#define GE_ALT 3u /* separates alternatives while building; not in compiled grammars */

typedef struct {
  nllm_gelem *v;
  uint32_t n, cap;
} evec;

typedef struct {
  char *name;
  evec body;
  int defined;
  size_t use_pos; /* first reference, for "undefined rule" */
  size_t def_pos;
} brule;

typedef struct {
  const char *s;
  size_t n, pos;
  brule *rules;
  uint32_t n_rules, cap_rules;
  nllm_gset *sets;
  uint32_t n_sets, cap_sets;
  nllm_grange *ranges;
  uint32_t n_ranges, cap_ranges;
  uint64_t total;
  int depth;
  int failed;
  nllm_status status;
} parser;

static int grow(void **p, uint32_t *cap, uint32_t need, size_t elem) {
  if (need <= *cap) return 0;
  uint32_t nc = *cap ? *cap : 8;
  while (nc < need) nc *= 2;
  void *q = realloc(*p, (size_t)nc * elem);
  if (!q) return -1;
  *p = q;
  *cap = nc;
  return 0;
}

NLLM_PRINTF(3, 4) static void perr(parser *P, size_t pos, const char *fmt, ...) {
  if (P->failed) return;
  P->failed = 1;
  P->status = NLLM_ERR_INVALID_ARG;
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < P->n; i++) {
    if (P->s[i] == '\n')
      line++, col = 1;
    else
      col++;
  }
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nllm_err(NLLM_ERR_INVALID_ARG, "grammar: line %zu, column %zu: %s", line, col, msg);
}

static void oom(parser *P) {
  if (P->failed) return;
  P->failed = 1;
  P->status = NLLM_ERR_NOMEM;
  nllm_err(NLLM_ERR_NOMEM, "grammar: out of memory");
}

static void push(parser *P, evec *e, uint32_t type, uint32_t val) {
  if (P->failed) return;
  if (++P->total > NLLM_GRAMMAR_MAX_ELEMS) {
    perr(P, P->pos, "grammar too large: more than %u elements after expanding repetitions",
         NLLM_GRAMMAR_MAX_ELEMS);
    return;
  }
  if (grow((void **)&e->v, &e->cap, e->n + 1, sizeof *e->v)) return oom(P);
  e->v[e->n++] = (nllm_gelem){type, val};
}

static uint32_t add_rule(parser *P, const char *name, size_t namelen, size_t pos) {
  if (P->failed) return 0;
  if (P->n_rules >= NLLM_GRAMMAR_MAX_RULES) {
    perr(P, pos, "too many rules (more than %u, counting groups and repetitions)",
         NLLM_GRAMMAR_MAX_RULES);
    return 0;
  }
  if (grow((void **)&P->rules, &P->cap_rules, P->n_rules + 1, sizeof *P->rules)) {
    oom(P);
    return 0;
  }
  brule *r = &P->rules[P->n_rules];
  memset(r, 0, sizeof *r);
  r->name = malloc(namelen + 1);
  if (!r->name) {
    oom(P);
    return 0;
  }
  memcpy(r->name, name, namelen);
  r->name[namelen] = 0;
  r->use_pos = r->def_pos = pos;
  return P->n_rules++;
}

static uint32_t find_rule(parser *P, const char *name, size_t namelen, size_t pos) {
  for (uint32_t i = 0; i < P->n_rules; i++)
    if (strlen(P->rules[i].name) == namelen && !memcmp(P->rules[i].name, name, namelen)) return i;
  return add_rule(P, name, namelen, pos);
}

/* A rule made for a group or repetition inside rule `parent`, named after it. The '#' is no
 * word character, so a made name never equals a rule the text names: with '-', a grammar that
 * defines "object-30" (as the JSON Schema converter's names run) met the rule made for a group
 * of "object" and was refused as "defined twice" (fuzz_json_schema). */
static uint32_t gen_rule(parser *P, uint32_t parent) {
  char nm[96];
  int k = snprintf(nm, sizeof nm, "%.60s#%u", P->failed ? "" : P->rules[parent].name, P->n_rules);
  uint32_t r = add_rule(P, nm, (size_t)k, P->pos);
  if (!P->failed) P->rules[r].defined = 1;
  return r;
}

static uint32_t add_set(parser *P, const nllm_grange *rg, uint32_t n, int neg) {
  if (P->failed) return 0;
  if (grow((void **)&P->ranges, &P->cap_ranges, P->n_ranges + n, sizeof *P->ranges) ||
      grow((void **)&P->sets, &P->cap_sets, P->n_sets + 1, sizeof *P->sets)) {
    oom(P);
    return 0;
  }
  nllm_gset *s = &P->sets[P->n_sets];
  memset(s, 0, sizeof *s);
  s->first = P->n_ranges;
  s->n = n;
  s->neg = (uint32_t)neg;
  if (n) memcpy(P->ranges + P->n_ranges, rg, (size_t)n * sizeof *rg);
  P->n_ranges += n;
  for (uint32_t c = 0; c < 128; c++) {
    int in = 0;
    for (uint32_t i = 0; i < n && !in; i++) in = c >= rg[i].lo && c <= rg[i].hi;
    if (in != neg) s->ascii[c >> 6] |= 1ull << (c & 63);
  }
  return P->n_sets++;
}

static int is_word(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

static int peek(const parser *P) {
  return P->pos < P->n ? (unsigned char)P->s[P->pos] : -1;
}

static void skip_space(parser *P, int newline_ok) {
  while (P->pos < P->n) {
    char c = P->s[P->pos];
    if (c == ' ' || c == '\t' || (newline_ok && (c == '\n' || c == '\r'))) {
      P->pos++;
    } else if (c == '#') {
      while (P->pos < P->n && P->s[P->pos] != '\n' && P->s[P->pos] != '\r') P->pos++;
    } else {
      break;
    }
  }
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* One UTF-8 code point of the text. */
static uint32_t read_utf8(parser *P) {
  const unsigned char *s = (const unsigned char *)P->s;
  size_t p = P->pos;
  unsigned c = s[p];
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (!len || p + (size_t)len > P->n) {
    perr(P, p, "invalid UTF-8 byte 0x%02x", c);
    return 0;
  }
  uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
  for (int i = 1; i < len; i++) {
    if ((s[p + (size_t)i] & 0xc0) != 0x80) {
      perr(P, p, "invalid UTF-8 sequence");
      return 0;
    }
    cp = cp << 6 | (s[p + (size_t)i] & 0x3f);
  }
  P->pos += (size_t)len;
  return cp;
}

/* A character of a literal or class, with escapes. */
static uint32_t read_char(parser *P) {
  if (P->pos >= P->n) {
    perr(P, P->pos, "unexpected end of grammar");
    return 0;
  }
  if (P->s[P->pos] != '\\') return read_utf8(P);
  size_t at = P->pos;
  if (++P->pos >= P->n) {
    perr(P, at, "unfinished escape at end of grammar");
    return 0;
  }
  char e = P->s[P->pos++];
  int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
  if (digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
      int h = P->pos < P->n ? hexval((unsigned char)P->s[P->pos]) : -1;
      if (h < 0) {
        perr(P, at, "escape \\%c needs %d hex digits", e, digits);
        return 0;
      }
      v = v << 4 | (uint32_t)h;
      P->pos++;
    }
    if (v > 0x10ffff) perr(P, at, "escape \\%c: code point 0x%x is beyond U+10FFFF", e, v);
    return v;
  }
  switch (e) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '0': return 0;
    case '\\':
    case '"':
    case '[':
    case ']':
    case '-':
    case '^':
    case '/':
    case '\'': return (uint32_t)e;
    default: perr(P, at, "unknown escape \\%c", e); return 0;
  }
}

static void parse_alternates(parser *P, uint32_t rule, evec *out, int nested);

static void append_copy(parser *P, evec *dst, const nllm_gelem *src, uint32_t n) {
  for (uint32_t i = 0; i < n && !P->failed; i++) push(P, dst, src[i].type, src[i].val);
}

/* Replaces out[start..] (one item S) by S{min,max}; max UINT32_MAX is unbounded. */
static void repeat(parser *P, uint32_t rule, evec *out, uint32_t start, uint32_t min,
                   uint32_t max) {
  uint32_t len = out->n - start;
  nllm_gelem *S = malloc((size_t)(len ? len : 1) * sizeof *S);
  if (!S) return oom(P);
  if (len) memcpy(S, out->v + start, (size_t)len * sizeof *S);
  out->n = start;
  P->total -= len;
  if ((uint64_t)len * min > NLLM_GRAMMAR_MAX_ELEMS ||
      (max != UINT32_MAX && (uint64_t)(len + 2) * (max - min) > NLLM_GRAMMAR_MAX_ELEMS)) {
    perr(P, P->pos, "repetition {%u,%u} of %u elements is too large", min, max, len);
    free(S);
    return;
  }
  for (uint32_t i = 0; i < min && !P->failed; i++) append_copy(P, out, S, len);
  if (max == UINT32_MAX) {
    uint32_t r = gen_rule(P, rule);
    if (!P->failed) {
      evec *b = &P->rules[r].body;
      append_copy(P, b, S, len);
      push(P, b, GE_REF, r);
      push(P, b, GE_ALT, 0);
      push(P, out, GE_REF, r);
    }
  } else {
    uint32_t prev = UINT32_MAX;
    for (uint32_t k = min; k < max && !P->failed; k++) {
      uint32_t r = gen_rule(P, rule);
      if (P->failed) break;
      evec *b = &P->rules[r].body;
      append_copy(P, b, S, len);
      if (prev != UINT32_MAX) push(P, b, GE_REF, prev);
      push(P, b, GE_ALT, 0);
      prev = r;
    }
    if (prev != UINT32_MAX) push(P, out, GE_REF, prev);
  }
  free(S);
}

static uint32_t read_int(parser *P) {
  uint64_t v = 0;
  size_t at = P->pos;
  while (P->pos < P->n && P->s[P->pos] >= '0' && P->s[P->pos] <= '9') {
    v = v * 10 + (uint64_t)(P->s[P->pos++] - '0');
    if (v > 1000000) {
      perr(P, at, "repetition count too large");
      return 0;
    }
  }
  return (uint32_t)v;
}

static void parse_sequence(parser *P, uint32_t rule, evec *out, int nested) {
  int64_t last = -1;
  while (!P->failed) {
    int c = peek(P);
    size_t at = P->pos;
    if (c == '"') {
      P->pos++;
      last = out->n;
      while (!P->failed && peek(P) != '"') {
        if (peek(P) < 0 || peek(P) == '\n') {
          perr(P, at, "unterminated string literal");
          break;
        }
        uint32_t cp = read_char(P);
        nllm_grange rg = {cp, cp};
        push(P, out, GE_CHARS, add_set(P, &rg, 1, 0));
      }
      P->pos++;
    } else if (c == '[') {
      P->pos++;
      int neg = peek(P) == '^';
      if (neg) P->pos++;
      nllm_grange rg[256];
      uint32_t n = 0;
      nllm_grange *big = NULL;
      uint32_t nbig = 0, capbig = 0;
      while (!P->failed && peek(P) != ']') {
        if (peek(P) < 0) {
          perr(P, at, "unterminated character class");
          break;
        }
        uint32_t lo = read_char(P), hi = lo;
        if (peek(P) == '-' && P->pos + 1 < P->n && P->s[P->pos + 1] != ']') {
          P->pos++;
          hi = read_char(P);
          if (hi < lo) perr(P, at, "character range with end below start");
        }
        if (n < 256) {
          rg[n++] = (nllm_grange){lo, hi};
        } else {
          if (grow((void **)&big, &capbig, nbig + 1, sizeof *big)) {
            oom(P);
            break;
          }
          big[nbig++] = (nllm_grange){lo, hi};
        }
      }
      P->pos++;
      if (!P->failed && nbig) {
        /* Rare: more than 256 ranges. Merge both parts into one array. */
        nllm_grange *all = malloc((size_t)(n + nbig) * sizeof *all);
        if (!all) {
          oom(P);
        } else {
          memcpy(all, rg, (size_t)n * sizeof *rg);
          memcpy(all + n, big, (size_t)nbig * sizeof *big);
          last = out->n;
          push(P, out, GE_CHARS, add_set(P, all, n + nbig, neg));
          free(all);
        }
      } else if (!P->failed) {
        last = out->n;
        push(P, out, GE_CHARS, add_set(P, rg, n, neg));
      }
      free(big);
    } else if (c == '.') {
      P->pos++;
      last = out->n;
      nllm_grange rg = {0, 0x10ffff};
      push(P, out, GE_CHARS, add_set(P, &rg, 1, 0));
    } else if (c >= 0 && is_word(c)) {
      size_t s0 = P->pos;
      while (P->pos < P->n && is_word((unsigned char)P->s[P->pos])) P->pos++;
      /* "name ::=" starts the next rule: this sequence ended at the previous line. */
      size_t save = P->pos;
      skip_space(P, 0);
      if (P->pos + 3 <= P->n && !memcmp(P->s + P->pos, "::=", 3)) {
        P->pos = s0;
        perr(P, s0, "expected an item or the end of the line before a new rule");
        break;
      }
      P->pos = save;
      last = out->n;
      push(P, out, GE_REF, find_rule(P, P->s + s0, P->pos - s0, s0));
    } else if (c == '(') {
      if (++P->depth > NLLM_GRAMMAR_MAX_NEST) {
        perr(P, at, "parentheses nested deeper than %d", NLLM_GRAMMAR_MAX_NEST);
        break;
      }
      P->pos++;
      skip_space(P, 1);
      uint32_t r = gen_rule(P, rule);
      if (P->failed) break;
      evec body = {0};
      parse_alternates(P, r, &body, 1);
      P->rules[r].body = body;
      if (!P->failed && peek(P) != ')') perr(P, P->pos, "expected ')' to close the group");
      P->pos++;
      P->depth--;
      last = out->n;
      push(P, out, GE_REF, r);
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
      if (last < 0) {
        perr(P, at, "'%c' needs an item before it", c);
        break;
      }
      P->pos++;
      uint32_t min = c == '+', max = c == '?' ? 1 : UINT32_MAX;
      if (c == '{') {
        skip_space(P, nested);
        min = read_int(P);
        if (P->pos == at + 1 && peek(P) != ',') {
          perr(P, at, "expected a number or ',' after '{'");
          break;
        }
        skip_space(P, nested);
        max = min;
        if (peek(P) == ',') {
          P->pos++;
          skip_space(P, nested);
          int c2 = peek(P);
          max = c2 >= '0' && c2 <= '9' ? read_int(P) : UINT32_MAX;
          skip_space(P, nested);
        }
        if (peek(P) != '}') {
          perr(P, P->pos, "expected '}' to close the repetition");
          break;
        }
        P->pos++;
        if (max < min) {
          perr(P, at, "repetition {%u,%u} has maximum below minimum", min, max);
          break;
        }
      }
      repeat(P, rule, out, (uint32_t)last, min, max);
    } else {
      break;
    }
    skip_space(P, nested);
  }
}

static void parse_alternates(parser *P, uint32_t rule, evec *out, int nested) {
  parse_sequence(P, rule, out, nested);
  while (!P->failed && peek(P) == '|') {
    push(P, out, GE_ALT, 0);
    P->pos++;
    skip_space(P, 1);
    parse_sequence(P, rule, out, nested);
  }
}

static void parse_rule(parser *P) {
  size_t s0 = P->pos;
  while (P->pos < P->n && is_word((unsigned char)P->s[P->pos])) P->pos++;
  if (P->pos == s0) return perr(P, s0, "expected a rule name");
  uint32_t r = find_rule(P, P->s + s0, P->pos - s0, s0);
  if (P->failed) return;
  if (P->rules[r].defined) return perr(P, s0, "rule '%s' is defined twice", P->rules[r].name);
  P->rules[r].defined = 1;
  P->rules[r].def_pos = s0;
  skip_space(P, 0);
  if (P->pos + 3 > P->n || memcmp(P->s + P->pos, "::=", 3))
    return perr(P, P->pos, "expected '::=' after rule name");
  P->pos += 3;
  skip_space(P, 1);
  evec body = {0};
  parse_alternates(P, r, &body, 0);
  P->rules[r].body = body;
  if (P->failed) return;
  int c = peek(P);
  if (c == '\r' || c == '\n') {
    P->pos++;
  } else if (c >= 0) {
    return perr(P, P->pos, "unexpected '%c'", c);
  }
  skip_space(P, 1);
}

/* Rules reachable from r's left edge (before any character), through nullable rules. Left
 * recursion is a cycle in this graph. */
static int check_left_recursion(parser *P, nllm_grammar *g, const uint8_t *nullable) {
  uint32_t R = g->n_rules;
  uint8_t *color = calloc(R, 1);
  uint32_t *stk = malloc((size_t)R * sizeof *stk), *iter_alt = calloc(R, sizeof *iter_alt),
           *iter_el = calloc(R, sizeof *iter_el);
  if (!color || !stk || !iter_alt || !iter_el) {
    free(color), free(stk), free(iter_alt), free(iter_el);
    oom(P);
    return -1;
  }
  int bad = 0;
  for (uint32_t s = 0; s < R && !bad; s++) {
    if (color[s]) continue;
    uint32_t sp = 0;
    stk[sp++] = s;
    color[s] = 1;
    while (sp && !bad) {
      uint32_t r = stk[sp - 1];
      /* Next left-edge reference of r after (iter_alt, iter_el). */
      uint32_t next = UINT32_MAX;
      while (iter_alt[r] < g->rule_nalt[r] && next == UINT32_MAX) {
        uint32_t p = g->alts[g->rule_alt0[r] + iter_alt[r]] + iter_el[r];
        const nllm_gelem *e = &g->el[p];
        if (e->type == GE_REF) {
          next = e->val;
          /* Past a nullable reference the next element is on the left edge too. */
          if (nullable[e->val])
            iter_el[r]++;
          else
            iter_alt[r]++, iter_el[r] = 0;
        } else {
          iter_alt[r]++, iter_el[r] = 0;
        }
      }
      if (next == UINT32_MAX) {
        color[r] = 2;
        sp--;
      } else if (color[next] == 1) {
        perr(P, P->rules[next].def_pos,
             "rule '%s' is left-recursive (it can reach itself before reading a character)",
             P->rules[next].name);
        bad = 1;
      } else if (color[next] == 0) {
        color[next] = 1;
        stk[sp++] = next;
      }
    }
  }
  free(color), free(stk), free(iter_alt), free(iter_el);
  return bad ? -1 : 0;
}

static nllm_status compile(parser *P, const char *root, nllm_grammar **out) {
  for (uint32_t i = 0; i < P->n_rules; i++)
    if (!P->rules[i].defined) {
      perr(P, P->rules[i].use_pos, "undefined rule '%s'", P->rules[i].name);
      return NLLM_ERR_INVALID_ARG;
    }
  uint32_t root_id = UINT32_MAX;
  for (uint32_t i = 0; i < P->n_rules; i++)
    if (!strcmp(P->rules[i].name, root)) root_id = i;
  if (root_id == UINT32_MAX) {
    perr(P, P->n, "no rule named '%s' (the start rule)", root);
    return NLLM_ERR_INVALID_ARG;
  }
  nllm_grammar *g = calloc(1, sizeof *g);
  if (!g) return oom(P), NLLM_ERR_NOMEM;
  uint32_t n_alts = 0, n_el = 0;
  for (uint32_t i = 0; i < P->n_rules; i++) {
    n_alts++;
    for (uint32_t k = 0; k < P->rules[i].body.n; k++)
      if (P->rules[i].body.v[k].type == GE_ALT) n_alts++;
    n_el += P->rules[i].body.n + 1;
  }
  g->n_rules = P->n_rules;
  g->root = root_id;
  g->el = malloc((size_t)n_el * sizeof *g->el);
  g->alts = malloc((size_t)n_alts * sizeof *g->alts);
  g->rule_alt0 = malloc((size_t)g->n_rules * sizeof *g->rule_alt0);
  g->rule_nalt = malloc((size_t)g->n_rules * sizeof *g->rule_nalt);
  uint8_t *nullable = calloc(g->n_rules, 1);
  if (!g->el || !g->alts || !g->rule_alt0 || !g->rule_nalt || !nullable) {
    free(nullable);
    nllm_grammar_free(g);
    return oom(P), NLLM_ERR_NOMEM;
  }
  uint32_t e = 0, a = 0;
  for (uint32_t i = 0; i < g->n_rules; i++) {
    const evec *b = &P->rules[i].body;
    g->rule_alt0[i] = a;
    g->alts[a++] = e;
    for (uint32_t k = 0; k < b->n; k++) {
      if (b->v[k].type == GE_ALT) {
        g->el[e++] = (nllm_gelem){GE_END, 0};
        g->alts[a++] = e;
      } else {
        g->el[e++] = b->v[k];
      }
    }
    g->el[e++] = (nllm_gelem){GE_END, 0};
    g->rule_nalt[i] = a - g->rule_alt0[i];
  }
  g->n_el = e;
  g->sets = P->sets, g->n_sets = P->n_sets;
  g->ranges = P->ranges, g->n_ranges = P->n_ranges;
  P->sets = NULL, P->ranges = NULL;
  for (int changed = 1; changed;) {
    changed = 0;
    for (uint32_t r = 0; r < g->n_rules; r++) {
      if (nullable[r]) continue;
      for (uint32_t k = 0; k < g->rule_nalt[r] && !nullable[r]; k++) {
        const nllm_gelem *p = &g->el[g->alts[g->rule_alt0[r] + k]];
        while (p->type == GE_REF && nullable[p->val]) p++;
        if (p->type == GE_END) nullable[r] = 1, changed = 1;
      }
    }
  }
  int bad = check_left_recursion(P, g, nullable);
  free(nullable);
  if (bad) {
    nllm_grammar_free(g);
    return P->status;
  }
  *out = g;
  return NLLM_OK;
}

nllm_status nllm_grammar_parse(const char *text, size_t len, const char *root, nllm_grammar **out) {
  if (!out) return nllm_err(NLLM_ERR_INVALID_ARG, "grammar: out is NULL");
  *out = NULL;
  if (!text) return nllm_err(NLLM_ERR_INVALID_ARG, "grammar: text is NULL");
  if (len > NLLM_GRAMMAR_MAX_TEXT)
    return nllm_err(NLLM_ERR_INVALID_ARG, "grammar: text of %zu bytes is over the %u-byte limit",
                    len, NLLM_GRAMMAR_MAX_TEXT);
  parser P = {.s = text, .n = len};
  skip_space(&P, 1);
  while (!P.failed && P.pos < P.n) parse_rule(&P);
  nllm_status st = P.failed ? P.status : compile(&P, root ? root : "root", out);
  for (uint32_t i = 0; i < P.n_rules; i++) {
    free(P.rules[i].name);
    free(P.rules[i].body.v);
  }
  free(P.rules);
  free(P.sets);
  free(P.ranges);
  return st;
}

void nllm_grammar_free(nllm_grammar *g) {
  if (!g) return;
  free(g->el);
  free(g->alts);
  free(g->rule_alt0);
  free(g->rule_nalt);
  free(g->sets);
  free(g->ranges);
  free(g);
}
