/* Request bodies of /v1/chat/completions and /v1/completions: JSON to a validated srv_request.
 * Needs no model, so the fuzzer drives it alone. Field rules follow OpenAI's API reference;
 * anything of the wrong type is a 400 naming the field. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

void srv_error_set(srv_error *err, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...) {
  err->status = status;
  err->type = type;
  err->param = param;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
}

char *srv_error_json(const srv_error *err) {
  cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
  char *msg = srv_utf8_clean(err->message, strlen(err->message));
  cJSON_AddStringToObject(e, "message", msg ? msg : "error");
  free(msg);
  cJSON_AddStringToObject(e, "type", err->type ? err->type : "invalid_request_error");
  if (err->param)
    cJSON_AddStringToObject(e, "param", err->param);
  else
    cJSON_AddNullToObject(e, "param");
  if (err->code)
    cJSON_AddStringToObject(e, "code", err->code);
  else
    cJSON_AddNullToObject(e, "code");
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

void srv_request_free(srv_request *r) {
  free(r->model);
  for (int i = 0; i < r->n_messages; i++) {
    free(r->messages[i].role);
    free(r->messages[i].content);
  }
  free(r->messages);
  free(r->messages_json);
  for (int i = 0; i < r->n_prompts; i++) {
    free(r->prompts[i].text);
    free(r->prompts[i].ids);
  }
  free(r->prompts);
  for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
  free(r->user);
  free(r->response_format_json);
  free(r->grammar);
  free(r->json_schema_json);
  free(r->tools_json);
  free(r->tool_choice_json);
  memset(r, 0, sizeof *r);
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

#define BAD(param, ...)                                                         \
  do {                                                                          \
    srv_error_set(err, 400, "invalid_request_error", param, NULL, __VA_ARGS__); \
    return -1;                                                                  \
  } while (0)

/* A number field in [lo, hi]; absent or null leaves *out. */
static int get_num(const cJSON *root, const char *name, double lo, double hi, double *out,
                   srv_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v)) BAD(name, "'%s' must be a number", name);
  if (!(v->valuedouble >= lo && v->valuedouble <= hi))
    BAD(name, "'%s' must be in [%g, %g]", name, lo, hi);
  *out = v->valuedouble;
  return 0;
}

static int get_int(const cJSON *root, const char *name, double lo, double hi, int *out,
                   srv_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
    BAD(name, "'%s' must be an integer", name);
  if (!(v->valuedouble >= lo && v->valuedouble <= hi))
    BAD(name, "'%s' must be in [%g, %g]", name, lo, hi);
  *out = (int)v->valuedouble;
  return 0;
}

static int get_bool(const cJSON *root, const char *name, int *out, srv_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsBool(v)) BAD(name, "'%s' must be a boolean", name);
  *out = cJSON_IsTrue(v);
  return 0;
}

static int get_str(const cJSON *root, const char *name, char **out, srv_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsString(v)) BAD(name, "'%s' must be a string", name);
  if (!(*out = dupn(v->valuestring, strlen(v->valuestring)))) BAD(name, "out of memory");
  return 0;
}

/* Raw JSON of a field for the hooks (grammar, tools). */
static int get_raw(const cJSON *root, const char *name, char **out, srv_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!(*out = cJSON_PrintUnformatted(v))) BAD(name, "out of memory");
  return 0;
}

/* Message content: a string, or a list of {"type":"text","text":...} parts joined. */
static int get_content(const cJSON *m, char **out, srv_error *err) {
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
  if (!c || cJSON_IsNull(c)) {
    *out = dupn("", 0);
    return *out ? 0 : -1;
  }
  if (cJSON_IsString(c)) {
    *out = dupn(c->valuestring, strlen(c->valuestring));
    if (!*out) BAD("messages", "out of memory");
    return 0;
  }
  if (!cJSON_IsArray(c)) BAD("messages", "message content must be a string or a list of parts");
  size_t total = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, c) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
    if (!cJSON_IsObject(p) || !cJSON_IsString(type))
      BAD("messages", "each content part must be an object with a 'type'");
    if (strcmp(type->valuestring, "text"))
      BAD("messages", "content part type '%.64s' is not supported (text only)", type->valuestring);
    if (!cJSON_IsString(text)) BAD("messages", "a text part needs a string 'text'");
    total += strlen(text->valuestring);
  }
  char *s = malloc(total + 1);
  if (!s) BAD("messages", "out of memory");
  size_t n = 0;
  cJSON_ArrayForEach(p, c) {
    const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
    size_t l = strlen(t);
    memcpy(s + n, t, l);
    n += l;
  }
  s[n] = 0;
  *out = s;
  return 0;
}

/* An assistant message's tool_calls, checked, as the template reads them: OpenAI sends the
 * arguments as a JSON string, templates (tojson, items()) expect the object. */
static int copy_tool_calls(const cJSON *calls, cJSON *dst, srv_error *err) {
  if (!cJSON_IsArray(calls)) BAD("messages", "an assistant's 'tool_calls' must be an array");
  cJSON *out = cJSON_AddArrayToObject(dst, "tool_calls");
  const cJSON *c;
  cJSON_ArrayForEach(c, calls) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
    if (!cJSON_IsObject(c) || !cJSON_IsObject(fn) || !cJSON_IsString(name))
      BAD("messages", "each tool call needs a 'function' with a string 'name'");
    if (args && !cJSON_IsString(args) && !cJSON_IsObject(args))
      BAD("messages", "a tool call's 'arguments' must be a JSON string (or an object)");
    if (id && !cJSON_IsString(id)) BAD("messages", "a tool call's 'id' must be a string");
    cJSON *call = cJSON_CreateObject(), *f = cJSON_CreateObject();
    cJSON_AddItemToArray(out, call);
    if (id) cJSON_AddStringToObject(call, "id", id->valuestring);
    cJSON_AddStringToObject(call, "type", "function");
    cJSON_AddItemToObject(call, "function", f);
    cJSON_AddStringToObject(f, "name", name->valuestring);
    cJSON *a = NULL;
    if (cJSON_IsObject(args))
      a = cJSON_Duplicate(args, 1);
    else if (args && !(a = cJSON_Parse(args->valuestring)))
      a = cJSON_CreateString(args->valuestring); /* not JSON: the template gets the text */
    cJSON_AddItemToObject(f, "arguments", a ? a : cJSON_CreateObject());
  }
  return 0;
}

static int parse_messages(const cJSON *root, srv_request *r, srv_error *err) {
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "messages");
  if (!ms) BAD("messages", "'messages' is required");
  if (!cJSON_IsArray(ms)) BAD("messages", "'messages' must be an array");
  int n = cJSON_GetArraySize(ms);
  if (n < 1) BAD("messages", "'messages' must hold at least one message");
  if (n > 100000) BAD("messages", "too many messages");
  r->messages = calloc((size_t)n, sizeof *r->messages);
  if (!r->messages) BAD("messages", "out of memory");
  cJSON *tm = cJSON_CreateArray();
  const cJSON *m;
  cJSON_ArrayForEach(m, ms) {
    if (!cJSON_IsObject(m)) goto bad_message;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsString(role)) {
      cJSON_Delete(tm);
      BAD("messages", "each message needs a string 'role'");
    }
    const char *ro = role->valuestring;
    /* "developer" is OpenAI's newer name for system */
    if (!strcmp(ro, "developer")) ro = "system";
    if (strcmp(ro, "system") && strcmp(ro, "user") && strcmp(ro, "assistant") &&
        strcmp(ro, "tool")) {
      srv_error_set(err, 400, "invalid_request_error", "messages", NULL,
                    "unknown message role '%.64s'", ro);
      goto fail;
    }
    srv_message *dst = &r->messages[r->n_messages++];
    if (!(dst->role = dupn(ro, strlen(ro))) || get_content(m, &dst->content, err)) goto fail;
    cJSON *t = cJSON_CreateObject();
    cJSON_AddItemToArray(tm, t);
    cJSON_AddStringToObject(t, "role", ro);
    cJSON_AddStringToObject(t, "content", dst->content);
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (calls && !cJSON_IsNull(calls)) {
      if (strcmp(ro, "assistant")) {
        srv_error_set(err, 400, "invalid_request_error", "messages", NULL,
                      "only assistant messages have 'tool_calls'");
        goto fail;
      }
      if (copy_tool_calls(calls, t, err)) goto fail;
      r->has_tool_messages = 1;
    }
    static const char *const kept[] = {"tool_call_id", "name"};
    for (size_t k = 0; k < sizeof kept / sizeof *kept; k++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, kept[k]);
      if (!v || cJSON_IsNull(v)) continue;
      if (!cJSON_IsString(v)) {
        srv_error_set(err, 400, "invalid_request_error", "messages", NULL,
                      "a message's '%s' must be a string", kept[k]);
        goto fail;
      }
      cJSON_AddStringToObject(t, kept[k], v->valuestring);
    }
    if (!strcmp(ro, "tool")) r->has_tool_messages = 1;
  }
  r->messages_json = cJSON_PrintUnformatted(tm);
  cJSON_Delete(tm);
  if (!r->messages_json) BAD("messages", "out of memory");
  return 0;
bad_message:
  srv_error_set(err, 400, "invalid_request_error", "messages", NULL,
                "each message must be an object");
fail:
  cJSON_Delete(tm);
  return -1;
}

/* A prompt: text, or token ids. */
static int parse_prompt_value(const cJSON *p, srv_prompt *dst, srv_error *err) {
  if (cJSON_IsString(p)) {
    if (!(dst->text = dupn(p->valuestring, strlen(p->valuestring)))) BAD("prompt", "no memory");
    return 0;
  }
  if (!cJSON_IsArray(p)) BAD("prompt", "'prompt' must be a string, strings or token ids");
  int n = cJSON_GetArraySize(p);
  if (n < 1) BAD("prompt", "'prompt' must not be empty");
  if (n > 1 << 22) BAD("prompt", "too many prompt tokens");
  dst->ids = malloc((size_t)n * sizeof *dst->ids);
  if (!dst->ids) BAD("prompt", "out of memory");
  const cJSON *t;
  cJSON_ArrayForEach(t, p) {
    if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
        t->valuedouble > 2147483647.0)
      BAD("prompt", "token ids must be non-negative integers");
    dst->ids[dst->n_ids++] = (nllm_token)t->valuedouble;
  }
  return 0;
}

void srv_request_select_prompt(srv_request *r, int i) {
  r->prompt = r->prompts[i].text;
  r->prompt_ids = r->prompts[i].ids;
  r->n_prompt_ids = r->prompts[i].n_ids;
}

static int parse_prompt(const cJSON *root, srv_request *r, srv_error *err) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
  if (!p) BAD("prompt", "'prompt' is required");
  const cJSON *first = cJSON_IsArray(p) ? cJSON_GetArrayItem(p, 0) : NULL;
  /* a list of prompts (strings or token-id lists): one choice each, as OpenAI answers them */
  int batch = first && (cJSON_IsString(first) || cJSON_IsArray(first));
  int n = batch ? cJSON_GetArraySize(p) : 1;
  if (n > SRV_MAX_PROMPTS)
    BAD("prompt", "at most %d prompts per request (got %d)", SRV_MAX_PROMPTS, n);
  r->prompts = calloc((size_t)n, sizeof *r->prompts);
  if (!r->prompts) BAD("prompt", "out of memory");
  if (!batch) {
    r->n_prompts = 1;
    if (parse_prompt_value(p, &r->prompts[0], err)) return -1;
  } else {
    const cJSON *e;
    cJSON_ArrayForEach(e, p) {
      if (!cJSON_IsString(e) && !cJSON_IsArray(e))
        BAD("prompt", "each prompt of a list must be a string or a list of token ids");
      if (parse_prompt_value(e, &r->prompts[r->n_prompts++], err)) return -1;
    }
  }
  srv_request_select_prompt(r, 0);
  return 0;
}

static int parse_stop(const cJSON *root, srv_request *r, srv_error *err) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
  if (!s || cJSON_IsNull(s)) return 0;
  if (cJSON_IsString(s)) {
    if (!s->valuestring[0]) return 0;
    if (!(r->stop[r->n_stop++] = dupn(s->valuestring, strlen(s->valuestring))))
      BAD("stop", "out of memory");
    return 0;
  }
  if (!cJSON_IsArray(s)) BAD("stop", "'stop' must be a string or a list of strings");
  if (cJSON_GetArraySize(s) > SRV_MAX_STOP) BAD("stop", "at most %d stop strings", SRV_MAX_STOP);
  const cJSON *e;
  cJSON_ArrayForEach(e, s) {
    if (!cJSON_IsString(e)) BAD("stop", "'stop' must be a string or a list of strings");
    if (!e->valuestring[0]) continue;
    if (strlen(e->valuestring) > 1024) BAD("stop", "a stop string is over 1024 bytes");
    if (!(r->stop[r->n_stop++] = dupn(e->valuestring, strlen(e->valuestring))))
      BAD("stop", "out of memory");
  }
  return 0;
}

/* "lora": [{"id": N, "scale": S}, ...] (llama-server); ids are checked against the loaded
 * adapters when the job is prepared. */
static int parse_lora(const cJSON *root, srv_request *r, srv_error *err) {
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(root, "lora");
  if (!l || cJSON_IsNull(l)) return 0;
  if (!cJSON_IsArray(l)) BAD("lora", "'lora' must be an array of {\"id\", \"scale\"} objects");
  const cJSON *e;
  cJSON_ArrayForEach(e, l) {
    if (r->n_lora == SRV_MAX_LORA) BAD("lora", "'lora' lists more than %d adapters", SRV_MAX_LORA);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(e, "scale");
    if (!cJSON_IsObject(e) || !cJSON_IsNumber(id) || id->valuedouble < 0 ||
        id->valuedouble > SRV_MAX_LORA || id->valuedouble != floor(id->valuedouble))
      BAD("lora", "each 'lora' entry needs an integer 'id' of a loaded adapter");
    if (!cJSON_IsNumber(sc) || !isfinite(sc->valuedouble) || fabs(sc->valuedouble) > 1e6)
      BAD("lora", "each 'lora' entry needs a finite number 'scale'");
    r->lora_id[r->n_lora] = (int)id->valuedouble;
    r->lora_scale[r->n_lora++] = sc->valuedouble;
  }
  return 0;
}

static int parse_body(srv_req_kind kind, const cJSON *root, srv_request *r, srv_error *err) {
  if (!cJSON_IsObject(root)) BAD(NULL, "the request body must be a JSON object");
  if (get_str(root, "model", &r->model, err)) return -1;
  if (kind == SRV_REQ_CHAT ? parse_messages(root, r, err) : parse_prompt(root, r, err)) return -1;
  if (get_bool(root, "stream", &r->stream, err)) return -1;
  const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
  if (so && !cJSON_IsNull(so)) {
    if (!cJSON_IsObject(so)) BAD("stream_options", "'stream_options' must be an object");
    if (get_bool(so, "include_usage", &r->include_usage, err)) return -1;
  }
  double d;
  int mt = -1, mct = -1;
  if (get_int(root, "max_tokens", 1, 1 << 24, &mt, err)) return -1;
  if (get_int(root, "max_completion_tokens", 1, 1 << 24, &mct, err)) return -1;
  r->max_tokens = mct >= 0 ? mct : mt;
  r->temperature = r->top_p = r->min_p = r->repeat_penalty = NAN;
  r->presence_penalty = r->frequency_penalty = 0;
  d = NAN;
  if (get_num(root, "temperature", 0, 100, &d, err)) return -1;
  r->temperature = d;
  d = NAN;
  if (get_num(root, "top_p", 1e-9, 1, &d, err)) return -1;
  r->top_p = d;
  d = NAN;
  if (get_num(root, "min_p", 0, 1, &d, err)) return -1;
  r->min_p = d;
  d = NAN;
  if (get_num(root, "repeat_penalty", 1e-3, 100, &d, err)) return -1;
  r->repeat_penalty = d;
  if (get_num(root, "presence_penalty", -2, 2, &r->presence_penalty, err)) return -1;
  if (get_num(root, "frequency_penalty", -2, 2, &r->frequency_penalty, err)) return -1;
  r->top_k = -1;
  if (get_int(root, "top_k", 0, 1 << 24, &r->top_k, err)) return -1;
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
  if (seed && !cJSON_IsNull(seed)) {
    if (!cJSON_IsNumber(seed) || seed->valuedouble != floor(seed->valuedouble) ||
        fabs(seed->valuedouble) > 9007199254740992.0)
      BAD("seed", "'seed' must be an integer");
    r->has_seed = 1;
    r->seed = (uint64_t)(int64_t)seed->valuedouble;
  }
  int n = 1;
  if (get_int(root, "n", 1, 128, &n, err)) return -1;
  if (n != 1) BAD("n", "only n = 1 is supported");
  if (kind == SRV_REQ_CHAT) {
    if (get_bool(root, "logprobs", &r->logprobs, err)) return -1;
    if (get_int(root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &r->top_logprobs, err)) return -1;
    if (r->top_logprobs > 0 && !r->logprobs)
      BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  } else {
    /* completions: "logprobs": N asks for the token's and N alternatives' log-probabilities */
    int lp = -1;
    if (get_int(root, "logprobs", 0, 5, &lp, err)) return -1;
    if (lp >= 0) r->logprobs = 1, r->top_logprobs = lp;
    if (get_bool(root, "echo", &r->echo, err)) return -1;
  }
  if (parse_stop(root, r, err)) return -1;
  if (get_str(root, "user", &r->user, err)) return -1;
  if (get_bool(root, "ignore_eos", &r->ignore_eos, err)) return -1;
  if (get_raw(root, "response_format", &r->response_format_json, err)) return -1;
  if (get_raw(root, "tools", &r->tools_json, err)) return -1;
  if (get_raw(root, "tool_choice", &r->tool_choice_json, err)) return -1;
  if (get_str(root, "grammar", &r->grammar, err)) return -1;
  if (get_raw(root, "json_schema", &r->json_schema_json, err)) return -1;
  return parse_lora(root, r, err);
}

int srv_parse_request(srv_req_kind kind, const char *body, size_t len, srv_request *req,
                      srv_error *err) {
  memset(req, 0, sizeof *req);
  req->kind = kind;
  req->max_tokens = -1;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
  if (!root) {
    srv_error_set(err, 400, "invalid_request_error", NULL, NULL,
                  "the request body is not valid JSON (near byte %zu)",
                  end && end >= body ? (size_t)(end - body) : (size_t)0);
    return -1;
  }
  int rc = parse_body(kind, root, req, err);
  cJSON_Delete(root);
  return rc;
}
