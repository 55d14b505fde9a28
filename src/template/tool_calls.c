/* Tool calls in model output, in the three formats chat templates teach models:
 *   hermes   <tool_call>{"name": ..., "arguments": {...}}</tool_call> (Qwen2.5/3, Hermes)
 *   llama3   {"name": ..., "parameters": {...}} as the whole reply, optionally after
 *            <|python_tag|>, several separated by ';'
 *   mistral  [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...] (v3) or
 *            [TOOL_CALLS]name[ARGS]{...} (tekken v11+, optionally [CALL_ID]id before [ARGS])
 * into OpenAI's message shape. Text that does not parse as calls stays content, unchanged: a
 * half-written or malformed call is never turned into a call. */
#include <stdio.h>
#include <stdlib.h>

#include "template/jinja.h"
#include "template/template.h"

typedef struct {
  jctx *c;
  const char *text;
  size_t n;
  jv *calls;
} tc;

static const char *find(const char *h, size_t hn, const char *nd) {
  size_t nn = strlen(nd);
  for (size_t i = 0; i + nn <= hn; i++)
    if (memcmp(h + i, nd, nn) == 0) return h + i;
  return NULL;
}

static int ws(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* 9 alphanumerics from the text and the call's index: stable across runs, and the length
 * Mistral's templates require of tool_call ids. */
static jv *make_id(tc *t, size_t index) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < t->n; i++) h = (h ^ (unsigned char)t->text[i]) * 1099511628211ull;
  h = (h ^ index) * 1099511628211ull;
  static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  char id[9];
  for (int k = 0; k < 9; k++) {
    id[k] = al[h % 62];
    h = h / 62 ^ (h << 7) ^ (uint64_t)k * 0x9E3779B97F4A7C15ull;
  }
  return jv_strn(t->c, id, 9);
}

static void set(jctx *c, jv *d, const char *k, jv *v) {
  jv_dict_set(c, d, jv_strn(c, k, strlen(k)), v);
}

/* Adds one call from its name and arguments value; 0 when they are not a call. */
static int add_call(tc *t, jv *name, jv *args) {
  jctx *c = t->c;
  if (!name || name->t != JV_STR || name->u.str.n == 0) return 0;
  jv *astr;
  if (!args || args->t == JV_NONE)
    astr = jv_strn(c, "{}", 2);
  else if (args->t == JV_STR)
    astr = args;
  else if (args->t == JV_DICT) {
    jbuf b = {0};
    jv_to_json(c, &b, args, -1, 0, NULL, NULL, 0, 0);
    astr = jv_str_own(c, b.p, b.n);
  } else
    return 0;
  jv *fn = jv_dict(c), *call = jv_dict(c);
  set(c, fn, "name", name);
  set(c, fn, "arguments", astr);
  set(c, call, "id", make_id(t, t->calls->u.list.n));
  set(c, call, "type", jv_strn(c, "function", 8));
  set(c, call, "function", fn);
  jv_list_push(c, t->calls, call);
  return 1;
}

/* {"name", "arguments"|"parameters"} */
static int add_obj(tc *t, jv *o) {
  if (!o || o->t != JV_DICT) return 0;
  jv *args = jv_dict_get(o, "arguments", 9);
  if (!args) args = jv_dict_get(o, "parameters", 10);
  return add_call(t, jv_dict_get(o, "name", 4), args);
}

static jv *json_at(tc *t, const char *s, size_t n, size_t *used) {
  char err[128];
  return jv_parse_json(t->c, s, n, used, err, sizeof err);
}

static int parse_hermes(tc *t, size_t *content_end) {
  const char *p = t->text, *end = t->text + t->n;
  const char *first = find(p, t->n, "<tool_call>");
  if (!first) return 0;
  *content_end = (size_t)(first - t->text);
  while ((p = find(p, (size_t)(end - p), "<tool_call>"))) {
    p += strlen("<tool_call>");
    const char *close = find(p, (size_t)(end - p), "</tool_call>");
    size_t len = close ? (size_t)(close - p) : (size_t)(end - p), used = 0;
    jv *o = json_at(t, p, len, &used);
    if (!o || !add_obj(t, o)) return -1;
    for (size_t k = used; k < len; k++)
      if (!ws(p[k])) return -1;
    p = close ? close + strlen("</tool_call>") : end;
  }
  return 1;
}

static int parse_mistral(tc *t, size_t *content_end) {
  const char *p = t->text, *end = t->text + t->n;
  const char *first = find(p, t->n, "[TOOL_CALLS]");
  if (!first) return 0;
  *content_end = (size_t)(first - t->text);
  p = first;
  while (p < end) {
    while (p < end && ws(*p)) p++;
    if (p >= end) break;
    if ((size_t)(end - p) >= 12 && memcmp(p, "[TOOL_CALLS]", 12) == 0)
      p += 12;
    else
      return -1;
    while (p < end && ws(*p)) p++;
    size_t used = 0;
    if (p < end && (*p == '[' || *p == '{')) {
      jv *v = json_at(t, p, (size_t)(end - p), &used);
      if (!v) return -1;
      if (v->t == JV_LIST) {
        for (size_t i = 0; i < v->u.list.n; i++)
          if (!add_obj(t, v->u.list.v[i])) return -1;
      } else if (!add_obj(t, v)) {
        return -1;
      }
      p += used;
      continue;
    }
    /* tekken: name[ARGS]{...} or name[CALL_ID]id[ARGS]{...} */
    const char *args = find(p, (size_t)(end - p), "[ARGS]");
    if (!args) return -1;
    const char *name_end = find(p, (size_t)(args - p), "[CALL_ID]");
    if (!name_end) name_end = args;
    jv *name = jv_strn(t->c, p, (size_t)(name_end - p));
    p = args + 6;
    jv *v = json_at(t, p, (size_t)(end - p), &used);
    if (!v || !add_call(t, name, v)) return -1;
    p += used;
  }
  return 1;
}

static int parse_llama3(tc *t, size_t *content_end) {
  const char *p = t->text, *end = t->text + t->n;
  while (p < end && ws(*p)) p++;
  if ((size_t)(end - p) >= 14 && memcmp(p, "<|python_tag|>", 14) == 0) p += 14;
  while (p < end && ws(*p)) p++;
  if (p >= end || *p != '{') return 0;
  *content_end = 0;
  while (p < end) {
    size_t used = 0;
    jv *o = json_at(t, p, (size_t)(end - p), &used);
    if (!o || o->t != JV_DICT || !jv_dict_get(o, "name", 4) ||
        !(jv_dict_get(o, "parameters", 10) || jv_dict_get(o, "arguments", 9)))
      return t->calls->u.list.n ? -1 : 0;
    if (!add_obj(t, o)) return -1;
    p += used;
    while (p < end && (ws(*p) || *p == ';')) p++;
  }
  return 1;
}

nllm_status nllm_tool_calls_parse_text(const char *text, size_t len, const char *format, char **out,
                                       size_t *n_out) {
  if (!text || !out || !n_out) return nllm_err(NLLM_ERR_INVALID_ARG, "tool calls: NULL argument");
  int fmt = 0; /* 0 auto, 1 hermes, 2 llama3, 3 mistral */
  if (format && strcmp(format, "auto") != 0) {
    if (strcmp(format, "hermes") == 0)
      fmt = 1;
    else if (strcmp(format, "llama3") == 0)
      fmt = 2;
    else if (strcmp(format, "mistral") == 0)
      fmt = 3;
    else
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "tool calls: unknown format '%s' (auto, hermes, llama3, mistral)", format);
  }
  jctx *c = nllm_calloc(1, sizeof *c);
  if (!c) return nllm_err(NLLM_ERR_NOMEM, "tool calls: out of memory");
  c->cap_bytes = NLLM_TMPL_MAX_MEMORY;
  c->max_output = NLLM_TMPL_MAX_MEMORY / 4;
  nllm_status st = NLLM_OK;
  *out = NULL;
  if (setjmp(c->fail)) {
    st = nllm_err(c->status, "tool calls: %s", c->msg);
    goto done;
  }
  tc t = {.c = c, .text = text, .n = len, .calls = jv_list(c)};
  size_t content_end = len;
  int r = 0;
  if (fmt == 1 || (fmt == 0 && find(text, len, "<tool_call>")))
    r = parse_hermes(&t, &content_end);
  else if (fmt == 3 || (fmt == 0 && find(text, len, "[TOOL_CALLS]")))
    r = parse_mistral(&t, &content_end);
  else if (fmt == 2 || fmt == 0)
    r = parse_llama3(&t, &content_end);
  if (r <= 0) { /* no calls, or malformed ones: everything is content */
    t.calls = jv_list(c);
    content_end = len;
  }
  if (r > 0)
    while (content_end > 0 && ws(text[content_end - 1])) content_end--;
  jv *res = jv_dict(c);
  set(c, res, "content", content_end ? jv_strn(c, text, content_end) : JV_NONE_P);
  set(c, res, "tool_calls", t.calls);
  jbuf b = {0};
  jv_to_json(c, &b, res, -1, 0, ",", ":", 0, 0);
  *out = nllm_malloc(b.n + 1);
  if (!*out) {
    st = nllm_err(NLLM_ERR_NOMEM, "tool calls: out of memory");
    goto done;
  }
  memcpy(*out, b.p, b.n + 1);
  *n_out = b.n;
done:
  jarena_free(c);
  free(c);
  return st;
}
