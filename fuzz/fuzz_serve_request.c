/* nllm serve's request handler: arbitrary bytes as the body of /v1/chat/completions or
 * /v1/completions (byte 0 picks which), then the error JSON for a rejected body and, for an
 * accepted one, its stop strings run over the rest of the input as generated text the way the
 * scheduler feeds it (split into pieces at the byte values). Seeds: fuzz/corpus/fuzz_serve_request. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

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
