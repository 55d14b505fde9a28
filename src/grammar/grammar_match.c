/* Grammar matching over bytes. A parse state is a set of stacks; a stack is a persistent linked
 * list of nodes (element position, parent node), interned in a hash table so that equal stacks
 * are one id and sets dedupe by id. The top of every stack is a character set (or the stack is
 * empty: the grammar is complete). Bytes of a multi-byte UTF-8 character are held as a partial
 * code point, and stacks that cannot take any character with that prefix are dropped at once.
 *
 * Nodes are only ever appended, and a node's parent is always older, so speculative work (checking
 * a token, walking a token trie) is undone by truncating the pool back to a mark and deleting the
 * truncated nodes from the hash table newest first (which keeps linear probing valid). */
#include <stdlib.h>

#include "grammar/grammar_internal.h"

typedef struct {
  uint32_t pos, parent;
} gnode;

typedef struct {
  uint32_t *s;
  uint32_t n;
  uint32_t val; /* partial code point so far */
  int32_t need; /* continuation bytes still expected */
  int32_t len;  /* bytes of the partial character's encoding */
} gstate;

typedef struct {
  size_t off;
  uint32_t n, val;
  int32_t need, len;
  uint32_t hash;
  int32_t ok_upto, bad_from; /* plain_accepts: proven up to, refuted from */
} wstate;

#define MAX_WALK_STATES (1u << 14)
#define PLAIN_MAX 64        /* the longest plain run plain_accepts proves (recursion depth) */
#define PLAIN_MAX_STACKS 16 /* states with more stacks are not worth a proof */
#define PLAIN_BUDGET 16384  /* transitions the proofs of one walk may compute */

struct nllm_gmatch {
  const nllm_grammar *g;
  gnode *nodes;
  uint32_t n_nodes, cap_nodes;
  uint32_t *hash; /* node ids; 0 = empty slot (node 0 is the empty stack, never hashed) */
  uint32_t hcap;
  gstate cur;
  /* The walk: parse states met while walking are interned (canonical sorted stack ids) and
   * their transitions memoized, so a trie walk costs one table lookup per node once the few
   * distinct states are known. Nothing is rolled back until walk_end, which keeps the ids of
   * interned states valid for the whole walk. */
  wstate *ws;
  uint32_t n_ws, cap_ws;
  uint32_t *ws_ids;
  size_t n_ids, cap_ids;
  uint32_t *ws_hash; /* state index + 1; 0 = empty */
  uint32_t ws_hcap;
  int32_t *trans; /* [state][byte]: -2 unknown, -1 rejected, else the next state */
  int32_t *wsid;  /* state index by depth */
  int32_t w_cap;
  uint32_t wmark0;
  gstate tin, tout; /* scratch */
  uint32_t steps;
  int32_t plain_budget; /* plain_accepts, per walk */
};

static uint32_t hkey(uint32_t pos, uint32_t parent) {
  uint64_t h = ((uint64_t)pos << 32 | parent) * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(h >> 32);
}

static int rehash(nllm_gmatch *m, uint32_t cap) {
  uint32_t *h = calloc(cap, sizeof *h);
  if (!h) return -1;
  free(m->hash);
  m->hash = h;
  m->hcap = cap;
  for (uint32_t id = 1; id < m->n_nodes; id++) {
    uint32_t i = hkey(m->nodes[id].pos, m->nodes[id].parent) & (cap - 1);
    while (h[i]) i = (i + 1) & (cap - 1);
    h[i] = id;
  }
  return 0;
}

static nllm_status cap_err(const char *what) {
  return nllm_err(NLLM_ERR_INVALID_ARG,
                  "grammar: too ambiguous or deeply nested at this point (%s); simplify it", what);
}

/* The interned node (pos, parent), or 0 with an error status in *st. */
static uint32_t node(nllm_gmatch *m, uint32_t pos, uint32_t parent, nllm_status *st) {
  uint32_t i = hkey(pos, parent) & (m->hcap - 1);
  for (uint32_t id; (id = m->hash[i]); i = (i + 1) & (m->hcap - 1))
    if (m->nodes[id].pos == pos && m->nodes[id].parent == parent) return id;
  if (m->n_nodes >= (1u << 26)) {
    *st = cap_err("parse-node limit");
    return 0;
  }
  if (m->n_nodes + 1 > m->cap_nodes) {
    uint32_t nc = m->cap_nodes * 2;
    gnode *nn = realloc(m->nodes, (size_t)nc * sizeof *nn);
    if (!nn) {
      *st = nllm_err(NLLM_ERR_NOMEM, "grammar: out of memory");
      return 0;
    }
    m->nodes = nn;
    m->cap_nodes = nc;
  }
  uint32_t id = m->n_nodes++;
  m->nodes[id] = (gnode){pos, parent};
  if ((uint64_t)m->n_nodes * 2 > m->hcap) {
    if (rehash(m, m->hcap * 2)) {
      m->n_nodes--;
      *st = nllm_err(NLLM_ERR_NOMEM, "grammar: out of memory");
      return 0;
    }
    return id;
  }
  m->hash[i] = id;
  return id;
}

static void rollback(nllm_gmatch *m, uint32_t mark) {
  while (m->n_nodes > mark) {
    uint32_t id = --m->n_nodes;
    uint32_t i = hkey(m->nodes[id].pos, m->nodes[id].parent) & (m->hcap - 1);
    while (m->hash[i] != id) i = (i + 1) & (m->hcap - 1);
    m->hash[i] = 0;
    /* Later entries of the probe run may have been displaced past this slot: reinsert them. */
    for (uint32_t j = (i + 1) & (m->hcap - 1); m->hash[j]; j = (j + 1) & (m->hcap - 1)) {
      uint32_t e = m->hash[j];
      m->hash[j] = 0;
      uint32_t k = hkey(m->nodes[e].pos, m->nodes[e].parent) & (m->hcap - 1);
      while (m->hash[k]) k = (k + 1) & (m->hcap - 1);
      m->hash[k] = e;
    }
  }
}

static nllm_status emit(gstate *out, uint32_t id) {
  for (uint32_t i = 0; i < out->n; i++)
    if (out->s[i] == id) return NLLM_OK;
  if (out->n >= NLLM_GRAMMAR_MAX_STACKS) return cap_err("parse-stack limit");
  out->s[out->n++] = id;
  return NLLM_OK;
}

/* Adds to out every stack that continues at element pos under parent, each expanded until a
 * character set is on top. */
static nllm_status expand(nllm_gmatch *m, uint32_t pos, uint32_t parent, gstate *out, int depth) {
  const nllm_grammar *g = m->g;
  nllm_status st = NLLM_OK;
  if (depth > NLLM_GRAMMAR_MAX_DEPTH) return cap_err("rule-nesting limit");
  for (;;) {
    if (++m->steps > NLLM_GRAMMAR_MAX_STEPS) return cap_err("expansion-step limit");
    const nllm_gelem *e = &g->el[pos];
    if (e->type == GE_END) {
      if (parent == 0) return emit(out, 0);
      pos = m->nodes[parent].pos;
      parent = m->nodes[parent].parent;
      continue;
    }
    if (e->type == GE_CHARS) {
      uint32_t id = node(m, pos, parent, &st);
      return st ? st : emit(out, id);
    }
    /* A reference last in its alternative returns straight to the parent: right recursion
     * (repetitions) does not grow the stack. */
    uint32_t cont = parent;
    if (g->el[pos + 1].type != GE_END && !(cont = node(m, pos + 1, parent, &st))) return st;
    for (uint32_t a = 0; a < g->rule_nalt[e->val]; a++)
      if ((st = expand(m, g->alts[g->rule_alt0[e->val] + a], cont, out, depth + 1))) return st;
    return NLLM_OK;
  }
}

static nllm_status advance_cp(nllm_gmatch *m, const gstate *in, uint32_t cp, gstate *out) {
  const nllm_grammar *g = m->g;
  out->n = 0;
  out->need = 0;
  out->val = 0;
  m->steps = 0;
  for (uint32_t i = 0; i < in->n; i++) {
    uint32_t id = in->s[i];
    if (!id) continue;
    const gnode *nd = &m->nodes[id];
    if (!nllm_gset_has(g, &g->sets[g->el[nd->pos].val], cp)) continue;
    nllm_status st = expand(m, nd->pos + 1, nd->parent, out, 0);
    if (st) return st;
  }
  return NLLM_OK;
}

/* Keeps the stacks that can take some code point starting with the partial bytes. */
static void filter_partial(nllm_gmatch *m, const gstate *in, gstate *out) {
  const nllm_grammar *g = m->g;
  uint32_t shift = 6u * (uint32_t)out->need;
  uint32_t lo = out->val << shift, hi = lo | ((1u << shift) - 1);
  /* Overlong forms never complete, so a lead byte only promises its own length's code points. */
  uint32_t min = out->len == 2 ? 0x80 : out->len == 3 ? 0x800 : 0x10000;
  if (lo < min) lo = min;
  if (hi > 0x10ffff) hi = 0x10ffff;
  out->n = 0;
  if (lo > hi) return;
  for (uint32_t i = 0; i < in->n; i++) {
    uint32_t id = in->s[i];
    if (id && nllm_gset_meets(g, &g->sets[g->el[m->nodes[id].pos].val], lo, hi))
      out->s[out->n++] = id;
  }
}

static nllm_status advance_byte(nllm_gmatch *m, const gstate *in, uint8_t b, gstate *out) {
  if (in->need == 0) {
    if (b < 0x80) return advance_cp(m, in, b, out);
    if (b >= 0xc2 && b <= 0xdf)
      out->need = 1, out->val = b & 0x1f;
    else if ((b & 0xf0) == 0xe0)
      out->need = 2, out->val = b & 0x0f;
    else if (b >= 0xf0 && b <= 0xf4)
      out->need = 3, out->val = b & 0x07;
    else
      return out->n = 0, NLLM_OK;
    out->len = out->need + 1;
  } else {
    if ((b & 0xc0) != 0x80) return out->n = 0, NLLM_OK;
    uint32_t v = in->val << 6 | (b & 0x3f);
    if (in->need == 1) {
      /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
      uint32_t min = in->len == 2 ? 0x80 : in->len == 3 ? 0x800 : 0x10000;
      if (v < min || (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff) return out->n = 0, NLLM_OK;
      return advance_cp(m, in, v, out);
    }
    out->val = v;
    out->need = in->need - 1;
    out->len = in->len;
  }
  filter_partial(m, in, out);
  return NLLM_OK;
}

static int state_init(gstate *s) {
  s->s = malloc(NLLM_GRAMMAR_MAX_STACKS * sizeof *s->s);
  s->n = 0;
  s->need = 0;
  s->val = 0;
  return s->s ? 0 : -1;
}

static void state_copy(gstate *dst, const gstate *src) {
  if (src->n) memcpy(dst->s, src->s, (size_t)src->n * sizeof *src->s);
  dst->n = src->n;
  dst->val = src->val;
  dst->need = src->need;
  dst->len = src->len;
}

static nllm_status start(nllm_gmatch *m);

nllm_status nllm_gmatch_new(const nllm_grammar *g, nllm_gmatch **out) {
  *out = NULL;
  nllm_gmatch *m = calloc(1, sizeof *m);
  if (!m) return nllm_err(NLLM_ERR_NOMEM, "grammar: out of memory");
  m->g = g;
  m->cap_nodes = 1024;
  m->nodes = malloc((size_t)m->cap_nodes * sizeof *m->nodes);
  m->hcap = 4096;
  m->hash = calloc(m->hcap, sizeof *m->hash);
  m->ws_hcap = 1024;
  m->ws_hash = calloc(m->ws_hcap, sizeof *m->ws_hash);
  if (!m->nodes || !m->hash || !m->ws_hash || state_init(&m->cur) || state_init(&m->tin) ||
      state_init(&m->tout)) {
    nllm_gmatch_free(m);
    return nllm_err(NLLM_ERR_NOMEM, "grammar: out of memory");
  }
  nllm_status st = start(m);
  if (st) {
    nllm_gmatch_free(m);
    return st;
  }
  *out = m;
  return NLLM_OK;
}

void nllm_gmatch_free(nllm_gmatch *m) {
  if (!m) return;
  free(m->ws);
  free(m->ws_ids);
  free(m->ws_hash);
  free(m->trans);
  free(m->wsid);
  free(m->tin.s);
  free(m->tout.s);
  free(m->cur.s);
  free(m->nodes);
  free(m->hash);
  free(m);
}

static nllm_status start(nllm_gmatch *m) {
  m->n_nodes = 1;
  m->nodes[0] = (gnode){0, 0};
  memset(m->hash, 0, (size_t)m->hcap * sizeof *m->hash);
  m->cur.n = 0;
  m->cur.need = 0;
  m->steps = 0;
  const nllm_grammar *g = m->g;
  for (uint32_t a = 0; a < g->rule_nalt[g->root]; a++) {
    nllm_status st = expand(m, g->alts[g->rule_alt0[g->root] + a], 0, &m->cur, 0);
    if (st) {
      m->cur.n = 0; /* too ambiguous from the start: nothing is accepted */
      return st;
    }
  }
  return NLLM_OK;
}

void nllm_gmatch_reset(nllm_gmatch *m) {
  start(m);
}

int nllm_gmatch_can_end(const nllm_gmatch *m) {
  if (m->cur.need) return 0;
  for (uint32_t i = 0; i < m->cur.n; i++)
    if (m->cur.s[i] == 0) return 1;
  return 0;
}

int nllm_gmatch_must_end(const nllm_gmatch *m) {
  return m->cur.need == 0 && m->cur.n == 1 && m->cur.s[0] == 0;
}

static uint32_t state_hash(const gstate *st) {
  uint64_t h = 1469598103934665603ull ^ ((uint64_t)st->need << 40 | st->val);
  for (uint32_t i = 0; i < st->n; i++) h = (h ^ st->s[i]) * 1099511628211ull;
  return (uint32_t)(h ^ (h >> 32));
}

static nllm_status oom(void) {
  return nllm_err(NLLM_ERR_NOMEM, "grammar: out of memory");
}

/* The index of a state (sorted in place first), added when new. */
static nllm_status intern(nllm_gmatch *m, gstate *st, int32_t *idx) {
  for (uint32_t i = 1; i < st->n; i++) { /* few stacks: insertion sort */
    uint32_t v = st->s[i], j = i;
    for (; j > 0 && st->s[j - 1] > v; j--) st->s[j] = st->s[j - 1];
    st->s[j] = v;
  }
  if (st->need == 0) st->val = 0, st->len = 0;
  uint32_t h = state_hash(st), mask = m->ws_hcap - 1;
  uint32_t i = h & mask;
  for (uint32_t e; (e = m->ws_hash[i]); i = (i + 1) & mask) {
    const wstate *w = &m->ws[e - 1];
    if (w->hash == h && w->n == st->n && w->need == st->need && w->val == st->val &&
        (!st->n || !memcmp(m->ws_ids + w->off, st->s, (size_t)st->n * sizeof *st->s))) {
      *idx = (int32_t)(e - 1);
      return NLLM_OK;
    }
  }
  if (m->n_ws >= MAX_WALK_STATES) return cap_err("parse-state limit of one step");
  if (m->n_ws == m->cap_ws) {
    uint32_t nc = m->cap_ws ? m->cap_ws * 2 : 64;
    wstate *w = realloc(m->ws, (size_t)nc * sizeof *w);
    if (!w) return oom();
    m->ws = w;
    int32_t *t = realloc(m->trans, (size_t)nc * 256 * sizeof *t);
    if (!t) return oom();
    m->trans = t;
    m->cap_ws = nc;
  }
  if (m->n_ids + st->n > m->cap_ids) {
    size_t nc = m->cap_ids ? m->cap_ids * 2 : 1024;
    while (nc < m->n_ids + st->n) nc *= 2;
    uint32_t *p = realloc(m->ws_ids, nc * sizeof *p);
    if (!p) return oom();
    m->ws_ids = p;
    m->cap_ids = nc;
  }
  if (st->n) memcpy(m->ws_ids + m->n_ids, st->s, (size_t)st->n * sizeof *st->s);
  m->ws[m->n_ws] = (wstate){m->n_ids, st->n, st->val, st->need, st->len, h, 0, INT32_MAX};
  m->n_ids += st->n;
  for (int b = 0; b < 256; b++) m->trans[(size_t)m->n_ws * 256 + (size_t)b] = -2;
  m->ws_hash[i] = ++m->n_ws;
  *idx = (int32_t)(m->n_ws - 1);
  if ((uint64_t)m->n_ws * 2 > m->ws_hcap) { /* grow and reinsert */
    uint32_t nc = m->ws_hcap * 2;
    uint32_t *nh = calloc(nc, sizeof *nh);
    if (!nh) return oom();
    for (uint32_t k = 0; k < m->n_ws; k++) {
      uint32_t j = m->ws[k].hash & (nc - 1);
      while (nh[j]) j = (j + 1) & (nc - 1);
      nh[j] = k + 1;
    }
    free(m->ws_hash);
    m->ws_hash = nh;
    m->ws_hcap = nc;
  }
  return NLLM_OK;
}

static void load_state(const nllm_gmatch *m, int32_t idx, gstate *dst) {
  const wstate *w = &m->ws[idx];
  if (w->n) memcpy(dst->s, m->ws_ids + w->off, (size_t)w->n * sizeof *dst->s);
  dst->n = w->n;
  dst->val = w->val;
  dst->need = w->need;
  dst->len = w->len;
}

nllm_status nllm_gmatch_walk_begin(nllm_gmatch *m, int32_t max_depth) {
  if (max_depth + 1 > m->w_cap) {
    int32_t *p = realloc(m->wsid, (size_t)(max_depth + 1) * sizeof *p);
    if (!p) return oom();
    m->wsid = p;
    m->w_cap = max_depth + 1;
  }
  m->n_ws = 0;
  m->n_ids = 0;
  memset(m->ws_hash, 0, (size_t)m->ws_hcap * sizeof *m->ws_hash);
  m->wmark0 = m->n_nodes;
  m->plain_budget = PLAIN_BUDGET;
  state_copy(&m->tin, &m->cur);
  return intern(m, &m->tin, &m->wsid[0]);
}

/* The state after byte from state `from` (-1: rejected), memoized. */
static nllm_status transition(nllm_gmatch *m, int32_t from, uint8_t byte, int32_t *to) {
  int32_t *t = &m->trans[(size_t)from * 256 + byte];
  if (*t == -2) {
    load_state(m, from, &m->tin);
    nllm_status st = advance_byte(m, &m->tin, byte, &m->tout);
    if (st) return st;
    int32_t idx = -1;
    if (m->tout.n && (st = intern(m, &m->tout, &idx))) return st;
    t = &m->trans[(size_t)from * 256 + byte]; /* intern may have moved the table */
    *t = idx;
  }
  *to = *t;
  return NLLM_OK;
}

nllm_status nllm_gmatch_walk_step(nllm_gmatch *m, int32_t depth, uint8_t byte, int *ok) {
  const int32_t from = m->wsid[depth];
  *ok = 0;
  if (from < 0) return NLLM_OK;
  int32_t to;
  nllm_status st = transition(m, from, byte, &to);
  if (st) return st;
  m->wsid[depth + 1] = to;
  *ok = to >= 0;
  return NLLM_OK;
}

void nllm_gmatch_walk_end(nllm_gmatch *m) {
  rollback(m, m->wmark0);
}

/* Whether every string of h plain bytes (NLLM_GTRIE_PLAIN) or fewer is accepted from state idx,
 * so that a trie subtree of plain bytes no higher than h is accepted whole. The answer grows
 * no as h grows, so each state keeps the highest h proven and the lowest h refuted. A state
 * that every plain byte leads back to itself (the inside of an unbounded string) accepts any
 * length; a bounded string (char{0,40}) is a chain of states proven one level at a time. */
static nllm_status plain_accepts(nllm_gmatch *m, int32_t idx, int32_t h, int *yes) {
  *yes = 0;
  if (h <= m->ws[idx].ok_upto) return *yes = 1, NLLM_OK;
  if (h >= m->ws[idx].bad_from || h > PLAIN_MAX) return NLLM_OK;
  /* A proof costs up to 94 transitions per state, more than the walk it saves where states are
   * large (an ambiguous grammar) or the budget of this walk is spent: then just walk. */
  if (m->ws[idx].n > PLAIN_MAX_STACKS || m->plain_budget < 128) {
    m->ws[idx].bad_from = 1;
    return NLLM_OK;
  }
  m->plain_budget -= 94;
  int self = 1, all = 1;
  int32_t last = -1;
  for (int b = 0; b < 128 && all; b++) {
    if (!NLLM_GTRIE_PLAIN(b)) continue;
    int32_t to;
    nllm_status st = transition(m, idx, (uint8_t)b, &to);
    if (st) return st;
    if (to < 0) {
      m->ws[idx].bad_from = 1;
      return NLLM_OK;
    }
    self &= to == idx;
    if (h > 1 && to != idx && to != last) {
      int ok;
      if ((st = plain_accepts(m, to, h - 1, &ok))) return st;
      all = ok;
      last = to;
    }
  }
  if (self) {
    m->ws[idx].ok_upto = INT32_MAX;
  } else if (!all) {
    m->ws[idx].bad_from = h;
    return NLLM_OK;
  } else if (h > m->ws[idx].ok_upto) {
    m->ws[idx].ok_upto = h;
  }
  *yes = 1;
  return NLLM_OK;
}

nllm_status nllm_gmatch_mask(nllm_gmatch *m, const nllm_gtrie *t, uint64_t *bits) {
  nllm_status st = nllm_gmatch_walk_begin(m, t->max_depth);
  if (st) return st;
  /* walk_step inlined: once the few states of this walk are known, each node is one lookup. A
   * subtree of plain bytes under a state that plain bytes never leave is accepted whole: its
   * tokens are one run of tok. */
  for (uint32_t i = 0; i < t->n_nodes;) {
    const int32_t d = t->depth[i], from = m->wsid[d];
    if (t->plain[i]) {
      int whole;
      if ((st = plain_accepts(m, from, t->plain[i], &whole))) break;
      if (whole) {
        for (uint32_t k = t->first[i], e = t->first[t->end[i]]; k < e; k++) {
          const uint32_t tok = (uint32_t)t->tok[k];
          bits[tok >> 6] |= 1ull << (tok & 63);
        }
        i = t->end[i];
        continue;
      }
    }
    int32_t next = m->trans[(size_t)from * 256 + t->byte[i]];
    if (next == -2 && (st = transition(m, from, t->byte[i], &next))) break;
    if (next < 0) {
      i = t->end[i];
      continue;
    }
    m->wsid[d + 1] = next;
    for (uint32_t k = t->first[i], e = k + t->count[i]; k < e; k++) {
      const uint32_t tok = (uint32_t)t->tok[k];
      bits[tok >> 6] |= 1ull << (tok & 63);
    }
    i++;
  }
  nllm_gmatch_walk_end(m);
  return st;
}

/* FNV-1a over one stack's element positions, top to bottom. */
static uint64_t stack_hash(const nllm_gmatch *m, uint32_t id) {
  uint64_t h = 1469598103934665603ull;
  for (; id; id = m->nodes[id].parent) h = (h ^ m->nodes[id].pos) * 1099511628211ull;
  return h;
}

size_t nllm_gmatch_state_key(const nllm_gmatch *m, uint32_t *key, size_t cap) {
  /* Node ids depend on the order stacks were made in, so the key spells out each stack's
   * positions, stacks ordered by their hash (equal hashes of different stacks only cost a miss
   * of a cache, never a wrong answer: the key is still the whole content). */
  uint32_t order[NLLM_GRAMMAR_MAX_STACKS];
  uint64_t h[NLLM_GRAMMAR_MAX_STACKS];
  const uint32_t n = m->cur.n;
  for (uint32_t i = 0; i < n; i++) {
    h[i] = stack_hash(m, m->cur.s[i]);
    uint32_t j = i;
    for (; j > 0 && h[order[j - 1]] > h[i]; j--) order[j] = order[j - 1];
    order[j] = i;
  }
  size_t w = 0;
#define PUT(v)                 \
  do {                         \
    if (w < cap) key[w] = (v); \
    w++;                       \
  } while (0)
  PUT((uint32_t)m->cur.need);
  PUT(m->cur.need ? m->cur.val : 0);
  PUT(m->cur.need ? (uint32_t)m->cur.len : 0);
  for (uint32_t i = 0; i < n; i++) {
    for (uint32_t id = m->cur.s[order[i]]; id; id = m->nodes[id].parent) PUT(m->nodes[id].pos);
    PUT(UINT32_MAX);
  }
#undef PUT
  return w;
}

static nllm_status run(nllm_gmatch *m, const uint8_t *b, size_t n, int *ok) {
  *ok = 0;
  if (n > INT32_MAX - 1) return nllm_err(NLLM_ERR_INVALID_ARG, "grammar: input too long");
  nllm_status st = nllm_gmatch_walk_begin(m, (int32_t)n);
  if (st) return st;
  *ok = 1;
  for (size_t i = 0; i < n && *ok; i++)
    if ((st = nllm_gmatch_walk_step(m, (int32_t)i, b[i], ok))) return st;
  return NLLM_OK;
}

nllm_status nllm_gmatch_check(nllm_gmatch *m, const uint8_t *b, size_t n, int *ok) {
  nllm_status st = run(m, b, n, ok);
  if (m->w_cap) nllm_gmatch_walk_end(m);
  return st;
}

/* Drops nodes no stack of the current state reaches. Node ids keep their order (parents stay
 * older), so the pool stays valid for rollback. */
static void compact(nllm_gmatch *m) {
  uint8_t *live = calloc(m->n_nodes, 1);
  uint32_t *map = malloc((size_t)m->n_nodes * sizeof *map);
  if (!live || !map) {
    free(live), free(map);
    return;
  }
  live[0] = 1;
  for (uint32_t i = 0; i < m->cur.n; i++)
    for (uint32_t id = m->cur.s[i]; id && !live[id]; id = m->nodes[id].parent) live[id] = 1;
  uint32_t n = 0;
  for (uint32_t id = 0; id < m->n_nodes; id++)
    if (live[id]) {
      map[id] = n;
      m->nodes[n] = (gnode){m->nodes[id].pos, m->nodes[id].parent ? map[m->nodes[id].parent] : 0};
      n++;
    }
  for (uint32_t i = 0; i < m->cur.n; i++) m->cur.s[i] = map[m->cur.s[i]];
  m->n_nodes = n;
  memset(m->hash, 0, (size_t)m->hcap * sizeof *m->hash);
  rehash(m, m->hcap);
  free(live), free(map);
}

nllm_status nllm_gmatch_accept(nllm_gmatch *m, const uint8_t *b, size_t n, int *ok) {
  nllm_status st = run(m, b, n, ok);
  if (st || !*ok) {
    if (m->w_cap) nllm_gmatch_walk_end(m);
    return st;
  }
  load_state(m, m->wsid[n], &m->cur);
  if (m->n_nodes > 4096 && m->n_nodes > 8 * (m->cur.n + 64)) compact(m);
  return NLLM_OK;
}
