/* safetensors reader with full validation (see safetensors.h). Every check names the file, the
 * tensor and the numbers, because a hub download that fails to load is otherwise opaque. */
#include "formats/safetensors.h"

#include "core/json.h"

#include <cJSON.h>
#include <stdlib.h>

nllm_status nllm_tensor_list_push(nllm_tensor_list *list, const nllm_tensor *t) {
  if (list->n == list->cap) {
    int64_t cap = list->cap ? list->cap * 2 : 64;
    nllm_tensor *p = nllm_realloc(list->t, (size_t)cap * sizeof *p);
    if (!p) return nllm_err(NLLM_ERR_NOMEM, "out of memory growing the tensor table");
    list->t = p;
    list->cap = cap;
  }
  list->t[list->n++] = *t;
  return NLLM_OK;
}

void nllm_tensor_list_free(nllm_tensor_list *list) {
  free(list->t);
  memset(list, 0, sizeof *list);
}

typedef struct st_dtype {
  const char *name;
  int32_t type; /* NLLM_TYPE_*, or NLLM_TYPE_NONE for dtypes we know but cannot load */
  uint32_t size;
} st_dtype;

/* The safetensors dtype vocabulary; only the float types a transformer's weights use load. */
static const st_dtype st_dtypes[] = {
    {"F32", NLLM_TYPE_F32, 4},   {"F16", NLLM_TYPE_F16, 2},      {"BF16", NLLM_TYPE_BF16, 2},
    {"F64", NLLM_TYPE_NONE, 8},  {"I64", NLLM_TYPE_NONE, 8},     {"U64", NLLM_TYPE_NONE, 8},
    {"I32", NLLM_TYPE_NONE, 4},  {"U32", NLLM_TYPE_NONE, 4},     {"I16", NLLM_TYPE_NONE, 2},
    {"U16", NLLM_TYPE_NONE, 2},  {"I8", NLLM_TYPE_NONE, 1},      {"U8", NLLM_TYPE_NONE, 1},
    {"BOOL", NLLM_TYPE_NONE, 1}, {"F8_E4M3", NLLM_TYPE_NONE, 1}, {"F8_E5M2", NLLM_TYPE_NONE, 1},
};

/* A JSON number that is an exact non-negative integer (doubles are exact up to 2^53). */
static int json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return 0;
  double d = j->valuedouble;
  if (!(d >= 0 && d <= 9007199254740992.0)) return 0;
  uint64_t u = (uint64_t)d;
  if ((double)u != d) return 0;
  *out = u;
  return 1;
}

typedef struct st_span {
  uint64_t begin, end;
  const char *name;
} st_span;

static int span_cmp(const void *a, const void *b) {
  const st_span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(((const st_span *)a)->name, ((const st_span *)b)->name);
}

/* Validates one header entry and fills t (name and data left to the caller). */
static nllm_status parse_entry(const cJSON *e, const char *file, uint64_t data_size, nllm_tensor *t,
                               uint64_t *begin, uint64_t *end) {
  const char *name = e->string;
  if (!cJSON_IsObject(e))
    return nllm_err(NLLM_ERR_FORMAT, "%s: header entry '%s' is not an object", file, name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' needs a string 'dtype', an array 'shape' and an array "
                    "'data_offsets'",
                    file, name);
  const st_dtype *d = NULL;
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(st_dtypes[i].name, dt->valuestring) == 0) d = &st_dtypes[i];
  if (!d)
    return nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%.32s'", file, name,
                    dt->valuestring);
  /* Older transformers saved BERT's position ids (0..n-1, I64) with the weights: a buffer,
   * not a weight. It is checked like any entry, then left out (type NONE). */
  size_t nl = strlen(name);
  const int position_ids =
      nl >= 12 && strcmp(name + nl - 12, "position_ids") == 0 && d->name[0] == 'I';
  if (d->type == NLLM_TYPE_NONE && !position_ids)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: tensor '%s' has dtype %s, which cannot be loaded (supported: F32, F16, "
                    "BF16)",
                    file, name, d->name);

  int nd = cJSON_GetArraySize(sh);
  if (nd > 4)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (at most 4 supported)",
                    file, name, nd);
  memset(t, 0, sizeof *t);
  t->type = d->type;
  t->n_dims = nd ? nd : 1; /* a scalar is a 1-element vector */
  for (int i = 0; i < 4; i++) t->ne[i] = 1;
  uint64_t count = 1;
  for (int i = 0; i < nd; i++) {
    uint64_t dim;
    if (!json_uint(cJSON_GetArrayItem(sh, i), &dim) || dim > (uint64_t)INT64_MAX)
      return nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                      file, name, i);
    /* safetensors lists the slowest dimension first; ne[0] is the contiguous one */
    t->ne[nd - 1 - i] = (int64_t)dim;
    if (!nllm_mul_ok(count, dim, &count))
      return nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s': element count overflows", file, name);
  }
  uint64_t nbytes;
  if (!nllm_mul_ok(count, d->size, &nbytes))
    return nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s': byte size overflows", file, name);

  if (cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), begin) ||
      !json_uint(cJSON_GetArrayItem(off, 1), end))
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s': data_offsets must be two non-negative integers", file, name);
  if (*end < *begin)
    return nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) end before begin",
                    file, name, (unsigned long long)*begin, (unsigned long long)*end);
  if (*end - *begin != nbytes)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s': shape x dtype size is %llu bytes but data_offsets [%llu, "
                    "%llu) span %llu",
                    file, name, (unsigned long long)nbytes, (unsigned long long)*begin,
                    (unsigned long long)*end, (unsigned long long)(*end - *begin));
  if (*end > data_size)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s': data_offsets [%llu, %llu) extend past the end of the data "
                    "section (%llu bytes)",
                    file, name, (unsigned long long)*begin, (unsigned long long)*end,
                    (unsigned long long)data_size);
  t->nbytes = nbytes;
  return NLLM_OK;
}

/* Overlapping spans would let one tensor's writes (quantize in place, a hostile file's aliasing)
 * show up in another, so they are refused; so are two entries with one name. */
static nllm_status check_spans(st_span *spans, int64_t n, const char *file) {
  qsort(spans, (size_t)n, sizeof *spans, span_cmp);
  const st_span *prev = NULL;
  for (int64_t i = 0; i < n; i++) {
    if (spans[i].begin == spans[i].end) continue; /* empty tensors occupy no bytes */
    if (prev && spans[i].begin < prev->end)
      return nllm_err(
          NLLM_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", file,
          prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end, spans[i].name,
          (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
    prev = &spans[i];
  }
  qsort(spans, (size_t)n, sizeof *spans, name_cmp);
  for (int64_t i = 1; i < n; i++)
    if (strcmp(spans[i - 1].name, spans[i].name) == 0)
      return nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' is listed twice in the header", file,
                      spans[i].name);
  return NLLM_OK;
}

nllm_status safetensors_parse(nllm_source *src, const uint8_t *buf, uint64_t size, const char *file,
                              nllm_tensor_list *list) {
  if (size < 8)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: file is %llu bytes, too small for a safetensors header length", file,
                    (unsigned long long)size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
  if (hlen < 2 || hlen > size - 8 || hlen > NLLM_ST_MAX_HEADER)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: header length %llu is invalid (file is %llu bytes; the header must be "
                    "2..%u bytes and fit in the file)",
                    file, (unsigned long long)hlen, (unsigned long long)size, NLLM_ST_MAX_HEADER);
  const uint8_t *data = buf + 8 + hlen;
  uint64_t data_size = size - 8 - hlen;

  nllm_status st;
  cJSON *root = nllm_json_parse((const char *)buf + 8, (size_t)hlen, file, &st);
  if (!root)
    return st == NLLM_ERR_NOMEM
               ? st
               : nllm_err(NLLM_ERR_FORMAT, "%s: header (%llu bytes) is not well-formed JSON", file,
                          (unsigned long long)hlen);
  st_span *spans = NULL;
  if (!cJSON_IsObject(root)) {
    st = nllm_err(NLLM_ERR_FORMAT, "%s: header is JSON but not an object", file);
    goto done;
  }
  int64_t n_entries = cJSON_GetArraySize(root);
  spans = nllm_calloc((size_t)n_entries + 1, sizeof *spans);
  if (!spans) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory reading %lld header entries", file,
                  (long long)n_entries);
    goto done;
  }
  int64_t n = 0;
  for (const cJSON *e = root->child; e; e = e->next) {
    if (strcmp(e->string, "__metadata__") == 0) continue;
    nllm_tensor t;
    uint64_t begin = 0, end = 0;
    if ((st = parse_entry(e, file, data_size, &t, &begin, &end)) != NLLM_OK) goto done;
    if (t.type == NLLM_TYPE_NONE) { /* a skipped buffer still may not overlap a weight */
      spans[n].begin = begin;
      spans[n].end = end;
      spans[n++].name = e->string;
      continue;
    }
    size_t elem = t.type == NLLM_TYPE_F32 ? 4 : 2;
    const uint8_t *p = data + begin;
    if (((uintptr_t)p % elem) != 0) {
      /* Headers are normally padded so data starts aligned; a file that is not still loads,
       * through an aligned copy, rather than handing out misaligned float pointers. */
      uint8_t *copy = nllm_source_alloc(src, (size_t)t.nbytes);
      if (!copy) {
        st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory copying misaligned tensor '%s'", file,
                      e->string);
        goto done;
      }
      memcpy(copy, p, (size_t)t.nbytes);
      p = copy;
    }
    t.data = p;
    t.name = nllm_source_strdup(src, e->string, strlen(e->string));
    if (!t.name) {
      st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", file);
      goto done;
    }
    spans[n].begin = begin;
    spans[n].end = end;
    spans[n].name = t.name;
    n++;
    if ((st = nllm_tensor_list_push(list, &t)) != NLLM_OK) goto done;
  }
  st = check_spans(spans, n, file);
done:
  free(spans);
  cJSON_Delete(root);
  return st;
}

nllm_status safetensors_open(nllm_source *src, const char *path, int use_mmap,
                             nllm_tensor_list *list) {
  nllm_file_map *maps = nllm_realloc(src->maps, (size_t)(src->n_maps + 1) * sizeof *maps);
  if (!maps) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  src->maps = maps;
  nllm_status st = nllm_file_map_open(path, use_mmap, &maps[src->n_maps]);
  if (st != NLLM_OK) return st;
  const nllm_file_map *m = &maps[src->n_maps++];
  return safetensors_parse(src, m->data, m->size, path, list);
}
