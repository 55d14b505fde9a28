/* GBNF engine: suites of accepted and rejected strings per grammar, error positions, resource
 * caps, byte-at-a-time feeding (partial UTF-8), the trie walker, random sentences. */
#include "grammar_testutil.h"

static void suite_check(const char *grammar, const char *const *good, const char *const *bad) {
  nllm_grammar *g = grammar_compile_ok(grammar);
  for (; *good; good++) {
    if (!grammar_full_match(g, *good)) fprintf(stderr, "should accept: [%s]\n", *good);
    ck_assert(grammar_full_match(g, *good));
  }
  for (; *bad; bad++) {
    if (grammar_full_match(g, *bad)) fprintf(stderr, "should reject: [%s]\n", *bad);
    ck_assert(!grammar_full_match(g, *bad));
  }
  nllm_grammar_free(g);
}

static const char *JSON_GBNF =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\" ws\n"
    "array  ::=\n"
    "  \"[\" ws (\n"
    "            value\n"
    "    (\",\" ws value)*\n"
    "  )? \"]\" ws\n"
    "string ::=\n"
    "  \"\\\"\" (\n"
    "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
    "    \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
    "  )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9]{1,16})? ws\n"
    "# Optional space\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

START_TEST(json_suite) {
  const char *good[] = {"{}",
                        "{\"a\":1}",
                        "{\"a\": [1, 2.5, -3e10, true, null, \"x\"]}",
                        "{\"k\": {\"n\": {\"m\": []}}}",
                        "{\"uni\": \"h\xc3\xa9llo \xe4\xb8\xad \xf0\x9f\x98\x80\"}",
                        "{\"esc\": \"a\\\"b\\\\c\\u00e9\\n\"}",
                        "{ \"a\":1}",
                        NULL};
  const char *bad[] = {"",           "{",           "{\"a\"}",     "{\"a\":}",
                       "{'a':1}",    "[1,2]",       "{\"a\":01x}", "{\"a\":\"\x01\"}",
                       "{\"a\":1,}", "{\"a\":tru}", "{} {}",       "{\"a\":\"\\q\"}",
                       NULL};
  suite_check(JSON_GBNF, good, bad);
}
END_TEST

START_TEST(arithmetic_suite) {
  const char *gr =
      "root ::= expr\n"
      "expr ::= term ([-+] term)*\n"
      "term ::= factor ([*/] factor)*\n"
      "factor ::= num | \"(\" expr \")\"\n"
      "num ::= [0-9]+\n";
  const char *good[] = {"1", "1+2", "(1+2)*3", "((((7))))", "10/2-3*4", "0", NULL};
  const char *bad[] = {"", "+1", "1+", "(1", "1)", "1 + 2", "a", "((1)", NULL};
  suite_check(gr, good, bad);
}
END_TEST

START_TEST(list_suite) {
  const char *gr =
      "root ::= item+\n"
      "item ::= \"- \" [^\\n]+ \"\\n\"   # a markdown bullet\n";
  const char *good[] = {"- a\n", "- one\n- two\n- th\xc3\xa9\n", NULL};
  const char *bad[] = {"", "- \n", "-a\n", "- a", "* a\n", NULL};
  suite_check(gr, good, bad);
}
END_TEST

START_TEST(utf8_classes) {
  const char *gr =
      "root ::= [\xce\xb1-\xcf\x89]+ \" \" [^a-z\xe4\xb8\x80-\xe9\xbf\xbf] "
      "\"\\u00e9\\U0001F600\"\n";
  const char *good[] = {"\xce\xb1\xce\xb2\xcf\x89 X\xc3\xa9\xf0\x9f\x98\x80",
                        "\xce\xbb \xf0\x9f\x98\x80\xc3\xa9\xf0\x9f\x98\x80", NULL};
  const char *bad[] = {"a x\xc3\xa9\xf0\x9f\x98\x80",
                       "\xce\xb1 x\xc3\xa9\xf0\x9f\x98\x80",
                       "\xce\xb1 \xe4\xb8\xad\xc3\xa9\xf0\x9f\x98\x80",
                       "\xce\xb1 X\xc3\xa9",
                       "\xce\xb1 X\xc3\xa9\xf0\x9f\x98",
                       NULL};
  suite_check(gr, good, bad);
  /* Overlong encodings and surrogates are not UTF-8, even where any character is allowed. */
  nllm_grammar *g = grammar_compile_ok("root ::= .*\n");
  ck_assert(grammar_full_match(g, "\xe2\x82\xac"));
  ck_assert(!grammar_full_match(g, "\xc0\xaf"));
  ck_assert(!grammar_full_match(g, "\xe0\x80\xaf"));
  ck_assert(!grammar_full_match(g, "\xed\xa0\x80"));
  ck_assert(!grammar_full_match(g, "\xf4\x90\x80\x80"));
  ck_assert(!grammar_full_match(g, "\x80"));
  nllm_grammar_free(g);
  /* The first class of a grammar being empty (found by fuzz_gbnf: UBSan, null + 0) */
  g = grammar_compile_ok("root ::= [] | \"a\"\n");
  ck_assert(grammar_full_match(g, "a"));
  ck_assert(!grammar_full_match(g, ""));
  nllm_grammar_free(g);
}
END_TEST

START_TEST(repetition_bounds) {
  const char *gr = "root ::= \"a\"{2,4} \"b\"{3} \"c\"{2,} (\"d\" | \"e\"){,2} \"x\"?\n";
  const char *good[] = {"aabbbcc", "aaaabbbccccc", "aaabbbccde", "aabbbccddx", "aabbbccx", NULL};
  const char *bad[] = {"abbbcc", "aaaaabbbcc", "aabbcc", "aabbbc", "aabbbccdde", "aabbbccxx", NULL};
  suite_check(gr, good, bad);
  const char *g2 = "root ::= ([0-9]{3} \"-\"){2} [0-9]{4}\n";
  const char *good2[] = {"555-123-4567", NULL};
  const char *bad2[] = {"555-123-456", "55-123-4567", "555-123-45678", NULL};
  suite_check(g2, good2, bad2);
  /* rules named as the parser once named the rules it makes for groups ("<rule>-<n>", here
   * root's group would have been root-1) are the text's own (fuzz_json_schema) */
  const char *g3 = "root ::= (\"a\" | \"b\")+ root-1 root-2\nroot-1 ::= \"c\"\nroot-2 ::= \"d\"?\n";
  const char *good3[] = {"abc", "bcd", "aaac", NULL};
  const char *bad3[] = {"c", "ab", "abdc", NULL};
  suite_check(g3, good3, bad3);
}
END_TEST

START_TEST(escapes_comments_layout) {
  const char *gr =
      "# leading comment\n\n"
      "root ::= \"[\" ws (a |\n   b)  ws \"]\"  # trailing\n"
      "a ::= \"\\x41\\t\\\\\"\n"
      "b ::= [\\]\\[\\-] [\\^x]\r\n"
      "ws ::= [ ]*\n";
  const char *good[] = {"[A\t\\]", "[ ]^ ]", "[-x]", "[[x]", NULL};
  const char *bad[] = {"[A\\]", "[ab]", "[]", NULL};
  suite_check(gr, good, bad);
}
END_TEST

static void expect_error(const char *text, const char *needle) {
  nllm_grammar *g = NULL;
  nllm_status st = nllm_grammar_parse(text, strlen(text), NULL, &g);
  ck_assert_int_ne(st, NLLM_OK);
  ck_assert_ptr_null(g);
  if (!strstr(nllm_last_error(), needle))
    fprintf(stderr, "error [%s] lacks [%s]\n", nllm_last_error(), needle);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), needle));
}

START_TEST(errors_with_positions) {
  expect_error("root ::= \"a\n", "line 1, column 10: unterminated string literal");
  expect_error("root ::= x\n", "line 1, column 10: undefined rule 'x'");
  expect_error("root ::= \"a\"\nroot ::= \"b\"\n",
               "line 2, column 1: rule 'root' is defined twice");
  expect_error("foo ::= \"a\"\n", "no rule named 'root'");
  expect_error("root ::= [a-b\n", "unterminated character class");
  expect_error("root ::= \"a\" )\n", "line 1, column 14: unexpected ')'");
  expect_error("root ::= (\"a\"\n", "expected ')'");
  expect_error("root ::= * \"a\"\n", "line 1, column 10: '*' needs an item");
  expect_error("root ::= \"a\"{3,1}\n", "maximum below minimum");
  expect_error("root ::= \"a\"{x}\n", "expected a number");
  expect_error("root ::= \"\\q\"\n", "unknown escape \\q");
  expect_error("root ::= \"\\x4\"\n", "needs 2 hex digits");
  expect_error("root ::= [z-a]\n", "end below start");
  expect_error("root = \"a\"\n", "expected '::='");
  expect_error("root ::= \"\xff\"\n", "invalid UTF-8");
  expect_error("root ::= \"a\"{1000001}\n", "too large");
  expect_error("root ::= \"a\"{100000}{100000}\n", "too large");
  /* Left recursion: direct, indirect, and through a nullable prefix. */
  expect_error("root ::= root \"a\" | \"b\"\n", "'root' is left-recursive");
  expect_error("root ::= x\nx ::= y \"a\"\ny ::= x | \"b\"\n", "left-recursive");
  expect_error("root ::= e? root \"a\" | \"b\"\ne ::= \"e\"\n", "left-recursive");
  expect_error("root ::= (\"a\"?)*\n", "left-recursive");
  char deep[2000] = "root ::= ";
  for (int i = 0; i < 300; i++) strcat(deep, "(");
  expect_error(deep, "nested deeper");
}
END_TEST

START_TEST(right_recursion_is_flat) {
  /* A long repetition must not grow the parse stacks (tail references return to the parent). */
  nllm_grammar *g = grammar_compile_ok("root ::= (\"ab\" | \"c\")* \"!\"\n");
  nllm_gmatch *m;
  ck_assert_int_eq(nllm_gmatch_new(g, &m), NLLM_OK);
  for (int i = 0; i < 20000; i++) {
    int ok;
    ck_assert_int_eq(
        nllm_gmatch_accept(m, (const uint8_t *)(i % 3 ? "ab" : "c"), i % 3 ? 2 : 1, &ok), NLLM_OK);
    ck_assert(ok);
  }
  ck_assert(!nllm_gmatch_can_end(m));
  int ok;
  ck_assert_int_eq(nllm_gmatch_accept(m, (const uint8_t *)"!", 1, &ok), NLLM_OK);
  ck_assert(ok && nllm_gmatch_can_end(m) && nllm_gmatch_must_end(m));
  ck_assert_int_eq(nllm_gmatch_accept(m, (const uint8_t *)"!", 1, &ok), NLLM_OK);
  ck_assert(!ok && nllm_gmatch_must_end(m)); /* rejected input leaves the state alone */
  nllm_gmatch_free(m);
  nllm_grammar_free(g);
}
END_TEST

START_TEST(deep_nesting_capped) {
  /* Deep center recursion ends in a clear status, not a crash. */
  nllm_grammar *g = grammar_compile_ok("root ::= \"(\" root \")\" | \"x\"\n");
  nllm_gmatch *m;
  ck_assert_int_eq(nllm_gmatch_new(g, &m), NLLM_OK);
  int ok = 1;
  for (int i = 0; i < 1000 && ok; i++)
    ck_assert_int_eq(nllm_gmatch_accept(m, (const uint8_t *)"(", 1, &ok), NLLM_OK);
  ck_assert(ok);
  nllm_gmatch_free(m);
  nllm_grammar_free(g);
  /* Exponential ambiguity hits the stack cap with an error, not a hang. */
  char amb[4096] = "root ::= ";
  for (int i = 0; i < 40; i++) strcat(amb, "(\"a\" | \"a\" \"a\"?)? ");
  strcat(amb, "\n");
  g = grammar_compile_ok(amb);
  nllm_status st = nllm_gmatch_new(g, &m);
  if (st == NLLM_OK) {
    for (int i = 0; i < 80 && st == NLLM_OK; i++)
      st = nllm_gmatch_accept(m, (const uint8_t *)"a", 1, &ok);
    nllm_gmatch_free(m);
  }
  /* Dedup keeps this one small; either way it returned. */
  ck_assert(st == NLLM_OK || strstr(nllm_last_error(), "too ambiguous"));
  nllm_grammar_free(g);
}
END_TEST

START_TEST(bytewise_equals_whole) {
  /* Feeding byte by byte (tokens that split characters) gives the same answers. */
  nllm_grammar *g = grammar_compile_ok(JSON_GBNF);
  const char *s = "{\"k\": \"\xe4\xb8\xad\xf0\x9f\x98\x80\", \"n\": [1, {\"x\": null}]}";
  nllm_gmatch *m;
  ck_assert_int_eq(nllm_gmatch_new(g, &m), NLLM_OK);
  for (size_t i = 0; s[i]; i++) {
    int ok;
    ck_assert_int_eq(nllm_gmatch_accept(m, (const uint8_t *)s + i, 1, &ok), NLLM_OK);
    ck_assert(ok);
    int mid = (s[i] & 0xc0) == 0x80 || (unsigned char)s[i] >= 0xc0;
    if (mid && s[i + 1] && (s[i + 1] & 0xc0) == 0x80) ck_assert(!nllm_gmatch_can_end(m));
  }
  ck_assert(nllm_gmatch_can_end(m));
  /* A lone lead byte inside a string is fine until a non-continuation byte follows. */
  nllm_gmatch_reset(m);
  int ok;
  ck_assert_int_eq(nllm_gmatch_accept(m, (const uint8_t *)"{\"a\": \"\xe4", 8, &ok), NLLM_OK);
  ck_assert(ok);
  ck_assert_int_eq(nllm_gmatch_check(m, (const uint8_t *)"\"", 1, &ok), NLLM_OK);
  ck_assert(!ok);
  ck_assert_int_eq(nllm_gmatch_check(m, (const uint8_t *)"\xb8\xad\"}", 4, &ok), NLLM_OK);
  ck_assert(ok);
  nllm_gmatch_free(m);
  nllm_grammar_free(g);
}
END_TEST

START_TEST(walker_matches_check) {
  nllm_grammar *g = grammar_compile_ok(JSON_GBNF);
  nllm_gmatch *m;
  ck_assert_int_eq(nllm_gmatch_new(g, &m), NLLM_OK);
  int ok;
  ck_assert_int_eq(nllm_gmatch_accept(m, (const uint8_t *)"{\"a\": ", 6, &ok), NLLM_OK);
  const char *words[] = {"1",  "12", "12.",  "12.5", "\"", "\"x\"", "[",
                         "[]", "tr", "true", "}",    "x",  "-",     "--"};
  int expect[14];
  for (int i = 0; i < 14; i++)
    ck_assert_int_eq(nllm_gmatch_check(m, (const uint8_t *)words[i], strlen(words[i]), &expect[i]),
                     NLLM_OK);
  ck_assert(expect[0] && expect[3] && expect[5] && !expect[10] && !expect[11] && !expect[13]);
  /* The walker: depth-first over words sharing prefixes gives the same answers. */
  ck_assert_int_eq(nllm_gmatch_walk_begin(m, 8), NLLM_OK);
  for (int i = 0; i < 14; i++) {
    int good = 1;
    for (size_t d = 0; d < strlen(words[i]) && good; d++)
      ck_assert_int_eq(nllm_gmatch_walk_step(m, (int32_t)d, (uint8_t)words[i][d], &good), NLLM_OK);
    ck_assert_int_eq(good, expect[i]);
  }
  nllm_gmatch_walk_end(m);
  ck_assert_int_eq(nllm_gmatch_check(m, (const uint8_t *)"1}", 2, &ok), NLLM_OK);
  ck_assert(ok);
  nllm_gmatch_free(m);
  nllm_grammar_free(g);
}
END_TEST

/* The state key depends on the state, not on the order its nodes were made in. */
START_TEST(state_key_by_content) {
  nllm_grammar *g =
      grammar_compile_ok("root ::= (\"a\" | \"b\") [0-9]* \";\" | \"\xc3\xa9\" \"!\"\n");
  nllm_gmatch *m1, *m2;
  ck_assert_int_eq(nllm_gmatch_new(g, &m1), NLLM_OK);
  ck_assert_int_eq(nllm_gmatch_new(g, &m2), NLLM_OK);
  uint32_t k0[64], k1[64], k2[64];
  size_t n0 = nllm_gmatch_state_key(m1, k0, 64);
  ck_assert(n0 > 3 && n0 <= 64);
  ck_assert_uint_eq(nllm_gmatch_state_key(m1, k1, 2), n0);
  int ok;
  ck_assert_int_eq(nllm_gmatch_accept(m1, (const uint8_t *)"a", 1, &ok), NLLM_OK);
  ck_assert(ok);
  /* m2 makes other nodes first, then reaches the same state by the other alternative. */
  ck_assert_int_eq(nllm_gmatch_check(m2, (const uint8_t *)"b12", 3, &ok), NLLM_OK);
  ck_assert_int_eq(nllm_gmatch_accept(m2, (const uint8_t *)"b", 1, &ok), NLLM_OK);
  size_t n1 = nllm_gmatch_state_key(m1, k1, 64), n2 = nllm_gmatch_state_key(m2, k2, 64);
  ck_assert_uint_eq(n1, n2);
  ck_assert(!memcmp(k1, k2, n1 * sizeof *k1));
  ck_assert(n1 != n0 || memcmp(k0, k1, n0 * sizeof *k0));
  /* Half a character is part of the state. */
  nllm_gmatch_reset(m2);
  ck_assert_int_eq(nllm_gmatch_accept(m2, (const uint8_t *)"\xc3", 1, &ok), NLLM_OK);
  ck_assert(ok);
  n2 = nllm_gmatch_state_key(m2, k2, 64);
  ck_assert(n2 != n0 || memcmp(k0, k2, n0 * sizeof *k0));
  nllm_gmatch_free(m1);
  nllm_gmatch_free(m2);
  nllm_grammar_free(g);
}
END_TEST

START_TEST(random_sentences_are_accepted) {
  const char *grammars[] = {
      JSON_GBNF, "root ::= expr\nexpr ::= term ([-+] term)*\nterm ::= [0-9]+ | \"(\" expr \")\"\n",
      "root ::= [^a]{2,5} (\"x\" | [\\u00e0-\\u00ff]+)?\n"};
  uint64_t rng = 42;
  for (int k = 0; k < 3; k++) {
    nllm_grammar *g = grammar_compile_ok(grammars[k]);
    for (int i = 0; i < 200; i++) {
      char *s = NULL;
      if (nllm_grammar_sample_text(g, &rng, 64, &s) != NLLM_OK) continue;
      if (!grammar_full_match(g, s)) fprintf(stderr, "sentence rejected: [%s]\n", s);
      ck_assert(grammar_full_match(g, s));
      free(s);
    }
    nllm_grammar_free(g);
  }
}
END_TEST

START_TEST(root_name_and_bad_args) {
  nllm_grammar *g = NULL;
  const char *t = "start ::= \"s\"\nroot ::= \"r\"\n";
  ck_assert_int_eq(nllm_grammar_parse(t, strlen(t), "start", &g), NLLM_OK);
  ck_assert(grammar_full_match(g, "s") && !grammar_full_match(g, "r"));
  nllm_grammar_free(g);
  ck_assert_int_eq(nllm_grammar_parse(NULL, 0, NULL, &g), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_grammar_parse("", 0, NULL, &g), NLLM_ERR_INVALID_ARG);
  /* Not NUL-terminated: only len bytes are read. */
  char buf[16];
  memcpy(buf, "root ::= \"ab\"XXX", 16);
  ck_assert_int_eq(nllm_grammar_parse(buf, 13, NULL, &g), NLLM_OK);
  ck_assert(grammar_full_match(g, "ab"));
  nllm_grammar_free(g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("grammar");
  TCase *tc = tcase_create("grammar");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, json_suite);
  tcase_add_test(tc, arithmetic_suite);
  tcase_add_test(tc, list_suite);
  tcase_add_test(tc, utf8_classes);
  tcase_add_test(tc, repetition_bounds);
  tcase_add_test(tc, escapes_comments_layout);
  tcase_add_test(tc, errors_with_positions);
  tcase_add_test(tc, right_recursion_is_flat);
  tcase_add_test(tc, deep_nesting_capped);
  tcase_add_test(tc, bytewise_equals_whole);
  tcase_add_test(tc, walker_matches_check);
  tcase_add_test(tc, state_key_by_content);
  tcase_add_test(tc, random_sentences_are_accepted);
  tcase_add_test(tc, root_name_and_bad_args);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
