/* GGUF reader: turns a GGUF v2/v3 file (little-endian) into an nllm_source.
 *
 * The header is walked twice. The first walk only checks that every length and count fits in
 * the bytes that are really there, allocating nothing; the second copies. So a lying count can
 * at most make the first walk fail, never drive an allocation: what the second walk allocates
 * is proportional to the metadata the file actually contains. Everything is validated before
 * the source is handed out, and on any failure nothing stays allocated and *out is zeroed. */
#include <stdio.h>
#include <stdlib.h>

#include "formats/source.h"
#include "ggml_types.h"

#define GGUF_HEADER_BYTES 24 /* magic, version u32, n_tensors u64, n_kv u64 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
/* Nested arrays recurse; a file must not be able to choose our stack depth. */
#define GGUF_MAX_ARRAY_DEPTH 8
/* Smallest encodings, used to bound counts by the bytes left before trusting them. */
#define GGUF_MIN_KV_BYTES 13 /* key length u64 + value type u32 + a u8 value */
#define GGUF_MIN_TENSOR_BYTES \
  32 /* name length u64 + n_dims u32 + ne[0] u64 + type u32 + offset u64 */
/* Metadata strings (a vocabulary is tens of thousands) are packed into shared chunks rather
 * than one allocation each. */
#define STRING_POOL_CHUNK (64 * 1024)

static const nllm_str empty_str_array[1];
static const nllm_value empty_value_array[1];

typedef struct gguf_reader {
  const uint8_t *buf;
  uint64_t size, pos;
  const char *name;
  nllm_source *src;
  int dry;         /* structure walk: nothing is allocated or stored */
  char where[192]; /* the item being read, for messages: "metadata key 'general.name'" */
  char *pool;
  size_t pool_left;
} gguf_reader;

/* Human-readable size for messages: exact bytes when small, else KiB/MiB/GiB. */
static const char *fmt_size(char *buf, size_t cap, uint64_t n) {
  if (n < 1024 * 1024) {
    snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
  } else if (n < (1ull << 30)) {
    snprintf(buf, cap, "%.1f MiB", (double)n / (1024.0 * 1024.0));
  } else {
    snprintf(buf, cap, "%.2f GiB", (double)n / (1024.0 * 1024.0 * 1024.0));
  }
  return buf;
}

static nllm_status out_of_memory(gguf_reader *r) {
  return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory while reading %s", r->name, r->where);
}

static nllm_status need(gguf_reader *r, uint64_t n, const char *what) {
  if (n <= r->size - r->pos) return NLLM_OK;
  return nllm_err(NLLM_ERR_FORMAT,
                  "%s: file is truncated: the %s of %s at offset %llu needs %llu bytes, but only "
                  "%llu remain (file is %llu bytes)",
                  r->name, what, r->where, (unsigned long long)r->pos, (unsigned long long)n,
                  (unsigned long long)(r->size - r->pos), (unsigned long long)r->size);
}

static uint64_t load_le(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

static nllm_status read_uint(gguf_reader *r, size_t n, const char *what, uint64_t *out) {
  nllm_status st = need(r, n, what);
  if (st) return st;
  *out = load_le(r->buf + r->pos, n);
  r->pos += n;
  return NLLM_OK;
}

static char *pool_copy(gguf_reader *r, const uint8_t *p, uint64_t len) {
  if (len >= STRING_POOL_CHUNK / 4) return nllm_source_strdup(r->src, (const char *)p, len);
  if (len + 1 > r->pool_left) {
    r->pool = nllm_source_alloc(r->src, STRING_POOL_CHUNK);
    if (!r->pool) return NULL;
    r->pool_left = STRING_POOL_CHUNK;
  }
  char *s = r->pool;
  memcpy(s, p, len);
  s[len] = 0;
  r->pool += len + 1;
  r->pool_left -= len + 1;
  return s;
}

/* A GGUF string (u64 length + bytes). raw/raw_len give the bytes in the buffer (for messages);
 * out, when not dry, receives a NUL-terminated copy. */
static nllm_status read_string(gguf_reader *r, const char *what, nllm_str *out, const uint8_t **raw,
                               uint64_t *raw_len) {
  uint64_t len;
  nllm_status st = read_uint(r, 8, what, &len);
  if (st) return st;
  if (len > r->size - r->pos)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: the %s of %s at offset %llu claims %llu bytes, but only %llu remain "
                    "(file is %llu bytes)",
                    r->name, what, r->where, (unsigned long long)(r->pos - 8),
                    (unsigned long long)len, (unsigned long long)(r->size - r->pos),
                    (unsigned long long)r->size);
  if (raw) *raw = r->buf + r->pos;
  if (raw_len) *raw_len = len;
  if (!r->dry && out) {
    char *s = pool_copy(r, r->buf + r->pos, len);
    if (!s) return out_of_memory(r);
    out->s = s;
    out->len = len;
  }
  r->pos += len;
  return NLLM_OK;
}

static void store_scalar(uint32_t type, uint64_t bits, nllm_value *out) {
  out->type = type;
  switch (type) {
    case NLLM_V_I8: out->v.i = (int8_t)bits; break;
    case NLLM_V_I16: out->v.i = (int16_t)bits; break;
    case NLLM_V_I32: out->v.i = (int32_t)bits; break;
    case NLLM_V_I64: out->v.i = (int64_t)bits; break;
    case NLLM_V_F32: {
      uint32_t b = (uint32_t)bits;
      float f;
      memcpy(&f, &b, 4);
      out->v.f = f;
      break;
    }
    case NLLM_V_F64: {
      double d;
      memcpy(&d, &bits, 8);
      out->v.f = d;
      break;
    }
    default: out->v.u = bits; break;
  }
}

static nllm_status read_value(gguf_reader *r, uint32_t type, nllm_value *out, int depth);

/* Array payload: element type u32, count u64, elements. */
static nllm_status read_array(gguf_reader *r, nllm_value *out, int depth) {
  uint64_t et, n;
  nllm_status st = read_uint(r, 4, "array element type", &et);
  if (st) return st;
  if (et >= NLLM_V_COUNT)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: %s: array element type %llu at offset %llu is not a GGUF value type "
                    "(0..12)",
                    r->name, r->where, (unsigned long long)et, (unsigned long long)(r->pos - 4));
  if (et == NLLM_V_ARRAY && depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
    return nllm_err(NLLM_ERR_FORMAT, "%s: %s: arrays are nested more than %d deep", r->name,
                    r->where, GGUF_MAX_ARRAY_DEPTH);
  st = read_uint(r, 8, "array length", &n);
  if (st) return st;
  uint64_t elem_bytes = nllm_value_type_size((uint32_t)et);
  uint64_t min_elem = elem_bytes ? elem_bytes : et == NLLM_V_STRING ? 8 : 12;
  uint64_t left = r->size - r->pos;
  if (n > left / min_elem)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: %s: array of %llu %s elements at offset %llu cannot fit in the %llu "
                    "bytes left (file is %llu bytes)",
                    r->name, r->where, (unsigned long long)n, nllm_value_type_name((uint32_t)et),
                    (unsigned long long)(r->pos - 12), (unsigned long long)left,
                    (unsigned long long)r->size);
  if (!r->dry) {
    out->type = NLLM_V_ARRAY;
    out->v.arr.elem_type = (uint32_t)et;
    out->v.arr.n = n;
  }
  if (elem_bytes) {
    /* Numbers stay in the buffer; readers copy them out unaligned. */
    if (!r->dry) out->v.arr.data = r->buf + r->pos;
    r->pos += n * elem_bytes;
    return NLLM_OK;
  }
  if (et == NLLM_V_STRING) {
    nllm_str *a = NULL;
    if (!r->dry) {
      if (n && !(a = nllm_source_alloc(r->src, n * sizeof *a))) return out_of_memory(r);
      out->v.arr.data = n ? (const void *)a : (const void *)empty_str_array;
    }
    for (uint64_t i = 0; i < n; i++) {
      st = read_string(r, "string array element", a ? &a[i] : NULL, NULL, NULL);
      if (st) return st;
    }
    return NLLM_OK;
  }
  nllm_value *a = NULL, scratch;
  if (!r->dry) {
    if (n && !(a = nllm_source_alloc(r->src, n * sizeof *a))) return out_of_memory(r);
    out->v.arr.data = n ? (const void *)a : (const void *)empty_value_array;
  }
  for (uint64_t i = 0; i < n; i++) {
    st = read_value(r, NLLM_V_ARRAY, a ? &a[i] : &scratch, depth + 1);
    if (st) return st;
  }
  return NLLM_OK;
}

static nllm_status read_value(gguf_reader *r, uint32_t type, nllm_value *out, int depth) {
  size_t sz = nllm_value_type_size(type);
  if (sz) {
    uint64_t bits;
    nllm_status st = read_uint(r, sz, "value", &bits);
    if (st) return st;
    if (!r->dry) store_scalar(type, bits, out);
    return NLLM_OK;
  }
  if (type == NLLM_V_STRING) {
    if (!r->dry) out->type = NLLM_V_STRING;
    return read_string(r, "string value", &out->v.str, NULL, NULL);
  }
  return read_array(r, out, depth);
}

static void set_where(gguf_reader *r, const char *kind, const uint8_t *s, uint64_t len) {
  int shown = len > 120 ? 120 : (int)len;
  snprintf(r->where, sizeof r->where, "%s '%.*s%s'", kind, shown, (const char *)s,
           len > 120 ? "..." : "");
}

static nllm_status read_metadata(gguf_reader *r, uint64_t n_kv) {
  nllm_kv *kv = NULL;
  if (!r->dry && n_kv) {
    snprintf(r->where, sizeof r->where, "the metadata table");
    if (!(kv = nllm_source_alloc(r->src, n_kv * sizeof *kv))) return out_of_memory(r);
    memset(kv, 0, n_kv * sizeof *kv);
    r->src->kv = kv;
  }
  for (uint64_t i = 0; i < n_kv; i++) {
    snprintf(r->where, sizeof r->where, "metadata key #%llu", (unsigned long long)i);
    nllm_str key = {0};
    const uint8_t *raw;
    uint64_t raw_len;
    nllm_status st = read_string(r, "name", &key, &raw, &raw_len);
    if (st) return st;
    set_where(r, "metadata key", raw, raw_len);
    uint64_t type;
    if ((st = read_uint(r, 4, "value type", &type))) return st;
    if (type >= NLLM_V_COUNT)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: %s has value type %llu (at offset %llu), which is not a GGUF value "
                      "type (0..12)",
                      r->name, r->where, (unsigned long long)type,
                      (unsigned long long)(r->pos - 4));
    nllm_value scratch;
    if ((st = read_value(r, (uint32_t)type, kv ? &kv[i].val : &scratch, 0))) return st;
    if (kv) {
      kv[i].key = key.s;
      r->src->n_kv = (int64_t)i + 1;
    }
  }
  return NLLM_OK;
}

/* Where each tensor's bytes lie relative to the data section; sorted to find overlaps. */
typedef struct tensor_span {
  uint64_t start, end;
  int64_t idx;
} tensor_span;

static nllm_status read_tensor_infos(gguf_reader *r, uint64_t n_tensors, tensor_span *spans) {
  nllm_tensor *t = NULL;
  if (!r->dry && n_tensors) {
    snprintf(r->where, sizeof r->where, "the tensor table");
    if (!(t = nllm_source_alloc(r->src, n_tensors * sizeof *t))) return out_of_memory(r);
    memset(t, 0, n_tensors * sizeof *t);
    r->src->tensors = t;
  }
  for (uint64_t i = 0; i < n_tensors; i++) {
    snprintf(r->where, sizeof r->where, "tensor info #%llu", (unsigned long long)i);
    nllm_str name = {0};
    const uint8_t *raw;
    uint64_t raw_len;
    nllm_status st = read_string(r, "name", &name, &raw, &raw_len);
    if (st) return st;
    set_where(r, "tensor", raw, raw_len);
    uint64_t n_dims, ne[GGUF_MAX_DIMS] = {1, 1, 1, 1}, type, offset;
    if ((st = read_uint(r, 4, "dimension count", &n_dims))) return st;
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
      return nllm_err(NLLM_ERR_FORMAT, "%s: %s has %llu dimensions; GGUF allows 1 to %d", r->name,
                      r->where, (unsigned long long)n_dims, GGUF_MAX_DIMS);
    for (uint64_t d = 0; d < n_dims; d++)
      if ((st = read_uint(r, 8, "shape", &ne[d]))) return st;
    if ((st = read_uint(r, 4, "type", &type))) return st;
    if ((st = read_uint(r, 8, "data offset", &offset))) return st;
    if (r->dry) continue;
    t[i].name = name.s;
    t[i].type = (int32_t)(type > INT32_MAX ? INT32_MAX : type);
    t[i].n_dims = (int32_t)n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
      t[i].ne[d] = (int64_t)(ne[d] > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : ne[d]);
    spans[i].start = offset;
    spans[i].idx = (int64_t)i;
    r->src->n_tensors = (int64_t)i + 1;
    /* Shape and type are checked here, while the raw dims are at hand. */
    for (uint64_t d = 0; d < n_dims; d++)
      if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX)
        return nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' has dimension %llu of size %llu", r->name,
                        name.s, (unsigned long long)d, (unsigned long long)ne[d]);
    const char *tname = type < NLLM_GGML_TYPE_COUNT ? nllm_ggml_type_name((int32_t)type) : NULL;
    if (!tname)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: tensor '%s' has type %llu, which is not a GGUF tensor type", r->name,
                      name.s, (unsigned long long)type);
    int32_t block, type_size;
    if (!nllm_ggml_type_block((int32_t)type, &block, &type_size))
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: tensor '%s' has type %s, a layout retired from GGUF that nativellm does "
                      "not support; re-convert the model",
                      r->name, name.s, tname);
    if (!nllm_ggml_type_computed((int32_t)type))
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: tensor '%s' has type %s, which nativellm does not support", r->name,
                      name.s, tname);
    if (ne[0] % (uint64_t)block)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: tensor '%s' has rows of %llu elements, not a multiple of the %s block "
                      "size %d",
                      r->name, name.s, (unsigned long long)ne[0], tname, block);
    uint64_t elems = ne[0], rows = 1, nbytes;
    int ok = 1;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
      ok &= nllm_mul_ok(elems, ne[d], &elems);
      ok &= nllm_mul_ok(rows, ne[d], &rows);
    }
    uint64_t row_bytes = 0;
    ok = ok && elems <= (uint64_t)INT64_MAX &&
         nllm_mul_ok(ne[0] / (uint64_t)block, (uint64_t)type_size, &row_bytes) &&
         nllm_mul_ok(row_bytes, rows, &nbytes);
    if (!ok)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: tensor '%s' of shape %llu x %llu x %llu x %llu is too large (its size "
                      "overflows 64 bits)",
                      r->name, name.s, (unsigned long long)ne[0], (unsigned long long)ne[1],
                      (unsigned long long)ne[2], (unsigned long long)ne[3]);
    t[i].nbytes = nbytes;
    spans[i].end = nbytes; /* made absolute once the data section start is known */
  }
  return NLLM_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_span(const void *a, const void *b) {
  const tensor_span *x = a, *y = b;
  if (x->start != y->start) return x->start < y->start ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts a copy of the names so duplicates sit next to each other: O(n log n) for any count.
 * Sets *dup to the repeated name or NULL. */
static void find_duplicate(const char **names, int64_t n, const char **dup) {
  *dup = NULL;
  if (n < 2) return;
  qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
  for (int64_t i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0) {
      *dup = names[i];
      break;
    }
}

static nllm_status check_duplicate_keys(gguf_reader *r) {
  nllm_source *src = r->src;
  if (src->n_kv < 2) return NLLM_OK;
  snprintf(r->where, sizeof r->where, "the metadata keys");
  const char **names = nllm_malloc((size_t)src->n_kv * sizeof *names);
  if (!names) return out_of_memory(r);
  for (int64_t i = 0; i < src->n_kv; i++) names[i] = src->kv[i].key;
  const char *dup;
  find_duplicate(names, src->n_kv, &dup);
  nllm_status st = NLLM_OK;
  if (dup)
    st = nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' appears more than once", r->name, dup);
  free(names);
  return st;
}

static nllm_status read_alignment(gguf_reader *r) {
  const nllm_value *v = nllm_source_get(r->src, "general.alignment");
  r->src->alignment = GGUF_DEFAULT_ALIGNMENT;
  if (!v) return NLLM_OK;
  uint64_t a;
  if (!nllm_value_uint(v, &a))
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: metadata key 'general.alignment' has type %s, expected u32", r->name,
                    nllm_value_type_name(v->type));
  if (a == 0 || (a & (a - 1))) {
    char shown[64];
    nllm_value_to_text(v, shown, sizeof shown);
    return nllm_err(
        NLLM_ERR_FORMAT,
        "%s: metadata key 'general.alignment' is %s; it must be a non-zero power of two", r->name,
        shown);
  }
  r->src->alignment = a;
  return NLLM_OK;
}

/* Kernels read F32 rows and the float/half scales of quantized blocks as typed values, which
 * needs 4-byte alignment. A file whose general.alignment (1 or 2) or buffer leaves a tensor
 * off that gets the tensor copied into aligned memory owned by the source: it costs memory
 * for such odd files only and spares every kernel an unaligned-access path. */
static nllm_status realign_tensors(gguf_reader *r) {
  nllm_source *src = r->src;
  int64_t copied = 0;
  for (int64_t i = 0; i < src->n_tensors; i++) {
    nllm_tensor *t = &src->tensors[i];
    if ((uintptr_t)t->data % 4 == 0 || !t->nbytes) continue;
    if (t->nbytes > SIZE_MAX) return out_of_memory(r);
    void *copy = nllm_source_alloc(src, (size_t)t->nbytes);
    if (!copy) {
      snprintf(r->where, sizeof r->where, "a realigned copy of tensor '%s'", t->name);
      return out_of_memory(r);
    }
    memcpy(copy, t->data, (size_t)t->nbytes);
    t->data = copy;
    copied++;
  }
  if (copied)
    nllm_log(NLLM_LOG_INFO,
             "%s: %lld tensors are not 4-byte aligned in the file (alignment %llu); "
             "copied to aligned memory",
             r->name, (long long)copied, (unsigned long long)src->alignment);
  return NLLM_OK;
}

/* Places every tensor in the data section and checks alignment, bounds, names and overlap. */
static nllm_status place_tensors(gguf_reader *r, tensor_span *spans) {
  nllm_source *src = r->src;
  int64_t n = src->n_tensors;
  if (!n) return NLLM_OK;
  uint64_t align = src->alignment, data_start = r->pos;
  if (data_start % align && !nllm_add_ok(data_start, align - data_start % align, &data_start))
    data_start = UINT64_MAX;
  char a[32], b[32], c[32];
  for (int64_t i = 0; i < n; i++) {
    nllm_tensor *t = &src->tensors[i];
    uint64_t off = spans[i].start, abs_start, abs_end;
    if (off % align)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: tensor '%s' data offset %llu is not a multiple of the alignment %llu",
                      r->name, t->name, (unsigned long long)off, (unsigned long long)align);
    if (!nllm_add_ok(data_start, off, &abs_start) || !nllm_add_ok(abs_start, t->nbytes, &abs_end) ||
        abs_end > r->size)
      return nllm_err(
          NLLM_ERR_FORMAT, "%s: tensor '%s' extends past end of file (offset %s + %s, file %s)",
          r->name, t->name,
          fmt_size(a, sizeof a, data_start > UINT64_MAX - off ? UINT64_MAX : data_start + off),
          fmt_size(b, sizeof b, t->nbytes), fmt_size(c, sizeof c, r->size));
    t->data = r->buf + abs_start;
    spans[i].end = off + t->nbytes;
  }

  snprintf(r->where, sizeof r->where, "the tensor names");
  const char **names = nllm_malloc((size_t)n * sizeof *names);
  if (!names) return out_of_memory(r);
  for (int64_t i = 0; i < n; i++) names[i] = src->tensors[i].name;
  const char *dup;
  find_duplicate(names, n, &dup);
  if (dup) {
    nllm_status st =
        nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' appears more than once", r->name, dup);
    free(names);
    return st;
  }
  free(names);

  qsort(spans, (size_t)n, sizeof *spans, cmp_span);
  for (int64_t i = 1; i < n; i++)
    if (spans[i].start < spans[i - 1].end)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: tensors '%s' (data bytes %llu..%llu) and '%s' (data bytes %llu..%llu) "
                      "overlap",
                      r->name, src->tensors[spans[i - 1].idx].name,
                      (unsigned long long)spans[i - 1].start, (unsigned long long)spans[i - 1].end,
                      src->tensors[spans[i].idx].name, (unsigned long long)spans[i].start,
                      (unsigned long long)spans[i].end);
  return realign_tensors(r);
}

static nllm_status read_header(gguf_reader *r, uint32_t *version, uint64_t *n_tensors,
                               uint64_t *n_kv) {
  const uint8_t *b = r->buf;
  if (r->size >= 4 && memcmp(b, "GGUF", 4) != 0) {
    char shown[20];
    int k = 0;
    for (int i = 0; i < 4; i++)
      k += snprintf(shown + k, sizeof shown - (size_t)k,
                    b[i] >= 32 && b[i] < 127 ? "%c" : "\\x%02x", b[i]);
    return nllm_err(NLLM_ERR_FORMAT, "%s: not a GGUF file (starts with '%s', expected 'GGUF')",
                    r->name, shown);
  }
  if (r->size < GGUF_HEADER_BYTES)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: file is truncated: %llu bytes, but a GGUF header needs %d", r->name,
                    (unsigned long long)r->size, GGUF_HEADER_BYTES);
  uint32_t v = (uint32_t)load_le(b + 4, 4);
  if (v == 1)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: GGUF version 1 (the 2023 draft with 32-bit counts) is not supported; "
                    "re-convert the model to GGUF v3",
                    r->name);
  if ((v & 0xffff) == 0 && (v >> 16) != 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: big-endian GGUF (version field %u reads as %u byte-swapped) is not "
                    "supported",
                    r->name, v, __builtin_bswap32(v));
  if (v == 0) return nllm_err(NLLM_ERR_FORMAT, "%s: GGUF version 0 is invalid", r->name);
  if (v > 3)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: GGUF version %u is newer than this build understands (2 and 3)", r->name,
                    v);
  *version = v;
  *n_tensors = load_le(b + 8, 8);
  *n_kv = load_le(b + 16, 8);
  uint64_t left = r->size - GGUF_HEADER_BYTES;
  if (*n_kv > left / GGUF_MIN_KV_BYTES)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: header claims %llu metadata keys, but the %llu bytes after the header "
                    "can hold at most %llu (truncated or corrupt file)",
                    r->name, (unsigned long long)*n_kv, (unsigned long long)left,
                    (unsigned long long)(left / GGUF_MIN_KV_BYTES));
  if (*n_tensors > left / GGUF_MIN_TENSOR_BYTES)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: header claims %llu tensors, but the %llu bytes after the header can hold "
                    "at most %llu (truncated or corrupt file)",
                    r->name, (unsigned long long)*n_tensors, (unsigned long long)left,
                    (unsigned long long)(left / GGUF_MIN_TENSOR_BYTES));
  r->pos = GGUF_HEADER_BYTES;
  return NLLM_OK;
}

static nllm_status parse(gguf_reader *r) {
  uint32_t version = 0;
  uint64_t n_tensors = 0, n_kv = 0;
  nllm_status st = read_header(r, &version, &n_tensors, &n_kv);
  if (st) return st;

  r->dry = 1;
  if ((st = read_metadata(r, n_kv)) || (st = read_tensor_infos(r, n_tensors, NULL))) return st;

  r->dry = 0;
  r->pos = GGUF_HEADER_BYTES;
  nllm_source *src = r->src;
  src->gguf_version = version;
  snprintf(r->where, sizeof r->where, "the file name");
  if (!(src->path = nllm_strdup(r->name))) return out_of_memory(r);
  if ((st = read_metadata(r, n_kv)) || (st = check_duplicate_keys(r)) || (st = read_alignment(r)))
    return st;
  tensor_span *spans = NULL;
  if (n_tensors) {
    snprintf(r->where, sizeof r->where, "the tensor table");
    if (!(spans = nllm_malloc(n_tensors * sizeof *spans))) return out_of_memory(r);
  }
  if (!(st = read_tensor_infos(r, n_tensors, spans))) st = place_tensors(r, spans);
  free(spans);
  return st;
}

nllm_status gguf_parse_buffer(const uint8_t *buf, uint64_t size, const char *name,
                              nllm_source *out) {
  if (!out) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf_parse_buffer: out is NULL");
  memset(out, 0, sizeof *out);
  if (!name) name = "<buffer>";
  if (!buf && size) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: buffer is NULL", name);
  gguf_reader r = {.buf = buf ? buf : (const uint8_t *)"", .size = size, .name = name, .src = out};
  nllm_status st = parse(&r);
  if (st) nllm_source_free(out);
  return st;
}

nllm_status gguf_open(const char *path, int use_mmap, nllm_source *out) {
  if (!out) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf_open: out is NULL");
  memset(out, 0, sizeof *out);
  if (!path) return nllm_err(NLLM_ERR_INVALID_ARG, "gguf_open: path is NULL");
  nllm_file_map map;
  nllm_status st = nllm_file_map_open(path, use_mmap, &map);
  if (st) return st;
  st = gguf_parse_buffer(map.data, map.size, path, out);
  if (st) {
    nllm_file_map_close(&map);
    return st;
  }
  if (!(out->maps = nllm_malloc(sizeof *out->maps))) {
    nllm_source_free(out);
    nllm_file_map_close(&map);
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  }
  out->maps[0] = map;
  out->n_maps = 1;
  return NLLM_OK;
}
