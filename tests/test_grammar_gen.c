/* Grammar-constrained generation end to end on real models that never write JSON on their own
 * (the tiny stories model, random-weight models with 32k and 152k vocabularies): every output
 * parses and validates (python3-jsonschema), ends cleanly at end-of-generation when the grammar
 * is complete, and a too-small max_tokens is visible as an incomplete grammar. Also the sampler
 * rules: greedy stays greedy among allowed tokens, prompt tokens never touch the grammar. */
#include <cJSON.h>
#include <math.h>

#include "engine/engine.h"
#include "grammar/grammar.h"
#include "testutil.h"

static const char *SCHEMA_PERSON =
    "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 8}, "
    "\"age\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 120}, \"tags\": {\"type\": "
    "\"array\", \"items\": {\"enum\": [\"a\", \"b\", \"c\"]}, \"maxItems\": 3}, \"ok\": {\"type\": "
    "\"boolean\"}}, \"required\": [\"name\", \"age\"], \"additionalProperties\": false}";
static const char *SCHEMA_LIST =
    "{\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": {\"id\": {\"type\": "
    "\"integer\", \"minimum\": 1, \"maximum\": 999}, \"kind\": {\"enum\": [\"x\", \"y\"]}, \"at\": "
    "{\"type\": \"string\", \"format\": \"date\"}}, \"required\": [\"id\", \"kind\"]}, "
    "\"minItems\": "
    "1, \"maxItems\": 3}";

typedef struct {
  char text[8192];
  int n;
} sink;

static int32_t collect(nllm_token t, const char *piece, int32_t len, void *ud) {
  sink *s = ud;
  if (s->n + len < (int)sizeof s->text) memcpy(s->text + s->n, piece, (size_t)len), s->n += len;
  return 0;
}

static nllm_model *load(const char *rel, int in_testdata) {
  char path[512];
  if (in_testdata) {
    if (!testdata_path(path, sizeof path, rel)) return NULL;
  } else {
    snprintf(path, sizeof path, "%s", rel);
  }
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(path, NULL, &m);
  ck_assert_msg(st == NLLM_OK, "load %s: %s", path, nllm_last_error());
  return m;
}

/* n outputs per schema over seeds and temperatures; each must end at end-of-generation with the
 * grammar complete, and goes to the validator file. */
static int run_outputs(nllm_model *m, const char *schema, int n, int max_tokens, FILE *out) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 512;
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  static const float temps[] = {0.0f, 0.7f, 1.0f, 1.5f};
  cJSON *sj = cJSON_Parse(schema);
  ck_assert_ptr_nonnull(sj);
  int done = 0;
  for (int i = 0; i < n; i++) {
    nllm_sampler_params sp;
    nllm_sampler_params_init(&sp);
    sp.json_schema = schema;
    sp.temperature = temps[i % 4];
    sp.seed = 1000 + (uint64_t)i;
    if (i % 3 == 1) sp.top_k = 0, sp.min_p = 0.0f; /* pure temperature sampling: full masks */
    nllm_sampler *s = NULL;
    nllm_status st = nllm_sampler_create(m, &sp, &s);
    ck_assert_msg(st == NLLM_OK, "sampler: %s", nllm_last_error());
    nllm_context_reset(ctx);
    nllm_generate_params gp;
    nllm_generate_params_init(&gp);
    gp.max_tokens = max_tokens;
    sink k = {.n = 0};
    gp.on_token = collect;
    gp.user_data = &k;
    int32_t n_gen = 0;
    st = nllm_generate(ctx, s, "Once upon a time", -1, &gp, &n_gen);
    ck_assert_msg(st == NLLM_OK, "generate: %s", nllm_last_error());
    k.text[k.n] = 0;
    if (n_gen >= max_tokens) fprintf(stderr, "not finished in %d tokens: %s\n", max_tokens, k.text);
    ck_assert_int_lt(n_gen, max_tokens);
    ck_assert_int_eq(nllm_sampler_grammar_complete(s), 1);
    cJSON *line = cJSON_CreateObject();
    cJSON_AddItemToObject(line, "schema", cJSON_Duplicate(sj, 1));
    cJSON_AddStringToObject(line, "text", k.text);
    char *t = cJSON_PrintUnformatted(line);
    fprintf(out, "%s\n", t);
    free(t);
    cJSON_Delete(line);
    nllm_sampler_free(s);
    done++;
  }
  cJSON_Delete(sj);
  nllm_context_free(ctx);
  return done;
}

static void validate_file(const char *path, int n) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/schema_validate.py %s", path);
  int rc = system(cmd);
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
    fprintf(stderr, "SKIP: python3-jsonschema missing: %d outputs not validated\n", n);
    return;
  }
  ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "%d outputs: some invalid", n);
}

static FILE *tmp_out(char *path) {
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  return fdopen(fd, "w");
}

/* Under a sanitizer a quarter of the bulk rounds (testutil.h, TEST_SANITIZED). */
enum { BULK = TEST_SANITIZED ? 4 : 1 };

START_TEST(stories_200_outputs_validate) {
  nllm_model *m = load("models/stories260K.gguf", 0);
  char path[] = "/tmp/nllm_gen_XXXXXX";
  FILE *f = tmp_out(path);
  int n = run_outputs(m, SCHEMA_PERSON, 100 / BULK, 400, f);
  n += run_outputs(m, SCHEMA_LIST, 100 / BULK, 400, f);
  fclose(f);
  validate_file(path, n);
  unlink(path);
  nllm_model_free(m);
}
END_TEST

START_TEST(random_weight_models_validate) {
  static const char *models[] = {"models/llama-2-tiny-random/llama-2-tiny-random.gguf",
                                 "hf/tiny-qwen2"};
  for (int k = 0; k < 2; k++) {
    nllm_model *m = load(models[k], 1);
    if (!m) continue;
    char path[] = "/tmp/nllm_gen_XXXXXX";
    FILE *f = tmp_out(path);
    int n = run_outputs(m, SCHEMA_PERSON, 8 / BULK, 300, f);
    n += run_outputs(m, SCHEMA_LIST, 8 / BULK, 300, f);
    fclose(f);
    validate_file(path, n);
    unlink(path);
    nllm_model_free(m);
  }
}
END_TEST

START_TEST(gbnf_and_length_limit) {
  nllm_model *m = load("models/stories260K.gguf", 0);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 256;
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  char grammar[] = "start ::= word (\", \" word){2,3} \".\"\nword ::= [a-z]{2,7}\n";
  sp.grammar = grammar;
  sp.grammar_root = "start";
  sp.seed = 7;
  nllm_sampler *s = NULL;
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_OK);
  memset(grammar, 'x', sizeof grammar - 1); /* the sampler kept its own copy */
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  sink k = {.n = 0};
  gp.on_token = collect;
  gp.user_data = &k;
  gp.max_tokens = 3;
  int32_t n_gen = 0;
  ck_assert_int_eq(nllm_generate(ctx, s, "The cat", -1, &gp, &n_gen), NLLM_OK);
  ck_assert_int_eq(n_gen, 3);
  ck_assert_int_eq(nllm_sampler_grammar_complete(s), 0); /* cut short: "length" */
  /* A new prompt starts the grammar over; enough tokens end it cleanly. */
  nllm_context_reset(ctx);
  k.n = 0;
  gp.max_tokens = 200;
  ck_assert_int_eq(nllm_generate(ctx, s, "The cat", -1, &gp, &n_gen), NLLM_OK);
  k.text[k.n] = 0;
  ck_assert_int_lt(n_gen, 200);
  ck_assert_int_eq(nllm_sampler_grammar_complete(s), 1);
  int words = 1;
  for (int i = 0; k.text[i]; i++) {
    char ch = k.text[i];
    ck_assert_msg((ch >= 'a' && ch <= 'z') || ch == ',' || ch == ' ' || ch == '.', "%s", k.text);
    words += ch == ',';
  }
  ck_assert(words >= 3 && words <= 4 && k.text[k.n - 1] == '.');
  nllm_sampler_free(s);
  nllm_context_free(ctx);
  nllm_model_free(m);
}
END_TEST

START_TEST(greedy_among_allowed_and_prompt_isolation) {
  nllm_model *m = load("models/stories260K.gguf", 0);
  const int V = nllm_model_n_vocab(m);
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.temperature = 0;
  sp.grammar = "root ::= [0-9]+ \"!\"\n";
  nllm_sampler *s = NULL;
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_OK);
  float *l = malloc(sizeof(float) * (size_t)V);
  uint64_t rng = 3;
  for (int round = 0; round < 20; round++) {
    /* Even rounds start over (only digits allowed); odd rounds follow one accepted digit token
     * (digits, optionally ending in '!'). */
    if (round % 2 == 0) nllm_sampler_reset(s, NLLM_SEED_DEFAULT);
    for (int i = 0; i < V; i++) l[i] = (float)(test_xorshift(&rng) % 1000) / 100.0f;
    /* Prompt-like tokens fed before sampling never advance the grammar. */
    for (int i = 0; i < 5; i++) nllm_sampler_accept(s, (nllm_token)(i + 3));
    nllm_token t;
    ck_assert_int_eq(nllm_sampler_sample_logits(s, l, V, &t), NLLM_OK);
    /* The best allowed token: brute force over the vocabulary. */
    int best = -1;
    for (int i = 0; i < V; i++) {
      char p[64];
      int32_t n = 0;
      if (nllm_token_to_piece(m, i, 0, p, sizeof p, &n) || n == 0) continue;
      int ok = 1;
      for (int j = 0; j < n; j++)
        ok &= (p[j] >= '0' && p[j] <= '9') || (round % 2 && j == n - 1 && p[j] == '!');
      if (ok && (best < 0 || l[i] > l[best])) best = i;
    }
    ck_assert_int_eq(t, best);
    nllm_sampler_accept(s, t);
  }
  free(l);
  nllm_sampler_free(s);
  /* Both at once, bad grammar, bad schema: clear errors. */
  sp.json_schema = "{}";
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "not both"));
  sp.json_schema = NULL;
  sp.grammar = "root ::= (";
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "line 1"));
  sp.grammar = NULL;
  sp.json_schema = "{\"type\": \"string\", \"pattern\": \"(?!x)\"}";
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "json_schema"));
  nllm_model_free(m);
}
END_TEST

/* nllm run --json-schema / --grammar-file, and the "length" note when -n is too small. */
START_TEST(cli_flags) {
  const char *b = getenv("NLLM_BUILD");
  char cmd[1024], out[] = "/tmp/nllm_cli_gr_XXXXXX";
  int fd = mkstemp(out);
  ck_assert_int_ge(fd, 0);
  close(fd);
  snprintf(cmd, sizeof cmd,
           "%s/nllm run -m models/stories260K.gguf -p 'Hi' -n 200 --temp 0 --json-schema "
           "'{\"type\": \"object\", \"properties\": {\"ok\": {\"type\": \"boolean\"}}, "
           "\"required\": [\"ok\"]}' >%s 2>&1",
           b && *b ? b : "build", out);
  ck_assert_int_eq(system(cmd), 0);
  char *text = read_file(out, NULL);
  ck_assert_msg(strstr(text, "Hi{") || strstr(text, "Hi {"), "%s", text);
  ck_assert_msg(strstr(text, "\"ok\"") && !strstr(text, "finish reason"), "%s", text);
  free(text);
  snprintf(cmd, sizeof cmd,
           "printf 'root ::= [a-z]+ \".\"\\n' > %s.gbnf && %s/nllm run -m models/stories260K.gguf "
           "-p 'Hi' -n 1 --temp 0 --grammar-file %s.gbnf >%s 2>&1",
           out, b && *b ? b : "build", out, out);
  ck_assert_int_eq(system(cmd), 0);
  text = read_file(out, NULL);
  ck_assert_msg(strstr(text, "finish reason \"length\""), "%s", text);
  free(text);
  snprintf(cmd, sizeof cmd,
           "%s/nllm run -m models/stories260K.gguf -p 'Hi' --grammar 'root ::= (' >%s 2>&1",
           b && *b ? b : "build", out);
  ck_assert_int_ne(system(cmd), 0);
  text = read_file(out, NULL);
  ck_assert_msg(strstr(text, "line 1, column"), "%s", text);
  free(text);
  /* nllm parallel: every sequence has its own grammar state. */
  snprintf(cmd, sizeof cmd,
           "printf 'Hello\\nThe cat\\nOnce\\n' > %s.txt && %s/nllm parallel -m "
           "models/stories260K.gguf -f %s.txt -n 200 -np 2 --temp 0.9 -s 3 --json-schema "
           "'{\"type\": \"object\", \"properties\": {\"a\": {\"enum\": [1, 2]}}, "
           "\"required\": [\"a\"]}' >%s 2>/dev/null",
           out, b && *b ? b : "build", out, out);
  ck_assert_int_eq(system(cmd), 0);
  text = read_file(out, NULL);
  int lines = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
    char *brace = strchr(line, '{');
    ck_assert_msg(brace && strstr(brace, "\"a\"") && strrchr(brace, '}'), "%s", line);
  }
  ck_assert_int_eq(lines, 3);
  free(text);
  snprintf(cmd, sizeof cmd, "%s.txt", out);
  unlink(cmd);
  snprintf(cmd, sizeof cmd, "%s.gbnf", out);
  unlink(cmd);
  unlink(out);
}
END_TEST

/* The sampler's masks (trie walk, masks kept per parse state, the one-by-one checks of the top
 * candidates) against brute force: every token's piece checked on a matcher of its own fed the
 * same accepted tokens. Random picks among the allowed tokens reach strings with byte-fallback
 * tokens (partial UTF-8 between tokens); documents restart so that states repeat. */
static void masks_vs_brute_force(nllm_model *m, int n_steps, uint64_t seed) {
  const int V = nllm_model_n_vocab(m);
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  /* Strings bounded (a chain of states) and unbounded (a state plain text never leaves). */
  sp.json_schema =
      "{\"type\": \"array\", \"items\": {\"anyOf\": [{\"type\": \"string\", "
      "\"maxLength\": 6}, {\"type\": \"object\", \"properties\": {\"s\": {\"type\": "
      "\"string\"}}, \"required\": [\"s\"]}, {\"type\": \"integer\", \"minimum\": -5, "
      "\"maximum\": 300}]}, \"maxItems\": 3}";
  nllm_sampler *s = NULL;
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_OK);
  char *text = NULL;
  ck_assert_int_eq(nllm_json_schema_to_gbnf(sp.json_schema, strlen(sp.json_schema), &text),
                   NLLM_OK);
  nllm_grammar *g = NULL;
  ck_assert_int_eq(nllm_grammar_parse(text, strlen(text), NULL, &g), NLLM_OK);
  free(text);
  nllm_gmatch *ref = NULL;
  ck_assert_int_eq(nllm_gmatch_new(g, &ref), NLLM_OK);
  float *l = malloc(sizeof(float) * (size_t)V);
  uint8_t *allowed = malloc((size_t)V);
  uint64_t rng = seed;
  int in_doc = 0, n_allowed_total = 0;
  for (int step = 0; step < n_steps; step++) {
    if (in_doc++ == 12) { /* start over: the states of the first steps come back */
      nllm_sgrammar_restart(s->gr);
      nllm_gmatch_reset(ref);
      in_doc = 1;
    }
    const int can_end = nllm_gmatch_can_end(ref), must_end = nllm_gmatch_must_end(ref);
    int best = -1, n_ok = 0;
    for (int t = 0; t < V; t++) {
      l[t] = (float)(test_xorshift(&rng) % 100000) / 1000.0f;
      char p[256];
      int32_t n = 0;
      int ok;
      if (nllm_model_is_eog(m, t))
        ok = can_end;
      else if (nllm_tok_token_to_piece(m->tok, t, 0, p, sizeof p, &n) || n <= 0)
        ok = 0;
      else
        ck_assert_int_eq(nllm_gmatch_check(ref, (const uint8_t *)p, (size_t)n, &ok), NLLM_OK);
      allowed[t] = (uint8_t)ok;
      n_ok += ok;
      if (ok && (best < 0 || l[t] > l[best])) best = t;
    }
    ck_assert_int_gt(n_ok, 0);
    n_allowed_total += n_ok;
    int32_t nc = 0;
    /* Greedy: the best allowed token. */
    s->p.temperature = 0;
    ck_assert_int_eq(nllm_sgrammar_candidates(s->gr, &s->p, l, s->cand, &nc), NLLM_OK);
    int got = nc >= 1 ? s->cand[0] : -1;
    for (int t = 0; nc < 0 && t < V; t++) /* no allowed token among the top: the mask */
      if (isfinite(l[t]) && (got < 0 || l[t] > l[got])) got = t;
    if (must_end)
      ck_assert(nllm_model_is_eog(m, got));
    else
      ck_assert_int_eq(got, best);
    /* The full mask: exactly the allowed tokens keep their logits. */
    s->p.temperature = 1, s->p.top_k = 0, s->p.min_p = 0;
    for (int t = 0; t < V; t++) l[t] = 0;
    ck_assert_int_eq(nllm_sgrammar_candidates(s->gr, &s->p, l, s->cand, &nc), NLLM_OK);
    if (!must_end) {
      ck_assert_int_eq(nc, -1);
      for (int t = 0; t < V; t++)
        if ((int)isfinite(l[t]) != allowed[t])
          ck_abort_msg("step %d: token %d: mask %d, brute force %d", step, t, isfinite(l[t]),
                       allowed[t]);
    }
    /* Pick a random allowed token (rarely the end, so documents get long). */
    int k = (int)(test_xorshift(&rng) % (uint64_t)n_ok), pick = -1;
    for (int t = 0; t < V && pick < 0; t++)
      if (allowed[t] && k-- == 0) pick = t;
    if (nllm_model_is_eog(m, pick) && !must_end && n_ok > 1)
      for (int t = 0; t < V && nllm_model_is_eog(m, pick); t++)
        if (allowed[t]) pick = t;
    nllm_sgrammar_picked(s->gr, pick);
    nllm_sgrammar_accepted(s->gr, pick);
    if (nllm_model_is_eog(m, pick)) {
      nllm_gmatch_reset(ref);
      in_doc = 0;
    } else {
      char p[256];
      int32_t n = 0;
      int ok = 0;
      ck_assert_int_eq(nllm_tok_token_to_piece(m->tok, pick, 0, p, sizeof p, &n), NLLM_OK);
      ck_assert_int_eq(nllm_gmatch_accept(ref, (const uint8_t *)p, (size_t)n, &ok), NLLM_OK);
      ck_assert(ok);
    }
  }
  nllm_sampler_grammar_stats st;
  nllm_sgrammar_stats(s->gr, &st);
  ck_assert_int_gt(st.n_mask_hits, 0); /* repeated states found their kept masks */
  ck_assert_int_gt(st.n_full_masks, 0);
  ck_assert_int_gt(n_allowed_total, n_steps);
  free(l);
  free(allowed);
  nllm_gmatch_free(ref);
  nllm_grammar_free(g);
  nllm_sampler_free(s);
}

START_TEST(masks_match_brute_force) {
  nllm_model *m = load("models/stories260K.gguf", 0);
  masks_vs_brute_force(m, 150 / BULK, 11);
  nllm_model_free(m);
  m = load("hf/tiny-qwen2", 1); /* 152k tokens, multi-byte pieces */
  if (m) {
    masks_vs_brute_force(m, 30 / BULK, 5);
    nllm_model_free(m);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("grammar_gen");
  TCase *tc = tcase_create("grammar_gen");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, stories_200_outputs_validate);
  tcase_add_test(tc, random_weight_models_validate);
  tcase_add_test(tc, gbnf_and_length_limit);
  tcase_add_test(tc, greedy_among_allowed_and_prompt_isolation);
  tcase_add_test(tc, cli_flags);
  tcase_add_test(tc, masks_match_brute_force);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
