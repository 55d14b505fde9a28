/* See json.h. */
#include "core/json.h"

#include <errno.h>

cJSON *nllm_json_parse(const char *buf, size_t len, const char *name, nllm_status *st) {
  /* cJSON returns NULL for both a syntax error and a failed allocation; malloc sets errno to
   * ENOMEM when it fails and nothing else in the parser does (strtod sets at most ERANGE). */
  errno = 0;
  cJSON *j = len ? cJSON_ParseWithLength(buf, len) : NULL;
  if (j) {
    *st = NLLM_OK;
    return j;
  }
  if (errno == ENOMEM) {
    *st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory parsing %zu bytes of JSON", name, len);
    return NULL;
  }
  const char *at = len ? cJSON_GetErrorPtr() : NULL;
  size_t off = at && at >= buf && at <= buf + len ? (size_t)(at - buf) : 0;
  *st = nllm_err(NLLM_ERR_FORMAT, "%s: invalid JSON near byte %zu", name, off);
  return NULL;
}
