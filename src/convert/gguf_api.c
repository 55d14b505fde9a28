/* The public GGUF writer (nllm_gguf_*) over the internal one, and nllm_quantize_row. */
#include <stdlib.h>

#include "convert/gguf_write.h"
#include "qtypes.h"

struct nllm_gguf_writer {
  gguf_writer *w;
};

#define CHECK_WRITER(w, key)                                                                  \
  do {                                                                                        \
    if (!(w) || !(key)) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: NULL argument", __func__); \
  } while (0)

NLLM_API nllm_status nllm_gguf_writer_create(nllm_gguf_writer **out) {
  if (!out) return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_gguf_writer_create: out is NULL");
  *out = NULL;
  nllm_gguf_writer *g = nllm_calloc(1, sizeof *g);
  if (!g) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  if (!(g->w = gguf_writer_new())) {
    free(g);
    return NLLM_ERR_NOMEM; /* message set by gguf_writer_new */
  }
  *out = g;
  return NLLM_OK;
}

NLLM_API void nllm_gguf_writer_free(nllm_gguf_writer *g) {
  if (!g) return;
  gguf_writer_free(g->w);
  free(g);
}

NLLM_API nllm_status nllm_gguf_set_str(nllm_gguf_writer *g, const char *key, const char *value) {
  CHECK_WRITER(g, key);
  return gguf_writer_set_str(g->w, key, value);
}

NLLM_API nllm_status nllm_gguf_set_u32(nllm_gguf_writer *g, const char *key, uint32_t value) {
  CHECK_WRITER(g, key);
  return gguf_writer_set_u32(g->w, key, value);
}

NLLM_API nllm_status nllm_gguf_set_f32(nllm_gguf_writer *g, const char *key, float value) {
  CHECK_WRITER(g, key);
  return gguf_writer_set_f32(g->w, key, value);
}

NLLM_API nllm_status nllm_gguf_set_bool(nllm_gguf_writer *g, const char *key, int32_t value) {
  CHECK_WRITER(g, key);
  return gguf_writer_set_bool(g->w, key, value != 0);
}

NLLM_API nllm_status nllm_gguf_set_str_array(nllm_gguf_writer *g, const char *key,
                                             const char *const *values, uint64_t n) {
  CHECK_WRITER(g, key);
  return gguf_writer_set_arr_str(g->w, key, values, n);
}

NLLM_API nllm_status nllm_gguf_set_f32_array(nllm_gguf_writer *g, const char *key,
                                             const float *values, uint64_t n) {
  CHECK_WRITER(g, key);
  if (n && !values) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: NULL values", __func__);
  return gguf_writer_set_arr_f32(g->w, key, values, n);
}

NLLM_API nllm_status nllm_gguf_set_i32_array(nllm_gguf_writer *g, const char *key,
                                             const int32_t *values, uint64_t n) {
  CHECK_WRITER(g, key);
  if (n && !values) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: NULL values", __func__);
  return gguf_writer_set_arr_i32(g->w, key, values, n);
}

NLLM_API nllm_status nllm_gguf_add_tensor(nllm_gguf_writer *g, const char *name, int32_t type,
                                          int32_t n_dims, const int64_t *ne, const void *data,
                                          uint64_t nbytes) {
  CHECK_WRITER(g, name);
  return gguf_writer_add_tensor(g->w, name, type, n_dims, ne, data, nbytes);
}

NLLM_API nllm_status nllm_gguf_write(nllm_gguf_writer *g, const char *path) {
  CHECK_WRITER(g, path);
  return gguf_writer_write(g->w, path);
}

NLLM_API nllm_status nllm_quantize_row(int32_t type, const float *src, void *dst, int64_t n) {
  if (!src || !dst || n < 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_quantize_row: bad argument");
  const nllm_qtype *q = nllm_qtype_get(type);
  if (!q || !q->from_float_ref)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "nllm_quantize_row: cannot quantize to type %d (%s)",
                    type, nllm_type_name(type) ? nllm_type_name(type) : "unknown");
  if (n % q->block_size)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "nllm_quantize_row: %lld values are not whole blocks of %d", (long long)n,
                    q->block_size);
  q->from_float_ref(src, dst, n);
  return NLLM_OK;
}
