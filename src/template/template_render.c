/* One render: builds the variables transformers passes to a chat template (messages, tools,
 * documents, add_generation_prompt, special tokens, extra kwargs), parses and evaluates the
 * template under the limits, and turns an unwind into a status. */
#include <stdio.h>
#include <stdlib.h>

#include "template/jinja.h"
#include "template/template.h"

static void set_var(jctx *c, jv *g, const char *name, jv *v) {
  jv_dict_set(c, g, jv_strn(c, name, strlen(name)), v);
}

static jv *parse_input(jctx *c, const char *what, const char *json) {
  char err[160];
  jv *v = jv_parse_json(c, json, strlen(json), NULL, err, sizeof err);
  if (!v) jfail(c, NLLM_ERR_INVALID_ARG, 0, 0, "%s is not valid JSON: %s", what, err);
  return v;
}

nllm_status nllm_template_render(const char *tmpl, const nllm_tmpl_input *in, char **out,
                                 size_t *n_out) {
  if (!tmpl || !in || !out || !n_out)
    return nllm_err(NLLM_ERR_INVALID_ARG, "template: NULL argument");
  *out = NULL;
  *n_out = 0;
  jctx *c = nllm_calloc(1, sizeof *c);
  if (!c) return nllm_err(NLLM_ERR_NOMEM, "template: out of memory");
  c->cap_bytes = NLLM_TMPL_MAX_MEMORY;
  c->max_steps = NLLM_TMPL_MAX_STEPS;
  c->max_depth = NLLM_TMPL_MAX_MACRO_DEPTH;
  c->max_output = in->max_output ? in->max_output : NLLM_TMPL_DEFAULT_MAX_OUTPUT;
  int32_t ms = in->time_limit_ms > 0 ? in->time_limit_ms : NLLM_TMPL_DEFAULT_TIME_MS;
  c->deadline = jclock() + ms / 1000.0;
  c->now = in->now;
  nllm_status st = NLLM_OK;
  if (setjmp(c->fail)) {
    st = nllm_err(c->status, "%s", c->msg);
    goto done;
  }
  jv *g = jv_dict(c);
  jinja_add_globals(c, g);
  jv *msgs;
  if (in->messages_json) {
    msgs = parse_input(c, "messages", in->messages_json);
    if (msgs->t != JV_LIST) jfail(c, NLLM_ERR_INVALID_ARG, 0, 0, "messages must be a JSON array");
  } else {
    msgs = jv_list(c);
    for (int32_t i = 0; i < in->n_msgs; i++) {
      if (!in->msgs[i].role || !in->msgs[i].content)
        jfail(c, NLLM_ERR_INVALID_ARG, 0, 0, "message %d has a NULL role or content", i);
      jv *m = jv_dict(c);
      set_var(c, m, "role", jv_strn(c, in->msgs[i].role, strlen(in->msgs[i].role)));
      set_var(c, m, "content", jv_strn(c, in->msgs[i].content, strlen(in->msgs[i].content)));
      jv_list_push(c, msgs, m);
    }
  }
  set_var(c, g, "messages", msgs);
  jv *tools = JV_NONE_P;
  if (in->tools_json) {
    tools = parse_input(c, "tools", in->tools_json);
    if (tools->t != JV_LIST && tools->t != JV_NONE)
      jfail(c, NLLM_ERR_INVALID_ARG, 0, 0, "tools must be a JSON array");
  }
  set_var(c, g, "tools", tools);
  set_var(c, g, "documents", JV_NONE_P);
  set_var(c, g, "add_generation_prompt", JV_BOOL_P(in->add_generation_prompt));
  if (in->bos_token) set_var(c, g, "bos_token", jv_strn(c, in->bos_token, strlen(in->bos_token)));
  if (in->eos_token) set_var(c, g, "eos_token", jv_strn(c, in->eos_token, strlen(in->eos_token)));
  if (in->vars_json) {
    jv *vars = parse_input(c, "template variables", in->vars_json);
    if (vars->t != JV_DICT)
      jfail(c, NLLM_ERR_INVALID_ARG, 0, 0, "template variables must be a JSON object");
    for (size_t i = 0; i < vars->u.dict.n; i++)
      jv_dict_set(c, g, vars->u.dict.k[i], vars->u.dict.v[i]);
  }
  jnode *root = jinja_parse(c, tmpl, strlen(tmpl));
  jbuf b = {0};
  jinja_eval(c, root, g, &b);
  if (b.n > c->max_output)
    jfail(c, NLLM_ERR_ABORTED, 0, 0, "output exceeds the limit of %zu bytes", c->max_output);
  *out = nllm_malloc(b.n + 1);
  if (!*out) {
    st = nllm_err(NLLM_ERR_NOMEM, "template: out of memory");
    goto done;
  }
  if (b.n) memcpy(*out, b.p, b.n);
  (*out)[b.n] = 0;
  *n_out = b.n;
done:
  jarena_free(c);
  free(c);
  return st;
}
