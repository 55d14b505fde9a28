/* Accessors and ownership of the neutral model description (see source.h). */
#include "formats/source.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

void *nllm_source_alloc(nllm_source *src, size_t size) {
  if (src->n_blocks == src->cap_blocks) {
    int64_t cap = src->cap_blocks ? src->cap_blocks * 2 : 16;
    void **b = nllm_realloc(src->blocks, (size_t)cap * sizeof *b);
    if (!b) return NULL;
    src->blocks = b;
    src->cap_blocks = cap;
  }
  void *p = nllm_aligned_alloc(size ? size : 1);
  if (!p) return NULL;
  src->blocks[src->n_blocks++] = p;
  return p;
}

char *nllm_source_strdup(nllm_source *src, const char *s, size_t len) {
  char *d = nllm_source_alloc(src, len + 1);
  if (!d) return NULL;
  memcpy(d, s, len);
  d[len] = 0;
  return d;
}

void nllm_source_free(nllm_source *src) {
  if (!src) return;
  for (int64_t i = 0; i < src->n_blocks; i++) nllm_aligned_free(src->blocks[i]);
  free(src->blocks);
  for (int32_t i = 0; i < src->n_maps; i++) nllm_file_map_close(&src->maps[i]);
  free(src->maps);
  free(src->path);
  memset(src, 0, sizeof *src);
}

static int in_mapped_file(const nllm_source *src, const void *p) {
  const uint8_t *b = p;
  for (int32_t i = 0; i < src->n_maps; i++) {
    const nllm_file_map *m = &src->maps[i];
    if (m->is_mmap && b >= m->data && b < m->data + m->size) return 1;
  }
  return 0;
}

nllm_status nllm_source_copy_tensors(nllm_source *src,
                                     int (*wanted)(const nllm_tensor *t, void *user), void *user) {
  uint64_t total = 0;
  for (int64_t i = 0; i < src->n_tensors; i++) {
    const nllm_tensor *t = &src->tensors[i];
    if (t->nbytes && in_mapped_file(src, t->data) && wanted(t, user))
      total += (t->nbytes + 63) & ~(uint64_t)63;
  }
  if (total == 0) return NLLM_OK;
  uint8_t *buf = total <= SIZE_MAX ? nllm_source_alloc(src, (size_t)total) : NULL;
  if (!buf)
    return nllm_err(NLLM_ERR_NOMEM, "%s: cannot allocate %.1f MiB to read the weights into memory",
                    src->path ? src->path : "model", (double)total / 1048576.0);
  uint64_t off = 0;
  for (int64_t i = 0; i < src->n_tensors; i++) {
    nllm_tensor *t = &src->tensors[i];
    if (!t->nbytes || !in_mapped_file(src, t->data) || !wanted(t, user)) continue;
    memcpy(buf + off, t->data, (size_t)t->nbytes);
    t->data = buf + off;
    off += (t->nbytes + 63) & ~(uint64_t)63;
  }
  return NLLM_OK;
}

const nllm_value *nllm_source_get(const nllm_source *src, const char *key) {
  for (int64_t i = 0; i < src->n_kv; i++)
    if (strcmp(src->kv[i].key, key) == 0) return &src->kv[i].val;
  return NULL;
}

const nllm_tensor *nllm_source_tensor(const nllm_source *src, const char *name) {
  for (int64_t i = 0; i < src->n_tensors; i++)
    if (strcmp(src->tensors[i].name, name) == 0) return &src->tensors[i];
  return NULL;
}

static int is_int_type(uint32_t t) {
  return t == NLLM_V_U8 || t == NLLM_V_I8 || t == NLLM_V_U16 || t == NLLM_V_I16 ||
         t == NLLM_V_U32 || t == NLLM_V_I32 || t == NLLM_V_U64 || t == NLLM_V_I64 ||
         t == NLLM_V_BOOL;
}

static int is_signed_type(uint32_t t) {
  return t == NLLM_V_I8 || t == NLLM_V_I16 || t == NLLM_V_I32 || t == NLLM_V_I64;
}

int nllm_value_uint(const nllm_value *v, uint64_t *out) {
  if (!is_int_type(v->type) || v->type == NLLM_V_BOOL) return 0;
  *out = !is_signed_type(v->type) ? v->v.u : v->v.i < 0 ? 0 : (uint64_t)v->v.i;
  return 1;
}

nllm_status nllm_source_get_int(const nllm_source *src, const char *key, int64_t *out) {
  const nllm_value *v = nllm_source_get(src, key);
  if (!v) return nllm_err(NLLM_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", src->path, key);
  if (!is_int_type(v->type))
    return nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' has type %s, expected an integer",
                    src->path, key, nllm_value_type_name(v->type));
  if (!is_signed_type(v->type) && v->v.u > (uint64_t)INT64_MAX)
    return nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' value %llu is out of range", src->path,
                    key, (unsigned long long)v->v.u);
  *out = is_signed_type(v->type) ? v->v.i : (int64_t)v->v.u;
  return NLLM_OK;
}

nllm_status nllm_source_get_float(const nllm_source *src, const char *key, double *out) {
  const nllm_value *v = nllm_source_get(src, key);
  if (!v) return nllm_err(NLLM_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", src->path, key);
  if (v->type == NLLM_V_F32 || v->type == NLLM_V_F64) {
    *out = v->v.f;
    return NLLM_OK;
  }
  if (is_int_type(v->type)) {
    *out = is_signed_type(v->type) ? (double)v->v.i : (double)v->v.u;
    return NLLM_OK;
  }
  return nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' has type %s, expected a number",
                  src->path, key, nllm_value_type_name(v->type));
}

nllm_status nllm_source_get_str(const nllm_source *src, const char *key, const char **out) {
  const nllm_value *v = nllm_source_get(src, key);
  if (!v) return nllm_err(NLLM_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", src->path, key);
  if (v->type != NLLM_V_STRING)
    return nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' has type %s, expected a string",
                    src->path, key, nllm_value_type_name(v->type));
  *out = v->v.str.s;
  return NLLM_OK;
}

size_t nllm_value_type_size(uint32_t type) {
  switch (type) {
    case NLLM_V_U8:
    case NLLM_V_I8:
    case NLLM_V_BOOL: return 1;
    case NLLM_V_U16:
    case NLLM_V_I16: return 2;
    case NLLM_V_U32:
    case NLLM_V_I32:
    case NLLM_V_F32: return 4;
    case NLLM_V_U64:
    case NLLM_V_I64:
    case NLLM_V_F64: return 8;
    default: return 0;
  }
}

const char *nllm_value_type_name(uint32_t type) {
  static const char *names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return type < NLLM_V_COUNT ? names[type] : "unknown";
}

/* A file's float where an integer is wanted: converting NaN or a value outside int64 is
 * undefined behaviour in C, so those read as 0 (callers range-check the result anyway). */
static int64_t float_to_int(double x) {
  return x >= -9223372036854775808.0 && x < 9223372036854775808.0 ? (int64_t)x : 0;
}

int64_t nllm_value_arr_int(const nllm_value *v, uint64_t idx) {
  const uint8_t *p =
      (const uint8_t *)v->v.arr.data + idx * nllm_value_type_size(v->v.arr.elem_type);
  switch (v->v.arr.elem_type) {
    case NLLM_V_U8:
    case NLLM_V_BOOL: return *p;
    case NLLM_V_I8: return (int8_t)*p;
    case NLLM_V_U16: {
      uint16_t x;
      memcpy(&x, p, 2);
      return x;
    }
    case NLLM_V_I16: {
      int16_t x;
      memcpy(&x, p, 2);
      return x;
    }
    case NLLM_V_U32: {
      uint32_t x;
      memcpy(&x, p, 4);
      return x;
    }
    case NLLM_V_I32: {
      int32_t x;
      memcpy(&x, p, 4);
      return x;
    }
    case NLLM_V_U64: {
      uint64_t x;
      memcpy(&x, p, 8);
      return (int64_t)x;
    }
    case NLLM_V_I64: {
      int64_t x;
      memcpy(&x, p, 8);
      return x;
    }
    case NLLM_V_F32: {
      float x;
      memcpy(&x, p, 4);
      return float_to_int(x);
    }
    case NLLM_V_F64: {
      double x;
      memcpy(&x, p, 8);
      return float_to_int(x);
    }
    default: return 0;
  }
}

double nllm_value_arr_float(const nllm_value *v, uint64_t idx) {
  const uint8_t *p =
      (const uint8_t *)v->v.arr.data + idx * nllm_value_type_size(v->v.arr.elem_type);
  switch (v->v.arr.elem_type) {
    case NLLM_V_F32: {
      float x;
      memcpy(&x, p, 4);
      return x;
    }
    case NLLM_V_F64: {
      double x;
      memcpy(&x, p, 8);
      return x;
    }
    default: return (double)nllm_value_arr_int(v, idx);
  }
}

const nllm_str *nllm_value_arr_str(const nllm_value *v, uint64_t idx) {
  return &((const nllm_str *)v->v.arr.data)[idx];
}

static int append(char *buf, size_t cap, size_t *at, const char *fmt, ...) NLLM_PRINTF(4, 5);
static int append(char *buf, size_t cap, size_t *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(*at < cap ? buf + *at : NULL, *at < cap ? cap - *at : 0, fmt, ap);
  va_end(ap);
  if (n > 0) *at += (size_t)n;
  return n;
}

static void value_text(const nllm_value *v, char *buf, size_t cap, size_t *at, int depth) {
  switch (v->type) {
    case NLLM_V_STRING:
      append(buf, cap, at, "\"%.*s\"", v->v.str.len > 200 ? 200 : (int)v->v.str.len, v->v.str.s);
      if (v->v.str.len > 200) append(buf, cap, at, "...");
      break;
    case NLLM_V_F32:
    case NLLM_V_F64: append(buf, cap, at, "%g", v->v.f); break;
    case NLLM_V_BOOL: append(buf, cap, at, "%s", v->v.u ? "true" : "false"); break;
    case NLLM_V_I8:
    case NLLM_V_I16:
    case NLLM_V_I32:
    case NLLM_V_I64: append(buf, cap, at, "%lld", (long long)v->v.i); break;
    case NLLM_V_ARRAY: {
      uint64_t n = v->v.arr.n;
      uint32_t et = v->v.arr.elem_type;
      if (n > 8 || depth > 2) {
        append(buf, cap, at, "[%llu x %s]", (unsigned long long)n, nllm_value_type_name(et));
        break;
      }
      append(buf, cap, at, "[");
      for (uint64_t i = 0; i < n; i++) {
        if (i) append(buf, cap, at, ", ");
        if (et == NLLM_V_STRING) {
          const nllm_str *s = nllm_value_arr_str(v, i);
          append(buf, cap, at, "\"%.*s\"", s->len > 40 ? 40 : (int)s->len, s->s);
        } else if (et == NLLM_V_ARRAY) {
          value_text(&((const nllm_value *)v->v.arr.data)[i], buf, cap, at, depth + 1);
        } else if (et == NLLM_V_F32 || et == NLLM_V_F64) {
          append(buf, cap, at, "%g", nllm_value_arr_float(v, i));
        } else {
          append(buf, cap, at, "%lld", (long long)nllm_value_arr_int(v, i));
        }
      }
      append(buf, cap, at, "]");
      break;
    }
    default: append(buf, cap, at, "%llu", (unsigned long long)v->v.u); break;
  }
}

int nllm_value_to_text(const nllm_value *v, char *buf, size_t cap) {
  size_t at = 0;
  if (cap) buf[0] = 0;
  value_text(v, buf, cap, &at, 0);
  if (cap && at >= cap) buf[cap - 1] = 0;
  return (int)at;
}

nllm_status nllm_source_open(const char *path, int use_mmap, nllm_source *out) {
  memset(out, 0, sizeof *out);
  struct stat st;
  if (stat(path, &st) != 0) return nllm_err(NLLM_ERR_IO, "%s: no such file or directory", path);
  if (S_ISDIR(st.st_mode)) return hf_open(path, use_mmap, out);
  return gguf_open(path, use_mmap, out);
}
