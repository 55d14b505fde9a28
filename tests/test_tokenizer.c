/* Tokenizers from GGUF: SentencePiece (llama-spm, phi-3) and byte-level BPE (gpt-2, deepseek-llm,
 * mpt) against llama.cpp's test vectors, decoding, special tokens and hostile input. */
#include "tok_testutil.h"

static void vocab_case(const char *gguf_rel, int expect_roundtrip_all) {
  nllm_source src = {0};
  nllm_tokenizer *tok = open_tok(gguf_rel, &src);
  if (!tok) return;
  char inp[512];
  snprintf(inp, sizeof inp, "%s.inp", gguf_rel);
  int n, rt;
  int pass = run_vocab_cases(tok, inp, &n, &rt);
  fprintf(stderr, "%s: %d/%d ids, %d/%d round-trip\n", gguf_rel, pass, n, rt, n);
  ck_assert_int_eq(n, 46);
  ck_assert_int_eq(pass, n);
  if (expect_roundtrip_all) ck_assert_int_eq(rt, n);
  nllm_tokenizer_free(tok);
  nllm_source_free(&src);
}

START_TEST(spm_llama) {
  vocab_case("vocab/ggml-vocab-llama-spm.gguf", 1);
}
END_TEST
START_TEST(spm_phi3) {
  vocab_case("vocab/ggml-vocab-phi-3.gguf", 1);
}
END_TEST
START_TEST(bpe_gpt2) {
  vocab_case("vocab/ggml-vocab-gpt-2.gguf", 1);
}
END_TEST
START_TEST(bpe_deepseek_llm) {
  vocab_case("vocab/ggml-vocab-deepseek-llm.gguf", 1);
}
END_TEST
START_TEST(bpe_mpt) {
  vocab_case("vocab/ggml-vocab-mpt.gguf", 1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tokenizer");
  TCase *tc = tcase_create("gguf");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, spm_llama);
  tcase_add_test(tc, spm_phi3);
  tcase_add_test(tc, bpe_gpt2);
  tcase_add_test(tc, bpe_deepseek_llm);
  tcase_add_test(tc, bpe_mpt);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
