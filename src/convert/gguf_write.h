/* GGUF v3 writer, for `nllm quantize`, `nllm convert`, generated test models and tests.
 *
 * Metadata is deep-copied when set; tensor data is only referenced until gguf_writer_write,
 * so it must stay valid until then. Keys keep the order of their first set; setting a key again
 * replaces its value in place. The file is written unnamed (O_TMPFILE) or under an exclusive
 * "<path>.tmp.<pid>.<n>", synced and renamed, so a file under the final name is always complete
 * (core/atomic_file.h; temporaries a killed writer left are removed by the next write). */
#ifndef NLLM_GGUF_WRITE_H
#define NLLM_GGUF_WRITE_H

#include "formats/source.h"

typedef struct gguf_writer gguf_writer;

/* NULL on allocation failure (message set). */
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);

/* Any value (all 13 types, nested arrays included), deep-copied. NLLM_ERR_INVALID_ARG for an
 * invalid type or arrays nested deeper than the reader accepts. */
nllm_status gguf_writer_set(gguf_writer *w, const char *key, const nllm_value *v);
nllm_status gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t x);
nllm_status gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t x);
nllm_status gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t x);
nllm_status gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t x);
nllm_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t x);
nllm_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t x);
nllm_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t x);
nllm_status gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t x);
nllm_status gguf_writer_set_f32(gguf_writer *w, const char *key, float x);
nllm_status gguf_writer_set_f64(gguf_writer *w, const char *key, double x);
nllm_status gguf_writer_set_bool(gguf_writer *w, const char *key, int x);
nllm_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s);
/* Numeric array: n elements of elem_type (NLLM_V_U8..F64 except STRING/ARRAY), packed in host
 * order (little-endian machines only, as the rest of the project). */
nllm_status gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type,
                                const void *data, uint64_t n);
nllm_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *x, uint64_t n);
nllm_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *x, uint64_t n);
nllm_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                    uint64_t n);
/* NLLM_ERR_NOT_FOUND if absent. */
nllm_status gguf_writer_remove(gguf_writer *w, const char *key);
/* Every key of src, in order (replacing keys already set). */
nllm_status gguf_writer_copy_kv(gguf_writer *w, const nllm_source *src);
/* Number of keys currently set. */
int64_t gguf_writer_n_kv(const gguf_writer *w);

/* Appends a tensor; ne has n_dims (1..4) entries, ne[0] the contiguous row. nbytes must equal
 * the size of that shape in that type. Any GGUF type that can be sized is accepted, including
 * ones the reader refuses (tests write those). data is referenced, not copied. */
nllm_status gguf_writer_add_tensor(gguf_writer *w, const char *name, int32_t type, int32_t n_dims,
                                   const int64_t *ne, const void *data, uint64_t nbytes);

/* Writes the file. Alignment is general.alignment when set (a power of two), else 32. Tensor
 * data follows in add order, each start aligned; no padding after the last tensor. */
nllm_status gguf_writer_write(gguf_writer *w, const char *path);

#endif
