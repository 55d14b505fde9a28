/* Tool calling for chat requests (OpenAI's `tools` and `tool_choice`): the checks of both
 * fields, the tool-call format the model's template teaches, the grammar that makes a
 * `required` or named choice produce a call whose arguments fit the function's parameters
 * schema, and what of a streamed reply may go out as content before the calls are known. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

/* Where the rule names of nllm_json_schema_to_grammar cannot reach (they never start with
 * "nllm-"): the start rule that wraps the call object in the format's markers. */
#define WRAP_RULE "nllm-tool-call"

static const char *const markers[] = {
    [SRV_TOOLS_HERMES] = "<tool_call>",
    [SRV_TOOLS_MISTRAL] = "[TOOL_CALLS]",
    [SRV_TOOLS_LLAMA3] = "<|python_tag|>",
};

const char *srv_tools_format_name(srv_tools_format f) {
  switch (f) {
    case SRV_TOOLS_HERMES: return "hermes";
    case SRV_TOOLS_LLAMA3: return "llama3";
    case SRV_TOOLS_MISTRAL: return "mistral";
    default: return NULL;
  }
}

/* The format a template's literals teach; hermes when none is recognized, as it is the one
 * generic tool-calling fine-tunes (ChatML) use. */
srv_tools_format srv_tools_detect(const char *tmpl) {
  if (strstr(tmpl, "<tool_call>")) return SRV_TOOLS_HERMES;
  if (strstr(tmpl, "[TOOL_CALLS]")) return SRV_TOOLS_MISTRAL;
  if (strstr(tmpl, "<|start_header_id|>") || strstr(tmpl, "<|python_tag|>"))
    return SRV_TOOLS_LLAMA3;
  return SRV_TOOLS_HERMES;
}

#define BAD(param, ...)                                                         \
  do {                                                                          \
    srv_error_set(err, 400, "invalid_request_error", param, NULL, __VA_ARGS__); \
    goto fail;                                                                  \
  } while (0)

/* A tool's function name; NULL when the tool is not {"type": "function", "function": {...}}. */
static const cJSON *tool_function(const cJSON *tool) {
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(tool, "type");
  const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function");
  if (!cJSON_IsObject(tool) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
      !cJSON_IsObject(fn))
    return NULL;
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
  if (!cJSON_IsString(name) || !name->valuestring[0]) return NULL;
  return fn;
}

int srv_tools_choice(const srv_request *r, srv_tools_mode *mode, char **named, srv_error *err) {
  *mode = SRV_TOOLS_OFF;
  *named = NULL;
  cJSON *tools = NULL, *choice = NULL;
  int n_tools = 0;
  if (r->tools_json) {
    tools = cJSON_Parse(r->tools_json);
    if (!cJSON_IsArray(tools)) BAD("tools", "'tools' must be an array of tools");
    n_tools = cJSON_GetArraySize(tools);
    if (n_tools > 1024) BAD("tools", "too many tools (at most 1024)");
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, tools) {
      const cJSON *fn = tool_function(t);
      if (!fn)
        BAD("tools",
            "tools[%d] must be {\"type\": \"function\", \"function\": {\"name\": ..., "
            "\"parameters\": {...}}}",
            i);
      const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
      if (params && !cJSON_IsObject(params) && !cJSON_IsNull(params))
        BAD("tools", "tools[%d].function.parameters must be a JSON Schema object", i);
      i++;
    }
  }
  if (n_tools) *mode = SRV_TOOLS_AUTO;
  if (r->tool_choice_json) {
    choice = cJSON_Parse(r->tool_choice_json);
    if (cJSON_IsString(choice)) {
      const char *c = choice->valuestring;
      if (!strcmp(c, "none"))
        *mode = SRV_TOOLS_OFF;
      else if (!strcmp(c, "auto"))
        ;
      else if (!strcmp(c, "required"))
        *mode = SRV_TOOLS_REQUIRED;
      else
        BAD("tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or a function");
    } else {
      const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
      const cJSON *type = cJSON_GetObjectItemCaseSensitive(choice, "type");
      if (!cJSON_IsObject(choice) || !cJSON_IsString(type) ||
          strcmp(type->valuestring, "function") || !cJSON_IsString(name))
        BAD("tool_choice",
            "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
            "\"function\": {\"name\": ...}}");
      int found = 0;
      const cJSON *t;
      cJSON_ArrayForEach(t, tools) {
        const cJSON *tn = cJSON_GetObjectItemCaseSensitive(tool_function(t), "name");
        if (!strcmp(tn->valuestring, name->valuestring)) found = 1;
      }
      if (!found)
        BAD("tool_choice", "tool_choice names the function '%.100s', which is not in 'tools'",
            name->valuestring);
      *mode = SRV_TOOLS_NAMED;
      if (!(*named = strdup(name->valuestring))) BAD(NULL, "out of memory");
    }
    if (*mode == SRV_TOOLS_REQUIRED && !n_tools)
      BAD("tool_choice", "tool_choice \"required\" needs a non-empty 'tools'");
  }
  cJSON_Delete(tools);
  cJSON_Delete(choice);
  return 0;
fail:
  cJSON_Delete(tools);
  cJSON_Delete(choice);
  free(*named);
  *named = NULL;
  return -1;
}

/* The JSON Schema of one call object of a tool: {"name": const, args_key: parameters}. */
static cJSON *call_schema(const cJSON *fn, const char *args_key) {
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
  cJSON *s = cJSON_CreateObject();
  cJSON_AddStringToObject(s, "type", "object");
  cJSON *props = cJSON_AddObjectToObject(s, "properties");
  cJSON *name = cJSON_AddObjectToObject(props, "name");
  cJSON_AddStringToObject(name, "const", cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring);
  const cJSON *props_in = cJSON_GetObjectItemCaseSensitive(params, "properties");
  /* a function that declares no parameters takes none (an open object would let a model
   * ramble through made-up keys) */
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(params, "type");
  int none = !cJSON_IsObject(params) ||
             ((!type || (cJSON_IsString(type) && !strcmp(type->valuestring, "object"))) &&
              (!props_in || cJSON_GetArraySize(props_in) == 0) &&
              !cJSON_GetObjectItemCaseSensitive(params, "additionalProperties") &&
              !cJSON_GetObjectItemCaseSensitive(params, "anyOf") &&
              !cJSON_GetObjectItemCaseSensitive(params, "oneOf") &&
              !cJSON_GetObjectItemCaseSensitive(params, "allOf") &&
              !cJSON_GetObjectItemCaseSensitive(params, "$ref"));
  if (!none) {
    cJSON_AddItemToObject(props, args_key, cJSON_Duplicate(params, 1));
  } else {
    /* no parameters: the function takes an empty object */
    cJSON *a = cJSON_AddObjectToObject(props, args_key);
    cJSON_AddStringToObject(a, "type", "object");
    cJSON_AddObjectToObject(a, "properties");
    cJSON_AddFalseToObject(a, "additionalProperties");
  }
  cJSON *req = cJSON_AddArrayToObject(s, "required");
  cJSON_AddItemToArray(req, cJSON_CreateString("name"));
  cJSON_AddItemToArray(req, cJSON_CreateString(args_key));
  cJSON_AddFalseToObject(s, "additionalProperties");
  return s;
}

int srv_tools_grammar(const srv_request *r, srv_tools_mode mode, const char *named,
                      srv_tools_format fmt, char **grammar, srv_error *err) {
  *grammar = NULL;
  cJSON *tools = cJSON_Parse(r->tools_json), *any = cJSON_CreateObject();
  cJSON *alts = cJSON_AddArrayToObject(any, "anyOf");
  char *schema = NULL, *g = NULL;
  const char *args_key = fmt == SRV_TOOLS_LLAMA3 ? "parameters" : "arguments";
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    const cJSON *fn = tool_function(t);
    if (!fn) continue;
    if (mode == SRV_TOOLS_NAMED &&
        strcmp(cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring, named))
      continue;
    cJSON_AddItemToArray(alts, call_schema(fn, args_key));
  }
  schema =
      cJSON_PrintUnformatted(cJSON_GetArraySize(alts) == 1 ? cJSON_GetArrayItem(alts, 0) : any);
  int32_t n = 0;
  nllm_status st = schema ? nllm_json_schema_to_grammar(schema, NULL, 0, &n) : NLLM_ERR_NOMEM;
  if (st != NLLM_ERR_BUFFER_TOO_SMALL)
    BAD("tools", "a function's parameters cannot constrain the output: %s",
        st ? nllm_last_error() : "empty grammar");
  /* the call object in the format's markers; Mistral's [TOOL_CALLS] is a control token the
   * grammar cannot spell, so its constrained output starts at the list (the reply's parser
   * puts the marker back) */
  static const char *const wrap[] = {
      [SRV_TOOLS_HERMES] = WRAP_RULE " ::= \"<tool_call>\\n\" root \"\\n</tool_call>\"\n",
      [SRV_TOOLS_MISTRAL] = WRAP_RULE " ::= \"[\" root \"]\"\n",
      [SRV_TOOLS_LLAMA3] = WRAP_RULE " ::= root\n",
  };
  size_t wl = strlen(wrap[fmt]);
  if (!(g = malloc((size_t)n + 1 + wl))) BAD(NULL, "out of memory");
  if (nllm_json_schema_to_grammar(schema, g, n + 1, &n))
    BAD("tools", "a function's parameters cannot constrain the output: %s", nllm_last_error());
  memcpy(g + n, wrap[fmt], wl + 1);
  if (nllm_grammar_validate(g, WRAP_RULE))
    BAD("tools", "a function's parameters cannot constrain the output: %s", nllm_last_error());
  *grammar = g;
  g = NULL;
  free(schema);
  cJSON_Delete(any);
  cJSON_Delete(tools);
  return 0;
fail:
  if (err->status == 400 && !strcmp(err->message, "out of memory")) err->status = 500;
  free(g);
  free(schema);
  cJSON_Delete(any);
  cJSON_Delete(tools);
  return -1;
}

const char *srv_tools_grammar_root(void) {
  return WRAP_RULE;
}

cJSON *srv_tools_parse(const srv_reply *rp, const char *text) {
  const char *prefix = rp->tools_prefix ? rp->tools_prefix : "";
  size_t pl = strlen(prefix), tl = strlen(text);
  char *all = malloc(pl + tl + 1);
  if (!all) return NULL;
  memcpy(all, prefix, pl);
  memcpy(all + pl, text, tl + 1);
  int32_t need = 0;
  const char *fmt = srv_tools_format_name(rp->tools);
  cJSON *res = NULL;
  nllm_status st = nllm_tool_calls_parse(all, fmt, NULL, 0, &need);
  if (st == NLLM_ERR_BUFFER_TOO_SMALL) {
    char *buf = malloc((size_t)need + 1);
    if (buf && !nllm_tool_calls_parse(all, fmt, buf, need + 1, &need)) res = cJSON_Parse(buf);
    free(buf);
  }
  free(all);
  const cJSON *calls = cJSON_GetObjectItemCaseSensitive(res, "tool_calls");
  if (!cJSON_IsArray(calls) || cJSON_GetArraySize(calls) == 0) {
    cJSON_Delete(res);
    return NULL;
  }
  return res;
}

/* Does text[i..n) begin with s, or (at the end of the text) with a part of s that more output
 * could complete? */
static int starts_or_may(const char *text, size_t i, size_t n, const char *s) {
  size_t sl = strlen(s), k = n - i < sl ? n - i : sl;
  return memcmp(text + i, s, k) == 0;
}

size_t srv_tools_content_end(const srv_reply *rp, const char *text, size_t n) {
  if (rp->tools_forced) return 0;
  if (rp->tools == SRV_TOOLS_LLAMA3) {
    /* a call is the whole reply: hold a reply that starts (or may start) like one */
    size_t i = 0;
    while (i < n && strchr(" \t\r\n", text[i])) i++;
    if (i == n || text[i] == '{' || starts_or_may(text, i, n, markers[SRV_TOOLS_LLAMA3])) return 0;
    return n;
  }
  const char *m = markers[rp->tools];
  for (size_t i = 0; i < n; i++)
    if (text[i] == m[0] && starts_or_may(text, i, n, m)) return i;
  return n;
}
