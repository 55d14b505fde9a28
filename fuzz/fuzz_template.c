/* The Jinja chat-template interpreter and the tool-call parser on arbitrary input. Input: the
 * template, a NUL, the messages JSON, a NUL, the extra variables JSON (missing parts are empty);
 * byte 0 chooses the generation prompt and a tiny output capacity. The whole input is also
 * parsed as a model reply with tool calls. Seeds: fuzz/corpus/fuzz_template (real templates with
 * a conversation). A render must end with a status within the limits set here. */
#include <stdint.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  char *s = malloc(size + 2); /* two extra NULs: every part is a C string */
  memcpy(s, data + 1, size - 1);
  s[size - 1] = s[size] = s[size + 1] = 0;
  const char *parts[3] = {s, "", ""};
  const char *p = s, *end = s + size - 1;
  for (int k = 1; k < 3; k++) {
    p += strlen(p) + 1;
    if (p <= end) parts[k] = p;
  }
  nllm_chat_template_params tp;
  nllm_chat_template_params_init(&tp);
  tp.template_text = parts[0];
  tp.messages_json = *parts[1] ? parts[1] : "[{\"role\": \"user\", \"content\": \"hi\"}]";
  tp.vars_json = *parts[2] ? parts[2] : NULL;
  tp.add_generation_prompt = data[0] & 1;
  tp.max_output_bytes = 1 << 16;
  tp.time_limit_ms = 200;
  tp.now = 1721952000;
  static char out[1 << 17];
  int32_t cap = (data[0] & 2) ? 8 : (int32_t)sizeof out, need = 0;
  nllm_status st = nllm_chat_template_render(NULL, &tp, out, cap, &need);
  if (st == NLLM_OK && (need >= cap || out[need] != 0)) abort();
  if (st == NLLM_ERR_BUFFER_TOO_SMALL && need < cap - 1) abort();
  if (st == NLLM_ERR_INTERNAL) abort();
  st = nllm_tool_calls_parse(s, NULL, out, (int32_t)sizeof out, &need);
  if (st != NLLM_OK && st != NLLM_ERR_BUFFER_TOO_SMALL) abort();
  free(s);
  return 0;
}
