/* GGUF v3 writer (see gguf_write.h). */
#include "convert/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "formats/ggml_types.h"

#define GGUF_DEFAULT_ALIGNMENT 32
/* Must match the reader's limit, or we could write files we refuse to read. */
#define GGUF_MAX_ARRAY_DEPTH 8
#define WRITE_BUFFER_BYTES (1u << 20)

typedef struct writer_tensor {
  const char *name;
  int32_t type, n_dims;
  int64_t ne[4];
  const void *data;
  uint64_t nbytes;
} writer_tensor;

struct gguf_writer {
  nllm_source arena; /* owns every copied key, string and array (nllm_source_alloc) */
  nllm_kv *kv;
  int64_t n_kv, cap_kv;
  writer_tensor *tensors;
  int64_t n_tensors, cap_tensors;
};

gguf_writer *gguf_writer_new(void) {
  gguf_writer *w = nllm_calloc(1, sizeof *w);
  if (!w) nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory");
  return w;
}

void gguf_writer_free(gguf_writer *w) {
  if (!w) return;
  nllm_source_free(&w->arena);
  free(w->kv);
  free(w->tensors);
  free(w);
}

int64_t gguf_writer_n_kv(const gguf_writer *w) {
  return w->n_kv;
}

/* ---------------------------------------------------------------- metadata */

static nllm_status check_value(const char *key, const nllm_value *v, int depth) {
  if (v->type >= NLLM_V_COUNT)
    return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: key '%s' has invalid value type %u", key,
                    v->type);
  if (v->type != NLLM_V_ARRAY) return NLLM_OK;
  uint32_t et = v->v.arr.elem_type;
  if (et >= NLLM_V_COUNT)
    return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: key '%s' has invalid array element type %u",
                    key, et);
  if (v->v.arr.n && !v->v.arr.data)
    return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: key '%s': array of %llu has no data", key,
                    (unsigned long long)v->v.arr.n);
  if (et != NLLM_V_ARRAY) return NLLM_OK;
  if (depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
    return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: key '%s': arrays nested more than %d deep",
                    key, GGUF_MAX_ARRAY_DEPTH);
  const nllm_value *a = v->v.arr.data;
  for (uint64_t i = 0; i < v->v.arr.n; i++) {
    if (a[i].type != NLLM_V_ARRAY)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "gguf writer: key '%s': element %llu of an array of arrays has type %s", key,
                      (unsigned long long)i, nllm_value_type_name(a[i].type));
    nllm_status st = check_value(key, &a[i], depth + 1);
    if (st) return st;
  }
  return NLLM_OK;
}

/* Deep copy into the arena; returns 0 on allocation failure. */
static int copy_value(nllm_source *arena, nllm_value *dst, const nllm_value *src) {
  *dst = *src;
  if (src->type == NLLM_V_STRING) {
    dst->v.str.s = nllm_source_strdup(arena, src->v.str.s ? src->v.str.s : "", src->v.str.len);
    return dst->v.str.s != NULL;
  }
  if (src->type != NLLM_V_ARRAY) return 1;
  uint64_t n = src->v.arr.n;
  uint32_t et = src->v.arr.elem_type;
  size_t esz = nllm_value_type_size(et);
  if (esz) {
    void *d = nllm_source_alloc(arena, n * esz);
    if (!d) return 0;
    if (n) memcpy(d, src->v.arr.data, n * esz);
    dst->v.arr.data = d;
    return 1;
  }
  if (et == NLLM_V_STRING) {
    nllm_str *d = nllm_source_alloc(arena, n * sizeof *d);
    if (!d) return 0;
    const nllm_str *s = src->v.arr.data;
    for (uint64_t i = 0; i < n; i++) {
      d[i].len = s[i].len;
      if (!(d[i].s = nllm_source_strdup(arena, s[i].s ? s[i].s : "", s[i].len))) return 0;
    }
    dst->v.arr.data = d;
    return 1;
  }
  nllm_value *d = nllm_source_alloc(arena, n * sizeof *d);
  if (!d) return 0;
  const nllm_value *s = src->v.arr.data;
  for (uint64_t i = 0; i < n; i++)
    if (!copy_value(arena, &d[i], &s[i])) return 0;
  dst->v.arr.data = d;
  return 1;
}

static int64_t find_key(const gguf_writer *w, const char *key) {
  for (int64_t i = 0; i < w->n_kv; i++)
    if (strcmp(w->kv[i].key, key) == 0) return i;
  return -1;
}

nllm_status gguf_writer_set(gguf_writer *w, const char *key, const nllm_value *v) {
  if (!w || !key || !v) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: NULL argument");
  nllm_status st = check_value(key, v, 0);
  if (st) return st;
  int64_t at = find_key(w, key);
  if (at < 0) {
    if (w->n_kv == w->cap_kv) {
      int64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
      nllm_kv *kv = nllm_realloc(w->kv, (size_t)cap * sizeof *kv);
      if (!kv) return nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory setting '%s'", key);
      w->kv = kv;
      w->cap_kv = cap;
    }
    const char *k = nllm_source_strdup(&w->arena, key, strlen(key));
    if (!k) return nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory setting '%s'", key);
    at = w->n_kv;
    w->kv[at].key = k;
    w->kv[at].val.type = NLLM_V_U8; /* placeholder until the copy succeeds */
  }
  nllm_value copy;
  if (!copy_value(&w->arena, &copy, v)) {
    if (at == w->n_kv)
      return nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory setting '%s'", key);
    return nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory replacing '%s'", key);
  }
  w->kv[at].val = copy;
  if (at == w->n_kv) w->n_kv++;
  return NLLM_OK;
}

static nllm_status set_scalar(gguf_writer *w, const char *key, uint32_t type, uint64_t u, int64_t i,
                              double f) {
  nllm_value v = {.type = type};
  if (type == NLLM_V_F32 || type == NLLM_V_F64)
    v.v.f = f;
  else if (type == NLLM_V_I8 || type == NLLM_V_I16 || type == NLLM_V_I32 || type == NLLM_V_I64)
    v.v.i = i;
  else
    v.v.u = u;
  return gguf_writer_set(w, key, &v);
}

nllm_status gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t x) {
  return set_scalar(w, key, NLLM_V_U8, x, 0, 0);
}
nllm_status gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t x) {
  return set_scalar(w, key, NLLM_V_I8, 0, x, 0);
}
nllm_status gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t x) {
  return set_scalar(w, key, NLLM_V_U16, x, 0, 0);
}
nllm_status gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t x) {
  return set_scalar(w, key, NLLM_V_I16, 0, x, 0);
}
nllm_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t x) {
  return set_scalar(w, key, NLLM_V_U32, x, 0, 0);
}
nllm_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t x) {
  return set_scalar(w, key, NLLM_V_I32, 0, x, 0);
}
nllm_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t x) {
  return set_scalar(w, key, NLLM_V_U64, x, 0, 0);
}
nllm_status gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t x) {
  return set_scalar(w, key, NLLM_V_I64, 0, x, 0);
}
nllm_status gguf_writer_set_f32(gguf_writer *w, const char *key, float x) {
  return set_scalar(w, key, NLLM_V_F32, 0, 0, x);
}
nllm_status gguf_writer_set_f64(gguf_writer *w, const char *key, double x) {
  return set_scalar(w, key, NLLM_V_F64, 0, 0, x);
}
nllm_status gguf_writer_set_bool(gguf_writer *w, const char *key, int x) {
  return set_scalar(w, key, NLLM_V_BOOL, x != 0, 0, 0);
}

nllm_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s) {
  if (!s) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: key '%s': string is NULL", key);
  nllm_value v = {.type = NLLM_V_STRING, .v.str = {s, strlen(s)}};
  return gguf_writer_set(w, key, &v);
}

nllm_status gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type,
                                const void *data, uint64_t n) {
  if (!nllm_value_type_size(elem_type))
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "gguf writer: key '%s': gguf_writer_set_arr takes numeric elements, not %s",
                    key, nllm_value_type_name(elem_type));
  nllm_value v = {.type = NLLM_V_ARRAY};
  v.v.arr.elem_type = elem_type;
  v.v.arr.n = n;
  v.v.arr.data = data;
  return gguf_writer_set(w, key, &v);
}

nllm_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *x, uint64_t n) {
  return gguf_writer_set_arr(w, key, NLLM_V_F32, x, n);
}

nllm_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *x, uint64_t n) {
  return gguf_writer_set_arr(w, key, NLLM_V_I32, x, n);
}

nllm_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                    uint64_t n) {
  if (n && !strs) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: key '%s': NULL strings", key);
  /* Staged as nllm_str views (no copy), then copied once by gguf_writer_set. */
  nllm_str *views = n ? nllm_malloc(n * sizeof *views) : NULL;
  if (n && !views) return nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory setting '%s'", key);
  for (uint64_t i = 0; i < n; i++) {
    views[i].s = strs[i] ? strs[i] : "";
    views[i].len = strlen(views[i].s);
  }
  nllm_value v = {.type = NLLM_V_ARRAY};
  v.v.arr.elem_type = NLLM_V_STRING;
  v.v.arr.n = n;
  v.v.arr.data = views;
  nllm_status st = gguf_writer_set(w, key, &v);
  free(views);
  return st;
}

nllm_status gguf_writer_remove(gguf_writer *w, const char *key) {
  int64_t at = find_key(w, key);
  if (at < 0) return nllm_err(NLLM_ERR_NOT_FOUND, "gguf writer: key '%s' is not set", key);
  memmove(&w->kv[at], &w->kv[at + 1], (size_t)(w->n_kv - at - 1) * sizeof *w->kv);
  w->n_kv--;
  return NLLM_OK;
}

nllm_status gguf_writer_copy_kv(gguf_writer *w, const nllm_source *src) {
  for (int64_t i = 0; i < src->n_kv; i++) {
    nllm_status st = gguf_writer_set(w, src->kv[i].key, &src->kv[i].val);
    if (st) return st;
  }
  return NLLM_OK;
}

/* ---------------------------------------------------------------- tensors */

nllm_status gguf_writer_add_tensor(gguf_writer *w, const char *name, int32_t type, int32_t n_dims,
                                   const int64_t *ne, const void *data, uint64_t nbytes) {
  if (!w || !name || !ne) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: NULL argument");
  int32_t block, type_size;
  if (!nllm_ggml_type_block(type, &block, &type_size)) {
    const char *tn = nllm_ggml_type_name(type);
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "gguf writer: tensor '%s': type %d (%s) cannot be written", name, type,
                    tn ? tn : "unknown");
  }
  if (n_dims < 1 || n_dims > 4)
    return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: tensor '%s' has %d dimensions (1..4)", name,
                    n_dims);
  writer_tensor t = {
      .type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}, .data = data, .nbytes = nbytes};
  uint64_t elems = 1;
  for (int d = 0; d < n_dims; d++) {
    if (ne[d] <= 0)
      return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: tensor '%s' dimension %d is %lld", name,
                      d, (long long)ne[d]);
    t.ne[d] = ne[d];
    if (!nllm_mul_ok(elems, (uint64_t)ne[d], &elems))
      return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: tensor '%s' is too large", name);
  }
  if (t.ne[0] % block)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "gguf writer: tensor '%s' row of %lld is not a multiple of the block size %d",
                    name, (long long)t.ne[0], block);
  uint64_t want;
  if (!nllm_mul_ok(elems / (uint64_t)block, (uint64_t)type_size, &want))
    return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: tensor '%s' is too large", name);
  if (want != nbytes)
    return nllm_err(
        NLLM_ERR_INVALID_ARG,
        "gguf writer: tensor '%s' of type %s and %llu elements is %llu bytes, given %llu", name,
        nllm_ggml_type_name(type), (unsigned long long)elems, (unsigned long long)want,
        (unsigned long long)nbytes);
  if (nbytes && !data)
    return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: tensor '%s' has no data", name);
  for (int64_t i = 0; i < w->n_tensors; i++)
    if (strcmp(w->tensors[i].name, name) == 0)
      return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: tensor '%s' added twice", name);
  if (w->n_tensors == w->cap_tensors) {
    int64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
    writer_tensor *nt = nllm_realloc(w->tensors, (size_t)cap * sizeof *nt);
    if (!nt) return nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory adding tensor '%s'", name);
    w->tensors = nt;
    w->cap_tensors = cap;
  }
  if (!(t.name = nllm_source_strdup(&w->arena, name, strlen(name))))
    return nllm_err(NLLM_ERR_NOMEM, "gguf writer: out of memory adding tensor '%s'", name);
  w->tensors[w->n_tensors++] = t;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- output */

typedef struct out_file {
  int fd;
  const char *path; /* the target, for messages */
  uint8_t *buf;
  size_t n;
  uint64_t written;
  nllm_status st; /* first failure; later puts are no-ops */
} out_file;

static void write_all(out_file *o, const uint8_t *p, size_t len) {
  while (len && !o->st) {
    ssize_t r = write(o->fd, p, len > (1u << 30) ? (1u << 30) : len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      o->st = nllm_err(NLLM_ERR_IO, "%s: write failed at byte %llu: %s", o->path,
                       (unsigned long long)o->written, r < 0 ? strerror(errno) : "no progress");
      return;
    }
    p += r;
    len -= (size_t)r;
    o->written += (uint64_t)r;
  }
}

static void flush(out_file *o) {
  write_all(o, o->buf, o->n);
  o->n = 0;
}

static void put(out_file *o, const void *p, size_t len) {
  if (o->st) return;
  if (len > WRITE_BUFFER_BYTES - o->n) {
    flush(o);
    if (len >= WRITE_BUFFER_BYTES) {
      write_all(o, p, len);
      return;
    }
  }
  memcpy(o->buf + o->n, p, len);
  o->n += len;
}

static void put_le(out_file *o, uint64_t v, size_t n) {
  uint8_t b[8];
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
  put(o, b, n);
}

static void put_str(out_file *o, const char *s, uint64_t len) {
  put_le(o, len, 8);
  put(o, s, len);
}

static void put_zeros(out_file *o, uint64_t n) {
  static const uint8_t zeros[64];
  while (n) {
    size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
    put(o, zeros, k);
    n -= k;
  }
}

static void put_value_payload(out_file *o, const nllm_value *v) {
  switch (v->type) {
    case NLLM_V_F32: {
      float f = (float)v->v.f;
      uint32_t b;
      memcpy(&b, &f, 4);
      put_le(o, b, 4);
      break;
    }
    case NLLM_V_F64: {
      uint64_t b;
      memcpy(&b, &v->v.f, 8);
      put_le(o, b, 8);
      break;
    }
    case NLLM_V_STRING: put_str(o, v->v.str.s, v->v.str.len); break;
    case NLLM_V_ARRAY: {
      uint32_t et = v->v.arr.elem_type;
      uint64_t n = v->v.arr.n;
      put_le(o, et, 4);
      put_le(o, n, 8);
      size_t esz = nllm_value_type_size(et);
      if (esz) {
        put(o, v->v.arr.data, n * esz);
      } else if (et == NLLM_V_STRING) {
        const nllm_str *s = v->v.arr.data;
        for (uint64_t i = 0; i < n; i++) put_str(o, s[i].s, s[i].len);
      } else {
        const nllm_value *a = v->v.arr.data;
        for (uint64_t i = 0; i < n; i++) put_value_payload(o, &a[i]);
      }
      break;
    }
    default:
      /* Signed values are stored sign-extended in v.i; the low bytes are the encoding. */
      put_le(o, v->v.u, nllm_value_type_size(v->type));
      break;
  }
}

static nllm_status writer_alignment(const gguf_writer *w, uint64_t *align) {
  *align = GGUF_DEFAULT_ALIGNMENT;
  int64_t at = find_key(w, "general.alignment");
  if (at < 0) return NLLM_OK;
  const nllm_value *v = &w->kv[at].val;
  uint64_t a = 0;
  if (!nllm_value_uint(v, &a) || !a || (a & (a - 1)))
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "gguf writer: general.alignment must be a non-zero power of two integer");
  *align = a;
  return NLLM_OK;
}

static uint64_t pad_to(uint64_t x, uint64_t align) {
  return (align - x % align) % align;
}

static void write_contents(const gguf_writer *w, out_file *o, uint64_t align) {
  put(o, "GGUF", 4);
  put_le(o, 3, 4);
  put_le(o, (uint64_t)w->n_tensors, 8);
  put_le(o, (uint64_t)w->n_kv, 8);
  for (int64_t i = 0; i < w->n_kv; i++) {
    put_str(o, w->kv[i].key, strlen(w->kv[i].key));
    put_le(o, w->kv[i].val.type, 4);
    put_value_payload(o, &w->kv[i].val);
  }
  uint64_t offset = 0;
  for (int64_t i = 0; i < w->n_tensors; i++) {
    const writer_tensor *t = &w->tensors[i];
    put_str(o, t->name, strlen(t->name));
    put_le(o, (uint64_t)t->n_dims, 4);
    for (int d = 0; d < t->n_dims; d++) put_le(o, (uint64_t)t->ne[d], 8);
    put_le(o, (uint64_t)t->type, 4);
    put_le(o, offset, 8);
    offset += t->nbytes + pad_to(t->nbytes, align);
  }
  if (!w->n_tensors) return;
  put_zeros(o, pad_to(o->written + o->n, align));
  for (int64_t i = 0; i < w->n_tensors; i++) {
    const writer_tensor *t = &w->tensors[i];
    put(o, t->data, t->nbytes);
    if (i + 1 < w->n_tensors) put_zeros(o, pad_to(t->nbytes, align));
  }
}

nllm_status gguf_writer_write(gguf_writer *w, const char *path) {
  if (!w || !path) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf writer: NULL argument");
  uint64_t align;
  nllm_status st = writer_alignment(w, &align);
  if (st) return st;
  uint8_t *buf = nllm_malloc(WRITE_BUFFER_BYTES);
  if (!buf) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory for the write buffer", path);
  nllm_atomic_file f;
  if ((st = nllm_atomic_file_open(&f, path))) {
    free(buf);
    return st;
  }
  out_file o = {.fd = f.fd, .path = path, .buf = buf};
  write_contents(w, &o, align);
  flush(&o);
  if (o.st)
    nllm_atomic_file_abort(&f);
  else
    o.st = nllm_atomic_file_commit(&f);
  free(buf);
  return o.st;
}
