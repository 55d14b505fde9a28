/* GGUF reader and writer: metadata round trips, hostile files, the real test models, and
 * allocation failure at every step. */
#include <stdint.h>
#include <dirent.h>
#include <fnmatch.h>
#include <sys/stat.h>

#include "convert/gguf_write.h"
#include "formats/source.h"
#include "formats/ggml_types.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

static char tmp_dir[256];

/* tmp_dir is made once in main, before Check forks the tests. */
static const char *tmp_path(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", tmp_dir, name);
  return buf;
}

/* Growable byte buffer for files built by hand, so tests can write what the writer refuses. */
typedef struct bytes {
  uint8_t *p;
  size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    ck_assert_ptr_nonnull(b->p);
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
}
static void b_le(bytes *b, uint64_t v, int n) {
  uint8_t t[8];
  for (int i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
  b_put(b, t, (size_t)n);
}
static void b_u32(bytes *b, uint32_t v) {
  b_le(b, v, 4);
}
static void b_u64(bytes *b, uint64_t v) {
  b_le(b, v, 8);
}
static void b_str(bytes *b, const char *s) {
  b_u64(b, strlen(s));
  b_put(b, s, strlen(s));
}
static void b_zeros(bytes *b, size_t n) {
  for (size_t i = 0; i < n; i++) b_le(b, 0, 1);
}
static void b_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  b_put(b, "GGUF", 4);
  b_u32(b, version);
  b_u64(b, n_tensors);
  b_u64(b, n_kv);
}
static void b_kv_str(bytes *b, const char *key, const char *val) {
  b_str(b, key);
  b_u32(b, NLLM_V_STRING);
  b_str(b, val);
}

typedef struct tspec {
  const char *name;
  uint32_t n_dims;
  uint64_t ne[5];
  uint32_t type;
  uint64_t offset;
} tspec;

/* One string key, the tensor infos given, padding to 32, then data_bytes of data. */
static bytes make_file(const tspec *t, int nt, uint64_t data_bytes) {
  bytes b = {0};
  b_header(&b, 3, (uint64_t)nt, 1);
  b_kv_str(&b, "general.architecture", "llama");
  for (int i = 0; i < nt; i++) {
    b_str(&b, t[i].name);
    b_u32(&b, t[i].n_dims);
    for (uint32_t d = 0; d < t[i].n_dims; d++) b_u64(&b, t[i].ne[d]);
    b_u32(&b, t[i].type);
    b_u64(&b, t[i].offset);
  }
  b_zeros(&b, (32 - b.n % 32) % 32);
  b_zeros(&b, data_bytes);
  return b;
}

/* Parses from an exact-size heap copy, so ASan flags any read past the end. */
static nllm_status parse_exact(const uint8_t *p, size_t n, nllm_source *src) {
  uint8_t *copy = malloc(n ? n : 1);
  ck_assert_ptr_nonnull(copy);
  if (n) memcpy(copy, p, n);
  nllm_status st = gguf_parse_buffer(copy, n, "hostile.gguf", src);
  if (st == NLLM_OK) {
    nllm_source_free(src);
    memset(src, 0, sizeof *src);
  }
  free(copy);
  return st;
}

static int source_is_zero(const nllm_source *s) {
  static const nllm_source zero;
  return memcmp(s, &zero, sizeof zero) == 0;
}

#define EXPECT_REJECT(buf, len, status, substr)                                                   \
  do {                                                                                            \
    nllm_source src_;                                                                             \
    nllm_status st_ = parse_exact((buf), (len), &src_);                                           \
    ck_assert_msg(st_ == (status), "expected %d, got %d (%s)", (status), st_, nllm_last_error()); \
    ck_assert_msg(strstr(nllm_last_error(), (substr)) != NULL, "message '%s' lacks '%s'",         \
                  nllm_last_error(), (substr));                                                   \
    ck_assert(source_is_zero(&src_));                                                             \
  } while (0)

static int values_equal(const nllm_value *a, const nllm_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
    case NLLM_V_STRING:
      return a->v.str.len == b->v.str.len && !memcmp(a->v.str.s, b->v.str.s, a->v.str.len) &&
             a->v.str.s[a->v.str.len] == 0 && b->v.str.s[b->v.str.len] == 0;
    case NLLM_V_F32:
    case NLLM_V_F64: return a->v.f == b->v.f;
    case NLLM_V_I8:
    case NLLM_V_I16:
    case NLLM_V_I32:
    case NLLM_V_I64: return a->v.i == b->v.i;
    case NLLM_V_ARRAY: {
      uint32_t et = a->v.arr.elem_type;
      uint64_t n = a->v.arr.n;
      if (et != b->v.arr.elem_type || n != b->v.arr.n) return 0;
      size_t esz = nllm_value_type_size(et);
      if (esz) return n == 0 || !memcmp(a->v.arr.data, b->v.arr.data, n * esz);
      for (uint64_t i = 0; i < n; i++) {
        if (et == NLLM_V_STRING) {
          const nllm_str *x = nllm_value_arr_str(a, i), *y = nllm_value_arr_str(b, i);
          if (x->len != y->len || memcmp(x->s, y->s, x->len) || x->s[x->len]) return 0;
        } else if (!values_equal(&((const nllm_value *)a->v.arr.data)[i],
                                 &((const nllm_value *)b->v.arr.data)[i])) {
          return 0;
        }
      }
      return 1;
    }
    default: return a->v.u == b->v.u;
  }
}

/* ---------------------------------------------------------------- round trip */

static const float tensor_f32[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static uint8_t tensor_q8[2 * 34];

/* A writer holding every value type, including nested and empty arrays and empty strings. */
static gguf_writer *make_full_writer(void) {
  gguf_writer *w = gguf_writer_new();
  ck_assert_ptr_nonnull(w);
  ck_assert_int_eq(gguf_writer_set_u8(w, "t.u8", 250), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_i8(w, "t.i8", -120), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_u16(w, "t.u16", 65000), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_i16(w, "t.i16", -32000), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_u32(w, "t.u32", 4000000000u), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_i32(w, "t.i32", -2000000000), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_f32(w, "t.f32", 1.5e-5f), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_bool(w, "t.bool", 1), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_str(w, "t.str", "héllo wörld"), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_str(w, "t.str_empty", ""), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_u64(w, "t.u64", UINT64_MAX - 5), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_i64(w, "t.i64", INT64_MIN + 7), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_f64(w, "t.f64", 3.141592653589793), NLLM_OK);
  nllm_value nul_str = {.type = NLLM_V_STRING, .v.str = {"a\0b", 3}};
  ck_assert_int_eq(gguf_writer_set(w, "t.str_nul", &nul_str), NLLM_OK);

  /* One numeric array per element type. */
  static const uint8_t raw[8 * 5] = {1,    2,    3,    4,  5,  6,  7,  8,  9,  10,
                                     11,   12,   13,   14, 15, 16, 17, 18, 19, 20,
                                     0xff, 0x80, 0x7f, 0,  1,  0,  1,  1,  0,  0};
  static const uint32_t numeric[] = {NLLM_V_U8,  NLLM_V_I8,  NLLM_V_U16, NLLM_V_I16,
                                     NLLM_V_U32, NLLM_V_I32, NLLM_V_F32, NLLM_V_BOOL,
                                     NLLM_V_U64, NLLM_V_I64, NLLM_V_F64};
  for (size_t i = 0; i < sizeof numeric / sizeof *numeric; i++) {
    char key[64];
    snprintf(key, sizeof key, "arr.%s", nllm_value_type_name(numeric[i]));
    uint64_t n = numeric[i] == NLLM_V_BOOL ? 3 : 5;
    const uint8_t *src = numeric[i] == NLLM_V_BOOL ? (const uint8_t[]){0, 1, 1} : raw;
    ck_assert_int_eq(gguf_writer_set_arr(w, key, numeric[i], src, n), NLLM_OK);
  }
  const float f[3] = {0.5f, -2.0f, 1e30f};
  const int32_t ints[3] = {-1, 0, 7};
  ck_assert_int_eq(gguf_writer_set_arr_f32(w, "arr.f32b", f, 3), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_arr_i32(w, "arr.i32b", ints, 3), NLLM_OK);
  const char *strs[4] = {"<s>", "", "▁the", "end"};
  ck_assert_int_eq(gguf_writer_set_arr_str(w, "arr.str", strs, 4), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_arr_str(w, "arr.str_empty", NULL, 0), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_arr(w, "arr.u32_empty", NLLM_V_U32, NULL, 0), NLLM_OK);

  /* [[1, 2], [], [[...]]]-style nesting: arrays of arrays of numbers and of strings. */
  nllm_value inner[3] = {{.type = NLLM_V_ARRAY}, {.type = NLLM_V_ARRAY}, {.type = NLLM_V_ARRAY}};
  inner[0].v.arr.elem_type = NLLM_V_I32;
  inner[0].v.arr.n = 3;
  inner[0].v.arr.data = ints;
  inner[1].v.arr.elem_type = NLLM_V_F32;
  inner[1].v.arr.n = 0;
  inner[1].v.arr.data = f;
  nllm_str s2[2] = {{"x", 1}, {"", 0}};
  inner[2].v.arr.elem_type = NLLM_V_STRING;
  inner[2].v.arr.n = 2;
  inner[2].v.arr.data = s2;
  nllm_value nested = {.type = NLLM_V_ARRAY};
  nested.v.arr.elem_type = NLLM_V_ARRAY;
  nested.v.arr.n = 3;
  nested.v.arr.data = inner;
  ck_assert_int_eq(gguf_writer_set(w, "arr.nested", &nested), NLLM_OK);
  nllm_value outer = {.type = NLLM_V_ARRAY};
  outer.v.arr.elem_type = NLLM_V_ARRAY;
  outer.v.arr.n = 1;
  outer.v.arr.data = &nested;
  ck_assert_int_eq(gguf_writer_set(w, "arr.nested2", &outer), NLLM_OK);
  nllm_value empty_nested = {.type = NLLM_V_ARRAY};
  empty_nested.v.arr.elem_type = NLLM_V_ARRAY;
  ck_assert_int_eq(gguf_writer_set(w, "arr.nested_empty", &empty_nested), NLLM_OK);

  for (int i = 0; i < 2; i++) tensor_q8[i * 34] = 0x3c; /* fp16 1.0 scale */
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 32; j++) tensor_q8[i * 34 + 2 + j] = (uint8_t)(j - 16);
  const int64_t ne_f32[2] = {4, 3}, ne_q8[1] = {64};
  ck_assert_int_eq(
      gguf_writer_add_tensor(w, "w.f32", NLLM_TYPE_F32, 2, ne_f32, tensor_f32, sizeof tensor_f32),
      NLLM_OK);
  ck_assert_int_eq(
      gguf_writer_add_tensor(w, "w.q8", NLLM_TYPE_Q8_0, 1, ne_q8, tensor_q8, sizeof tensor_q8),
      NLLM_OK);
  return w;
}

static void check_same_kv(const nllm_source *s, const nllm_source *expected) {
  ck_assert_int_eq(s->n_kv, expected->n_kv);
  for (int64_t i = 0; i < s->n_kv; i++) {
    ck_assert_str_eq(s->kv[i].key, expected->kv[i].key);
    ck_assert_msg(values_equal(&s->kv[i].val, &expected->kv[i].val), "value of '%s' differs",
                  s->kv[i].key);
  }
}

START_TEST(roundtrip_all_types_v3_and_v2) {
  gguf_writer *w = make_full_writer();
  const char *path = tmp_path("full.gguf");
  ck_assert_int_eq(gguf_writer_write(w, path), NLLM_OK);
  gguf_writer_free(w);

  nllm_source s;
  ck_assert_msg(gguf_open(path, 1, &s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_uint_eq(s.gguf_version, 3);
  ck_assert_uint_eq(s.alignment, 32);
  int64_t iv;
  double fv;
  const char *sv;
  ck_assert_int_eq(nllm_source_get_int(&s, "t.u8", &iv), NLLM_OK);
  ck_assert_int_eq(iv, 250);
  ck_assert_int_eq(nllm_source_get_int(&s, "t.i8", &iv), NLLM_OK);
  ck_assert_int_eq(iv, -120);
  ck_assert_int_eq(nllm_source_get_int(&s, "t.u16", &iv), NLLM_OK);
  ck_assert_int_eq(iv, 65000);
  ck_assert_int_eq(nllm_source_get_int(&s, "t.i16", &iv), NLLM_OK);
  ck_assert_int_eq(iv, -32000);
  ck_assert_int_eq(nllm_source_get_int(&s, "t.u32", &iv), NLLM_OK);
  ck_assert_int_eq(iv, 4000000000LL);
  ck_assert_int_eq(nllm_source_get_int(&s, "t.i32", &iv), NLLM_OK);
  ck_assert_int_eq(iv, -2000000000);
  ck_assert_int_eq(nllm_source_get_float(&s, "t.f32", &fv), NLLM_OK);
  ck_assert(fv == (double)1.5e-5f);
  ck_assert_int_eq(nllm_source_get_int(&s, "t.bool", &iv), NLLM_OK);
  ck_assert_int_eq(iv, 1);
  ck_assert_int_eq(nllm_source_get_str(&s, "t.str", &sv), NLLM_OK);
  ck_assert_str_eq(sv, "héllo wörld");
  ck_assert_int_eq(nllm_source_get_str(&s, "t.str_empty", &sv), NLLM_OK);
  ck_assert_str_eq(sv, "");
  ck_assert_uint_eq(nllm_source_get(&s, "t.u64")->v.u, UINT64_MAX - 5);
  ck_assert_int_eq(nllm_source_get_int(&s, "t.i64", &iv), NLLM_OK);
  ck_assert_int_eq(iv, INT64_MIN + 7);
  ck_assert_int_eq(nllm_source_get_float(&s, "t.f64", &fv), NLLM_OK);
  ck_assert(fv == 3.141592653589793);
  const nllm_value *v = nllm_source_get(&s, "t.str_nul");
  ck_assert_uint_eq(v->v.str.len, 3);
  ck_assert(memcmp(v->v.str.s, "a\0b", 4) == 0);

  v = nllm_source_get(&s, "arr.i16");
  ck_assert_uint_eq(v->v.arr.n, 5);
  ck_assert_int_eq(nllm_value_arr_int(v, 0), 0x0201);
  v = nllm_source_get(&s, "arr.i8");
  ck_assert_int_eq(nllm_value_arr_int(v, 0), 1);
  v = nllm_source_get(&s, "arr.f32b");
  ck_assert(nllm_value_arr_float(v, 1) == -2.0);
  ck_assert(nllm_value_arr_float(v, 2) == (double)1e30f);
  v = nllm_source_get(&s, "arr.i32b");
  ck_assert_int_eq(nllm_value_arr_int(v, 0), -1);
  v = nllm_source_get(&s, "arr.bool");
  ck_assert_int_eq(nllm_value_arr_int(v, 1), 1);
  v = nllm_source_get(&s, "arr.str");
  ck_assert_uint_eq(v->v.arr.elem_type, NLLM_V_STRING);
  ck_assert_uint_eq(v->v.arr.n, 4);
  ck_assert_str_eq(nllm_value_arr_str(v, 2)->s, "▁the");
  ck_assert_uint_eq(nllm_value_arr_str(v, 1)->len, 0);
  ck_assert_uint_eq(nllm_source_get(&s, "arr.str_empty")->v.arr.n, 0);
  ck_assert_uint_eq(nllm_source_get(&s, "arr.u32_empty")->v.arr.n, 0);
  v = nllm_source_get(&s, "arr.nested");
  ck_assert_uint_eq(v->v.arr.elem_type, NLLM_V_ARRAY);
  ck_assert_uint_eq(v->v.arr.n, 3);
  const nllm_value *in = v->v.arr.data;
  ck_assert_int_eq(nllm_value_arr_int(&in[0], 2), 7);
  ck_assert_uint_eq(in[1].v.arr.n, 0);
  ck_assert_str_eq(nllm_value_arr_str(&in[2], 0)->s, "x");
  v = nllm_source_get(&s, "arr.nested2");
  ck_assert_uint_eq(((const nllm_value *)v->v.arr.data)[0].v.arr.n, 3);
  ck_assert_uint_eq(nllm_source_get(&s, "arr.nested_empty")->v.arr.n, 0);

  const nllm_tensor *t = nllm_source_tensor(&s, "w.f32");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->type, NLLM_TYPE_F32);
  ck_assert_int_eq(t->n_dims, 2);
  ck_assert_int_eq(t->ne[0], 4);
  ck_assert_int_eq(t->ne[1], 3);
  ck_assert_int_eq(t->ne[2], 1);
  ck_assert_int_eq(t->ne[3], 1);
  ck_assert_uint_eq(t->nbytes, sizeof tensor_f32);
  ck_assert(memcmp(t->data, tensor_f32, sizeof tensor_f32) == 0);
  ck_assert_uint_eq(((uintptr_t)t->data - (uintptr_t)s.maps[0].data) % 32, 0);
  t = nllm_source_tensor(&s, "w.q8");
  ck_assert_int_eq(t->type, NLLM_TYPE_Q8_0);
  ck_assert_uint_eq(t->nbytes, 68);
  ck_assert(memcmp(t->data, tensor_q8, 68) == 0);

  /* The same bytes read without mmap, and as version 2 (identical layout). */
  nllm_source r;
  ck_assert_int_eq(gguf_open(path, 0, &r), NLLM_OK);
  check_same_kv(&r, &s);
  nllm_source_free(&r);
  size_t len;
  char *file = read_file(path, &len);
  ck_assert_ptr_nonnull(file);
  file[4] = 2;
  ck_assert_int_eq(gguf_parse_buffer((const uint8_t *)file, len, "v2.gguf", &r), NLLM_OK);
  ck_assert_uint_eq(r.gguf_version, 2);
  ck_assert_str_eq(r.path, "v2.gguf");
  check_same_kv(&r, &s);
  ck_assert(memcmp(nllm_source_tensor(&r, "w.f32")->data, tensor_f32, sizeof tensor_f32) == 0);
  nllm_source_free(&r);
  free(file);

  /* Writing what was read reproduces it (copy_kv + tensors). */
  gguf_writer *w2 = gguf_writer_new();
  ck_assert_int_eq(gguf_writer_copy_kv(w2, &s), NLLM_OK);
  ck_assert_int_eq(gguf_writer_n_kv(w2), s.n_kv);
  for (int64_t i = 0; i < s.n_tensors; i++) {
    const nllm_tensor *x = &s.tensors[i];
    ck_assert_int_eq(
        gguf_writer_add_tensor(w2, x->name, x->type, x->n_dims, x->ne, x->data, x->nbytes),
        NLLM_OK);
  }
  const char *path2 = tmp_path("copy.gguf");
  ck_assert_int_eq(gguf_writer_write(w2, path2), NLLM_OK);
  gguf_writer_free(w2);
  size_t len1 = 0, len2 = 0;
  char *a = read_file(path, &len1), *b = read_file(path2, &len2);
  ck_assert_uint_eq(len1, len2);
  ck_assert(memcmp(a, b, len1) == 0);
  free(a);
  free(b);
  nllm_source_free(&s);
  ck_assert(source_is_zero(&s));
}
END_TEST

START_TEST(writer_alignment_replace_remove) {
  gguf_writer *w = gguf_writer_new();
  ck_assert_int_eq(gguf_writer_set_u32(w, "general.alignment", 64), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_str(w, "a", "first"), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_str(w, "b", "x"), NLLM_OK);
  ck_assert_int_eq(gguf_writer_set_i32(w, "a", 5), NLLM_OK); /* replaced in place */
  ck_assert_int_eq(gguf_writer_remove(w, "b"), NLLM_OK);
  ck_assert_int_eq(gguf_writer_remove(w, "b"), NLLM_ERR_NOT_FOUND);
  ck_assert_int_eq(gguf_writer_n_kv(w), 2);
  const float x[3] = {1, 2, 3};
  const int64_t ne3[1] = {3}, ne_bad[1] = {33};
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t0", NLLM_TYPE_F32, 1, ne3, x, 12), NLLM_OK);
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t1", NLLM_TYPE_F32, 1, ne3, x, 12), NLLM_OK);
  /* Refused by the writer: wrong size, duplicate, row not a block multiple, bad dims, type. */
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t2", NLLM_TYPE_F32, 1, ne3, x, 8),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t1", NLLM_TYPE_F32, 1, ne3, x, 12),
                   NLLM_ERR_INVALID_ARG);
  ck_assert(strstr(nllm_last_error(), "added twice"));
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t3", NLLM_TYPE_Q4_0, 1, ne_bad, x, 18),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t4", NLLM_TYPE_F32, 5, ne3, x, 12),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(gguf_writer_add_tensor(w, "t5", 4, 1, ne3, x, 12), NLLM_ERR_INVALID_ARG);
  nllm_value bad = {.type = 13};
  ck_assert_int_eq(gguf_writer_set(w, "bad", &bad), NLLM_ERR_INVALID_ARG);

  const char *path = tmp_path("aligned.gguf");
  ck_assert_int_eq(gguf_writer_write(w, path), NLLM_OK);
  nllm_source s;
  ck_assert_int_eq(gguf_open(path, 1, &s), NLLM_OK);
  ck_assert_uint_eq(s.alignment, 64);
  ck_assert_int_eq(s.n_kv, 2);
  ck_assert_str_eq(s.kv[1].key, "a");
  ck_assert_uint_eq(s.kv[1].val.type, NLLM_V_I32);
  for (int i = 0; i < 2; i++)
    ck_assert_uint_eq(((uintptr_t)s.tensors[i].data - (uintptr_t)s.maps[0].data) % 64, 0);
  ck_assert(memcmp(s.tensors[1].data, x, 12) == 0);
  nllm_source_free(&s);

  /* No temporary is left behind, on success or failure. */
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  ck_assert_int_ne(access(tmp, F_OK), 0);
  const char *bad_path = tmp_path("no/such/dir/x.gguf");
  ck_assert_int_eq(gguf_writer_write(w, bad_path), NLLM_ERR_IO);
  /* the message names the user's path, not the temporary file's */
  ck_assert_msg(strstr(nllm_last_error(), bad_path) && !strstr(nllm_last_error(), ".tmp."), "%s",
                nllm_last_error());
  ck_assert_int_eq(gguf_writer_set_u32(w, "general.alignment", 48), NLLM_OK);
  ck_assert_int_eq(gguf_writer_write(w, tmp_path("bad_align.gguf")), NLLM_ERR_INVALID_ARG);
  gguf_writer_free(w);
  gguf_writer_free(NULL);
}
END_TEST

/* ---------------------------------------------------------------- hostile files */

START_TEST(hostile_header) {
  bytes b = {0};
  b_put(&b, "GGML", 4);
  b_u32(&b, 3);
  b_u64(&b, 0);
  b_u64(&b, 0);
  EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "not a GGUF file");
  EXPECT_REJECT(b.p, 0, NLLM_ERR_FORMAT, "truncated");
  memcpy(b.p, "GGUF", 4);
  EXPECT_REJECT(b.p, 10, NLLM_ERR_FORMAT, "truncated");
  ck_assert_int_eq(parse_exact(b.p, b.n, &(nllm_source){0}), NLLM_OK); /* empty but valid */
  static const struct {
    uint32_t v;
    nllm_status st;
    const char *msg;
  } versions[] = {
      {0, NLLM_ERR_FORMAT, "version 0"},
      {1, NLLM_ERR_UNSUPPORTED, "version 1"},
      {4, NLLM_ERR_UNSUPPORTED, "version 4"},
      {99, NLLM_ERR_UNSUPPORTED, "version 99"},
      {0x03000000u, NLLM_ERR_UNSUPPORTED, "big-endian"},
  };
  for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
    uint32_t v = versions[i].v;
    memcpy(b.p + 4, &v, 4);
    EXPECT_REJECT(b.p, b.n, versions[i].st, versions[i].msg);
  }
  free(b.p);
}
END_TEST

static const uint64_t huge[] = {1ull << 40, 1ull << 63, UINT64_MAX};

START_TEST(hostile_lying_counts) {
  for (size_t h = 0; h < 3; h++) {
    bytes b = {0};
    b_header(&b, 3, 0, huge[h]);
    b_kv_str(&b, "k", "v");
    EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "metadata keys");
    free(b.p);

    b = (bytes){0};
    b_header(&b, 3, huge[h], 0);
    b_zeros(&b, 100);
    EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "tensors");
    free(b.p);

    b = (bytes){0}; /* key length */
    b_header(&b, 3, 0, 1);
    b_u64(&b, huge[h]);
    b_put(&b, "abcdefgh", 8);
    EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "claims");
    free(b.p);

    b = (bytes){0}; /* string value length */
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.name");
    b_u32(&b, NLLM_V_STRING);
    b_u64(&b, huge[h]);
    b_put(&b, "abcdefgh", 8);
    EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "general.name");
    free(b.p);

    static const uint32_t elems[] = {NLLM_V_U8, NLLM_V_F64, NLLM_V_STRING, NLLM_V_ARRAY};
    for (size_t e = 0; e < 4; e++) { /* array length */
      b = (bytes){0};
      b_header(&b, 3, 0, 1);
      b_str(&b, "tokenizer.ggml.tokens");
      b_u32(&b, NLLM_V_ARRAY);
      b_u32(&b, elems[e]);
      b_u64(&b, huge[h]);
      b_zeros(&b, 64);
      EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "cannot fit");
      free(b.p);
    }

    b = (bytes){0}; /* a string inside an array */
    b_header(&b, 3, 0, 1);
    b_str(&b, "tokenizer.ggml.tokens");
    b_u32(&b, NLLM_V_ARRAY);
    b_u32(&b, NLLM_V_STRING);
    b_u64(&b, 2);
    b_str(&b, "ok");
    b_u64(&b, huge[h]);
    b_zeros(&b, 16);
    EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "string array element");
    free(b.p);

    b = (bytes){0}; /* tensor name length */
    b_header(&b, 3, 1, 0);
    b_u64(&b, huge[h]);
    b_zeros(&b, 64);
    EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "claims");
    free(b.p);
  }
}
END_TEST

START_TEST(hostile_values) {
  bytes b = {0};
  b_header(&b, 3, 0, 1);
  b_str(&b, "general.x");
  b_u32(&b, 13);
  b_u32(&b, 0);
  EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "value type 13");
  free(b.p);

  b = (bytes){0};
  b_header(&b, 3, 0, 1);
  b_str(&b, "general.x");
  b_u32(&b, NLLM_V_ARRAY);
  b_u32(&b, 0xffffffffu);
  b_u64(&b, 1);
  b_zeros(&b, 8);
  EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "element type 4294967295");
  free(b.p);

  b = (bytes){0}; /* arrays nested beyond the limit */
  b_header(&b, 3, 0, 1);
  b_str(&b, "deep");
  b_u32(&b, NLLM_V_ARRAY);
  for (int i = 0; i < 20; i++) {
    b_u32(&b, NLLM_V_ARRAY);
    b_u64(&b, 1);
  }
  b_zeros(&b, 16);
  EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "nested");
  free(b.p);

  b = (bytes){0};
  b_header(&b, 3, 0, 3);
  b_kv_str(&b, "general.name", "a");
  b_kv_str(&b, "general.architecture", "llama");
  b_kv_str(&b, "general.name", "b");
  EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "'general.name' appears more than once");
  free(b.p);

  static const uint32_t bad_align[] = {0, 3, 48};
  for (int i = 0; i < 3; i++) {
    b = (bytes){0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, NLLM_V_U32);
    b_u32(&b, bad_align[i]);
    EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "power of two");
    free(b.p);
  }
  b = (bytes){0};
  b_header(&b, 3, 0, 1);
  b_kv_str(&b, "general.alignment", "32");
  EXPECT_REJECT(b.p, b.n, NLLM_ERR_FORMAT, "general.alignment");
  free(b.p);
}
END_TEST

START_TEST(hostile_tensors) {
  static const struct {
    tspec t[2];
    int nt;
    uint64_t data;
    nllm_status st;
    const char *msg;
  } cases[] = {
      {{{"a", 1, {8}, 0, 4}},
       1,
       64,
       NLLM_ERR_FORMAT,
       "offset 4 is not a multiple of the alignment 32"},
      {{{"blk.0.w", 1, {64}, 0, 0}},
       1,
       32,
       NLLM_ERR_FORMAT,
       "tensor 'blk.0.w' extends past end of file"},
      {{{"a", 1, {8}, 0, 1ull << 62}}, 1, 64, NLLM_ERR_FORMAT, "extends past end of file"},
      {{{"a", 1, {8}, 0, UINT64_MAX - 31}}, 1, 64, NLLM_ERR_FORMAT, "extends past end of file"},
      {{{"a", 1, {16}, 0, 0}, {"b", 1, {8}, 0, 32}}, 2, 96, NLLM_ERR_FORMAT, "overlap"},
      {{{"a", 1, {8}, 0, 0}, {"b", 1, {8}, 0, 0}}, 2, 64, NLLM_ERR_FORMAT, "overlap"},
      {{{"a", 5, {1, 1, 1, 1, 1}, 0, 0}}, 1, 64, NLLM_ERR_FORMAT, "has 5 dimensions"},
      {{{"a", 0, {0}, 0, 0}}, 1, 64, NLLM_ERR_FORMAT, "has 0 dimensions"},
      {{{"a", 2, {8, 0}, 0, 0}}, 1, 64, NLLM_ERR_FORMAT, "dimension 1 of size 0"},
      {{{"a", 1, {1ull << 63}, 0, 0}}, 1, 64, NLLM_ERR_FORMAT, "dimension 0 of size"},
      {{{"a", 3, {1ull << 32, 1ull << 32, 1ull << 32}, 0, 0}}, 1, 64, NLLM_ERR_FORMAT, "overflows"},
      {{{"a", 2, {1ull << 62, 2}, 0, 0}}, 1, 64, NLLM_ERR_FORMAT, "overflows"},
      {{{"a", 1, {8}, 99, 0}}, 1, 64, NLLM_ERR_FORMAT, "type 99, which is not a GGUF tensor type"},
      {{{"blk.0.ffn_down.weight", 1, {8}, 27, 0}},
       1,
       64,
       NLLM_ERR_UNSUPPORTED,
       "tensor 'blk.0.ffn_down.weight' has type I64, which nativellm does not support"},
      {{{"a", 1, {8}, 25, 0}}, 1, 64, NLLM_ERR_UNSUPPORTED, "I16"},
      {{{"a", 1, {32}, 4, 0}}, 1, 64, NLLM_ERR_UNSUPPORTED, "Q4_2, a layout retired"},
      {{{"a", 1, {8}, 26, 0}}, 1, 64, NLLM_ERR_UNSUPPORTED, "I32"},
      {{{"a", 1, {33}, 2, 0}}, 1, 64, NLLM_ERR_FORMAT, "not a multiple of the Q4_0 block size 32"},
      {{{"a", 1, {8}, 0, 0}, {"a", 1, {8}, 0, 32}},
       2,
       64,
       NLLM_ERR_FORMAT,
       "tensor 'a' appears more than once"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    bytes b = make_file(cases[i].t, cases[i].nt, cases[i].data);
    EXPECT_REJECT(b.p, b.n, cases[i].st, cases[i].msg);
    free(b.p);
  }
  /* The same builder makes an accepted file when nothing is wrong. */
  tspec ok[2] = {{"a", 2, {4, 2}, 0, 0}, {"b", 1, {32}, 8, 32}};
  bytes b = make_file(ok, 2, 32 + 34);
  nllm_source s;
  ck_assert_msg(gguf_parse_buffer(b.p, b.n, "ok.gguf", &s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(s.n_tensors, 2);
  ck_assert_uint_eq(s.tensors[1].nbytes, 34);
  nllm_source_free(&s);
  free(b.p);
}
END_TEST

START_TEST(hostile_truncation_every_byte) {
  gguf_writer *w = make_full_writer();
  const char *path = tmp_path("trunc.gguf");
  ck_assert_int_eq(gguf_writer_write(w, path), NLLM_OK);
  gguf_writer_free(w);
  size_t len;
  char *file = read_file(path, &len);
  ck_assert_ptr_nonnull(file);
  for (size_t n = 0; n < len; n++) {
    nllm_source s;
    nllm_status st = parse_exact((const uint8_t *)file, n, &s);
    ck_assert_msg(st == NLLM_ERR_FORMAT, "length %zu of %zu: status %d (%s)", n, len, st,
                  nllm_last_error());
    ck_assert(nllm_last_error()[0] != 0);
    ck_assert(source_is_zero(&s));
  }
  nllm_source s;
  ck_assert_int_eq(parse_exact((const uint8_t *)file, len, &s), NLLM_OK);
  /* And every single-byte corruption either parses or fails cleanly (ASan watches reads). */
  for (size_t i = 0; i < len; i += 3) {
    uint8_t saved = (uint8_t)file[i];
    file[i] = (char)(saved ^ 0xa5);
    nllm_status st = parse_exact((const uint8_t *)file, len, &s);
    ck_assert(st == NLLM_OK || st == NLLM_ERR_FORMAT || st == NLLM_ERR_UNSUPPORTED);
    file[i] = (char)saved;
  }
  free(file);
}
END_TEST

START_TEST(open_errors) {
  nllm_source s;
  ck_assert_int_eq(gguf_open(tmp_path("missing.gguf"), 1, &s), NLLM_ERR_IO);
  ck_assert(strstr(nllm_last_error(), "missing.gguf"));
  ck_assert(source_is_zero(&s));
  ck_assert_int_eq(gguf_open(tmp_dir, 1, &s), NLLM_ERR_IO);
  FILE *f = fopen(tmp_path("empty.gguf"), "wb");
  fclose(f);
  ck_assert_int_eq(gguf_open(tmp_path("empty.gguf"), 1, &s), NLLM_ERR_FORMAT);
  ck_assert(strstr(nllm_last_error(), "empty.gguf"));
  ck_assert_int_eq(gguf_open(tmp_path("empty.gguf"), 0, &s), NLLM_ERR_FORMAT);
}
END_TEST

/* ---------------------------------------------------------------- real files */

START_TEST(real_stories260k) {
  char path[1024];
  if (!testdata_path(path, sizeof path, "models/stories260K/stories260K.gguf")) return;
  for (int use_mmap = 0; use_mmap < 2; use_mmap++) {
    nllm_source s;
    ck_assert_msg(gguf_open(path, use_mmap, &s) == NLLM_OK, "%s", nllm_last_error());
    ck_assert_uint_eq(s.gguf_version, 3);
    const char *arch;
    ck_assert_int_eq(nllm_source_get_str(&s, "general.architecture", &arch), NLLM_OK);
    ck_assert_str_eq(arch, "llama");
    int64_t dim;
    ck_assert_int_eq(nllm_source_get_int(&s, "llama.embedding_length", &dim), NLLM_OK);
    ck_assert_int_eq(dim, 64);
    const nllm_value *tok = nllm_source_get(&s, "tokenizer.ggml.tokens");
    ck_assert_ptr_nonnull(tok);
    ck_assert_uint_eq(tok->type, NLLM_V_ARRAY);
    ck_assert_uint_eq(tok->v.arr.elem_type, NLLM_V_STRING);
    ck_assert_uint_eq(tok->v.arr.n, 512);
    ck_assert_str_eq(nllm_value_arr_str(tok, 1)->s, "<s>");
    const nllm_tensor *t = nllm_source_tensor(&s, "token_embd.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->type, NLLM_TYPE_F32);
    ck_assert_int_eq(t->n_dims, 2);
    ck_assert_int_eq(t->ne[0], 64);
    ck_assert_int_eq(t->ne[1], 512);
    ck_assert_uint_eq(t->nbytes, 64 * 512 * 4);
    ck_assert_int_eq(s.n_maps, 1);
    ck_assert_ptr_nonnull(nllm_source_tensor(&s, "output_norm.weight"));
    nllm_source_free(&s);
  }
}
END_TEST

static int first_layer_only(const nllm_tensor *t, void *user) {
  (void)user;
  return strncmp(t->name, "blk.0.", 6) == 0;
}

static int every_tensor(const nllm_tensor *t, void *user) {
  (void)t;
  (void)user;
  return 1;
}

static int in_map(const nllm_source *s, const void *p) {
  return (const uint8_t *)p >= s->maps[0].data &&
         (const uint8_t *)p < s->maps[0].data + s->maps[0].size;
}

/* A GPU load copies the CPU's share of a mapped model into memory: the chosen tensors move,
 * byte for byte, the others and the metadata stay in the mapping; a failed allocation leaves
 * every tensor where it was. */
START_TEST(copy_tensors_to_memory) {
  char path[1024];
  if (!testdata_path(path, sizeof path, "models/stories260K/stories260K.gguf")) return;
  nllm_source s;
  ck_assert_msg(gguf_open(path, 1, &s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert(s.maps[0].is_mmap);
  const void **before = calloc((size_t)s.n_tensors, sizeof *before);
  for (int64_t i = 0; i < s.n_tensors; i++) before[i] = s.tensors[i].data;

  nllm_alloc_fail_countdown = 1;
  ck_assert_int_eq(nllm_source_copy_tensors(&s, first_layer_only, NULL), NLLM_ERR_NOMEM);
  nllm_alloc_fail_countdown = 0;
  ck_assert(strstr(nllm_last_error(), "MiB"));
  for (int64_t i = 0; i < s.n_tensors; i++) ck_assert_ptr_eq(s.tensors[i].data, before[i]);

  ck_assert_int_eq(nllm_source_copy_tensors(&s, first_layer_only, NULL), NLLM_OK);
  int moved = 0;
  for (int64_t i = 0; i < s.n_tensors; i++) {
    const nllm_tensor *t = &s.tensors[i];
    if (first_layer_only(t, NULL)) {
      ck_assert_msg(!in_map(&s, t->data), "%s still in the mapping", t->name);
      ck_assert_int_eq((uintptr_t)t->data % 64, 0);
      ck_assert_int_eq(memcmp(t->data, before[i], (size_t)t->nbytes), 0);
      moved++;
    } else {
      ck_assert_ptr_eq(t->data, before[i]);
    }
  }
  ck_assert_int_ge(moved, 9); /* norms, q, k, v, o, gate, up, down */
  ck_assert_str_eq(nllm_value_arr_str(nllm_source_get(&s, "tokenizer.ggml.tokens"), 1)->s, "<s>");

  /* a second pass copies only what is still mapped */
  ck_assert_int_eq(nllm_source_copy_tensors(&s, every_tensor, NULL), NLLM_OK);
  for (int64_t i = 0; i < s.n_tensors; i++) {
    ck_assert(!in_map(&s, s.tensors[i].data));
    ck_assert_int_eq(memcmp(s.tensors[i].data, before[i], (size_t)s.tensors[i].nbytes), 0);
  }
  free(before);
  nllm_source_free(&s);
}
END_TEST

/* Loads every file in testdata/rel whose name matches pattern; returns how many. */
static int load_all_in(const char *rel, const char *pattern) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", testdata_dir(), rel);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (fnmatch(pattern, e->d_name, 0) != 0) continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    nllm_source s;
    nllm_status st = gguf_open(path, 1, &s);
    ck_assert_msg(st == NLLM_OK, "%s: %s", path, nllm_last_error());
    ck_assert_int_gt(s.n_kv, 0);
    uint64_t tensor_bytes = 0;
    for (int64_t i = 0; i < s.n_tensors; i++) tensor_bytes += s.tensors[i].nbytes;
    ck_assert_uint_le(tensor_bytes, s.maps[0].size);
    nllm_source_free(&s);
    n++;
  }
  closedir(d);
  return n;
}

START_TEST(real_golden_and_vocab) {
  char probe[1024];
  if (!testdata_path(probe, sizeof probe, "golden/models/tiny-a-Q4_0.gguf")) return;
  if (testdata_is_subset()) {
    fprintf(stderr, "SKIP: every golden model and vocabulary: the full shared set is absent\n");
    return;
  }
  ck_assert_int_ge(load_all_in("golden/models", "tiny-a-*.gguf"), 14);
  ck_assert_int_ge(load_all_in("vocab", "*.gguf"), 5);
  /* Mixed-type files carry several quant types. */
  char path[1024];
  snprintf(path, sizeof path, "%s/golden/models/tiny-a-Q4_K_M.gguf", testdata_dir());
  nllm_source s;
  ck_assert_int_eq(gguf_open(path, 1, &s), NLLM_OK);
  int seen[NLLM_GGML_TYPE_COUNT] = {0}, kinds = 0;
  for (int64_t i = 0; i < s.n_tensors; i++)
    if (!seen[s.tensors[i].type]++) kinds++;
  ck_assert_int_ge(kinds, 2);
  nllm_source_free(&s);
}
END_TEST

START_TEST(real_big_vocab_parse_time) {
  char path[1024];
  if (!testdata_path(path, sizeof path, "models/llama-2-tiny-random/llama-2-tiny-random.gguf"))
    return;
  nllm_source s;
  ck_assert_int_eq(gguf_open(path, 1, &s), NLLM_OK); /* warm the page cache */
  nllm_source_free(&s);
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = nllm_time_ms();
    ck_assert_int_eq(gguf_open(path, 1, &s), NLLM_OK);
    double dt = nllm_time_ms() - t0;
    best = dt < best ? dt : best;
    ck_assert_uint_eq(nllm_source_get(&s, "tokenizer.ggml.tokens")->v.arr.n, 32000);
    nllm_source_free(&s);
  }
  fprintf(stderr, "llama-2-tiny-random.gguf (32000-token vocab) parsed in %.2f ms\n", best);
}
END_TEST

/* ---------------------------------------------------------------- allocation failure */

static void alloc_sweep_open(const char *path, int use_mmap) {
  int n;
  for (n = 1; n < 100000; n++) {
    nllm_source s;
    nllm_alloc_fail_countdown = n;
    nllm_status st = gguf_open(path, use_mmap, &s);
    nllm_alloc_fail_countdown = 0;
    if (st == NLLM_OK) {
      nllm_source_free(&s);
      break;
    }
    ck_assert_msg(st == NLLM_ERR_NOMEM, "step %d: status %d (%s)", n, st, nllm_last_error());
    ck_assert(source_is_zero(&s));
  }
  ck_assert_int_gt(n, 1);
  ck_assert_int_lt(n, 100000);
  if (getenv("NLLM_TEST_VERBOSE"))
    fprintf(stderr, "%s (mmap %d): succeeded at allocation step %d\n", path, use_mmap, n);
}

START_TEST(alloc_failure_every_step) {
  gguf_writer *w = make_full_writer();
  const char *path = tmp_path("sweep.gguf");
  ck_assert_int_eq(gguf_writer_write(w, path), NLLM_OK);
  gguf_writer_free(w);
  alloc_sweep_open(path, 1);
  alloc_sweep_open(path, 0);
  char real[1024];
  if (testdata_path(real, sizeof real, "models/stories260K/stories260K.gguf")) {
    alloc_sweep_open(real, 1);
    alloc_sweep_open(real, 0);
  }
}
END_TEST

START_TEST(alloc_failure_writer) {
  const char *path = tmp_path("sweep_w.gguf");
  for (int n = 1;; n++) {
    nllm_alloc_fail_countdown = n;
    gguf_writer *w = gguf_writer_new();
    nllm_status st = w ? NLLM_OK : NLLM_ERR_NOMEM;
    const char *strs[3] = {"a", "bb", "ccc"};
    const float x[4] = {1, 2, 3, 4};
    const int64_t ne[1] = {4};
    if (!st) st = gguf_writer_set_str(w, "general.architecture", "llama");
    if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, 3);
    if (!st) st = gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", x, 3);
    if (!st) st = gguf_writer_add_tensor(w, "w", NLLM_TYPE_F32, 1, ne, x, 16);
    if (!st) st = gguf_writer_write(w, path);
    nllm_alloc_fail_countdown = 0;
    gguf_writer_free(w);
    if (st == NLLM_OK) break;
    ck_assert_msg(st == NLLM_ERR_NOMEM, "step %d: status %d (%s)", n, st, nllm_last_error());
    ck_assert_int_lt(n, 1000);
  }
  nllm_source s;
  ck_assert_int_eq(gguf_open(path, 1, &s), NLLM_OK);
  ck_assert_uint_eq(nllm_source_get(&s, "tokenizer.ggml.tokens")->v.arr.n, 3);
  nllm_source_free(&s);
}
END_TEST

START_TEST(type_table) {
  int32_t bs, ts;
  ck_assert_str_eq(nllm_ggml_type_name(NLLM_TYPE_Q4_K), "Q4_K");
  ck_assert_str_eq(nllm_ggml_type_name(16), "IQ2_XXS");
  ck_assert_str_eq(nllm_ggml_type_name(NLLM_TYPE_BF16), "BF16");
  ck_assert_ptr_null(nllm_ggml_type_name(40));
  ck_assert_ptr_null(nllm_ggml_type_name(-1));
  ck_assert(nllm_ggml_type_block(NLLM_TYPE_Q6_K, &bs, &ts) && bs == 256 && ts == 210);
  ck_assert(nllm_ggml_type_block(NLLM_TYPE_IQ4_XS, &bs, &ts) && bs == 256 && ts == 136);
  ck_assert(nllm_ggml_type_block(NLLM_TYPE_Q5_1, &bs, &ts) && bs == 32 && ts == 24);
  ck_assert(!nllm_ggml_type_block(4, &bs, &ts));
  static const int32_t computed[] = {0,  1,  2,  3,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                     16, 17, 18, 19, 20, 21, 22, 23, 29, 30, 34, 35, 39};
  int n = 0;
  for (int32_t t = 0; t < NLLM_GGML_TYPE_COUNT; t++) n += nllm_ggml_type_computed(t);
  ck_assert_int_eq(n, (int)(sizeof computed / sizeof *computed));
  for (size_t i = 0; i < sizeof computed / sizeof *computed; i++)
    ck_assert(nllm_ggml_type_computed(computed[i]));
}
END_TEST

static Suite *gguf_suite(void) {
  Suite *s = suite_create("gguf");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, type_table);
  tcase_add_test(tc, roundtrip_all_types_v3_and_v2);
  tcase_add_test(tc, writer_alignment_replace_remove);
  tcase_add_test(tc, hostile_header);
  tcase_add_test(tc, hostile_lying_counts);
  tcase_add_test(tc, hostile_values);
  tcase_add_test(tc, hostile_tensors);
  tcase_add_test(tc, hostile_truncation_every_byte);
  tcase_add_test(tc, open_errors);
  tcase_add_test(tc, real_stories260k);
  tcase_add_test(tc, copy_tensors_to_memory);
  tcase_add_test(tc, real_golden_and_vocab);
  tcase_add_test(tc, real_big_vocab_parse_time);
  tcase_add_test(tc, alloc_failure_every_step);
  tcase_add_test(tc, alloc_failure_writer);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/nllm_test_gguf.XXXXXX");
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  int rc = run_suite(gguf_suite());
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
  return rc;
}
