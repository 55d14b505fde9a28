/* Tokenizers from Hugging Face tokenizer.json files: llama.cpp's test vectors for Llama 3, Qwen2
 * and GPT-2, the prompts of the HF test models, Mistral's SentencePiece-style BPE. */
#include "tok_testutil.h"

static void hf_vocab_case(const char *json_rel, const char *inp_rel) {
  nllm_tokenizer *tok = open_tok(json_rel, NULL);
  if (!tok) return;
  int n, rt;
  int pass = run_vocab_cases(tok, inp_rel, &n, &rt);
  fprintf(stderr, "%s with %s: %d/%d ids, %d/%d round-trip\n", inp_rel, json_rel, pass, n, rt, n);
  ck_assert_int_eq(n, 46);
  ck_assert_int_eq(pass, n);
  ck_assert_int_eq(rt, n);
  nllm_tokenizer_free(tok);
}

START_TEST(hf_llama3) {
  hf_vocab_case("tokenizers/hf/llama3/tokenizer.json", "vocab/ggml-vocab-llama-bpe.gguf.inp");
}
END_TEST
START_TEST(hf_qwen25) {
  hf_vocab_case("tokenizers/hf/qwen2.5/tokenizer.json", "vocab/ggml-vocab-qwen2.gguf.inp");
}
END_TEST
START_TEST(hf_gpt2) {
  hf_vocab_case("tokenizers/hf/gpt2/tokenizer.json", "vocab/ggml-vocab-gpt-2.gguf.inp");
}
END_TEST

static void expect_ids(const nllm_tokenizer *tok, const char *text, int add_bos, int parse_special,
                       const int *want, int nw) {
  nllm_token ids[256];
  int32_t n = 0;
  ck_assert_int_eq(nllm_tok_tokenize(tok, text, strlen(text), add_bos, parse_special, ids, 256, &n),
                   NLLM_OK);
  int ok = n == nw;
  for (int i = 0; ok && i < n; i++) ok = ids[i] == want[i];
  if (!ok) {
    fprintf(stderr, "'%s': got", text);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
  }
  ck_assert_msg(ok, "ids of '%s'", text);
}

static void expect_roundtrip(const nllm_tokenizer *tok, const char *text, int add_bos) {
  nllm_token ids[4096];
  char dec[16384];
  int32_t n = 0, dn = 0;
  ck_assert_int_eq(nllm_tok_tokenize(tok, text, strlen(text), add_bos, 0, ids, 4096, &n), NLLM_OK);
  ck_assert_int_eq(nllm_tok_detokenize(tok, ids, n, 0, dec, sizeof dec, &dn), NLLM_OK);
  ck_assert_msg((size_t)dn == strlen(text) && memcmp(dec, text, (size_t)dn) == 0,
                "round trip '%s' -> '%.*s'", text, (int)dn, dec);
}

START_TEST(hf_mistral) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/mistral7b/tokenizer.json", NULL);
  if (!tok) return;
  /* the tiny-llama prompt of hf/README.md (BOS 1 added) */
  static const int want[] = {1, 415, 5565, 302, 4843, 349, 5465, 28723, 5713, 3714, 264, 727};
  expect_ids(tok, "The capital of France is Paris. Once upon a time", 1, 0, want, 12);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_BOS), 1);
  ck_assert_int_eq(nllm_tokenizer_special(tok, NLLM_TOKEN_EOS), 2);
  ck_assert(nllm_tokenizer_is_eog(tok, 2));
  nllm_token ids[16];
  int32_t n = 0;
  ck_assert_int_eq(nllm_tok_tokenize(tok, "Hello world", 11, 0, 0, ids, 16, &n), NLLM_OK);
  ck_assert_int_eq(n, 2); /* "▁Hello" "▁world" */
  char p[32];
  int32_t pn;
  ck_assert_int_eq(nllm_tok_token_to_piece(tok, ids[1], 0, p, sizeof p, &pn), NLLM_OK);
  ck_assert_int_eq(pn, 6);
  ck_assert(memcmp(p, " world", 6) == 0);
  static const char *texts[] = {"Hello world",
                                " leading space",
                                "tabs\tand\nnewlines\n\n",
                                "emoji 🦙 and ünïcödé, 日本語のテキスト",
                                "<s> looks special",
                                "  two  spaces  "};
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    expect_roundtrip(tok, texts[i], 0);
    expect_roundtrip(tok, texts[i], 1);
  }
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(hf_qwen_prompts) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/qwen2.5/tokenizer.json", NULL);
  if (!tok) return;
  static const int w2[] = {785, 6722, 315, 9625, 374, 12095, 13, 9646, 5193, 264, 882, 1052};
  expect_ids(tok, "The capital of France is Paris. Once upon a time there", 1, 0, w2, 12);
  static const int w3[] = {151644, 872, 198, 3838, 374, 279, 6722, 315, 9625, 30, 151645, 198};
  expect_ids(tok, "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n", 1, 1, w3, 12);
  ck_assert(!nllm_tokenizer_adds_bos(tok));
  ck_assert(nllm_tokenizer_is_eog(tok, 151645)); /* <|im_end|> */
  ck_assert(nllm_tokenizer_is_eog(tok, 151643)); /* <|endoftext|> */
  ck_assert(!nllm_tokenizer_is_eog(tok, 151644));
  nllm_tokenizer_free(tok);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tokenizer_hf");
  TCase *tc = tcase_create("hf");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, hf_llama3);
  tcase_add_test(tc, hf_qwen25);
  tcase_add_test(tc, hf_gpt2);
  tcase_add_test(tc, hf_mistral);
  tcase_add_test(tc, hf_qwen_prompts);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
