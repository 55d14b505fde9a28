/* The public machine facts `nllm bench` reports against: default threads, the read-bandwidth
 * probe, and row sizes of weight types. */
#include "nativellm.h"
#include "testutil.h"

START_TEST(default_threads_and_row_sizes) {
  ck_assert_int_ge(nllm_default_n_threads(), 1);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_F32, 10), 40);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_F16, 10), 20);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_Q8_0, 64), 68); /* 2 blocks of 32 + f16 scale */
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_Q4_K, 256), 144);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_Q8_0, 33), 0); /* not a whole block */
  ck_assert_uint_eq(nllm_type_row_size(99, 32), 0);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_F32, -1), 0);
}
END_TEST

START_TEST(read_bandwidth_probe) {
  double gbs = nllm_read_bandwidth_gbs(1 << 20, 1, 1);
  ck_assert_msg(gbs > 0.01 && gbs < 1e5, "%g GB/s", gbs);
  ck_assert(nllm_read_bandwidth_gbs(0, 1, 1) == 0);
  ck_assert_int_ne(strlen(nllm_last_error()), 0);
  ck_assert(nllm_read_bandwidth_gbs(1 << 20, 1, 0) == 0);
  ck_assert(nllm_read_bandwidth_gbs(1 << 20, -1, 1) == 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("machine_api");
  TCase *tc = tcase_create("machine_api");
  tcase_add_test(tc, default_threads_and_row_sizes);
  tcase_add_test(tc, read_bandwidth_probe);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
