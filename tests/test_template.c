/* The Jinja chat-template interpreter against Python's jinja2: every case of
 * tests/data/templates/expected/manifest.json (written by tools/gen_template_expected.py) is
 * rendered through the public ABI and compared byte for byte, renderings that jinja2 refuses
 * must fail here too. Also: hostile templates end with a status in bounded time, syntax errors
 * name line and column, the family-table fallback agrees with the interpreter where it is used,
 * the model's own template and special tokens are used, and tool calls are parsed. */
#include <cjson/cJSON.h>
#include <time.h>

#include "nativellm.h"
#include "testutil.h"

#define TDIR "tests/data/templates/"

static cJSON *manifest(void) {
  static cJSON *m;
  if (!m) {
    char *t = read_file(TDIR "expected/manifest.json", NULL);
    ck_assert_msg(t, "cannot read " TDIR "expected/manifest.json");
    m = cJSON_Parse(t);
    free(t);
    ck_assert(m);
  }
  return m;
}

/* Template text of a manifest source; NULL (after a SKIP line) when test data is absent. */
static char *template_text(const char *src) {
  char path[1024];
  if (strncmp(src, "file:", 5) == 0) {
    snprintf(path, sizeof path, TDIR "%s", src + 5);
    char *t = read_file(path, NULL);
    ck_assert_msg(t, "cannot read %s", path);
    return t;
  }
  if (strncmp(src, "testdata-json:", 14) == 0) {
    if (!testdata_path(path, sizeof path, src + 14)) return NULL;
    char *t = read_file(path, NULL);
    cJSON *j = cJSON_Parse(t);
    free(t);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    ck_assert(cJSON_IsString(ct));
    char *r = strdup(ct->valuestring);
    cJSON_Delete(j);
    return r;
  }
  ck_assert(strncmp(src, "testdata-gguf:", 14) == 0);
  if (!testdata_path(path, sizeof path, src + 14)) return NULL;
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.vocab_only = 1;
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(path, &mp, &m), NLLM_OK);
  const char *t = NULL;
  ck_assert_int_eq(nllm_model_meta_str(m, "tokenizer.chat_template", &t), NLLM_OK);
  char *r = strdup(t);
  nllm_model_free(m);
  return r;
}

/* Renders; returns the status and the text (malloc'ed) or the error message in *out. */
static nllm_status render(const nllm_model *model, const char *tmpl, const char *msgs,
                          const char *tools, const char *vars, int agp, char **out) {
  nllm_chat_template_params p;
  nllm_chat_template_params_init(&p);
  p.template_text = tmpl;
  p.messages_json = msgs;
  p.tools_json = tools;
  p.vars_json = vars;
  p.add_generation_prompt = agp;
  p.now = (int64_t)cJSON_GetObjectItemCaseSensitive(manifest(), "now")->valuedouble;
  int32_t n = 0;
  nllm_status st = nllm_chat_template_render(model, &p, NULL, 0, &n);
  if (st == NLLM_ERR_BUFFER_TOO_SMALL) {
    *out = malloc((size_t)n + 1);
    st = nllm_chat_template_render(model, &p, *out, n + 1, &n);
    ck_assert_int_eq(st, NLLM_OK);
    ck_assert_int_eq((int)strlen(*out), n);
    return st;
  }
  ck_assert_int_ne(st, NLLM_OK); /* an empty rendering still needs room for the NUL */
  *out = strdup(nllm_last_error());
  return st;
}

static void report_diff(const char *what, const char *got, const char *want) {
  size_t i = 0;
  while (got[i] && got[i] == want[i]) i++;
  size_t from = i > 40 ? i - 40 : 0;
  fprintf(stderr, "MISMATCH %s at byte %zu:\n  got:  ...%.80s\n  want: ...%.80s\n", what, i,
          got + from, want + from);
}

/* Checks a result against a manifest entry; returns 1 when it matches. */
static int check_case(const char *what, nllm_status st, const char *got, const cJSON *c,
                      const char *want) {
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(c, "error");
  if (err) {
    if (st == NLLM_OK) {
      fprintf(stderr, "MISMATCH %s: jinja2 fails (%s) but this rendered\n", what, err->valuestring);
      return 0;
    }
    if (*err->valuestring && !strstr(got, err->valuestring)) {
      fprintf(stderr, "MISMATCH %s: error '%s' does not name '%s'\n", what, got, err->valuestring);
      return 0;
    }
    return 1;
  }
  if (st != NLLM_OK) {
    fprintf(stderr, "MISMATCH %s: failed: %s\n", what, got);
    return 0;
  }
  if (strcmp(got, want) != 0) {
    report_diff(what, got, want);
    return 0;
  }
  return 1;
}

START_TEST(real_templates_match_jinja2) {
  char *convs_text = read_file(TDIR "conversations.json", NULL);
  cJSON *convs = cJSON_Parse(convs_text);
  free(convs_text);
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(manifest(), "cases"), *c;
  int n = 0, bad = 0, skipped = 0;
  cJSON_ArrayForEach(c, cases) {
    const char *src = cJSON_GetObjectItemCaseSensitive(c, "template")->valuestring;
    const char *cname = cJSON_GetObjectItemCaseSensitive(c, "conversation")->valuestring;
    int agp = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
    char *tmpl = template_text(src);
    if (!tmpl) {
      skipped++;
      continue;
    }
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(convs, cname);
    char *msgs = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(conv, "messages"));
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(conv, "tools");
    char *tools = tj ? cJSON_PrintUnformatted(tj) : NULL;
    char *vars = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, "vars"));
    char *got = NULL, *want = NULL;
    nllm_status st = render(NULL, tmpl, msgs, tools, vars, agp, &got);
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    if (exp) {
      char path[512];
      snprintf(path, sizeof path, TDIR "expected/%s", exp->valuestring);
      want = read_file(path, NULL);
      ck_assert_msg(want, "cannot read %s", path);
    }
    char what[512];
    snprintf(what, sizeof what, "%s / %s / agp=%d", src, cname, agp);
    bad += !check_case(what, st, got, c, want);
    n++;
    free(tmpl), free(msgs), free(tools), free(vars), free(got), free(want);
  }
  cJSON_Delete(convs);
  fprintf(stderr, "templates: %d renderings compared, %d skipped, %d mismatches\n", n, skipped,
          bad);
  ck_assert_int_gt(n, 150);
  ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(features_match_jinja2) {
  char *text = read_file(TDIR "features.json", NULL);
  cJSON *feats = cJSON_Parse(text);
  free(text);
  const cJSON *exp = cJSON_GetObjectItemCaseSensitive(manifest(), "features"), *f;
  int n = 0, bad = 0;
  cJSON_ArrayForEach(f, feats) {
    const char *name = cJSON_GetObjectItemCaseSensitive(f, "name")->valuestring;
    const cJSON *e = NULL, *x;
    cJSON_ArrayForEach(
        x, exp) if (!strcmp(cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring, name)) e = x;
    ck_assert_msg(e, "%s: no expected entry (rerun tools/gen_template_expected.py)", name);
    /* the variables go in as template variables; messages stays an (empty) list */
    char *vars = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(f, "vars"));
    char *got = NULL;
    nllm_status st = render(NULL, cJSON_GetObjectItemCaseSensitive(f, "template")->valuestring,
                            "[]", NULL, vars, 0, &got);
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(e, "expected_text");
    bad += !check_case(name, st, got, e, want ? want->valuestring : NULL);
    n++;
    free(vars), free(got);
  }
  cJSON_Delete(feats);
  ck_assert_int_gt(n, 40);
  ck_assert_int_eq(bad, 0);
}
END_TEST

/* ---------------------------------------------------------------- hostile templates */

static const struct {
  const char *tmpl;
  nllm_status want;
  const char *msg;
} hostile[] = {
    {"{% for i in range(100000000) %}x{% endfor %}", NLLM_ERR_ABORTED, "loop limit"},
    {"{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
     NLLM_ERR_ABORTED, "limit"},
    {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NLLM_ERR_ABORTED, "nested deeper"},
    {"{{ 'x' * 100000000000 }}", NLLM_ERR_ABORTED, "output limit"},
    {"{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(60) %}{% set ns.s = ns.s + "
     "ns.s %}{% endfor %}{{ ns.s }}",
     NLLM_ERR_ABORTED, "limit"},
    {"{% for i in range(1000000) %}{{ 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy' }}{% endfor "
     "%}",
     NLLM_ERR_ABORTED, "limit"},
    {"{% macro f() %}{% for i in range(1000) %}{{ caller() }}{% endfor %}{% endmacro %}"
     "{% call f() %}{% call f() %}{% call f() %}z{% endcall %}{% endcall %}{% endcall %}",
     NLLM_ERR_ABORTED, "limit"},
};

START_TEST(hostile_templates_end) {
  char *got = NULL;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  nllm_status st = render(NULL, hostile[_i].tmpl, "[]", NULL, NULL, 0, &got);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double s = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
  /* Which bound stops a runaway first (steps, time or the memory cap) depends on the host's
   * speed; any of them is a correct end. */
  ck_assert_msg(
      st == hostile[_i].want || (st == NLLM_ERR_NOMEM && !strcmp(hostile[_i].msg, "limit")),
      "%s: %s (%s)", hostile[_i].tmpl, got, nllm_status_name(st));
  ck_assert_msg(strstr(got, hostile[_i].msg), "'%s' does not say '%s'", got, hostile[_i].msg);
  ck_assert_msg(s < 10.0, "%s took %.1f s", hostile[_i].tmpl, s);
  free(got);
}
END_TEST

START_TEST(deep_nesting_is_an_error) {
  size_t n = 100000;
  char *t = malloc(2 * n + 16);
  strcpy(t, "{{ ");
  for (size_t i = 0; i < n; i++) t[3 + i] = '(';
  t[3 + n] = '1';
  for (size_t i = 0; i < n; i++) t[4 + n + i] = ')';
  strcpy(t + 4 + 2 * n, " }}");
  char *got = NULL;
  ck_assert_int_eq(render(NULL, t, "[]", NULL, NULL, 0, &got), NLLM_ERR_FORMAT);
  ck_assert(strstr(got, "nesting deeper"));
  free(got);
  /* nested blocks too */
  size_t k = 0;
  for (int i = 0; i < 5000; i++) k += (size_t)sprintf(t + k, "{%% if 1 %%}");
  ck_assert_int_eq(render(NULL, t, "[]", NULL, NULL, 0, &got), NLLM_ERR_FORMAT);
  ck_assert(strstr(got, "nesting deeper"));
  free(got);
  free(t);
}
END_TEST

static const struct {
  const char *tmpl;
  nllm_status want;
  const char *msg;
} bad_syntax[] = {
    {"hello {% if x %}", NLLM_ERR_FORMAT, "line 1 column 17: missing '{% endif %}'"},
    {"a\nb {{ x + }}", NLLM_ERR_FORMAT, "line 2 column 10"},
    {"{% include 'other.jinja' %}", NLLM_ERR_FORMAT, "unsupported statement 'include'"},
    {"{% extends 'base' %}", NLLM_ERR_FORMAT, "unsupported statement 'extends'"},
    {"{{ x | nosuchfilter }}", NLLM_ERR_INVALID_ARG, "unknown filter 'nosuchfilter'"},
    {"{{ 1 is nosuchtest }}", NLLM_ERR_INVALID_ARG, "unknown test"},
    {"{{ 'unterminated }}", NLLM_ERR_FORMAT, "unterminated string"},
    {"{# comment", NLLM_ERR_FORMAT, "unterminated comment"},
    {"{{ x.y.z }}", NLLM_ERR_INVALID_ARG, "undefined"},
    {"{{ 1 + 'a' }}", NLLM_ERR_INVALID_ARG, "unsupported operand types for +: 'int' and 'str'"},
    {"{% break %}", NLLM_ERR_INVALID_ARG, "outside a loop"},
    {"{{ raise_exception('Conversation roles must alternate') }}", NLLM_ERR_INVALID_ARG,
     "Conversation roles must alternate"},
    {"{{ x|batch(2) }}", NLLM_ERR_UNSUPPORTED, "not supported"},
    {"{{ '%s' % 1 }}", NLLM_ERR_UNSUPPORTED, "not supported"},
    {"{% for x in none %}{% endfor %}", NLLM_ERR_INVALID_ARG, "not iterable"},
    {"{% set l = [] %}{{ l.append(1) }}", NLLM_ERR_INVALID_ARG, "immutable"},
};

START_TEST(errors_name_the_problem) {
  char *got = NULL;
  nllm_status st = render(NULL, bad_syntax[_i].tmpl, "[]", NULL, NULL, 0, &got);
  ck_assert_msg(st == bad_syntax[_i].want, "%s: %s (%s)", bad_syntax[_i].tmpl, got,
                nllm_status_name(st));
  ck_assert_msg(strstr(got, bad_syntax[_i].msg), "'%s' does not say '%s'", got, bad_syntax[_i].msg);
  free(got);
}
END_TEST

START_TEST(bad_input_json) {
  char *got = NULL;
  ck_assert_int_eq(render(NULL, "x", "[{\"role\": ", NULL, NULL, 0, &got), NLLM_ERR_INVALID_ARG);
  ck_assert(strstr(got, "messages is not valid JSON"));
  free(got);
  ck_assert_int_eq(render(NULL, "x", "{}", NULL, NULL, 0, &got), NLLM_ERR_INVALID_ARG);
  free(got);
  ck_assert_int_eq(render(NULL, "x", "[]", "[1,]", NULL, 0, &got), NLLM_ERR_INVALID_ARG);
  free(got);
  ck_assert_int_eq(render(NULL, "x", "[]", NULL, "[1]", 0, &got), NLLM_ERR_INVALID_ARG);
  free(got);
  nllm_chat_template_params p;
  nllm_chat_template_params_init(&p);
  int32_t n;
  ck_assert_int_eq(nllm_chat_template_render(NULL, &p, NULL, 0, &n), NLLM_ERR_INVALID_ARG);
  p.messages_json = "[]";
  ck_assert_int_eq(nllm_chat_template_render(NULL, &p, NULL, 0, &n), NLLM_ERR_INVALID_ARG);
  p.template_text = "abc";
  p.struct_size = 3;
  ck_assert_int_eq(nllm_chat_template_render(NULL, &p, NULL, 0, &n), NLLM_ERR_INVALID_ARG);
  p.struct_size = sizeof p;
  p.max_output_bytes = 2;
  ck_assert_int_eq(nllm_chat_template_render(NULL, &p, NULL, 0, &n), NLLM_ERR_ABORTED);
}
END_TEST

/* ---------------------------------------------------------------- the model's template */

START_TEST(model_template_and_tokens) {
  char path[1024];
  if (!testdata_path(path, sizeof path, "tokenizers/hf/llama3/tokenizer.json")) return;
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.vocab_only = 1;
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(path, &mp, &m), NLLM_OK);
  char *got = NULL;
  const char *msgs =
      "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U\"}]";
  ck_assert_int_eq(render(m, NULL, msgs, NULL, NULL, 1, &got), NLLM_OK);
  ck_assert_str_eq(got,
                   "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n");
  free(got);
  /* a variable overrides the model's token */
  ck_assert_int_eq(render(m, NULL, msgs, NULL, "{\"bos_token\": \"[B]\"}", 0, &got), NLLM_OK);
  ck_assert(strncmp(got, "[B]<|start_header_id|>", 22) == 0);
  free(got);
  /* nllm_chat_format keeps its contract: the interpreter's text without the leading BOS */
  nllm_chat_message cm[] = {{"system", "S"}, {"user", "U"}};
  char buf[512];
  int32_t n = 0;
  ck_assert_int_eq(nllm_chat_format(m, cm, 2, 1, buf, sizeof buf, &n), NLLM_OK);
  ck_assert_str_eq(buf,
                   "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n");
  nllm_model_free(m);
}
END_TEST

/* The family table is kept as a fallback only where it renders what the interpreter renders:
 * each family name against the real template of that family, with the generation prompt as
 * nllm chat asks for it. (Without it, Llama 3.0's template still ends with the assistant header
 * and Phi-3.5's with eos_token; DeepSeek-R1's generation prompt opens a <think> block that the
 * "deepseek3" family, DeepSeek V3's format, does not.) */
static const struct {
  const char *family, *src;
  const char *eos; /* the eos_token text the template writes (the table writes the model's) */
} fallback_pairs[] = {
    {"llama3", "testdata-json:tokenizers/hf/llama3/tokenizer_config.json", NULL},
    {"chatml", "testdata-json:tokenizers/hf/qwen2.5/tokenizer_config.json", NULL},
    {"phi3", "file:microsoft-Phi-3.5-mini-instruct.jinja", NULL},
    {"mistral-v7", "file:mistralai-Mistral-Large-Instruct-2411.jinja", "</s>"},
};

START_TEST(family_fallback_agrees) {
  char *tmpl = template_text(fallback_pairs[_i].src);
  if (!tmpl) return;
  static const nllm_chat_message conv[] = {
      {"system", "You are a helpful assistant."},
      {"user", "Hello! Who are you?"},
      {"assistant", "I am an AI assistant."},
      {"user", "What is 2+2?"},
  };
  char a[4096], b[4096];
  int32_t na = 0, nb = 0;
  ck_assert_int_eq(
      nllm_chat_apply_template(fallback_pairs[_i].family, conv, 4, 1, a, sizeof a, &na), NLLM_OK);
  if (!fallback_pairs[_i].eos) {
    ck_assert_int_eq(nllm_chat_apply_template(tmpl, conv, 4, 1, b, sizeof b, &nb), NLLM_OK);
  } else {
    char msgs[1024], vars[128];
    int len = snprintf(msgs, sizeof msgs, "[");
    for (int i = 0; i < 4; i++)
      len += snprintf(msgs + len, sizeof msgs - (size_t)len,
                      "%s{\"role\": \"%s\", \"content\": \"%s\"}", i ? ", " : "", conv[i].role,
                      conv[i].content);
    snprintf(msgs + len, sizeof msgs - (size_t)len, "]");
    snprintf(vars, sizeof vars, "{\"eos_token\": \"%s\"}", fallback_pairs[_i].eos);
    nllm_chat_template_params p;
    nllm_chat_template_params_init(&p);
    p.add_generation_prompt = 1;
    p.template_text = tmpl;
    p.messages_json = msgs;
    p.vars_json = vars;
    ck_assert_int_eq(nllm_chat_template_render(NULL, &p, b, sizeof b, &nb), NLLM_OK);
  }
  ck_assert_msg(strcmp(a, b) == 0, "%s:\n table: %s\n jinja: %s", fallback_pairs[_i].family, a, b);
  free(tmpl);
}
END_TEST

/* ---------------------------------------------------------------- tool calls */

static char *parse_calls(const char *text, const char *fmt) {
  int32_t n = 0;
  nllm_status st = nllm_tool_calls_parse(text, fmt, NULL, 0, &n);
  ck_assert_int_eq(st, NLLM_ERR_BUFFER_TOO_SMALL);
  char *buf = malloc((size_t)n + 1);
  ck_assert_int_eq(nllm_tool_calls_parse(text, fmt, buf, n + 1, &n), NLLM_OK);
  return buf;
}

/* The calls as "name(arguments)|..." and the content, for compact assertions. */
static void calls_summary(const char *json, char *out, size_t cap, char *content, size_t ccap) {
  cJSON *j = cJSON_Parse(json);
  ck_assert_msg(j, "not JSON: %s", json);
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content"), *call;
  snprintf(content, ccap, "%s", cJSON_IsString(c) ? c->valuestring : "<null>");
  out[0] = 0;
  cJSON_ArrayForEach(call, cJSON_GetObjectItemCaseSensitive(j, "tool_calls")) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(call, "id");
    ck_assert(cJSON_IsString(id) && strlen(id->valuestring) == 9);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(call, "type")->valuestring, "function");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    const char *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments")->valuestring;
    cJSON *parsed = cJSON_Parse(args); /* arguments is JSON text */
    ck_assert_msg(parsed, "arguments not JSON: %s", args);
    cJSON_Delete(parsed);
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "%s%s(%s)", l ? "|" : "",
             cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring, args);
  }
  cJSON_Delete(j);
}

static const struct {
  const char *text, *fmt, *calls, *content;
} tool_cases[] = {
    {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
     NULL, "get_weather({\"city\": \"Paris\"})", "<null>"},
    {"Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
     "{\"name\": \"b\", \"arguments\": {\"x\": [1, 2.5, null]}}\n</tool_call>",
     "hermes", "a({})|b({\"x\": [1, 2.5, null]})", "Let me check."},
    {"<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": 1}}", NULL, "a({\"k\": 1})", "<null>"},
    {"<tool_call>{\"name\": \"a\", \"arguments\": {\"k\": </tool_call>", NULL, "",
     "<tool_call>{\"name\": \"a\", \"arguments\": {\"k\": </tool_call>"},
    {"{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}", NULL,
     "get_weather({\"city\": \"Rome\"})", "<null>"},
    {"<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"parameters\": "
     "{\"q\": \"é\"}}",
     "llama3", "f({})|g({\"q\": \"é\"})", "<null>"},
    {"[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}, {\"name\": \"neg\", "
     "\"arguments\": {\"a\": 1}}]",
     NULL, "add({\"a\": 2, \"b\": 3})|neg({\"a\": 1})", "<null>"},
    {"Sure.[TOOL_CALLS]get_weather[ARGS]{\"city\": "
     "\"Paris\"}[TOOL_CALLS]add[CALL_ID]abc123def[ARGS]"
     "{\"a\": 1}",
     "mistral", "get_weather({\"city\": \"Paris\"})|add({\"a\": 1})", "Sure."},
    {"Just text, {not a call}.\n", NULL, "", "Just text, {not a call}.\n"},
    {"{\"answer\": 42}", NULL, "", "{\"answer\": 42}"},
    {"", NULL, "", "<null>"},
};

START_TEST(tool_calls_parse) {
  char *json = parse_calls(tool_cases[_i].text, tool_cases[_i].fmt);
  char calls[1024], content[1024];
  calls_summary(json, calls, sizeof calls, content, sizeof content);
  ck_assert_msg(!strcmp(calls, tool_cases[_i].calls), "%s: calls %s", tool_cases[_i].text, calls);
  ck_assert_msg(!strcmp(content, tool_cases[_i].content), "%s: content %s", tool_cases[_i].text,
                content);
  /* ids are stable */
  char *again = parse_calls(tool_cases[_i].text, tool_cases[_i].fmt);
  ck_assert_str_eq(json, again);
  free(json);
  free(again);
}
END_TEST

START_TEST(tool_calls_errors) {
  int32_t n;
  char buf[8];
  ck_assert_int_eq(nllm_tool_calls_parse("x", "nosuch", buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_tool_calls_parse(NULL, NULL, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_tool_calls_parse("x", NULL, buf, sizeof buf, &n),
                   NLLM_ERR_BUFFER_TOO_SMALL);
}
END_TEST

/* A render's output feeds straight back: the Qwen3 template over parsed calls. */
START_TEST(tool_call_round_trip) {
  char *tmpl = template_text("file:Qwen-Qwen3-0.6B.jinja");
  char *json = parse_calls(
      "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>", NULL);
  cJSON *parsed = cJSON_Parse(json);
  cJSON *msgs = cJSON_Parse("[{\"role\": \"user\", \"content\": \"Add 2 and 3.\"}]");
  cJSON *asst = cJSON_CreateObject();
  cJSON_AddStringToObject(asst, "role", "assistant");
  cJSON_AddStringToObject(asst, "content", "");
  cJSON_AddItemToObject(asst, "tool_calls", cJSON_DetachItemFromObject(parsed, "tool_calls"));
  cJSON_AddItemToArray(msgs, asst);
  cJSON_AddItemToArray(msgs, cJSON_Parse("{\"role\": \"tool\", \"content\": \"5\"}"));
  char *mj = cJSON_PrintUnformatted(msgs), *got = NULL;
  ck_assert_int_eq(render(NULL, tmpl, mj, NULL, NULL, 1, &got), NLLM_OK);
  ck_assert_msg(strstr(got,
                       "<|im_start|>assistant\n<tool_call>\n{\"name\": \"add\", \"arguments\": "
                       "{\"a\": 2, \"b\": 3}}\n</tool_call><|im_end|>\n<|im_start|>user\n"
                       "<tool_response>\n5\n</tool_response><|im_end|>\n"),
                "%s", got);
  free(got), free(mj), free(json), free(tmpl);
  cJSON_Delete(msgs);
  cJSON_Delete(parsed);
}
END_TEST

/* ---------------------------------------------------------------- nllm template */

static char *run_cmd(const char *cmd, int *rc) {
  FILE *f = popen(cmd, "r");
  ck_assert(f);
  size_t cap = 1 << 16, n = 0, r;
  char *out = malloc(cap + 1);
  while ((r = fread(out + n, 1, cap - n, f)) > 0) n += r;
  out[n] = 0;
  *rc = pclose(f);
  return out;
}

START_TEST(cli_template) {
  const char *b = getenv("NLLM_BUILD");
  char bin[512], cmd[2048];
  snprintf(bin, sizeof bin, "%s/nllm", b && *b ? b : "build");
  if (access(bin, X_OK) != 0) {
    fprintf(stderr, "SKIP: %s not built\n", bin);
    return;
  }
  /* the Qwen3 tools case, byte for byte (no newline added) */
  char mj[128], tj[128]; /* per process: the normal and sanitizer runs may overlap */
  snprintf(mj, sizeof mj, "/tmp/nllm-template-msgs-%d.json", (int)getpid());
  snprintf(tj, sizeof tj, "/tmp/nllm-template-tools-%d.json", (int)getpid());
  char *convs_text = read_file(TDIR "conversations.json", NULL);
  cJSON *convs = cJSON_Parse(convs_text);
  free(convs_text);
  const cJSON *conv = cJSON_GetObjectItemCaseSensitive(convs, "tools");
  char *m = cJSON_Print(cJSON_GetObjectItemCaseSensitive(conv, "messages"));
  char *t = cJSON_Print(cJSON_GetObjectItemCaseSensitive(conv, "tools"));
  FILE *f = fopen(mj, "w");
  fputs(m, f);
  fclose(f);
  f = fopen(tj, "w");
  fputs(t, f);
  fclose(f);
  free(m), free(t);
  cJSON_Delete(convs);
  snprintf(cmd, sizeof cmd,
           "%s template --template-file " TDIR
           "Qwen-Qwen3-0.6B.jinja --messages %s --tools %s "
           "--add-generation-prompt --var 'eos_token=\"<|im_end|>\"'",
           bin, mj, tj);
  int rc;
  char *out = run_cmd(cmd, &rc);
  ck_assert_int_eq(rc, 0);
  char *want = read_file(TDIR "expected/Qwen-Qwen3-0.6B__tools__1.txt", NULL);
  ck_assert_str_eq(out, want);
  free(out), free(want);
  /* the model's template and BOS from a tokenizer folder */
  char path[1024];
  if (testdata_path(path, sizeof path, "tokenizers/hf/llama3")) {
    snprintf(cmd, sizeof cmd, "%s template -m %s --messages %s", bin, path, mj);
    out = run_cmd(cmd, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strncmp(out, "<|begin_of_text|><|start_header_id|>system", 42) == 0, "%s", out);
    free(out);
  }
  /* errors: exit status 1 and the message */
  snprintf(cmd, sizeof cmd, "%s template --template-file /nonexistent --messages %s 2>&1", bin, mj);
  out = run_cmd(cmd, &rc);
  ck_assert_int_ne(rc, 0);
  ck_assert(strstr(out, "cannot read"));
  free(out);
  snprintf(cmd, sizeof cmd, "%s template --messages %s 2>&1", bin, mj);
  out = run_cmd(cmd, &rc);
  ck_assert_int_ne(rc, 0);
  ck_assert(strstr(out, "-m MODEL or --template-file"));
  free(out);
  snprintf(cmd, sizeof cmd,
           "%s template --template-file " TDIR "Qwen-Qwen3-0.6B.jinja --messages %s --var x 2>&1",
           bin, mj);
  out = run_cmd(cmd, &rc);
  ck_assert_int_ne(rc, 0);
  ck_assert(strstr(out, "NAME=JSON"));
  free(out);
  /* nllm chat with a template file instead of the model's */
  snprintf(cmd, sizeof cmd,
           "printf 'Hello\\n' | %s chat -m models/stories260K.gguf --chat-template-file " TDIR
           "Qwen-Qwen2.5-7B-Instruct.jinja -n 4 --temp 0 2>&1",
           bin);
  out = run_cmd(cmd, &rc);
  ck_assert_msg(rc == 0, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd,
           "printf 'Hello\\n' | %s chat -m models/stories260K.gguf --chat-template-file "
           "/nonexistent -n 4 2>&1",
           bin);
  out = run_cmd(cmd, &rc);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(out, "--chat-template-file"), "%s", out);
  free(out);
  unlink(mj);
  unlink(tj);
}
END_TEST

int main(void) {
  Suite *s = suite_create("template");
  TCase *tc = tcase_create("template");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, real_templates_match_jinja2);
  tcase_add_test(tc, features_match_jinja2);
  tcase_add_loop_test(tc, hostile_templates_end, 0, sizeof hostile / sizeof *hostile);
  tcase_add_test(tc, deep_nesting_is_an_error);
  tcase_add_loop_test(tc, errors_name_the_problem, 0, sizeof bad_syntax / sizeof *bad_syntax);
  tcase_add_test(tc, bad_input_json);
  tcase_add_test(tc, model_template_and_tokens);
  tcase_add_loop_test(tc, family_fallback_agrees, 0,
                      sizeof fallback_pairs / sizeof *fallback_pairs);
  tcase_add_loop_test(tc, tool_calls_parse, 0, sizeof tool_cases / sizeof *tool_cases);
  tcase_add_test(tc, tool_calls_errors);
  tcase_add_test(tc, tool_call_round_trip);
  tcase_add_test(tc, cli_template);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
