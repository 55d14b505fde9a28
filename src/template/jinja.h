/* The Jinja2 subset interpreter that renders chat templates: values, the JSON bridge, the
 * parser and the evaluator share these declarations. Nothing here is exported; the public face
 * is nllm_chat_render in chat_render.c.
 *
 * Memory: every value and AST node of one render lives in one arena that is freed at the end, so
 * the evaluator never tracks lifetimes. Errors (syntax, type, limits, raise_exception) unwind
 * with longjmp to the render entry point, which turns them into an nllm_status. */
#ifndef NLLM_JINJA_H
#define NLLM_JINJA_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---------------------------------------------------------------- arena and errors */

typedef struct jarena_chunk jarena_chunk;

typedef struct jctx {
  jarena_chunk *chunks;
  size_t used, cap_bytes; /* bytes taken from the system and the limit on them */
  jmp_buf fail;
  nllm_status status;
  char msg[512];
  /* limits, checked as the evaluator runs */
  uint64_t steps, max_steps;
  int depth, max_depth;
  size_t max_output;
  double deadline; /* monotonic seconds; 0 = none */
  int64_t now;     /* unix seconds strftime_now formats */
} jctx;

_Noreturn void jfail(jctx *c, nllm_status st, int line, int col, const char *fmt, ...)
    NLLM_PRINTF(5, 6);
void *jalloc(jctx *c, size_t n);
char *jstrndup(jctx *c, const char *s, size_t n);
void jarena_free(jctx *c);
double jclock(void);

/* ---------------------------------------------------------------- growable byte buffer */

typedef struct jbuf {
  char *p;
  size_t n, cap;
} jbuf;

void jb_put(jctx *c, jbuf *b, const char *s, size_t n);
void jb_puts(jctx *c, jbuf *b, const char *s);
void jb_putc(jctx *c, jbuf *b, char ch);

/* ---------------------------------------------------------------- values */

typedef enum {
  JV_UNDEF,
  JV_NONE,
  JV_BOOL,
  JV_INT,
  JV_FLOAT,
  JV_STR,
  JV_LIST, /* also tuples (is_tuple), which print with parentheses */
  JV_DICT,
  JV_NS, /* namespace(): a dict whose attributes may be assigned */
  JV_MACRO,
  JV_FUNC, /* builtin global or bound method */
  JV_LOOP,
} jv_type;

typedef struct jv jv;
typedef struct jnode jnode;
typedef struct jloop jloop;
typedef struct jframe jframe;

/* Arguments of a call after evaluation: positional then keyword. */
typedef struct jargs {
  jv **v;
  int n;
  const char **kwn;
  jv **kwv;
  int nkw;
  int line, col;
} jargs;

/* A builtin function or bound method; fn is the function value itself (name, bound self). */
typedef jv *(*jfunc_fn)(jctx *c, jv *fn, jargs *a);

struct jv {
  jv_type t;
  union {
    int b;
    int64_t i;
    double f;
    struct {
      const char *s;
      size_t n;
    } str;
    struct {
      jv **v;
      size_t n, cap;
      int is_tuple;
    } list;
    struct {
      jv **k, **v;
      size_t n, cap;
    } dict;
    struct {
      jnode *def;
      jframe *scope;
      jv *caller;
    } macro;
    struct {
      jfunc_fn fn;
      jv *self;
      const char *name;
    } func;
    jloop *loop;
  } u;
};

struct jloop {
  size_t index0, length;
  jv *items;
  int depth;
};

extern jv jv_undef_v, jv_none_v, jv_true_v, jv_false_v;
#define JV_UNDEF_P (&jv_undef_v)
#define JV_NONE_P (&jv_none_v)
#define JV_BOOL_P(x) ((x) ? &jv_true_v : &jv_false_v)

jv *jv_new(jctx *c, jv_type t);
jv *jv_int(jctx *c, int64_t i);
jv *jv_float(jctx *c, double f);
jv *jv_strn(jctx *c, const char *s, size_t n);    /* copies */
jv *jv_str_own(jctx *c, const char *s, size_t n); /* takes an arena string as is */
jv *jv_list(jctx *c);
jv *jv_dict(jctx *c);
void jv_list_push(jctx *c, jv *l, jv *x);
void jv_dict_set(jctx *c, jv *d, jv *k, jv *v);
jv *jv_dict_get(jv *d, const char *k, size_t n); /* NULL when absent */
jv *jv_dict_getv(jv *d, jv *k);

int jv_truthy(jv *v);
int jv_equal(jv *a, jv *b);
/* -1/0/1, or fails for types Python cannot order */
int jv_compare(jctx *c, jv *a, jv *b, int line, int col);
const char *jv_type_name(jv *v);
/* str(v) as Python prints it (None, True, 1.5, ['a', 1], {'k': 'v'}); undefined is "" */
void jv_to_str(jctx *c, jbuf *b, jv *v);
jv *jv_as_str(jctx *c, jv *v);
void jv_repr(jctx *c, jbuf *b, jv *v);
/* json.dumps(v, ensure_ascii=False, indent=indent (-1 = None), sort_keys) */
void jv_to_json(jctx *c, jbuf *b, jv *v, int indent, int sort_keys, const char *item_sep,
                const char *key_sep, int line, int col);
void jv_format_float(char *out, size_t cap, double f); /* Python repr of a float */

/* Parses one JSON text into values (object key order kept, integers stay integers).
 * Returns NULL with a message in err when the text is not JSON. *end (if given) receives the
 * offset after the value; trailing text is an error only when end is NULL. */
jv *jv_parse_json(jctx *c, const char *s, size_t n, size_t *end, char *err, size_t err_cap);

/* UTF-8 helpers: code point count and the byte offset of code point i (clamped). */
size_t ju_len(const char *s, size_t n);
size_t ju_offset(const char *s, size_t n, size_t i);

/* ---------------------------------------------------------------- AST */

typedef enum {
  /* statements */
  JN_BODY,
  JN_TEXT,
  JN_OUTPUT,
  JN_IF,
  JN_FOR,
  JN_SET,
  JN_SET_BLOCK,
  JN_MACRO,
  JN_CALL_BLOCK,
  JN_FILTER_BLOCK,
  JN_BREAK,
  JN_CONTINUE,
  /* expressions */
  JN_LIT,
  JN_NAME,
  JN_ATTR,
  JN_ITEM,
  JN_SLICE,
  JN_CALL,
  JN_FILTER,
  JN_TEST,
  JN_BINOP,
  JN_NOT,
  JN_NEG,
  JN_POS,
  JN_AND,
  JN_OR,
  JN_COND,
  JN_LIST,
  JN_TUPLE,
  JN_DICT,
  JN_COMPARE,
} jnode_kind;

struct jnode {
  jnode_kind k;
  int line, col;
  const char *s; /* name, text, operator, filter/test/attribute name */
  size_t n;      /* length of s */
  jv *lit;
  jnode **kids; /* meaning by kind, see jinja_parse.c */
  int nkids;
  const char **kwn; /* keyword argument names of calls, filters, tests; macro parameter names */
  jnode **kwv;
  int nkw;
  int negate, flag;
};

/* Parses a template; the tree lives in c's arena. Fails through c on a syntax error. */
jnode *jinja_parse(jctx *c, const char *src, size_t n);

/* Renders the tree with the given global variables (a dict) into out. */
void jinja_eval(jctx *c, jnode *root, jv *globals, jbuf *out);

/* ---------------------------------------------------------------- builtins (jinja_builtins.c) */

/* Calls a macro or builtin function value (the evaluator provides this). */
jv *jinja_call(jctx *c, jv *fn, jargs *a);
/* Attribute and item access with Jinja's fallbacks (missing -> undefined). */
jv *jinja_getattr(jctx *c, jv *obj, const char *name, size_t n, int line, int col);
jv *jinja_getitem(jctx *c, jv *obj, jv *key, int line, int col);

jv *jinja_filter(jctx *c, const char *name, jv *operand, jargs *a);
int jinja_test(jctx *c, const char *name, jv *operand, jargs *a);
/* The bound method name of a str or dict value, or NULL when it has none of that name. */
jv *jinja_method(jctx *c, jv *obj, const char *name, size_t n);
/* Adds range, namespace, dict, raise_exception, strftime_now to a globals dict. */
void jinja_add_globals(jctx *c, jv *globals);
/* Items of an iterable value as a list (dict -> keys, str -> characters); undefined -> empty. */
jv *jinja_iter_list(jctx *c, jv *v, int line, int col);

#endif
