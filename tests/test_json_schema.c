/* JSON Schema -> grammar on schemas shaped like real API ones (tests/data/schemas): valid
 * documents are accepted, invalid ones rejected, and random sentences of each grammar validate
 * with an independent validator (python3-jsonschema, tests/schema_validate.py). Plus the
 * integer-range construction against brute force and clear refusals. */
#include <cJSON.h>

#include "grammar_testutil.h"

static char *load_schema(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "tests/data/schemas/%s.json", name);
  char *s = read_file(path, NULL);
  ck_assert_msg(s != NULL, "cannot read %s", path);
  return s;
}

typedef struct {
  const char *name;
  const char *good[6];
  const char *bad[8];
} schema_case;

static const schema_case CASES[] = {
    {"weather",
     {"{\"location\": \"Paris, FR\"}", "{\"location\": \"Oslo\", \"unit\": \"celsius\"}",
      "{\"unit\": \"fahrenheit\", \"location\": \"x\"}" /* other order: not accepted */},
     {"{}", "{\"unit\": \"celsius\"}", "{\"location\": 3}",
      "{\"location\": \"a\", \"unit\": \"K\"}", "{\"location\": \"a\", \"extra\": 1}"}},
    {"order",
     {"{\"id\": 42, \"customer\": {\"name\": \"Ann\"}, \"items\": [{\"sku\": \"ABC-1234\", "
      "\"qty\": "
      "2}]}",
      "{\"id\": 99999, \"customer\": {\"name\": \"B\", \"email\": \"b@x.org\"}, \"items\": "
      "[{\"sku\": "
      "\"XYZ-0000\", \"qty\": 100, \"price\": 9.5}, {\"sku\": \"QQQ-9999\", \"qty\": 1}], "
      "\"status\": "
      "null, \"created\": \"2024-03-31T23:59:59Z\", \"tags\": [\"a\", \"b\"]}"},
     {"{\"id\": 0, \"customer\": {\"name\": \"Ann\"}, \"items\": [{\"sku\": \"ABC-1234\", \"qty\": "
      "2}]}",
      "{\"id\": 100000, \"customer\": {\"name\": \"Ann\"}, \"items\": [{\"sku\": \"ABC-1234\", "
      "\"qty\": 2}]}",
      "{\"id\": 1, \"customer\": {\"name\": \"\"}, \"items\": [{\"sku\": \"ABC-1234\", \"qty\": "
      "2}]}",
      "{\"id\": 1, \"customer\": {\"name\": \"A\"}, \"items\": []}",
      "{\"id\": 1, \"customer\": {\"name\": \"A\"}, \"items\": [{\"sku\": \"AB-1234\", \"qty\": "
      "2}]}",
      "{\"id\": 1, \"customer\": {\"name\": \"A\"}, \"items\": [{\"sku\": \"ABC-1234\", \"qty\": "
      "2}], "
      "\"created\": \"2024-02-30T00:00:00Z\"}",
      "{\"id\": 1, \"customer\": {\"name\": \"A\"}, \"items\": [{\"sku\": \"ABC-1234\", \"qty\": "
      "2}], "
      "\"status\": \"lost\"}"}},
    {"tree",
     {"{\"name\": \"root\"}",
      "{\"name\": \"a\", \"children\": [{\"name\": \"b\", \"children\": [{\"name\": \"c\"}]}, "
      "{\"name\": \"d\"}]}"},
     {"{\"name\": \"a\", \"children\": [{}]}",
      "{\"name\": \"a\", \"children\": [{\"name\": \"1\"}, {\"name\": \"2\"}, {\"name\": \"3\"}, "
      "{\"name\": \"4\"}]}",
      "{\"name\": \"much-too-long-name\"}"}},
    {"user",
     {"{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"role\": \"admin\"}",
      "{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"age\": null, \"role\": \"guest\", "
      "\"birthday\": \"1990-12-31\", \"wake\": \"07:30:00+02:00\"}",
      "{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"age\": 150, \"role\": \"user\"}"},
     {"{\"id\": \"123e4567\", \"role\": \"admin\"}",
      "{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"age\": 151, \"role\": \"user\"}",
      "{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"age\": -1, \"role\": \"user\"}",
      "{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"role\": \"root\"}",
      "{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"role\": \"user\", \"birthday\": "
      "\"1990-13-01\"}"}},
    {"shapes",
     {"{\"kind\": \"point\", \"coords\": [1.5, -2]}",
      "{\"kind\": \"point\", \"coords\": [0, -1], \"label\": null, \"meta\": {\"z\": -5, \"w\": "
      "5}, "
      "\"code\": \"--cdf123x!\"}",
      "{\"kind\": \"point\", \"coords\": [1e5, -3], \"label\": \"abc\", \"code\": \"ab12\"}"},
     {"{\"kind\": \"line\", \"coords\": [1, -2]}", "{\"kind\": \"point\", \"coords\": [1, 0]}",
      "{\"kind\": \"point\", \"coords\": [1, -2, 3]}",
      "{\"kind\": \"point\", \"coords\": [1, -2], \"label\": \"123456789\"}",
      "{\"kind\": \"point\", \"coords\": [1, -2], \"meta\": {\"z\": 6}}",
      "{\"kind\": \"point\", \"coords\": [1, -2], \"code\": \"ab1\"}"}},
    {"merged",
     {"{\"a\": -9, \"b\": true}", "{\"a\": 300, \"b\": false}"},
     {"{\"a\": -10, \"b\": true}", "{\"a\": 301, \"b\": true}", "{\"a\": 1}", "{\"b\": true}"}},
    {"extra_keys",
     {"{\"name\": \"x\"}", "{\"name\": \"x\", \"nb\": 3, \"zz\": \"abc\", \"nam\": \"\"}",
      "{\"name\": \"x\", \"n\xc3\xa9\": null}", "{\"name\": \"x\", \"n\xc3\xa8\": \"q\"}"},
     {"{\"name\": \"x\", \"zz\": \"abcd\"}", "{\"name\": \"x\", \"zz\": 1}",
      "{\"name\": \"x\", \"name\": \"y\"}", "{\"name\": \"x\", \"nb\": \"1\"}",
      "{\"name\": \"x\", \"n\xc3\xa9\": \"s\"}"}},
    {"event",
     {"{\"t\": \"a\", \"x\": -17}", "{\"t\": \"a\", \"x\": -1234567}",
      "{\"t\": \"b\", \"y\": [\"ab\", \"cde\"]}"},
     {"{\"t\": \"a\", \"x\": -16}", "{\"t\": \"a\", \"x\": -1234568}", "{\"t\": \"a\", \"x\": 5}",
      "{\"t\": \"b\", \"y\": [\"ab\"]}", "{\"t\": \"b\", \"y\": [\"ab\", \"c\"]}",
      "{\"t\": \"c\", \"x\": -20}"}},
    /* allOf with nested allOf of a property, a $ref member and additionalProperties false. */
    {"merged_nested",
     {"{\"owner\": {\"name\": \"ab\", \"email\": \"a@b.co\"}, \"n\": 2, \"debug\": true}",
      "{\"n\": 1}"},
     {"{\"owner\": {\"name\": \"ab\"}, \"n\": 2}", "{\"owner\": {\"email\": \"a@b.co\"}, \"n\": 2}",
      "{\"n\": 4}", "{\"n\": 1, \"x\": 1}",
      "{\"owner\": {\"name\": \"abcdefghi\", \"email\": \"a@b.co\"}, \"n\": 1}",
      "{\"debug\": true}"}},
    /* Keywords beside anyOf, $ref and enum hold too. */
    {"siblings",
     {"{\"a\": 1}", "{\"b\": \"xy\"}", "{\"a\": 0, \"b\": \"\", \"ref\": 3, \"e\": 5}",
      "{\"b\": \"q\", \"e\": 1}"},
     {"{}", "{\"ref\": 1}", "{\"a\": 1, \"ref\": 4}", "{\"a\": 1, \"ref\": 0}",
      "{\"a\": 1, \"e\": 9}", "{\"a\": 1, \"e\": \"x\"}", "{\"b\": \"abcd\"}",
      "{\"a\": 1, \"c\": 1}"}},
    {"any", {"{\"a\": [1, {\"b\": null}]}", "3", "\"s\"", "[]", "true"}, {"", "{", "[1,]", "tru"}},
};

/* The grammar accepts a document only in schema order; the weather case lists one in another
 * order among the "good" ones to document that: it must be rejected. */
START_TEST(valid_and_invalid_documents) {
  const schema_case *c = &CASES[_i];
  char *schema = load_schema(c->name);
  nllm_grammar *g = schema_grammar(schema);
  for (int i = 0; i < 6 && c->good[i]; i++) {
    int expect = !(strcmp(c->name, "weather") == 0 && i == 2);
    if (grammar_full_match(g, c->good[i]) != expect)
      fprintf(stderr, "%s: expected %s: %s\n", c->name, expect ? "accept" : "reject", c->good[i]);
    ck_assert_int_eq(grammar_full_match(g, c->good[i]), expect);
  }
  for (int i = 0; i < 8 && c->bad[i]; i++) {
    if (grammar_full_match(g, c->bad[i]))
      fprintf(stderr, "%s: should reject: %s\n", c->name, c->bad[i]);
    ck_assert(!grammar_full_match(g, c->bad[i]));
  }
  nllm_grammar_free(g);
  free(schema);
}
END_TEST

/* Random sentences of every schema's grammar validate with python3-jsonschema. */
START_TEST(random_sentences_validate) {
  char path[] = "/tmp/nllm_schema_samples_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  FILE *f = fdopen(fd, "w");
  uint64_t rng = 12345;
  int total = 0;
  for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++) {
    char *schema = load_schema(CASES[k].name);
    nllm_grammar *g = schema_grammar(schema);
    cJSON *sj = cJSON_Parse(schema);
    int made = 0;
    for (int i = 0; i < 400 && made < 60; i++) {
      char *s = NULL;
      if (nllm_grammar_sample_text(g, &rng, 40 + (size_t)(i % 5) * 40, &s) != NLLM_OK) continue;
      ck_assert(grammar_full_match(g, s));
      cJSON *line = cJSON_CreateObject();
      cJSON_AddItemToObject(line, "schema", cJSON_Duplicate(sj, 1));
      cJSON_AddStringToObject(line, "text", s);
      char *t = cJSON_PrintUnformatted(line);
      fprintf(f, "%s\n", t);
      free(t);
      cJSON_Delete(line);
      free(s);
      made++;
    }
    if (made < 20) fprintf(stderr, "%s: only %d random sentences\n", CASES[k].name, made);
    ck_assert_int_ge(made, 20);
    total += made;
    cJSON_Delete(sj);
    nllm_grammar_free(g);
    free(schema);
  }
  fclose(f);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/schema_validate.py %s", path);
  int rc = system(cmd);
  unlink(path);
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
    fprintf(stderr, "SKIP: python3-jsonschema missing (tools/install-deps.sh installs it)\n");
    return;
  }
  ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "%d random documents: some invalid", total);
}
END_TEST

/* Integer ranges: the grammar accepts exactly the integers in range (brute force). */
/* An object that may hold nothing ({} only): its rule names `space` with no property to define it
 * (found by fuzz_json_schema: the grammar did not compile). */
START_TEST(empty_closed_object) {
  nllm_grammar *g = schema_grammar("{\"type\": \"object\", \"additionalProperties\": false}");
  ck_assert(grammar_full_match(g, "{}"));
  ck_assert(grammar_full_match(g, "{ }"));
  ck_assert(!grammar_full_match(g, "{\"a\": 1}"));
  nllm_grammar_free(g);
}
END_TEST

START_TEST(integer_ranges_exact) {
  static const long long R[][2] = {{0, 0},     {1, 9},      {7, 123},    {-5, 5},
                                   {-123, -7}, {10, 10},    {0, 1000},   {99, 101},
                                   {-1, 0},    {-100, 999}, {1999, 2100}};
  for (size_t k = 0; k < sizeof R / sizeof *R; k++) {
    char schema[160];
    snprintf(schema, sizeof schema, "{\"type\": \"integer\", \"minimum\": %lld, \"maximum\": %lld}",
             R[k][0], R[k][1]);
    nllm_grammar *g = schema_grammar(schema);
    for (long long v = -1100; v <= 2200; v++) {
      char s[32];
      snprintf(s, sizeof s, "%lld", v);
      int in = v >= R[k][0] && v <= R[k][1];
      if (grammar_full_match(g, s) != in)
        fprintf(stderr, "[%lld,%lld]: %lld\n", R[k][0], R[k][1], v);
      ck_assert_int_eq(grammar_full_match(g, s), in);
    }
    ck_assert(!grammar_full_match(g, "-0") && !grammar_full_match(g, "007"));
    nllm_grammar_free(g);
  }
  /* One-sided. */
  nllm_grammar *g = schema_grammar("{\"type\": \"integer\", \"minimum\": 95}");
  ck_assert(grammar_full_match(g, "95") && grammar_full_match(g, "100") &&
            grammar_full_match(g, "123456789012") && !grammar_full_match(g, "94") &&
            !grammar_full_match(g, "-100"));
  nllm_grammar_free(g);
  /* Draft 4: exclusiveMinimum / exclusiveMaximum as booleans beside minimum / maximum. */
  g = schema_grammar(
      "{\"type\": \"integer\", \"minimum\": 3, \"exclusiveMinimum\": true, "
      "\"maximum\": 6, \"exclusiveMaximum\": true}");
  ck_assert(grammar_full_match(g, "4") && grammar_full_match(g, "5") &&
            !grammar_full_match(g, "3") && !grammar_full_match(g, "6"));
  nllm_grammar_free(g);
  g = schema_grammar("{\"type\": \"integer\", \"exclusiveMaximum\": -3}");
  ck_assert(grammar_full_match(g, "-4") && grammar_full_match(g, "-1000000") &&
            !grammar_full_match(g, "-3") && !grammar_full_match(g, "0"));
  nllm_grammar_free(g);
}
END_TEST

static void refused(const char *schema, const char *needle) {
  char *text = NULL;
  ck_assert_int_ne(nllm_json_schema_to_gbnf(schema, strlen(schema), &text), NLLM_OK);
  ck_assert_ptr_null(text);
  if (!strstr(nllm_last_error(), needle))
    fprintf(stderr, "error [%s] lacks [%s]\n", nllm_last_error(), needle);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), needle));
}

START_TEST(clear_refusals) {
  refused("{\"type\": \"object\"", "not valid JSON");
  refused("{\"type\": \"string\", \"pattern\": \"a(?=b)\"}", "/pattern: pattern: lookaround");
  refused("{\"type\": \"string\", \"pattern\": \"(a)\\\\1\"}", "escape \\1 is not supported");
  refused("{\"type\": \"string\", \"pattern\": \"a*?\"}", "lazy");
  refused("{\"type\": \"string\", \"pattern\": \"a^b\"}", "anchor");
  /* an unbounded repeat of what can match nothing would be a left-recursive rule
   * (fuzz_json_schema); bounded or optional ones, and repeats of a group with an empty
   * alternative inside a non-empty part, compile */
  refused("{\"type\": \"string\", \"pattern\": \"(ab|)+[-c]df\"}",
          "'+' repeats a group that can match the empty string");
  refused("{\"type\": \"string\", \"pattern\": \"x(a|b?)*\"}", "'*' repeats a group");
  refused("{\"type\": \"string\", \"pattern\": \"(a*){2,}\"}", "'{' repeats a group");
  static const char *const compiles[] = {"((a|)b)+", "(a?){2,3}", "(|a)x", "(a|)?", "(ab)*x"};
  for (size_t i = 0; i < sizeof compiles / sizeof compiles[0]; i++) {
    char schema[128], *text = NULL;
    snprintf(schema, sizeof schema, "{\"type\": \"string\", \"pattern\": \"%s\"}", compiles[i]);
    ck_assert_int_eq(nllm_json_schema_to_gbnf(schema, strlen(schema), &text), NLLM_OK);
    nllm_grammar *g = NULL;
    ck_assert_msg(nllm_grammar_parse(text, strlen(text), NULL, &g) == NLLM_OK, "%s: %s",
                  compiles[i], nllm_last_error());
    nllm_grammar_free(g);
    free(text);
  }
  refused("{\"properties\": {\"a\": {\"type\": \"number\", \"maximum\": 3}}}",
          "/properties/a: minimum/maximum on type number");
  refused("{\"type\": \"array\", \"uniqueItems\": true}", "\"uniqueItems\" is not supported");
  refused("{\"$ref\": \"https://x.org/s.json\"}", "only local references");
  refused("{\"$ref\": \"#/$defs/missing\"}", "points nowhere");
  refused("{\"type\": \"widget\"}", "unknown type");
  refused("{\"allOf\": [{\"type\": \"string\"}, {\"type\": \"object\"}]}", "object schemas only");
  refused("{\"type\": \"object\", \"properties\": [\"b\"]}", "/: properties must be an object");
  /* allOf: a merged object must validate against every member (fuzz_json_schema). */
  refused(
      "{\"allOf\": [{\"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": 0}}}, "
      "{\"properties\": {\"a\": {\"type\": \"integer\", \"maximum\": 5}}}]}",
      "allOf/1: property \"a\" has different schemas in several members");
  refused(
      "{\"allOf\": [{\"properties\": {\"a\": {}}, \"additionalProperties\": false}, "
      "{\"properties\": {\"b\": {}}, \"required\": [\"b\"]}]}",
      "allOf/0: required property \"b\" is excluded by additionalProperties false");
  refused("{\"allOf\": [{\"type\": \"object\"}, {\"properties\": [\"b\"]}]}",
          "allOf/1: properties must be an object");
  refused("{\"allOf\": [{\"type\": \"object\"}, {\"allOf\": [{\"type\": \"array\"}]}]}",
          "allOf/1/allOf/0: allOf is supported for object schemas only");
  refused("{\"enum\": [\"a\"], \"pattern\": \"a\"}", "enum/const together with \"pattern\"");
  refused("{\"type\": \"string\", \"enum\": [1, null]}", "no value of enum/const matches");
  refused("{\"const\": \"x\", \"type\": \"integer\"}", "no value of enum/const matches");
  refused("{\"anyOf\": [{\"type\": \"string\"}], \"type\": \"integer\"}",
          "no alternative of anyOf can match the keywords beside it (\"type\")");
  refused(
      "{\"$ref\": \"#/$defs/x\", \"pattern\": \"a\", \"$defs\": {\"x\": {\"type\": \"string\", "
      "\"pattern\": \"b\"}}}",
      "\"pattern\" differs in two schemas that must both hold");
  refused("{\"type\": \"string\", \"format\": \"uuid\", \"pattern\": \"^a\"}",
          "format \"uuid\" together with pattern");
  refused("{\"type\": \"number\", \"minimum\": 0, \"exclusiveMinimum\": true}",
          "minimum/maximum on type number");
  refused("{\"type\": \"object\", \"properties\": {}, \"required\": [\"x\"]}",
          "required property \"x\" has no schema");
  refused("{\"type\": \"integer\", \"minimum\": 5, \"maximum\": 1}", "above maximum");
  refused("{\"type\": \"string\", \"maxLength\": 1000000}", "maxLength must be an integer");
  refused("false", "schema false accepts nothing");
  char deep[4096] = "";
  for (int i = 0; i < 100; i++) strcat(deep, "{\"items\": ");
  strcat(deep, "{}");
  for (int i = 0; i < 100; i++) strcat(deep, "}");
  refused(deep, "nested deeper");
}
END_TEST

START_TEST(recursive_ref_and_public_api) {
  /* A self-referencing root through "#". */
  nllm_grammar *g = schema_grammar(
      "{\"type\": \"array\", \"items\": {\"anyOf\": [{\"type\": \"integer\"}, "
      "{\"$ref\": \"#\"}]}}");
  ck_assert(grammar_full_match(g, "[1, [2, [3, []]], 4]") &&
            !grammar_full_match(g, "[1, [\"a\"]]"));
  nllm_grammar_free(g);
  char buf[8];
  int32_t n = 0;
  ck_assert_int_eq(nllm_json_schema_to_grammar("{\"type\": \"boolean\"}", buf, sizeof buf, &n),
                   NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_gt(n, 8);
  char *big = malloc((size_t)n + 1);
  ck_assert_int_eq(nllm_json_schema_to_grammar("{\"type\": \"boolean\"}", big, n + 1, &n), NLLM_OK);
  ck_assert_int_eq((int)strlen(big), n);
  ck_assert_int_eq(nllm_grammar_validate(big, NULL), NLLM_OK);
  free(big);
  ck_assert_int_eq(nllm_grammar_validate("root ::= x", NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "undefined rule 'x'"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("json_schema");
  TCase *tc = tcase_create("json_schema");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, valid_and_invalid_documents, 0, (int)(sizeof CASES / sizeof *CASES));
  tcase_add_test(tc, random_sentences_validate);
  tcase_add_test(tc, empty_closed_object);
  tcase_add_test(tc, integer_ranges_exact);
  tcase_add_test(tc, clear_refusals);
  tcase_add_test(tc, recursive_ref_and_public_api);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
