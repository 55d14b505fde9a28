/* Chat templates rendered by the Jinja subset interpreter, and tool calls parsed out of model
 * output. The library's internal face of src/template/; api.c wraps it for the public ABI. */
#ifndef NLLM_TEMPLATE_H
#define NLLM_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "nativellm.h"

typedef struct nllm_tmpl_input {
  /* the conversation: a JSON array of message objects, or (when NULL) msgs/n_msgs */
  const char *messages_json;
  const nllm_chat_message *msgs;
  int32_t n_msgs;
  const char *tools_json; /* JSON array, or NULL: `tools` is then None, as transformers passes */
  const char *vars_json;  /* JSON object of further variables, or NULL */
  const char *bos_token, *eos_token; /* NULL: left undefined (vars_json may still set them) */
  int add_generation_prompt;
  int64_t now;           /* unix seconds strftime_now formats in UTC; 0 = the local time now */
  size_t max_output;     /* 0 = NLLM_TMPL_DEFAULT_MAX_OUTPUT */
  int32_t time_limit_ms; /* 0 = NLLM_TMPL_DEFAULT_TIME_MS */
} nllm_tmpl_input;

#define NLLM_TMPL_DEFAULT_MAX_OUTPUT (8u << 20)
#define NLLM_TMPL_DEFAULT_TIME_MS 2000
#define NLLM_TMPL_MAX_STEPS 5000000u
#define NLLM_TMPL_MAX_MACRO_DEPTH 64
#define NLLM_TMPL_MAX_MEMORY ((size_t)256 << 20)

/* Renders tmpl exactly as transformers' apply_chat_template would (trim_blocks, lstrip_blocks,
 * its tojson / raise_exception / strftime_now). *out is malloc'ed and NUL-terminated. Errors:
 * NLLM_ERR_FORMAT (template syntax, naming line and column), NLLM_ERR_UNSUPPORTED (a construct
 * outside the subset), NLLM_ERR_INVALID_ARG (bad JSON input, a type error while rendering, or
 * the template's raise_exception), NLLM_ERR_ABORTED (step, nesting, output or time limit),
 * NLLM_ERR_NOMEM. */
nllm_status nllm_template_render(const char *tmpl, const nllm_tmpl_input *in, char **out,
                                 size_t *n_out);

/* Parses model output into {"content": ..., "tool_calls": [...]} (OpenAI's shape, arguments as
 * a JSON string). format: NULL or "auto", "hermes", "llama3", "mistral". *out is malloc'ed. */
nllm_status nllm_tool_calls_parse_text(const char *text, size_t len, const char *format, char **out,
                                       size_t *n_out);

#endif
