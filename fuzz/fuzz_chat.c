/* Chat-template rendering: an arbitrary template text (Jinja or a family name) and messages.
 * Input: template, then messages as role/content pairs, all separated by NUL bytes; byte 0 is
 * the add_assistant flag and the output capacity choice. Seeds: fuzz/corpus/fuzz_chat. */
#include <stdint.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  /* NUL-terminated copy, so every field is a C string. */
  char *s = malloc(size);
  memcpy(s, data + 1, size - 1);
  s[size - 1] = 0;
  const char *tmpl = s;
  nllm_chat_message msg[16];
  int n = 0;
  const char *p = s + strlen(s) + 1, *end = s + size - 1;
  while (p < end && n < 16) {
    const char *role = p;
    p += strlen(p) + 1;
    const char *content = p < end ? p : "";
    if (p < end) p += strlen(p) + 1;
    msg[n++] = (nllm_chat_message){role, content};
  }
  static char out[1 << 16];
  int32_t cap = (data[0] & 2) ? 8 : (int32_t)sizeof out, need = 0;
  nllm_status st = nllm_chat_format_template(tmpl, msg, n, data[0] & 1, out, cap, &need);
  if (st == NLLM_OK && (need >= cap || out[need] != 0)) abort();
  if (st == NLLM_ERR_BUFFER_TOO_SMALL && need < cap - 1) abort();
  free(s);
  return 0;
}
