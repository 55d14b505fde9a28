/* The evaluator: walks the AST with Jinja2's scoping (a for loop and a macro call open a scope,
 * if does not; namespace() attributes are the one way out of a loop), counting steps, nesting
 * and time against the render's limits so that a hostile template ends with a status. */
#include <math.h>
#include <stdio.h>

#include "template/jinja.h"

struct jframe {
  jframe *parent;
  jv *vars;
};

typedef struct {
  jctx *c;
  jframe *f;
  int brk, cont; /* pending break / continue of the innermost loop */
  int loop_depth;
} E;

static jv *eval(E *e, jnode *n);
static void exec_node(E *e, jnode *n, jbuf *out);

static void step(jctx *c, int line, int col) {
  if (++c->steps > c->max_steps)
    jfail(c, NLLM_ERR_ABORTED, line, col, "more than %llu evaluation steps (loop limit)",
          (unsigned long long)c->max_steps);
  if ((c->steps & 1023) == 0 && c->deadline > 0 && jclock() > c->deadline)
    jfail(c, NLLM_ERR_ABORTED, line, col, "time limit reached");
}

static jv *lookup(E *e, const char *name, size_t n) {
  for (jframe *f = e->f; f; f = f->parent) {
    jv *v = jv_dict_get(f->vars, name, n);
    if (v) return v;
  }
  return JV_UNDEF_P;
}

static void assign(E *e, const char *name, jv *v) {
  jv_dict_set(e->c, e->f->vars, jv_strn(e->c, name, strlen(name)), v);
}

static jframe *push_frame(E *e, jframe *parent) {
  jframe *f = jalloc(e->c, sizeof *f);
  f->parent = parent;
  f->vars = jv_dict(e->c);
  return f;
}

/* ---------------------------------------------------------------- access */

static jv *loop_attr(jctx *c, jloop *l, const char *name, size_t n) {
#define IS(w) (n == strlen(w) && memcmp(name, w, n) == 0)
  if (IS("index")) return jv_int(c, (int64_t)l->index0 + 1);
  if (IS("index0")) return jv_int(c, (int64_t)l->index0);
  if (IS("revindex")) return jv_int(c, (int64_t)(l->length - l->index0));
  if (IS("revindex0")) return jv_int(c, (int64_t)(l->length - l->index0 - 1));
  if (IS("first")) return JV_BOOL_P(l->index0 == 0);
  if (IS("last")) return JV_BOOL_P(l->index0 + 1 == l->length);
  if (IS("length")) return jv_int(c, (int64_t)l->length);
  if (IS("depth")) return jv_int(c, l->depth);
  if (IS("depth0")) return jv_int(c, l->depth - 1);
  if (IS("previtem")) return l->index0 > 0 ? l->items->u.list.v[l->index0 - 1] : JV_UNDEF_P;
  if (IS("nextitem"))
    return l->index0 + 1 < l->length ? l->items->u.list.v[l->index0 + 1] : JV_UNDEF_P;
#undef IS
  return JV_UNDEF_P;
}

jv *jinja_getattr(jctx *c, jv *obj, const char *name, size_t n, int line, int col) {
  switch (obj->t) {
    case JV_UNDEF:
      jfail(c, NLLM_ERR_INVALID_ARG, line, col,
            "cannot read attribute '%.*s' of an undefined value", (int)(n < 60 ? n : 60), name);
    case JV_DICT: {
      jv *m = jinja_method(c, obj, name, n);
      if (m) return m;
      jv *v = jv_dict_get(obj, name, n);
      return v ? v : JV_UNDEF_P;
    }
    case JV_NS: {
      jv *v = jv_dict_get(obj, name, n);
      return v ? v : JV_UNDEF_P;
    }
    case JV_STR: {
      jv *m = jinja_method(c, obj, name, n);
      return m ? m : JV_UNDEF_P;
    }
    case JV_LOOP: return loop_attr(c, obj->u.loop, name, n);
    case JV_LIST:
      if (n == 6 && memcmp(name, "append", 6) == 0)
        jfail(c, NLLM_ERR_INVALID_ARG, line, col,
              "list.append is not allowed (templates are immutable, as in transformers' sandbox)");
      return JV_UNDEF_P;
    default: return JV_UNDEF_P;
  }
}

static int64_t norm_index(int64_t i, size_t len) {
  return i < 0 ? i + (int64_t)len : i;
}

jv *jinja_getitem(jctx *c, jv *obj, jv *key, int line, int col) {
  if (obj->t == JV_UNDEF)
    jfail(c, NLLM_ERR_INVALID_ARG, line, col, "cannot index an undefined value");
  if ((obj->t == JV_LIST || obj->t == JV_STR) && (key->t == JV_INT || key->t == JV_BOOL)) {
    int64_t k = key->t == JV_INT ? key->u.i : key->u.b;
    if (obj->t == JV_LIST) {
      k = norm_index(k, obj->u.list.n);
      return k >= 0 && (size_t)k < obj->u.list.n ? obj->u.list.v[k] : JV_UNDEF_P;
    }
    size_t len = ju_len(obj->u.str.s, obj->u.str.n);
    k = norm_index(k, len);
    if (k < 0 || (size_t)k >= len) return JV_UNDEF_P;
    size_t a = ju_offset(obj->u.str.s, obj->u.str.n, (size_t)k),
           b = ju_offset(obj->u.str.s, obj->u.str.n, (size_t)k + 1);
    return jv_strn(c, obj->u.str.s + a, b - a);
  }
  if (obj->t == JV_DICT || obj->t == JV_NS) {
    jv *v = jv_dict_getv(obj, key);
    if (v) return v;
  }
  if (key->t == JV_STR) return jinja_getattr(c, obj, key->u.str.s, key->u.str.n, line, col);
  return JV_UNDEF_P;
}

/* Clamped far beyond any length the limits allow, so index arithmetic cannot overflow. */
static int64_t slice_arg(jctx *c, jv *v, int64_t dflt, int line, int col) {
  const int64_t big = (int64_t)1 << 40;
  if (!v || v->t == JV_NONE) return dflt;
  if (v->t == JV_INT) return v->u.i > big ? big : v->u.i < -big ? -big : v->u.i;
  if (v->t == JV_BOOL) return v->u.b;
  jfail(c, NLLM_ERR_INVALID_ARG, line, col, "slice indices must be integers, not %s",
        jv_type_name(v));
}

static jv *do_slice(E *e, jv *obj, jv *a, jv *b, jv *s, int line, int col) {
  jctx *c = e->c;
  int64_t step_ = slice_arg(c, s, 1, line, col);
  if (step_ == 0) jfail(c, NLLM_ERR_INVALID_ARG, line, col, "slice step cannot be zero");
  size_t len;
  if (obj->t == JV_LIST)
    len = obj->u.list.n;
  else if (obj->t == JV_STR)
    len = ju_len(obj->u.str.s, obj->u.str.n);
  else if (obj->t == JV_UNDEF)
    return JV_UNDEF_P;
  else
    jfail(c, NLLM_ERR_INVALID_ARG, line, col, "cannot slice a %s", jv_type_name(obj));
  int64_t L = (int64_t)len;
  /* Python's slice.indices */
  int64_t lo, hi;
  if (step_ > 0) {
    lo = slice_arg(c, a, 0, line, col);
    hi = slice_arg(c, b, L, line, col);
    if (lo < 0) lo = lo + L < 0 ? 0 : lo + L;
    if (lo > L) lo = L;
    if (hi < 0) hi = hi + L < 0 ? 0 : hi + L;
    if (hi > L) hi = L;
  } else {
    lo = slice_arg(c, a, L - 1, line, col);
    hi = slice_arg(c, b, -1 - L, line, col); /* sentinel: before the start */
    if (lo < 0) lo = lo + L < 0 ? -1 : lo + L;
    if (lo >= L) lo = L - 1;
    if (hi < 0) hi = hi + L < 0 ? -1 : hi + L;
    if (hi >= L) hi = L - 1;
  }
  jv *out = jv_list(c);
  jbuf sb = {0};
  for (int64_t i = lo; step_ > 0 ? i < hi : i > hi; i += step_) {
    step(c, line, col);
    if (obj->t == JV_LIST) {
      jv_list_push(c, out, obj->u.list.v[i]);
    } else {
      size_t x = ju_offset(obj->u.str.s, obj->u.str.n, (size_t)i),
             y = ju_offset(obj->u.str.s, obj->u.str.n, (size_t)i + 1);
      jb_put(c, &sb, obj->u.str.s + x, y - x);
    }
  }
  if (obj->t == JV_STR) return jv_str_own(c, sb.p ? sb.p : "", sb.n);
  out->u.list.is_tuple = obj->u.list.is_tuple;
  return out;
}

/* ---------------------------------------------------------------- operators */

static int num(jv *v) {
  return v->t == JV_INT || v->t == JV_BOOL || v->t == JV_FLOAT;
}

static double fl(jv *v) {
  return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b;
}

static int64_t in(jv *v) {
  return v->t == JV_INT ? v->u.i : v->u.b;
}

_Noreturn static void op_fail(jctx *c, const char *op, jv *a, jv *b, int line, int col) {
  jfail(c, NLLM_ERR_INVALID_ARG, line, col, "unsupported operand types for %s: '%s' and '%s'", op,
        jv_type_name(a), jv_type_name(b));
}

static jv *repeat(jctx *c, jv *seq, int64_t times, int line, int col) {
  if (times < 0) times = 0;
  size_t unit = seq->t == JV_STR ? seq->u.str.n : seq->u.list.n;
  if (unit && (uint64_t)times > c->max_output / unit)
    jfail(c, NLLM_ERR_ABORTED, line, col, "repetition exceeds the output limit");
  if (seq->t == JV_STR) {
    jbuf b = {0};
    for (int64_t i = 0; i < times; i++) jb_put(c, &b, seq->u.str.s, seq->u.str.n);
    return jv_str_own(c, b.p ? b.p : "", b.n);
  }
  jv *l = jv_list(c);
  for (int64_t i = 0; i < times; i++)
    for (size_t k = 0; k < seq->u.list.n; k++) jv_list_push(c, l, seq->u.list.v[k]);
  return l;
}

static jv *binop(E *e, const char *op, jv *a, jv *b, int line, int col) {
  jctx *c = e->c;
  if (op[0] == '~') {
    jbuf buf = {0};
    jv_to_str(c, &buf, a);
    jv_to_str(c, &buf, b);
    return jv_str_own(c, buf.p ? buf.p : "", buf.n);
  }
  if (op[0] == '+' && a->t == JV_STR && b->t == JV_STR) {
    char *s = jalloc(c, a->u.str.n + b->u.str.n + 1);
    memcpy(s, a->u.str.s, a->u.str.n);
    memcpy(s + a->u.str.n, b->u.str.s, b->u.str.n);
    if (a->u.str.n + b->u.str.n > c->max_output)
      jfail(c, NLLM_ERR_ABORTED, line, col, "string exceeds the output limit");
    return jv_str_own(c, s, a->u.str.n + b->u.str.n);
  }
  if (op[0] == '+' && a->t == JV_LIST && b->t == JV_LIST) {
    jv *l = jv_list(c);
    for (size_t i = 0; i < a->u.list.n; i++) jv_list_push(c, l, a->u.list.v[i]);
    for (size_t i = 0; i < b->u.list.n; i++) jv_list_push(c, l, b->u.list.v[i]);
    return l;
  }
  if (op[0] == '*' && op[1] == 0) {
    if ((a->t == JV_STR || a->t == JV_LIST) && (b->t == JV_INT || b->t == JV_BOOL))
      return repeat(c, a, in(b), line, col);
    if ((b->t == JV_STR || b->t == JV_LIST) && (a->t == JV_INT || a->t == JV_BOOL))
      return repeat(c, b, in(a), line, col);
  }
  if (!num(a) || !num(b)) {
    if (op[0] == '%' && a->t == JV_STR)
      jfail(c, NLLM_ERR_UNSUPPORTED, line, col,
            "printf-style '%%' string formatting is not supported");
    op_fail(c, op, a, b, line, col);
  }
  int ints = a->t != JV_FLOAT && b->t != JV_FLOAT;
  int64_t x = ints ? in(a) : 0, y = ints ? in(b) : 0, r;
  double fx = fl(a), fy = fl(b);
  switch (op[0]) {
    case '+':
      if (ints && !__builtin_add_overflow(x, y, &r)) return jv_int(c, r);
      return jv_float(c, fx + fy);
    case '-':
      if (ints && !__builtin_sub_overflow(x, y, &r)) return jv_int(c, r);
      return jv_float(c, fx - fy);
    case '*':
      if (op[1] == '*') {
        if (ints && y >= 0) {
          int64_t acc = 1;
          int ok = 1;
          for (int64_t k = 0; k < y && ok; k++) {
            ok = !__builtin_mul_overflow(acc, x, &acc);
            if (k > 64 && (x == 0 || x == 1 || x == -1)) break;
          }
          if (x == -1) acc = (y % 2) ? -1 : 1;
          if (ok) return jv_int(c, acc);
        }
        return jv_float(c, pow(fx, fy));
      }
      if (ints && !__builtin_mul_overflow(x, y, &r)) return jv_int(c, r);
      return jv_float(c, fx * fy);
    case '/':
      if (op[1] == '/') {
        if (ints) {
          if (y == 0) jfail(c, NLLM_ERR_INVALID_ARG, line, col, "integer division by zero");
          if (x == INT64_MIN && y == -1) return jv_float(c, -(double)INT64_MIN);
          int64_t q = x / y;
          if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
          return jv_int(c, q);
        }
        if (fy == 0) jfail(c, NLLM_ERR_INVALID_ARG, line, col, "float division by zero");
        return jv_float(c, floor(fx / fy));
      }
      if (fy == 0) jfail(c, NLLM_ERR_INVALID_ARG, line, col, "division by zero");
      return jv_float(c, fx / fy);
    case '%':
      if (ints) {
        if (y == 0) jfail(c, NLLM_ERR_INVALID_ARG, line, col, "integer modulo by zero");
        if (y == -1) return jv_int(c, 0);
        int64_t m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return jv_int(c, m);
      }
      if (fy == 0) jfail(c, NLLM_ERR_INVALID_ARG, line, col, "float modulo");
      {
        double m = fmod(fx, fy);
        if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
        return jv_float(c, m);
      }
  }
  op_fail(c, op, a, b, line, col);
}

static int contains(jctx *c, jv *container, jv *item, int line, int col) {
  switch (container->t) {
    case JV_STR:
      if (item->t != JV_STR)
        jfail(c, NLLM_ERR_INVALID_ARG, line, col,
              "'in <string>' requires string as left operand, not %s", jv_type_name(item));
      if (item->u.str.n == 0) return 1;
      if (item->u.str.n > container->u.str.n) return 0;
      for (size_t i = 0; i + item->u.str.n <= container->u.str.n; i++)
        if (memcmp(container->u.str.s + i, item->u.str.s, item->u.str.n) == 0) return 1;
      return 0;
    case JV_LIST:
      for (size_t i = 0; i < container->u.list.n; i++)
        if (jv_equal(container->u.list.v[i], item)) return 1;
      return 0;
    case JV_DICT:
    case JV_NS: return jv_dict_getv(container, item) != NULL;
    case JV_UNDEF: return 0;
    default:
      jfail(c, NLLM_ERR_INVALID_ARG, line, col, "argument of type '%s' is not iterable",
            jv_type_name(container));
  }
}

static int compare_op(E *e, const char *op, jv *a, jv *b, int line, int col) {
  jctx *c = e->c;
  if (strcmp(op, "==") == 0) return jv_equal(a, b);
  if (strcmp(op, "!=") == 0) return !jv_equal(a, b);
  if (strcmp(op, "in") == 0) return contains(c, b, a, line, col);
  if (strcmp(op, "notin") == 0) return !contains(c, b, a, line, col);
  int r = jv_compare(c, a, b, line, col);
  if (strcmp(op, "<") == 0) return r < 0;
  if (strcmp(op, "<=") == 0) return r <= 0;
  if (strcmp(op, ">") == 0) return r > 0;
  return r >= 0;
}

/* ---------------------------------------------------------------- calls */

static void eval_args(E *e, jnode *n, int first, jargs *a) {
  memset(a, 0, sizeof *a);
  a->line = n->line;
  a->col = n->col;
  int np = n->nkids - first;
  if (np > 0) {
    a->v = jalloc(e->c, (size_t)np * sizeof *a->v);
    for (int i = 0; i < np; i++) a->v[i] = eval(e, n->kids[first + i]);
  }
  a->n = np > 0 ? np : 0;
  if (n->nkw) {
    a->kwn = n->kwn;
    a->kwv = jalloc(e->c, (size_t)n->nkw * sizeof *a->kwv);
    for (int i = 0; i < n->nkw; i++) a->kwv[i] = eval(e, n->kwv[i]);
    a->nkw = n->nkw;
  }
}

static jv *call_macro(E *e, jv *m, jargs *a) {
  jctx *c = e->c;
  jnode *def = m->u.macro.def;
  if (++c->depth > c->max_depth)
    jfail(c, NLLM_ERR_ABORTED, a->line, a->col, "macro calls nested deeper than %d", c->max_depth);
  E sub = {.c = c, .f = push_frame(e, m->u.macro.scope)};
  jv *varargs = jv_list(c), *kwargs = jv_dict(c);
  varargs->u.list.is_tuple = 1;
  int np = def->nkw;
  for (int i = 0; i < a->n; i++) {
    if (i < np)
      assign(&sub, def->kwn[i], a->v[i]);
    else
      jv_list_push(c, varargs, a->v[i]);
  }
  for (int k = 0; k < a->nkw; k++) {
    int found = 0;
    for (int i = 0; i < np; i++)
      if (strcmp(def->kwn[i], a->kwn[k]) == 0) {
        assign(&sub, def->kwn[i], a->kwv[k]);
        found = 1;
      }
    if (!found) jv_dict_set(c, kwargs, jv_strn(c, a->kwn[k], strlen(a->kwn[k])), a->kwv[k]);
  }
  for (int i = a->n; i < np; i++) {
    if (jv_dict_get(sub.f->vars, def->kwn[i], strlen(def->kwn[i]))) continue;
    assign(&sub, def->kwn[i], def->kwv[i] ? eval(&sub, def->kwv[i]) : JV_UNDEF_P);
  }
  assign(&sub, "varargs", varargs);
  assign(&sub, "kwargs", kwargs);
  if (m->u.macro.caller) assign(&sub, "caller", m->u.macro.caller);
  jbuf out = {0};
  exec_node(&sub, def->kids[0], &out);
  c->depth--;
  return jv_str_own(c, out.p ? out.p : "", out.n);
}

jv *jinja_call(jctx *c, jv *fn, jargs *a) {
  if (fn->t == JV_FUNC) return fn->u.func.fn(c, fn, a);
  if (fn->t == JV_MACRO) {
    E e = {.c = c, .f = fn->u.macro.scope};
    return call_macro(&e, fn, a);
  }
  jfail(c, NLLM_ERR_INVALID_ARG, a->line, a->col, "'%s' object is not callable", jv_type_name(fn));
}

/* ---------------------------------------------------------------- expressions */

static jv *eval(E *e, jnode *n) {
  jctx *c = e->c;
  step(c, n->line, n->col);
  switch (n->k) {
    case JN_LIT: return n->lit;
    case JN_NAME: return lookup(e, n->s, n->n);
    case JN_ATTR: return jinja_getattr(c, eval(e, n->kids[0]), n->s, n->n, n->line, n->col);
    case JN_ITEM: {
      jv *o = eval(e, n->kids[0]);
      return jinja_getitem(c, o, eval(e, n->kids[1]), n->line, n->col);
    }
    case JN_SLICE: {
      jv *o = eval(e, n->kids[0]);
      jv *a = n->kids[1] ? eval(e, n->kids[1]) : NULL, *b = n->kids[2] ? eval(e, n->kids[2]) : NULL,
         *s = n->kids[3] ? eval(e, n->kids[3]) : NULL;
      return do_slice(e, o, a, b, s, n->line, n->col);
    }
    case JN_CALL: {
      jv *fn = eval(e, n->kids[0]);
      if (fn->t == JV_UNDEF) {
        jnode *f = n->kids[0];
        jfail(c, NLLM_ERR_INVALID_ARG, n->line, n->col, "'%.*s' is undefined and cannot be called",
              f->s ? (int)(f->n < 60 ? f->n : 60) : 1, f->s ? f->s : "?");
      }
      jargs a;
      eval_args(e, n, 1, &a);
      return jinja_call(c, fn, &a);
    }
    case JN_FILTER: {
      jv *o = eval(e, n->kids[0]);
      jargs a;
      eval_args(e, n, 1, &a);
      return jinja_filter(c, n->s, o, &a);
    }
    case JN_TEST: {
      jv *o = eval(e, n->kids[0]);
      jargs a;
      eval_args(e, n, 1, &a);
      int r = jinja_test(c, n->s, o, &a);
      return JV_BOOL_P(n->negate ? !r : r);
    }
    case JN_BINOP: {
      jv *a = eval(e, n->kids[0]);
      return binop(e, n->s, a, eval(e, n->kids[1]), n->line, n->col);
    }
    case JN_NOT: return JV_BOOL_P(!jv_truthy(eval(e, n->kids[0])));
    case JN_NEG:
    case JN_POS: {
      jv *v = eval(e, n->kids[0]);
      if (!num(v))
        jfail(c, NLLM_ERR_INVALID_ARG, n->line, n->col, "bad operand type for unary %c: '%s'",
              n->k == JN_NEG ? '-' : '+', jv_type_name(v));
      if (n->k == JN_POS) return v->t == JV_BOOL ? jv_int(c, v->u.b) : v;
      if (v->t == JV_FLOAT) return jv_float(c, -v->u.f);
      if (in(v) == INT64_MIN) return jv_float(c, -(double)INT64_MIN);
      return jv_int(c, -in(v));
    }
    case JN_AND: {
      jv *a = eval(e, n->kids[0]);
      return jv_truthy(a) ? eval(e, n->kids[1]) : a;
    }
    case JN_OR: {
      jv *a = eval(e, n->kids[0]);
      return jv_truthy(a) ? a : eval(e, n->kids[1]);
    }
    case JN_COND:
      if (jv_truthy(eval(e, n->kids[1]))) return eval(e, n->kids[0]);
      return n->kids[2] ? eval(e, n->kids[2]) : JV_UNDEF_P;
    case JN_LIST:
    case JN_TUPLE: {
      jv *l = jv_list(c);
      for (int i = 0; i < n->nkids; i++) jv_list_push(c, l, eval(e, n->kids[i]));
      l->u.list.is_tuple = n->k == JN_TUPLE;
      return l;
    }
    case JN_DICT: {
      jv *d = jv_dict(c);
      for (int i = 0; i + 1 < n->nkids; i += 2) {
        jv *k = eval(e, n->kids[i]);
        jv_dict_set(c, d, k, eval(e, n->kids[i + 1]));
      }
      return d;
    }
    case JN_COMPARE: {
      jv *a = eval(e, n->kids[0]);
      for (int i = 1; i < n->nkids; i++) {
        jv *b = eval(e, n->kids[i]);
        if (!compare_op(e, n->kwn[i - 1], a, b, n->line, n->col)) return JV_BOOL_P(0);
        a = b;
      }
      return JV_BOOL_P(1);
    }
    default:
      jfail(c, NLLM_ERR_INTERNAL, n->line, n->col, "statement node %d used as an expression",
            (int)n->k);
  }
}

/* ---------------------------------------------------------------- statements */

static void bind_target(E *e, jnode *t, jv *v) {
  if (t->k == JN_NAME) {
    assign(e, t->s, v);
    return;
  }
  /* tuple unpacking */
  if (v->t != JV_LIST)
    jfail(e->c, NLLM_ERR_INVALID_ARG, t->line, t->col, "cannot unpack a %s into %d names",
          jv_type_name(v), t->nkids);
  if (v->u.list.n != (size_t)t->nkids)
    jfail(e->c, NLLM_ERR_INVALID_ARG, t->line, t->col, "cannot unpack %zu values into %d names",
          v->u.list.n, t->nkids);
  for (int i = 0; i < t->nkids; i++) assign(e, t->kids[i]->s, v->u.list.v[i]);
}

static void exec_for(E *e, jnode *n, jbuf *out) {
  jctx *c = e->c;
  jv *src = eval(e, n->kids[1]);
  if (src->t == JV_NONE || src->t == JV_INT || src->t == JV_FLOAT || src->t == JV_BOOL)
    jfail(c, NLLM_ERR_INVALID_ARG, n->line, n->col, "'%s' object is not iterable",
          jv_type_name(src));
  jv *items = jinja_iter_list(c, src, n->line, n->col);
  E sub = {.c = c, .f = push_frame(e, e->f), .loop_depth = e->loop_depth + 1};
  if (n->kids[4]) { /* loop filter: applied before loop.length is known */
    jv *kept = jv_list(c);
    for (size_t i = 0; i < items->u.list.n; i++) {
      bind_target(&sub, n->kids[0], items->u.list.v[i]);
      if (jv_truthy(eval(&sub, n->kids[4]))) jv_list_push(c, kept, items->u.list.v[i]);
    }
    items = kept;
  }
  if (items->u.list.n == 0) {
    if (n->kids[3]) exec_node(e, n->kids[3], out);
    return;
  }
  jloop *l = jalloc(c, sizeof *l);
  l->items = items;
  l->length = items->u.list.n;
  l->depth = 1; /* loop.depth counts recursive loops only, which are not supported */
  jv *lv = jv_new(c, JV_LOOP);
  lv->u.loop = l;
  for (size_t i = 0; i < items->u.list.n; i++) {
    step(c, n->line, n->col);
    l->index0 = i;
    sub.f = push_frame(e, e->f); /* each iteration starts from the enclosing scope, as in Jinja */
    assign(&sub, "loop", lv);
    bind_target(&sub, n->kids[0], items->u.list.v[i]);
    exec_node(&sub, n->kids[2], out);
    sub.cont = 0;
    if (sub.brk) break;
  }
}

static void exec_node(E *e, jnode *n, jbuf *out) {
  jctx *c = e->c;
  step(c, n->line, n->col);
  switch (n->k) {
    case JN_BODY:
      for (int i = 0; i < n->nkids && !e->brk && !e->cont; i++) exec_node(e, n->kids[i], out);
      return;
    case JN_TEXT: jb_put(c, out, n->s, n->n); return;
    case JN_OUTPUT: jv_to_str(c, out, eval(e, n->kids[0])); return;
    case JN_IF:
      if (jv_truthy(eval(e, n->kids[0])))
        exec_node(e, n->kids[1], out);
      else if (n->kids[2])
        exec_node(e, n->kids[2], out);
      return;
    case JN_FOR: exec_for(e, n, out); return;
    case JN_SET: {
      jv *v = eval(e, n->kids[1]);
      jnode *t = n->kids[0];
      if (t->k == JN_ATTR) {
        jv *ns = eval(e, t->kids[0]);
        if (ns->t != JV_NS)
          jfail(c, NLLM_ERR_INVALID_ARG, t->line, t->col,
                "cannot assign attribute '%s' on a %s (only namespace() objects)", t->s,
                jv_type_name(ns));
        jv_dict_set(c, ns, jv_strn(c, t->s, t->n), v);
      } else {
        bind_target(e, t, v);
      }
      return;
    }
    case JN_SET_BLOCK: {
      jbuf b = {0};
      exec_node(e, n->kids[1], &b);
      assign(e, n->kids[0]->s, jv_str_own(c, b.p ? b.p : "", b.n));
      return;
    }
    case JN_MACRO: {
      jv *m = jv_new(c, JV_MACRO);
      m->u.macro.def = n;
      m->u.macro.scope = e->f;
      assign(e, n->s, m);
      return;
    }
    case JN_CALL_BLOCK: {
      jnode *call = n->kids[0];
      jv *fn = eval(e, call->kids[0]);
      if (fn->t != JV_MACRO)
        jfail(c, NLLM_ERR_INVALID_ARG, n->line, n->col, "'call' needs a macro, not %s",
              jv_type_name(fn));
      /* the caller is a macro made from the block's body and parameters */
      jnode *cdef = jalloc(c, sizeof *cdef);
      *cdef = *n;
      cdef->k = JN_MACRO;
      cdef->kids = &n->kids[1];
      cdef->nkids = 1;
      jv *caller = jv_new(c, JV_MACRO);
      caller->u.macro.def = cdef;
      caller->u.macro.scope = e->f;
      jv *bound = jv_new(c, JV_MACRO);
      *bound = *fn;
      bound->u.macro.caller = caller;
      jargs a;
      eval_args(e, call, 1, &a);
      jv_to_str(c, out, call_macro(e, bound, &a));
      return;
    }
    case JN_FILTER_BLOCK: {
      jbuf b = {0};
      exec_node(e, n->kids[0], &b);
      jv *v = jv_str_own(c, b.p ? b.p : "", b.n);
      for (int i = 1; i < n->nkids; i++) {
        jargs a;
        eval_args(e, n->kids[i], 1, &a);
        v = jinja_filter(c, n->kids[i]->s, v, &a);
      }
      jv_to_str(c, out, v);
      return;
    }
    case JN_BREAK:
    case JN_CONTINUE:
      if (!e->loop_depth)
        jfail(c, NLLM_ERR_INVALID_ARG, n->line, n->col, "'%s' outside a loop",
              n->k == JN_BREAK ? "break" : "continue");
      if (n->k == JN_BREAK)
        e->brk = 1;
      else
        e->cont = 1;
      return;
    default: jv_to_str(c, out, eval(e, n)); return;
  }
}

void jinja_eval(jctx *c, jnode *root, jv *globals, jbuf *out) {
  jframe *g = jalloc(c, sizeof *g);
  g->vars = globals;
  E e = {.c = c, .f = push_frame(&(E){.c = c}, g)};
  exec_node(&e, root, out);
}
