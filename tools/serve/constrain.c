/* Constrained output for requests: OpenAI's response_format ({"type": "json_object"} and
 * {"type": "json_schema", "json_schema": {"schema": ...}}) and llama-server's "grammar" (GBNF)
 * and "json_schema" fields become the sampler's grammar or JSON Schema (docs/grammar.md). A
 * grammar or schema the library cannot use is the client's error (400), found before the job
 * is queued. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

/* The schema text of a response_format, "" for plain text, NULL with err set when invalid. */
static char *response_format_schema(const char *json, srv_error *err) {
  cJSON *rf = cJSON_Parse(json);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
  char *out = NULL;
  int bad = 1;
  if (!cJSON_IsObject(rf) || !cJSON_IsString(type)) {
    srv_error_set(err, 400, "invalid_request_error", "response_format", NULL,
                  "response_format must be an object with a \"type\"");
  } else if (!strcmp(type->valuestring, "text")) {
    out = dup_str(""), bad = 0;
  } else if (!strcmp(type->valuestring, "json_object")) {
    /* llama-server also takes a "schema" here; without one, any JSON value */
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(rf, "schema");
    out = s ? cJSON_PrintUnformatted(s) : dup_str("{}"), bad = 0;
  } else if (!strcmp(type->valuestring, "json_schema")) {
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(js, "schema");
    if (!cJSON_IsObject(js))
      srv_error_set(err, 400, "invalid_request_error", "response_format", NULL,
                    "response_format.json_schema must be an object with a \"schema\"");
    else
      out = s ? cJSON_PrintUnformatted(s) : dup_str("{}"), bad = 0;
  } else {
    srv_error_set(err, 400, "invalid_request_error", "response_format", NULL,
                  "response_format type must be \"text\", \"json_object\" or \"json_schema\"");
  }
  if (!out && !bad) srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
  cJSON_Delete(rf);
  return out;
}

int srv_constraint(const srv_request *r, char **text, int *is_schema, srv_error *err) {
  *text = NULL;
  *is_schema = 0;
  char *schema = NULL;
  const char *param = NULL;
  if (r->response_format_json) {
    if (!(schema = response_format_schema(r->response_format_json, err))) return -1;
    if (!*schema) free(schema), schema = NULL;
    param = "response_format";
  }
  if (r->json_schema_json) {
    if (schema) {
      free(schema);
      srv_error_set(err, 400, "invalid_request_error", "json_schema", NULL,
                    "give response_format or json_schema, not both");
      return -1;
    }
    if (!(schema = dup_str(r->json_schema_json))) goto oom;
    param = "json_schema";
  }
  if (r->grammar && *r->grammar) {
    if (schema) {
      free(schema);
      srv_error_set(err, 400, "invalid_request_error", "grammar", NULL,
                    "give a grammar or a JSON schema (response_format, json_schema), not both");
      return -1;
    }
    nllm_status st = nllm_grammar_validate(r->grammar, NULL);
    if (st) {
      srv_error_set(err, 400, "invalid_request_error", "grammar", NULL, "%s", nllm_last_error());
      return -1;
    }
    if (!(*text = dup_str(r->grammar))) goto oom;
    return 0;
  }
  if (!schema) return 0;
  int32_t n = 0;
  nllm_status st = nllm_json_schema_to_grammar(schema, NULL, 0, &n);
  if (st != NLLM_ERR_BUFFER_TOO_SMALL) {
    free(schema);
    srv_error_set(err, 400, "invalid_request_error", param, NULL, "%s",
                  st ? nllm_last_error() : "empty grammar");
    return -1;
  }
  *text = schema;
  *is_schema = 1;
  return 0;
oom:
  srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
  return -1;
}
