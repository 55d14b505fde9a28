/* nllm serve's request handler: arbitrary bytes as the body of /v1/chat/completions or
 * /v1/completions (byte 0 picks which), then the error JSON for a rejected body and, for an
 * accepted one, its stop strings run over the rest of the input as generated text the way the
 * scheduler feeds it (split into pieces at the byte values). Seeds: fuzz/corpus/fuzz_serve_request.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

/* tools and tool_choice: checked without a crash, a forced choice's grammar built or refused
 * with a 400, and for every tool-call format: the content a stream sends early never shrinks as
 * the reply grows (sent text can never turn out to be part of a call), and parsing the reply
 * gives calls or nothing. */
static void check_tools(const srv_request *r, const char *text, size_t len) {
  srv_tools_mode mode;
  char *named = NULL;
  srv_error e;
  if (srv_tools_choice(r, &mode, &named, &e)) {
    if (e.status != 400) abort();
    return;
  }
  for (int f = SRV_TOOLS_HERMES; f <= SRV_TOOLS_MISTRAL; f++) {
    if (mode == SRV_TOOLS_REQUIRED || mode == SRV_TOOLS_NAMED) {
      char *g = NULL;
      if (srv_tools_grammar(r, mode, named, (srv_tools_format)f, &g, &e)) {
        if (e.status != 400 && e.status != 500) abort();
      } else if (!g || nllm_grammar_validate(g, srv_tools_grammar_root())) {
        abort();
      }
      free(g);
    }
    srv_reply rp;
    memset(&rp, 0, sizeof rp);
    rp.tools = (srv_tools_format)f;
    size_t prev = 0;
    for (size_t n = 0; n <= len; n += 1 + n / 8) {
      size_t end = srv_tools_content_end(&rp, text, n);
      if (end > n || end < prev) abort();
      prev = end;
    }
    char *z = malloc(len + 1);
    if (!z) abort();
    memcpy(z, text, len);
    z[len] = 0;
    cJSON_Delete(srv_tools_parse(&rp, z));
    free(z);
  }
  free(named);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  srv_req_kind kind = (data[0] & 1) ? SRV_REQ_COMPLETION : SRV_REQ_CHAT;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  srv_request r;
  srv_error e;
  if (srv_parse_request(kind, body, len, &r, &e)) {
    if (e.status != 400) abort();
    char *j = srv_error_json(&e);
    if (!j) abort();
    free(j);
    srv_request_free(&r);
    return 0;
  }
  if (kind == SRV_REQ_CHAT && r.n_messages < 1) abort();
  if (kind == SRV_REQ_CHAT && !r.messages_json) abort();
  if (kind == SRV_REQ_CHAT) check_tools(&r, body, len);
  if (kind == SRV_REQ_COMPLETION && !r.prompt && r.n_prompt_ids < 1) abort();
  srv_text t;
  srv_text_init(&t, (const char *const *)r.stop, r.n_stop);
  size_t out = 0, pos = 0;
  while (pos < len && !t.stopped) {
    size_t piece = 1 + (unsigned char)body[pos] % 7;
    if (piece > len - pos) piece = len - pos;
    if (srv_text_push(&t, body + pos, piece)) abort();
    pos += piece;
    size_t start, n = srv_text_release(&t, 0, &start);
    if (start != out) abort();
    out += n;
    char *c = srv_utf8_clean(t.buf + start, n);
    if (!c) abort();
    free(c);
  }
  size_t start, n = srv_text_release(&t, 1, &start);
  if (start != out || start + n != t.len) abort();
  /* the released text never contains a stop string */
  for (int i = 0; i < r.n_stop; i++)
    if (memmem(t.buf, t.len, r.stop[i], strlen(r.stop[i]))) abort();
  srv_text_free(&t);
  srv_request_free(&r);
  return 0;
}
