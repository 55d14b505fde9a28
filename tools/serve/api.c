/* OpenAI's request and response shapes around a job: the prompt from messages (the model's
 * chat template) or a completion prompt, the sampling settings, and the JSON the client gets
 * back (whole, or as stream chunks), plus llama-server's /tokenize and /detokenize. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

const char *srv_finish_name(srv_finish f) {
  switch (f) {
    case SRV_FINISH_STOP: return "stop";
    case SRV_FINISH_LENGTH: return "length";
    default: return "error";
  }
}

static char *render_chat(const srv_api *a, const srv_request *r, srv_error *err) {
  nllm_chat_message *msgs = calloc((size_t)r->n_messages, sizeof *msgs);
  if (!msgs) return NULL;
  for (int i = 0; i < r->n_messages; i++)
    msgs[i].role = r->messages[i].role, msgs[i].content = r->messages[i].content;
  char *buf = NULL;
  int32_t need = 0;
  nllm_status st = a->tmpl
                       ? nllm_chat_apply_template(a->tmpl, msgs, r->n_messages, 1, NULL, 0, &need)
                       : nllm_chat_format(a->model, msgs, r->n_messages, 1, NULL, 0, &need);
  if (st == NLLM_OK || st == NLLM_ERR_BUFFER_TOO_SMALL) {
    buf = malloc((size_t)need + 1);
    if (buf)
      st = a->tmpl ? nllm_chat_apply_template(a->tmpl, msgs, r->n_messages, 1, buf, need + 1, &need)
                   : nllm_chat_format(a->model, msgs, r->n_messages, 1, buf, need + 1, &need);
  }
  if (st || !buf) {
    srv_error_set(err, 400, "invalid_request_error", "messages", NULL,
                  "the chat template cannot render these messages: %s",
                  buf ? nllm_last_error() : "out of memory");
    free(buf);
    buf = NULL;
  }
  free(msgs);
  return buf;
}

/* The Jinja text chat requests use: the --chat-template one, else the model's own; NULL for a
 * family name or a model without a template. */
static const char *jinja_template(const srv_api *a) {
  const char *t = a->tmpl;
  if (!t && nllm_model_meta_str(a->model, "tokenizer.chat_template", &t)) t = NULL;
  if (!t || (!strstr(t, "{{") && !strstr(t, "{%"))) return NULL;
  return t;
}

/* The conversation through the Jinja template with everything it reads of tools: tool_calls
 * and tool results in the history, and the tools themselves when with_tools. */
static char *render_jinja(const srv_api *a, const srv_request *r, const char *tmpl, int with_tools,
                          srv_error *err) {
  nllm_chat_template_params p;
  nllm_chat_template_params_init(&p);
  p.add_generation_prompt = 1;
  p.template_text = tmpl;
  p.messages_json = r->messages_json;
  p.tools_json = with_tools ? r->tools_json : NULL;
  int32_t need = 0;
  char *buf = NULL;
  nllm_status st = nllm_chat_template_render(a->model, &p, NULL, 0, &need);
  if (st == NLLM_OK || st == NLLM_ERR_BUFFER_TOO_SMALL) {
    buf = malloc((size_t)need + 1);
    st = buf ? nllm_chat_template_render(a->model, &p, buf, need + 1, &need) : NLLM_ERR_NOMEM;
  }
  if (st) {
    srv_error_set(err, st == NLLM_ERR_NOMEM ? 500 : 400,
                  st == NLLM_ERR_NOMEM ? "server_error" : "invalid_request_error", "messages", NULL,
                  "the chat template cannot render these messages: %s",
                  st == NLLM_ERR_NOMEM ? "out of memory" : nllm_last_error());
    free(buf);
    return NULL;
  }
  return buf;
}

static int tokenize_all(const nllm_model *m, const char *text, int add_bos, int special,
                        nllm_token **out, int *n_out) {
  int32_t need = 0;
  size_t len = strlen(text);
  if (len > (1u << 30)) return -1;
  nllm_status st = nllm_tokenize(m, text, (int32_t)len, add_bos, special, NULL, 0, &need);
  if (st && st != NLLM_ERR_BUFFER_TOO_SMALL) return -1;
  *out = malloc(((size_t)need + 1) * sizeof **out);
  if (!*out) return -1;
  if (nllm_tokenize(m, text, (int32_t)len, add_bos, special, *out, need + 1, &need)) {
    free(*out);
    *out = NULL;
    return -1;
  }
  *n_out = need;
  return 0;
}

static void make_id(char *id, size_t cap, const char *prefix) {
  static unsigned long long counter;
  unsigned long long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
  snprintf(id, cap, "%s-%llx%08llx", prefix, (unsigned long long)(srv_now() * 1e3) & 0xffffffffull,
           n);
}

int srv_api_prepare(const srv_api *a, const srv_request *r, srv_job **out, srv_reply *rp,
                    srv_error *err) {
  *out = NULL;
  const srv_config *cfg = a->cfg;
  if (r->model && cfg->alias && strcmp(r->model, cfg->alias)) {
    srv_error_set(err, 404, "invalid_request_error", "model", "model_not_found",
                  "the model '%.200s' does not exist (this server serves '%s')", r->model,
                  cfg->alias);
    return -1;
  }
  srv_tools_mode tmode = SRV_TOOLS_OFF;
  char *named = NULL;
  if (r->kind == SRV_REQ_CHAT && srv_tools_choice(r, &tmode, &named, err)) return -1;
  const char *jinja = r->kind == SRV_REQ_CHAT ? jinja_template(a) : NULL;
  srv_tools_format tfmt = SRV_TOOLS_NONE;
  if (tmode != SRV_TOOLS_OFF) {
    if (!jinja) {
      free(named);
      srv_error_set(err, 400, "invalid_request_error", "tools", NULL,
                    "the model has no Jinja chat template, so it cannot be given tools (start "
                    "the server with --chat-template-file)");
      return -1;
    }
    tfmt = srv_tools_detect(jinja);
  }
  for (int k = 0; k < r->n_lora; k++)
    if (r->lora_id[k] >= cfg->n_lora) {
      srv_error_set(err, 400, "invalid_request_error", "lora", NULL,
                    "lora id %d: the server has %d adapter(s) (GET /lora-adapters lists them)",
                    r->lora_id[k], cfg->n_lora);
      free(named);
      return -1;
    }
  /* response_format and llama-server's grammar / json_schema: the sampler's grammar; a forced
   * tool call brings its own */
  char *constraint = NULL;
  int is_schema = 0;
  if (srv_constraint(r, &constraint, &is_schema, err)) {
    free(named);
    return -1;
  }
  int forced = tmode == SRV_TOOLS_REQUIRED || tmode == SRV_TOOLS_NAMED;
  if (forced && constraint) {
    free(named);
    free(constraint);
    srv_error_set(err, 400, "invalid_request_error", "tool_choice", NULL,
                  "a required or named tool_choice cannot be combined with response_format, "
                  "grammar or json_schema");
    return -1;
  }
  if (forced) {
    int rc = srv_tools_grammar(r, tmode, named, tfmt, &constraint, err);
    free(named);
    if (rc) return -1;
    is_schema = 0;
  } else {
    free(named);
  }
  if (r->ignore_eos && constraint) {
    /* a grammar's output ends where only the end-of-generation token may follow */
    free(constraint);
    srv_error_set(err, 400, "invalid_request_error", "ignore_eos", NULL,
                  "'ignore_eos' cannot be combined with response_format, grammar, json_schema or "
                  "a required tool call: their output ends with an end-of-generation token");
    return -1;
  }
  srv_job *j = srv_job_new();
  if (!j) goto oom;
  j->wake_each = r->stream;
  for (int k = 0; k < cfg->n_lora; k++) j->lora_scale[k] = cfg->lora_scale[k];
  for (int k = 0; k < r->n_lora; k++) j->lora_scale[r->lora_id[k]] = (float)r->lora_scale[k];
  j->constraint = constraint;
  constraint = NULL;
  memset(rp, 0, sizeof *rp);
  rp->kind = r->kind;
  rp->model = cfg->alias;
  rp->stream = r->stream;
  rp->include_usage = r->include_usage;
  rp->created = (long long)time(NULL);
  make_id(rp->id, sizeof rp->id, r->kind == SRV_REQ_CHAT ? "chatcmpl" : "cmpl");
  int n_vocab = nllm_model_n_vocab(a->model);
  rp->tools = tfmt;
  rp->tools_forced = forced;
  rp->tools_prefix = forced && tfmt == SRV_TOOLS_MISTRAL ? "[TOOL_CALLS]" : NULL;
  j->render_special = tfmt == SRV_TOOLS_MISTRAL;
  if (r->kind == SRV_REQ_CHAT && jinja && (tmode != SRV_TOOLS_OFF || r->has_tool_messages)) {
    char *text = render_jinja(a, r, jinja, tmode != SRV_TOOLS_OFF, err);
    if (!text) goto fail;
    /* the template writes any BOS itself */
    int rc = tokenize_all(a->model, text, 0, 1, &j->prompt, &j->n_prompt);
    free(text);
    if (rc) goto oom;
  } else if (r->kind == SRV_REQ_CHAT) {
    char *text = render_chat(a, r, err);
    if (!text) goto fail;
    int rc = tokenize_all(a->model, text, 1, 1, &j->prompt, &j->n_prompt);
    free(text);
    if (rc) goto oom;
  } else if (r->prompt) {
    if (tokenize_all(a->model, r->prompt, 1, 1, &j->prompt, &j->n_prompt)) goto oom;
    if (r->echo && !(rp->echo = srv_utf8_clean(r->prompt, strlen(r->prompt)))) goto oom;
  } else {
    for (int i = 0; i < r->n_prompt_ids; i++)
      if (r->prompt_ids[i] >= n_vocab) {
        srv_error_set(err, 400, "invalid_request_error", "prompt", NULL,
                      "token id %d is out of range (vocabulary of %d)", r->prompt_ids[i], n_vocab);
        goto fail;
      }
    j->prompt = malloc((size_t)r->n_prompt_ids * sizeof *j->prompt);
    if (!j->prompt) goto oom;
    memcpy(j->prompt, r->prompt_ids, (size_t)r->n_prompt_ids * sizeof *j->prompt);
    j->n_prompt = r->n_prompt_ids;
    if (r->echo) {
      int32_t need = 0;
      nllm_detokenize(a->model, j->prompt, j->n_prompt, 0, NULL, 0, &need);
      char *buf = malloc((size_t)need + 1);
      if (!buf || nllm_detokenize(a->model, j->prompt, j->n_prompt, 0, buf, need + 1, &need)) {
        free(buf);
        goto oom;
      }
      rp->echo = srv_utf8_clean(buf, (size_t)need);
      free(buf);
      if (!rp->echo) goto oom;
    }
  }
  if (j->n_prompt < 1) {
    srv_error_set(err, 400, "invalid_request_error",
                  r->kind == SRV_REQ_CHAT ? "messages" : "prompt", NULL,
                  "the prompt is empty (0 tokens)");
    goto fail;
  }
  int max = r->max_tokens >= 0 ? r->max_tokens : cfg->default_max_tokens;
  if (max < 0) max = a->n_ctx - j->n_prompt;
  if (max < 1 || j->n_prompt + max > a->n_ctx) {
    srv_error_set(err, 400, "invalid_request_error", r->max_tokens >= 0 ? "max_tokens" : "messages",
                  "context_length_exceeded",
                  "the prompt (%d tokens) plus max_tokens (%d) exceeds the context length of "
                  "%d tokens",
                  j->n_prompt, max, a->n_ctx);
    goto fail;
  }
  j->max_tokens = max;
  j->sp = cfg->sp;
  if (!isnan(r->temperature)) j->sp.temperature = (float)r->temperature;
  if (!isnan(r->top_p)) j->sp.top_p = (float)r->top_p;
  if (!isnan(r->min_p)) j->sp.min_p = (float)r->min_p;
  if (!isnan(r->repeat_penalty)) j->sp.repeat_penalty = (float)r->repeat_penalty;
  if (r->top_k >= 0) j->sp.top_k = r->top_k;
  if (r->has_seed) j->sp.seed = r->seed;
  if (j->constraint && is_schema) j->sp.json_schema = j->constraint;
  if (j->constraint && !is_schema) j->sp.grammar = j->constraint;
  if (forced) j->sp.grammar_root = srv_tools_grammar_root();
  j->presence_penalty = r->presence_penalty;
  j->frequency_penalty = r->frequency_penalty;
  j->logprobs = r->logprobs;
  j->top_logprobs = r->top_logprobs;
  j->ignore_eos = r->ignore_eos;
  for (int i = 0; i < r->n_stop; i++) {
    if (!(j->stop[i] = strdup(r->stop[i]))) goto oom;
    j->n_stop++;
  }
  *out = j;
  return 0;
oom:
  srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory or tokenizer failure: %s",
                nllm_last_error());
fail:
  free(constraint);
  if (j) {
    free(rp->echo);
    rp->echo = NULL;
    /* never submitted: only this reference */
    free(j->prompt);
    free(j->constraint);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    pthread_cond_destroy(&j->cond);
    free(j);
  }
  return -1;
}

/* ------------------------------------------------------------------ logprobs */

static cJSON *token_json(const srv_api *a, nllm_token t, float lp, int with_bytes) {
  char piece[256];
  int32_t n = 0;
  if (nllm_token_to_piece(a->model, t, 0, piece, sizeof piece, &n)) n = 0;
  char *clean = srv_utf8_clean(piece, (size_t)n);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "token", clean ? clean : "");
  free(clean);
  cJSON_AddNumberToObject(o, "logprob", lp);
  if (with_bytes) {
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (int i = 0; i < n; i++)
      cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)piece[i]));
  }
  return o;
}

/* chat shape: {"content": [{token, logprob, bytes, top_logprobs: [...]}]} */
static cJSON *chat_logprobs(const srv_api *a, const srv_logprob *lps, int n) {
  cJSON *o = cJSON_CreateObject(), *c = cJSON_AddArrayToObject(o, "content");
  for (int i = 0; i < n; i++) {
    cJSON *e = token_json(a, lps[i].token, lps[i].logprob, 1);
    cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
    for (int k = 0; k < lps[i].n_top; k++)
      cJSON_AddItemToArray(top, token_json(a, lps[i].top_tok[k], lps[i].top_lp[k], 1));
    cJSON_AddItemToArray(c, e);
  }
  return o;
}

/* legacy completions shape: tokens, token_logprobs, top_logprobs (maps), text_offset */
static cJSON *completion_logprobs(const srv_api *a, const srv_logprob *lps, int n, size_t off) {
  cJSON *o = cJSON_CreateObject();
  cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
  cJSON *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
  cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs");
  cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
  for (int i = 0; i < n; i++) {
    cJSON *t = token_json(a, lps[i].token, lps[i].logprob, 0);
    cJSON_AddItemToArray(toks, cJSON_CreateString(cJSON_GetObjectItem(t, "token")->valuestring));
    cJSON_Delete(t);
    cJSON_AddItemToArray(tlp, cJSON_CreateNumber(lps[i].logprob));
    cJSON *m = cJSON_CreateObject();
    for (int k = 0; k < lps[i].n_top; k++) {
      cJSON *tt = token_json(a, lps[i].top_tok[k], lps[i].top_lp[k], 0);
      const char *key = cJSON_GetObjectItem(tt, "token")->valuestring;
      if (!cJSON_GetObjectItemCaseSensitive(m, key))
        cJSON_AddNumberToObject(m, key, lps[i].top_lp[k]);
      cJSON_Delete(tt);
    }
    cJSON_AddItemToArray(top, m);
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + (i ? lps[i - 1].text_end : 0))));
  }
  return o;
}

static cJSON *usage_json(const srv_job *j) {
  cJSON *u = cJSON_CreateObject();
  cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
  cJSON_AddNumberToObject(u, "completion_tokens", j->n_gen);
  cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + j->n_gen);
  cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
  cJSON_AddNumberToObject(d, "cached_tokens", j->n_cached);
  return u;
}

static cJSON *head(const srv_reply *rp, const char *object) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", rp->id);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddNumberToObject(o, "created", (double)rp->created);
  cJSON_AddStringToObject(o, "model", rp->model ? rp->model : "");
  return o;
}

static char *print(cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

char *srv_api_response(const srv_api *a, const srv_reply *rp, const srv_job *j) {
  int chat = rp->kind == SRV_REQ_CHAT;
  cJSON *o = head(rp, chat ? "chat.completion" : "text_completion");
  cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
  cJSON_AddItemToArray(choices, c);
  cJSON_AddNumberToObject(c, "index", rp->index);
  const char *text = j->out ? j->out : "";
  const char *finish = srv_finish_name(j->finish);
  cJSON *calls =
      chat && rp->tools && j->finish == SRV_FINISH_STOP ? srv_tools_parse(rp, text) : NULL;
  if (calls) {
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddItemToObject(m, "content", cJSON_DetachItemFromObjectCaseSensitive(calls, "content"));
    cJSON_AddItemToObject(m, "tool_calls",
                          cJSON_DetachItemFromObjectCaseSensitive(calls, "tool_calls"));
    cJSON_Delete(calls);
    finish = "tool_calls";
  } else if (chat) {
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", text);
  } else if (rp->echo) {
    size_t el = strlen(rp->echo), tl = strlen(text);
    char *all = malloc(el + tl + 1);
    if (all) {
      memcpy(all, rp->echo, el);
      memcpy(all + el, text, tl + 1);
    }
    cJSON_AddStringToObject(c, "text", all ? all : text);
    free(all);
  } else {
    cJSON_AddStringToObject(c, "text", text);
  }
  if (j->logprobs)
    cJSON_AddItemToObject(
        c, "logprobs",
        chat ? chat_logprobs(a, j->lps, j->n_lps)
             : completion_logprobs(a, j->lps, j->n_lps, rp->echo ? strlen(rp->echo) : 0));
  else
    cJSON_AddNullToObject(c, "logprobs");
  cJSON_AddStringToObject(c, "finish_reason", finish);
  cJSON_AddItemToObject(o, "usage", usage_json(j));
  return print(o);
}

char *srv_api_chunk(const srv_api *a, const srv_reply *rp, const char *text, size_t n,
                    const srv_logprob *lps, int n_lps, int role, const char *finish) {
  int chat = rp->kind == SRV_REQ_CHAT;
  cJSON *o = head(rp, chat ? "chat.completion.chunk" : "text_completion");
  cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
  cJSON_AddItemToArray(choices, c);
  cJSON_AddNumberToObject(c, "index", rp->index);
  char *t = malloc(n + 1);
  if (t) {
    memcpy(t, text ? text : "", n);
    t[n] = 0;
  }
  if (chat) {
    cJSON *d = cJSON_AddObjectToObject(c, "delta");
    if (role) cJSON_AddStringToObject(d, "role", "assistant");
    if (role || n) cJSON_AddStringToObject(d, "content", t ? t : "");
  } else {
    cJSON_AddStringToObject(c, "text", t ? t : "");
  }
  free(t);
  if (n_lps)
    cJSON_AddItemToObject(
        c, "logprobs", chat ? chat_logprobs(a, lps, n_lps) : completion_logprobs(a, lps, n_lps, 0));
  else
    cJSON_AddNullToObject(c, "logprobs");
  if (finish)
    cJSON_AddStringToObject(c, "finish_reason", finish);
  else
    cJSON_AddNullToObject(c, "finish_reason");
  if (rp->include_usage) cJSON_AddNullToObject(o, "usage");
  return print(o);
}

char *srv_api_tool_chunk(const srv_api *a, const srv_reply *rp, const struct cJSON *call, int index,
                         int head_part, const srv_logprob *lps, int n_lps) {
  cJSON *o = head(rp, "chat.completion.chunk");
  cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
  cJSON_AddItemToArray(choices, c);
  cJSON_AddNumberToObject(c, "index", rp->index);
  cJSON *d = cJSON_AddObjectToObject(c, "delta"), *arr = cJSON_AddArrayToObject(d, "tool_calls");
  cJSON *tc = cJSON_CreateObject(), *fn = cJSON_CreateObject();
  cJSON_AddItemToArray(arr, tc);
  cJSON_AddNumberToObject(tc, "index", index);
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(call, "function");
  const cJSON *args = cJSON_GetObjectItemCaseSensitive(f, "arguments");
  if (head_part) {
    /* as OpenAI streams a call: id, type and name first, then the arguments' text */
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(call, "id");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
    cJSON_AddStringToObject(tc, "id", cJSON_IsString(id) ? id->valuestring : "");
    cJSON_AddStringToObject(tc, "type", "function");
    cJSON_AddStringToObject(fn, "name", cJSON_IsString(name) ? name->valuestring : "");
    cJSON_AddStringToObject(fn, "arguments", "");
  } else {
    cJSON_AddStringToObject(fn, "arguments", cJSON_IsString(args) ? args->valuestring : "{}");
  }
  cJSON_AddItemToObject(tc, "function", fn);
  if (n_lps)
    cJSON_AddItemToObject(c, "logprobs", chat_logprobs(a, lps, n_lps));
  else
    cJSON_AddNullToObject(c, "logprobs");
  cJSON_AddNullToObject(c, "finish_reason");
  if (rp->include_usage) cJSON_AddNullToObject(o, "usage");
  return print(o);
}

char *srv_api_usage_chunk(const srv_reply *rp, const srv_job *j) {
  cJSON *o = head(rp, rp->kind == SRV_REQ_CHAT ? "chat.completion.chunk" : "text_completion");
  cJSON_AddArrayToObject(o, "choices");
  cJSON_AddItemToObject(o, "usage", usage_json(j));
  return print(o);
}

/* ------------------------------------------------------------------ llama-server extras */

char *srv_api_tokenize(const srv_api *a, const char *body, size_t len, srv_error *err) {
  cJSON *in = cJSON_ParseWithLength(body, len);
  const cJSON *content = cJSON_GetObjectItemCaseSensitive(in, "content");
  const cJSON *add = cJSON_GetObjectItemCaseSensitive(in, "add_special");
  const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(in, "with_pieces");
  const cJSON *special = cJSON_GetObjectItemCaseSensitive(in, "parse_special");
  char *res = NULL;
  if (!in || !cJSON_IsObject(in)) {
    srv_error_set(err, 400, "invalid_request_error", NULL, NULL, "the body must be a JSON object");
  } else if (!cJSON_IsString(content)) {
    srv_error_set(err, 400, "invalid_request_error", "content", NULL, "'content' must be a string");
  } else if ((add && !cJSON_IsBool(add)) || (pieces && !cJSON_IsBool(pieces)) ||
             (special && !cJSON_IsBool(special))) {
    srv_error_set(err, 400, "invalid_request_error", NULL, NULL,
                  "add_special, with_pieces and parse_special must be booleans");
  } else {
    nllm_token *toks = NULL;
    int n = 0;
    if (tokenize_all(a->model, content->valuestring, cJSON_IsTrue(add),
                     special ? cJSON_IsTrue(special) : 1, &toks, &n)) {
      srv_error_set(err, 500, "server_error", NULL, NULL, "tokenizer: %s", nllm_last_error());
    } else {
      cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "tokens");
      for (int i = 0; i < n; i++) {
        if (!cJSON_IsTrue(pieces)) {
          cJSON_AddItemToArray(arr, cJSON_CreateNumber(toks[i]));
          continue;
        }
        cJSON *t = token_json(a, toks[i], 0, 0), *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "id", toks[i]);
        cJSON_AddStringToObject(e, "piece", cJSON_GetObjectItem(t, "token")->valuestring);
        cJSON_Delete(t);
        cJSON_AddItemToArray(arr, e);
      }
      res = print(o);
      free(toks);
    }
  }
  cJSON_Delete(in);
  return res;
}

char *srv_api_detokenize(const srv_api *a, const char *body, size_t len, srv_error *err) {
  cJSON *in = cJSON_ParseWithLength(body, len);
  const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(in, "tokens");
  char *res = NULL;
  int n_vocab = nllm_model_n_vocab(a->model);
  if (!in || !cJSON_IsObject(in) || !cJSON_IsArray(tokens)) {
    srv_error_set(err, 400, "invalid_request_error", "tokens", NULL,
                  "the body must be an object with a 'tokens' array");
    cJSON_Delete(in);
    return NULL;
  }
  int n = cJSON_GetArraySize(tokens);
  nllm_token *ids = malloc(((size_t)n + 1) * sizeof *ids);
  int bad = !ids;
  const cJSON *t;
  int i = 0;
  cJSON_ArrayForEach(t, tokens) {
    if (bad) break;
    if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
        t->valuedouble >= n_vocab) {
      srv_error_set(err, 400, "invalid_request_error", "tokens", NULL,
                    "tokens must be integers in [0, %d)", n_vocab);
      bad = 2;
      break;
    }
    ids[i++] = (nllm_token)t->valuedouble;
  }
  if (!bad) {
    int32_t need = 0;
    nllm_detokenize(a->model, ids, n, 0, NULL, 0, &need);
    char *buf = malloc((size_t)need + 1);
    if (buf && !nllm_detokenize(a->model, ids, n, 0, buf, need + 1, &need)) {
      char *clean = srv_utf8_clean(buf, (size_t)need);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "content", clean ? clean : "");
      free(clean);
      res = print(o);
    } else {
      srv_error_set(err, 500, "server_error", NULL, NULL, "detokenize: %s", nllm_last_error());
    }
    free(buf);
  } else if (bad == 1) {
    srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
  }
  free(ids);
  cJSON_Delete(in);
  return res;
}

char *srv_api_models(const srv_api *a, long long created) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
  cJSON_AddItemToArray(d, m);
  cJSON_AddStringToObject(m, "id", a->cfg->alias ? a->cfg->alias : "");
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", (double)created);
  cJSON_AddStringToObject(m, "owned_by", "nativellm");
  cJSON *meta = cJSON_AddObjectToObject(m, "meta");
  cJSON_AddStringToObject(meta, "arch", nllm_model_arch(a->model));
  cJSON_AddNumberToObject(meta, "n_vocab", nllm_model_n_vocab(a->model));
  cJSON_AddNumberToObject(meta, "n_ctx_train", nllm_model_n_ctx_train(a->model));
  cJSON_AddNumberToObject(meta, "n_ctx", a->n_ctx);
  cJSON_AddNumberToObject(meta, "n_params", (double)nllm_model_n_params(a->model));
  cJSON_AddNumberToObject(meta, "size", (double)nllm_model_size_bytes(a->model));
  return print(o);
}

char *srv_api_lora_adapters(const srv_api *a) {
  const srv_config *cfg = a->cfg;
  cJSON *arr = cJSON_CreateArray();
  for (int k = 0; k < cfg->n_lora; k++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", k);
    cJSON_AddStringToObject(o, "path", cfg->lora_paths[k]);
    cJSON_AddStringToObject(o, "name", nllm_lora_adapter_name(cfg->lora[k]));
    cJSON_AddNumberToObject(o, "scale", cfg->lora_scale[k]);
    cJSON_AddNumberToObject(o, "rank", nllm_lora_adapter_rank(cfg->lora[k]));
    cJSON_AddNumberToObject(o, "alpha", nllm_lora_adapter_alpha(cfg->lora[k]));
    const int32_t wt = nllm_lora_adapter_weight_type(cfg->lora[k]);
    cJSON_AddStringToObject(o, "weight_type", wt == NLLM_TYPE_NONE ? "mixed" : nllm_type_name(wt));
    cJSON_AddItemToArray(arr, o);
  }
  return print(arr);
}
