/* Chat templates: each family renders a 3-turn conversation (system, user, assistant, user) as
 * its documented format; for Llama 3 and Qwen2.5 the expected text is the rendering of the
 * template in their tokenizer_config.json (minus the leading BOS, which tokenizing adds). */
#include "tok_testutil.h"

static const nllm_chat_message conv[] = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello! Who are you?"},
    {"assistant", "I am an AI assistant."},
    {"user", "What is 2+2?"},
};

static const char *render(const char *tmpl, const nllm_chat_message *m, int n, int add_assistant) {
  static char buf[4096];
  int32_t n_out = 0;
  nllm_status st = nllm_chat_format_template(tmpl, m, n, add_assistant, buf, sizeof buf, &n_out);
  ck_assert_msg(st == NLLM_OK, "%s: %s", tmpl, nllm_last_error());
  ck_assert_int_eq(n_out, (int32_t)strlen(buf));
  return buf;
}

static const struct {
  const char *tmpl, *want;
} families[] = {
    {"llama2",
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! Who are you? [/INST] I am "
     "an AI "
     "assistant. </s><s>[INST] What is 2+2? [/INST]"},
    {"{{ bos_token }}{% for m in messages %}[INST] <<SYS>>...",
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! Who are you? [/INST] I am "
     "an AI "
     "assistant. </s><s>[INST] What is 2+2? [/INST]"},
    {"mistral",
     "[INST] You are a helpful assistant.\n\nHello! Who are you? [/INST]I am an AI "
     "assistant.</s>[INST] What "
     "is 2+2? [/INST]"},
    {"chatml",
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello! Who are "
     "you?<|im_end|>\n<|im_start|>assistant\nI am an AI "
     "assistant.<|im_end|>\n<|im_start|>user\nWhat is "
     "2+2?<|im_end|>\n<|im_start|>assistant\n"},
    {"llama3",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant.<|eot_id|><|start_header_id|>"
     "user<|end_header_id|>\n\nHello! Who are "
     "you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI "
     "am an AI assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is "
     "2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"gemma",
     "<start_of_turn>user\nYou are a helpful assistant.\n\nHello! Who are "
     "you?<end_of_turn>\n<start_of_turn>"
     "model\nI am an AI assistant.<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
     "<start_of_turn>model\n"},
    {"phi3",
     "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello! Who are "
     "you?<|end|>\n<|assistant|>\nI "
     "am an AI assistant.<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"},
    {"deepseek",
     "You are a helpful assistant.\n\nUser: Hello! Who are you?\n\nAssistant: I am an AI "
     "assistant.<｜end▁of▁sentence｜>User: What is 2+2?\n\nAssistant:"},
    {"deepseek3",
     "You are a helpful assistant.<｜User｜>Hello! Who are you?<｜Assistant｜>I am an AI "
     "assistant.<｜end▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>"},
};

START_TEST(chat_families) {
  const char *got = render(families[_i].tmpl, conv, 4, 1);
  ck_assert_msg(strcmp(got, families[_i].want) == 0, "%s:\n got: %s\nwant: %s", families[_i].tmpl,
                got, families[_i].want);
}
END_TEST

START_TEST(chat_errors) {
  char buf[16];
  int32_t n = 0;
  /* any template the Jinja interpreter parses renders, family or not */
  char big[256];
  ck_assert_int_eq(nllm_chat_format_template("{% for m in messages %}{{ m.content }}|{% endfor %}",
                                             conv, 2, 1, big, sizeof big, &n),
                   NLLM_OK);
  ck_assert_str_eq(big, "You are a helpful assistant.|Hello! Who are you?|");
  /* one it cannot parse, of no known family: the parse error, with line and column */
  ck_assert_int_eq(nllm_chat_format_template("{% for m in messages %}{{ m.content }}", conv, 4, 1,
                                             buf, sizeof buf, &n),
                   NLLM_ERR_FORMAT);
  ck_assert(strstr(nllm_last_error(), "line 1 column") != NULL);
  ck_assert_int_eq(nllm_chat_format_template(NULL, conv, 4, 1, buf, sizeof buf, &n),
                   NLLM_ERR_UNSUPPORTED);
  ck_assert_int_eq(nllm_chat_format_template("chatml", conv, 4, 1, buf, sizeof buf, &n),
                   NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_gt(n, 16);
  nllm_chat_message bad = {"user", NULL};
  ck_assert_int_eq(nllm_chat_format_template("chatml", &bad, 1, 1, buf, sizeof buf, &n),
                   NLLM_ERR_INVALID_ARG);
  nllm_chat_message tool = {"tool", "x"};
  ck_assert_int_eq(nllm_chat_format_template("gemma", &tool, 1, 1, buf, sizeof buf, &n),
                   NLLM_ERR_INVALID_ARG);
}
END_TEST

static int32_t encode_chat(const nllm_tokenizer *tok, const char *text, nllm_token *ids,
                           int32_t cap) {
  int32_t n = 0;
  ck_assert_int_eq(nllm_tok_tokenize(tok, text, strlen(text), 1, 1, ids, cap, &n), NLLM_OK);
  return n;
}

START_TEST(chat_llama3_ids) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/llama3/tokenizer.json", NULL);
  if (!tok) return;
  char buf[4096];
  int32_t n = 0;
  ck_assert_int_eq(nllm_tokenizer_chat_format(tok, conv, 4, 1, buf, sizeof buf, &n), NLLM_OK);
  ck_assert_str_eq(buf, families[4].want);
  nllm_token ids[512];
  int32_t ni = encode_chat(tok, buf, ids, 512);
  /* <|begin_of_text|> <|start_header_id|> system <|end_header_id|> \n\n You are ... */
  static const int head[] = {128000, 128006, 9125,  128007, 271, 2675,
                             527,    264,    11190, 18328,  13,  128009};
  for (int i = 0; i < 12; i++) ck_assert_int_eq(ids[i], head[i]);
  static const int tail[] = {128006, 78191, 128007, 271};
  for (int i = 0; i < 4; i++) ck_assert_int_eq(ids[ni - 4 + i], tail[i]);
  int bos = 0, eot = 0;
  for (int32_t i = 0; i < ni; i++) bos += ids[i] == 128000, eot += ids[i] == 128009;
  ck_assert_int_eq(bos, 1);
  ck_assert_int_eq(eot, 4);
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(chat_qwen_ids) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/qwen2.5/tokenizer.json", NULL);
  if (!tok) return;
  char buf[4096];
  int32_t n = 0;
  ck_assert_int_eq(nllm_tokenizer_chat_format(tok, conv, 4, 1, buf, sizeof buf, &n), NLLM_OK);
  ck_assert_str_eq(buf, families[3].want);
  /* without a system message Qwen2.5's template adds its own */
  ck_assert_int_eq(nllm_tokenizer_chat_format(tok, conv + 1, 3, 1, buf, sizeof buf, &n), NLLM_OK);
  ck_assert(strncmp(buf,
                    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                    "assistant.<|im_end|>\n<|im_start|>user\nHello! Who are you?<|im_end|>\n",
                    117) == 0);
  ck_assert_int_eq(nllm_tokenizer_chat_format(tok, conv, 4, 1, buf, sizeof buf, &n), NLLM_OK);
  nllm_token ids[512];
  int32_t ni = encode_chat(tok, buf, ids, 512);
  /* <|im_start|> system \n You are a helpful assistant . <|im_end|> \n <|im_start|> user \n */
  static const int head[] = {151644, 8948, 198,    2610, 525,    264, 10950,
                             17847,  13,   151645, 198,  151644, 872, 198};
  for (int i = 0; i < 14; i++) ck_assert_int_eq(ids[i], head[i]);
  static const int tail[] = {151645, 198, 151644, 77091, 198};
  for (int i = 0; i < 5; i++) ck_assert_int_eq(ids[ni - 5 + i], tail[i]);
  nllm_tokenizer_free(tok);
}
END_TEST

START_TEST(chat_mistral_ids) {
  nllm_tokenizer *tok = open_tok("tokenizers/hf/mistral7b/tokenizer.json", NULL);
  if (!tok) return;
  char buf[4096];
  int32_t n = 0;
  /* this tokenizer_config.json carries no template */
  ck_assert_int_eq(nllm_tokenizer_chat_format(tok, conv, 4, 1, buf, sizeof buf, &n),
                   NLLM_ERR_UNSUPPORTED);
  ck_assert_int_eq(nllm_chat_format_template("mistral", conv, 4, 1, buf, sizeof buf, &n), NLLM_OK);
  nllm_token ids[512];
  int32_t ni = encode_chat(tok, buf, ids, 512);
  /* <s> ▁[ INST ] ... [/INST] ... </s> [ INST ] ... */
  static const int head[] = {1, 733, 16289, 28793};
  for (int i = 0; i < 4; i++) ck_assert_int_eq(ids[i], head[i]);
  int bos = 0, eos = 0;
  for (int32_t i = 0; i < ni; i++) bos += ids[i] == 1, eos += ids[i] == 2;
  ck_assert_int_eq(bos, 1);
  ck_assert_int_eq(eos, 1);
  char dec[4096];
  int32_t dn;
  ck_assert_int_eq(nllm_tok_detokenize(tok, ids, ni, 1, dec, sizeof dec, &dn), NLLM_OK);
  ck_assert(strstr(dec, "I am an AI assistant.</s>") != NULL);
  nllm_tokenizer_free(tok);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tokenizer_chat");
  TCase *tc = tcase_create("chat");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, chat_families, 0, (int)(sizeof families / sizeof *families));
  tcase_add_test(tc, chat_errors);
  tcase_add_test(tc, chat_llama3_ids);
  tcase_add_test(tc, chat_qwen_ids);
  tcase_add_test(tc, chat_mistral_ids);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
