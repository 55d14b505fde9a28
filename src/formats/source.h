/* The one neutral description every model file format is turned into: typed metadata
 * (GGUF's key space and value types) plus a table of tensors pointing into mapped files.
 * Architectures and the tokenizer read only this; they never know which format it came from. */
#ifndef NLLM_SOURCE_H
#define NLLM_SOURCE_H

#include "core/core.h"

/* Value types, numbered as GGUF's gguf_type. */
enum {
  NLLM_V_U8 = 0,
  NLLM_V_I8 = 1,
  NLLM_V_U16 = 2,
  NLLM_V_I16 = 3,
  NLLM_V_U32 = 4,
  NLLM_V_I32 = 5,
  NLLM_V_F32 = 6,
  NLLM_V_BOOL = 7,
  NLLM_V_STRING = 8,
  NLLM_V_ARRAY = 9,
  NLLM_V_U64 = 10,
  NLLM_V_I64 = 11,
  NLLM_V_F64 = 12,
  NLLM_V_COUNT
};

typedef struct nllm_str {
  const char *s; /* NUL-terminated copy owned by the source; may contain NULs before len */
  uint64_t len;
} nllm_str;

typedef struct nllm_value nllm_value;
struct nllm_value {
  uint32_t type;
  union {
    uint64_t u;   /* U8..U64, BOOL */
    int64_t i;    /* I8..I64 */
    double f;     /* F32, F64 */
    nllm_str str; /* STRING */
    struct {
      uint32_t elem_type;
      uint64_t n;
      /* numeric elements: n values of elem_type, packed little-endian as in the file, possibly
       * unaligned (read with nllm_value_arr_*); STRING: nllm_str[n]; ARRAY: nllm_value[n] */
      const void *data;
    } arr;
  } v;
};

typedef struct nllm_kv {
  const char *key;
  nllm_value val;
} nllm_kv;

typedef struct nllm_tensor {
  const char *name;
  int32_t type; /* NLLM_TYPE_* */
  int32_t n_dims;
  int64_t ne[4]; /* ne[0] = contiguous row length; unused dims are 1 */
  uint64_t nbytes;
  const void *data; /* inside a mapping or an owned buffer of the source */
} nllm_tensor;

typedef struct nllm_source {
  char *path;
  nllm_kv *kv;
  int64_t n_kv;
  nllm_tensor *tensors;
  int64_t n_tensors;
  uint32_t gguf_version; /* 0 when not from GGUF */
  uint64_t alignment;
  /* Ownership: mapped files and heap blocks freed by nllm_source_free. */
  nllm_file_map *maps;
  int32_t n_maps;
  void **blocks;
  int64_t n_blocks, cap_blocks;
} nllm_source;

/* Heap block owned by the source (freed with it). NULL on OOM. */
void *nllm_source_alloc(nllm_source *src, size_t size);
char *nllm_source_strdup(nllm_source *src, const char *s, size_t len);
void nllm_source_free(nllm_source *src);

/* Copies the tensors that lie in a mapped file and that wanted() accepts into one buffer owned
 * by the source, and points them there (the metadata keeps pointing into the mapping). Used
 * where only part of a model is computed by the CPU: that part reads memory on huge pages, the
 * rest stays in the file's page cache. */
nllm_status nllm_source_copy_tensors(nllm_source *src,
                                     int (*wanted)(const nllm_tensor *t, void *user), void *user);
const nllm_value *nllm_source_get(const nllm_source *src, const char *key);
const nllm_tensor *nllm_source_tensor(const nllm_source *src, const char *name);

/* Typed getters: NLLM_OK, NLLM_ERR_NOT_FOUND (absent) or NLLM_ERR_FORMAT (wrong type; message
 * names the key). get_int accepts any integer/bool; get_float accepts floats and integers. */
nllm_status nllm_source_get_int(const nllm_source *src, const char *key, int64_t *out);
nllm_status nllm_source_get_float(const nllm_source *src, const char *key, double *out);
nllm_status nllm_source_get_str(const nllm_source *src, const char *key, const char **out);
/* A non-bool integer value as unsigned (negative as 0) in *out: 1; any other type: 0. */
int nllm_value_uint(const nllm_value *v, uint64_t *out);
/* Array element readers (caller guarantees idx < n). */
int64_t nllm_value_arr_int(const nllm_value *v, uint64_t idx);
double nllm_value_arr_float(const nllm_value *v, uint64_t idx);
const nllm_str *nllm_value_arr_str(const nllm_value *v, uint64_t idx);
/* Size in bytes of one numeric element type; 0 for STRING/ARRAY/unknown. */
size_t nllm_value_type_size(uint32_t type);
const char *nllm_value_type_name(uint32_t type);
/* Renders a value as text ("[512 strings]" for big arrays). Returns chars written (excl NUL). */
int nllm_value_to_text(const nllm_value *v, char *buf, size_t cap);

/* Open any model path: a GGUF file or a Hugging Face directory. */
nllm_status nllm_source_open(const char *path, int use_mmap, nllm_source *out);

/* GGUF (src/formats/gguf.c): parse and fully validate; on failure nothing stays allocated. */
nllm_status gguf_open(const char *path, int use_mmap, nllm_source *out);
/* Same on a caller's buffer (used by tests and fuzzers); tensors point into buf. */
nllm_status gguf_parse_buffer(const uint8_t *buf, uint64_t size, const char *name,
                              nllm_source *out);

/* Hugging Face directory (src/formats/hf.c). */
nllm_status hf_open(const char *dir, int use_mmap, nllm_source *out);

#endif
