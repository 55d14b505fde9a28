/* cJSON parsing whose failure says what went wrong: malformed text (with the byte offset) or
 * memory running out, which cJSON alone reports the same way. */
#ifndef NLLM_JSON_H
#define NLLM_JSON_H

#include <cJSON.h>

#include "core/core.h"

/* Parses buf[0..len). On failure returns NULL with *st set (NLLM_ERR_FORMAT "NAME: invalid
 * JSON near byte N", or NLLM_ERR_NOMEM "NAME: out of memory parsing N bytes of JSON"); name
 * is the file named in messages. */
cJSON *nllm_json_parse(const char *buf, size_t len, const char *name, nllm_status *st);

#endif
