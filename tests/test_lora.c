/* LoRA adapters: the four reference goldens of ../shared/testdata/lora (PEFT folders on the HF
 * base, GGUF adapters on its GGUF conversion, and the two crossed), switching adapters on one
 * context, adapters on quantized bases, and hostile adapter files. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cliutil.h"
#include "convert/convert.h"
#include "modelutil.h"
#include "qtypes.h"

/* The README's combinations: adapters (a = tiny-llama-lora-a, b = ...-b) and user scales. */
static const struct {
  const char *golden;
  const char *names;
  float scales[2];
} combos[] = {
    {"golden.lora-a.s1.0.logits.txt", "a", {1.0f, 0}},
    {"golden.lora-a.s0.5.logits.txt", "a", {0.5f, 0}},
    {"golden.lora-a+b.s1.0.logits.txt", "ab", {1.0f, 1.0f}},
    {"golden.lora-b.s1.0.logits.txt", "b", {1.0f, 0}},
};

static char tmp_base[256]; /* the F32 GGUF conversion of hf/tiny-llama, made per test */

/* Converts hf/tiny-llama to an F32 GGUF (arch llama, q/k rows permuted, as the README's
 * cross-check did); 0 (skipped) when the shared data is absent. */
static int make_gguf_base(void) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json")) return 0;
  *strrchr(dir, '/') = 0;
  snprintf(tmp_base, sizeof tmp_base, "/tmp/nllm-test-lora-%d.gguf", (int)getpid());
  nllm_source src;
  ck_assert_int_eq(nllm_source_open(dir, 1, &src), NLLM_OK);
  nllm_status st = nllm_convert_source(&src, tmp_base, "F32", 1, NULL, NULL);
  nllm_source_free(&src);
  ck_assert_msg(st == NLLM_OK, "convert: %s", nllm_last_error());
  return 1;
}

static nllm_lora_adapter *load_adapter(nllm_model *m, char which, int gguf) {
  char rel[128], path[1024];
  snprintf(rel, sizeof rel, gguf ? "lora/tiny-llama-lora-%c.gguf" : "lora/tiny-llama-lora-%c",
           which);
  snprintf(path, sizeof path, "%s/%s", testdata_dir(), rel);
  nllm_lora_adapter *a = NULL;
  nllm_status st = nllm_lora_adapter_load(m, path, &a);
  ck_assert_msg(st == NLLM_OK, "%s: %s", path, nllm_last_error());
  return a;
}

static nllm_model *load_model(const char *path) {
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(path, NULL, &m) == NLLM_OK, "%s: %s", path, nllm_last_error());
  return m;
}

/* path loaded with nllm_lora_adapter_params.weight_type = weight_type. */
static nllm_lora_adapter *load_typed(nllm_model *m, const char *path, int32_t weight_type) {
  nllm_lora_adapter_params p;
  nllm_lora_adapter_params_init(&p);
  p.weight_type = weight_type;
  nllm_lora_adapter *a = NULL;
  nllm_status st = nllm_lora_adapter_load_params(m, path, &p, &a);
  ck_assert_msg(st == NLLM_OK, "%s: %s", path, nllm_last_error());
  return a;
}

/* Replays combo c on base model_path with adapters in the PEFT (0) or GGUF (1) form. */
static void check_combo(const char *model_path, int c, int gguf_adapters, const char *label) {
  char rel[256], golden[1024];
  snprintf(rel, sizeof rel, "lora/%s", combos[c].golden);
  if (!testdata_path(golden, sizeof golden, rel)) return;
  golden_logits *g = golden_logits_load(golden);
  ck_assert_ptr_nonnull(g);
  nllm_model *m = load_model(model_path);
  nllm_lora_adapter *ad[2];
  int n = (int)strlen(combos[c].names);
  for (int k = 0; k < n; k++) ad[k] = load_adapter(m, combos[c].names[k], gguf_adapters);
  nllm_context *ctx = golden_context_mode(m, g, NLLM_TYPE_F32, NLLM_BF16_ACT_EXACT);
  ck_assert_int_eq(nllm_context_set_lora(ctx, ad, combos[c].scales, n), NLLM_OK);
  ck_assert_int_eq(nllm_context_n_lora(ctx), n);
  cmp_result r;
  compare_golden_ctx(ctx, g, &r);
  fprintf(stderr, "%s %s: max rel RMS %.2e over %d rows, greedy agree %d/%d\n", label,
          combos[c].golden, r.max_rel, r.n_rows, r.argmax_agree, g->n_gen);
  /* as tight as the base model's golden (test_models.c): F32 compute near the files' rounding */
  ck_assert_msg(r.max_rel < 1e-4, "%s %s: %g", label, combos[c].golden, r.max_rel);
  ck_assert_int_eq(r.argmax_agree, g->n_gen);
  nllm_context_free(ctx);
  for (int k = 0; k < n; k++) nllm_lora_adapter_free(ad[k]);
  nllm_model_free(m);
  golden_logits_free(g);
}

START_TEST(peft_on_hf_base) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json")) return;
  *strrchr(dir, '/') = 0;
  check_combo(dir, _i, 0, "PEFT on HF");
}
END_TEST

START_TEST(gguf_on_gguf_base) {
  if (!make_gguf_base()) return;
  check_combo(tmp_base, _i, 1, "GGUF on GGUF");
  remove(tmp_base);
}
END_TEST

/* The q/k rows of lora_b follow the base's rope layout: a GGUF adapter's (pairs) must be
 * un-permuted for the HF base, a PEFT adapter's (halves) permuted for the GGUF base. */
START_TEST(crossed_layouts) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json")) return;
  *strrchr(dir, '/') = 0;
  check_combo(dir, 2, 1, "GGUF on HF");
  if (!make_gguf_base()) return;
  check_combo(tmp_base, 2, 0, "PEFT on GGUF");
  remove(tmp_base);
}
END_TEST

/* nllm_convert with lora_paths writes the merged weights: the a+b golden from the written file,
 * from the HF folder (F32) and from the GGUF base (type kept). */
START_TEST(merged_conversion) {
  char dir[1024], golden[1024], a[1024], b[1024], out[256];
  if (!testdata_path(golden, sizeof golden, "lora/golden.lora-a+b.s1.0.logits.txt")) return;
  snprintf(dir, sizeof dir, "%s/hf/tiny-llama", testdata_dir());
  snprintf(a, sizeof a, "%s/lora/tiny-llama-lora-a", testdata_dir());
  snprintf(b, sizeof b, "%s/lora/tiny-llama-lora-b.gguf", testdata_dir());
  snprintf(out, sizeof out, "/tmp/nllm-test-lora-merged-%d.gguf", (int)getpid());
  const char *paths[2] = {a, b};
  const float scales[2] = {1.0f, 1.0f};
  nllm_convert_params cp;
  nllm_convert_params_init(&cp);
  cp.lora_paths = paths;
  cp.lora_scales = scales;
  cp.n_lora = 2;
  cp.n_threads = 1;
  if (_i == 0) {
    cp.type_name = "F32";
    ck_assert_msg(nllm_convert(dir, out, &cp, NULL) == NLLM_OK, "%s", nllm_last_error());
  } else {
    if (!make_gguf_base()) return;
    ck_assert_msg(nllm_convert(tmp_base, out, &cp, NULL) == NLLM_OK, "%s", nllm_last_error());
    remove(tmp_base);
  }
  cmp_result r;
  compare_golden(out, golden, NLLM_TYPE_F32, &r);
  remove(out);
  fprintf(stderr, "merged from %s: max rel RMS %.2e, greedy agree %d\n", _i ? "GGUF" : "HF",
          r.max_rel, r.argmax_agree);
  ck_assert_msg(r.max_rel < 1e-4, "merged: %g", r.max_rel);
  ck_assert_int_eq(r.argmax_agree, 8);
  /* a bad adapter path fails the conversion and writes nothing */
  paths[1] = "/nonexistent.gguf";
  cp.type_name = "F32";
  ck_assert_int_eq(nllm_convert(dir, out, &cp, NULL), NLLM_ERR_IO);
  ck_assert_int_ne(access(out, F_OK), 0);
  cp.n_lora = -1;
  ck_assert_int_eq(nllm_convert(dir, out, &cp, NULL), NLLM_ERR_INVALID_ARG);
}
END_TEST

/* ---------------------------------------------------------------- switching */

#define N_IDS 12

static const int test_ids[N_IDS] = {1,    415,   5565, 302,  4843, 349,
                                    5465, 28723, 5713, 3714, 264,  727};

/* All N_IDS rows of logits (prompt of 8 as one batch, then 4 single decodes) into out; ids
 * past a small vocabulary wrap around. */
static void run_ids(nllm_context *ctx, float *out, int n_vocab) {
  int ids[N_IDS];
  for (int i = 0; i < N_IDS; i++) ids[i] = test_ids[i] % n_vocab;
  nllm_context_reset(ctx);
  ck_assert_int_eq(nllm_decode(ctx, ids, 8), NLLM_OK);
  for (int i = 0; i < 8; i++)
    memcpy(out + (size_t)i * n_vocab, nllm_get_logits_ith(ctx, i), sizeof(float) * n_vocab);
  for (int i = 8; i < N_IDS; i++) {
    ck_assert_int_eq(nllm_decode(ctx, &ids[i], 1), NLLM_OK);
    memcpy(out + (size_t)i * n_vocab, nllm_get_logits(ctx), sizeof(float) * n_vocab);
  }
}

static nllm_context *new_ctx(nllm_model *m) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.bf16_activations = NLLM_BF16_ACT_EXACT; /* the checks below are exact (1e-6) */
  cp.all_logits = 1;
  cp.n_ctx = 64;
  cp.kv_type = NLLM_TYPE_F32;
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  return ctx;
}

START_TEST(switching_equals_fresh_contexts) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json") ||
      !testdata_path(dir, sizeof dir, "lora/tiny-llama-lora-a/adapter_config.json"))
    return;
  snprintf(dir, sizeof dir, "%s/hf/tiny-llama", testdata_dir());
  nllm_model *m = load_model(dir);
  const int nv = nllm_model_n_vocab(m);
  nllm_lora_adapter *a = load_adapter(m, 'a', 0), *b = load_adapter(m, 'b', 1);
  nllm_lora_adapter *both[2] = {a, b}, *ba[2] = {b, a};
  const float s1[2] = {1, 1}, s05[1] = {0.5f}, s0[2] = {0, 0};
  struct {
    nllm_lora_adapter **ad;
    const float *s;
    int n;
  } sets[] = {{both, s1, 1}, {both + 1, s1, 1}, {both, s05, 1}, {NULL, NULL, 0},
              {both, s1, 2}, {ba, s1, 2},       {both, s0, 2}};
  const int n_sets = (int)(sizeof sets / sizeof sets[0]);
  float *got = malloc(sizeof(float) * (size_t)nv * N_IDS);
  float *want = malloc(sizeof(float) * (size_t)nv * N_IDS);
  float *base = malloc(sizeof(float) * (size_t)nv * N_IDS);
  nllm_context *shared = new_ctx(m);
  run_ids(shared, base, nv);
  for (int k = 0; k < n_sets; k++) {
    ck_assert_int_eq(nllm_context_set_lora(shared, sets[k].ad, sets[k].s, sets[k].n), NLLM_OK);
    run_ids(shared, got, nv);
    nllm_context *fresh = new_ctx(m);
    ck_assert_int_eq(nllm_context_set_lora(fresh, sets[k].ad, sets[k].s, sets[k].n), NLLM_OK);
    run_ids(fresh, want, nv);
    nllm_context_free(fresh);
    ck_assert_msg(!memcmp(got, want, sizeof(float) * (size_t)nv * N_IDS),
                  "set %d: the switched context differs from a fresh one", k);
    /* no adapter, or every scale 0, is exactly the base; anything else clearly is not */
    double d = 0;
    for (int i = 0; i < N_IDS; i++)
      d = fmax(d, rel_rms(got + (size_t)i * nv, base + (size_t)i * nv, nv));
    if (sets[k].n == 0 || k == n_sets - 1)
      ck_assert_msg(d == 0, "set %d: %g from the base", k, d);
    else
      ck_assert_msg(d > 0.01, "set %d: only %g from the base", k, d);
  }
  /* a+b and b+a add up the same (up to float summation order) */
  ck_assert_int_eq(nllm_context_set_lora(shared, both, s1, 2), NLLM_OK);
  run_ids(shared, got, nv);
  ck_assert_int_eq(nllm_context_set_lora(shared, ba, s1, 2), NLLM_OK);
  run_ids(shared, want, nv);
  for (int i = 0; i < N_IDS; i++)
    ck_assert_double_lt(rel_rms(got + (size_t)i * nv, want + (size_t)i * nv, nv), 1e-6);
  /* the caller's handles may go while the context still applies them */
  nllm_lora_adapter_free(a);
  nllm_lora_adapter_free(b);
  run_ids(shared, got, nv);
  for (int i = 0; i < N_IDS; i++)
    ck_assert_double_lt(rel_rms(got + (size_t)i * nv, want + (size_t)i * nv, nv), 1e-6);
  ck_assert_int_eq(nllm_context_set_lora(shared, NULL, NULL, 0), NLLM_OK);
  ck_assert_int_eq(nllm_context_n_lora(shared), 0);
  run_ids(shared, got, nv);
  ck_assert(!memcmp(got, base, sizeof(float) * (size_t)nv * N_IDS));
  nllm_context_free(shared);
  free(got);
  free(want);
  free(base);
  nllm_model_free(m);
}
END_TEST

/* Four sequences in one batch, each with other adapters (the context's a; its own b; its own
 * empty set: the base; its own a + b), rows interleaved: every sequence matches its golden. */
START_TEST(per_sequence_sets) {
  char dir[1024];
  static const char *goldens[4] = {
      "lora/golden.lora-a.s1.0.logits.txt", "lora/golden.lora-b.s1.0.logits.txt",
      "hf/tiny-llama/golden.logits.txt", "lora/golden.lora-a+b.s1.0.logits.txt"};
  golden_logits *g[4];
  for (int k = 0; k < 4; k++) {
    if (!testdata_path(dir, sizeof dir, goldens[k])) return;
    ck_assert_ptr_nonnull(g[k] = golden_logits_load(dir));
  }
  snprintf(dir, sizeof dir, "%s/hf/tiny-llama", testdata_dir());
  nllm_model *m = load_model(dir);
  const int nv = nllm_model_n_vocab(m), np = g[0]->n_prompt;
  nllm_lora_adapter *a = load_adapter(m, 'a', 0), *b = load_adapter(m, 'b', 1);
  nllm_lora_adapter *ab[2] = {a, b};
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.bf16_activations = NLLM_BF16_ACT_EXACT; /* the checks below are exact (1e-6) */
  cp.n_ctx = 4 * 24;
  cp.n_seq_max = 4;
  cp.kv_type = NLLM_TYPE_F32;
  cp.all_logits = 1;
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_context_set_lora(ctx, &a, NULL, 1), NLLM_OK);
  ck_assert_int_eq(nllm_seq_set_lora(ctx, 1, &b, NULL, 1), NLLM_OK);
  ck_assert_int_eq(nllm_seq_set_lora(ctx, 2, NULL, NULL, 0), NLLM_OK);
  ck_assert_int_eq(nllm_seq_set_lora(ctx, 3, ab, NULL, 2), NLLM_OK);
  ck_assert_int_eq(nllm_seq_set_lora(ctx, 4, ab, NULL, 2), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_seq_set_lora(ctx, 0, ab, NULL, -2), NLLM_ERR_INVALID_ARG);
  /* the handles may go: the context keeps what it applies */
  nllm_lora_adapter_free(a);
  nllm_lora_adapter_free(b);
  int tok[4 * 12], seq[4 * 12], keep[4 * 12];
  for (int step = 0; step < 2; step++) {
    /* step 0: the prompts, rows interleaved (row i is sequence i % 4); step 1: each sequence's
     * first generated id */
    const int per = step ? 1 : np, n = 4 * per;
    for (int i = 0; i < n; i++) {
      const int s = i % 4, p = i / 4;
      tok[i] = step ? g[s]->gen_ids[0] : g[s]->prompt_ids[p];
      seq[i] = s;
      keep[i] = p == per - 1;
    }
    nllm_batch bt;
    nllm_batch_init(&bt);
    bt.n_tokens = n;
    bt.tokens = tok;
    bt.seq_id = seq;
    bt.logits = keep;
    ck_assert_int_eq(nllm_decode_batch(ctx, &bt), NLLM_OK);
    for (int s = 0; s < 4; s++) {
      const int pos = np - 1 + step, row = pos - (np + g[s]->n_gen - g[s]->n_pos);
      const double e =
          rel_rms(nllm_get_logits_seq(ctx, s), g[s]->rows + (size_t)row * (size_t)nv, nv);
      fprintf(stderr, "sequence %d, position %d: rel RMS %.2e vs %s\n", s, pos, e, goldens[s]);
      ck_assert_msg(e < 1e-4, "sequence %d position %d: %g", s, pos, e);
    }
  }
  /* back to the context's set: sequence 1 now gives a's logits for b's history */
  ck_assert_int_eq(nllm_seq_set_lora(ctx, 1, NULL, NULL, -1), NLLM_OK);
  nllm_context_free(ctx);
  for (int k = 0; k < 4; k++) golden_logits_free(g[k]);
  nllm_model_free(m);
}
END_TEST

START_TEST(bad_attach_arguments) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "lora/tiny-llama-lora-a/adapter_config.json")) return;
  snprintf(dir, sizeof dir, "%s/hf/tiny-llama", testdata_dir());
  nllm_model *m = load_model(dir), *m2 = load_model(dir);
  nllm_lora_adapter *a = load_adapter(m, 'a', 0);
  nllm_context *ctx2 = new_ctx(m2), *ctx = new_ctx(m);
  ck_assert_int_eq(nllm_context_set_lora(ctx2, &a, NULL, 1), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "another model"));
  float nan_scale = NAN;
  ck_assert_int_eq(nllm_context_set_lora(ctx, &a, &nan_scale, 1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_set_lora(ctx, NULL, NULL, 1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_set_lora(ctx, &a, NULL, -1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_set_lora(NULL, &a, NULL, 1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_n_lora(ctx), 0);
  nllm_lora_adapter *none = NULL;
  ck_assert_int_eq(nllm_lora_adapter_load(m, NULL, &none), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_lora_adapter_load(NULL, dir, &none), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_lora_adapter_load(m, "/nonexistent/adapter", &none), NLLM_ERR_IO);
  ck_assert_ptr_null(none);
  /* the base model folder is not an adapter */
  ck_assert_int_ne(nllm_lora_adapter_load(m, dir, &none), NLLM_OK);
  ck_assert_ptr_null(none);
  ck_assert_str_eq(nllm_lora_adapter_name(a), "tiny-llama-lora-a");
  ck_assert_int_eq(nllm_lora_adapter_n_matrices(a), 14);
  ck_assert_int_eq(nllm_lora_adapter_rank(a), 8);
  ck_assert_double_eq(nllm_lora_adapter_alpha(a), 16.0);
  nllm_lora_adapter_free(NULL);
  nllm_context_free(ctx);
  nllm_context_free(ctx2);
  nllm_lora_adapter_free(a);
  nllm_model_free(m);
  nllm_model_free(m2);
}
END_TEST

/* ---------------------------------------------------------------- quantized bases */

static double max_rel(const float *a, const float *b, int nv) {
  double d = 0;
  for (int i = 0; i < N_IDS; i++) d = fmax(d, rel_rms(a + (size_t)i * nv, b + (size_t)i * nv, nv));
  return d;
}

/* An adapter on a Q8_0 / Q4_K base moves the logits as on the F32 base: the error against the
 * F32 base + adapter stays within (about) the quantization's own error on the base. */
START_TEST(quantized_base) {
  static const char *types[] = {"Q8_0", "Q4_K"};
  char f32[256], q[256], lora[256], cmd[2048];
  const int pid = (int)getpid();
  cli_setup();
  snprintf(f32, sizeof f32, "/tmp/nllm-test-lora-small-%d.gguf", pid);
  snprintf(q, sizeof q, "/tmp/nllm-test-lora-small-%d-%s.gguf", pid, types[_i]);
  snprintf(lora, sizeof lora, "/tmp/nllm-test-lora-small-%d-lora.gguf", pid);
  snprintf(cmd, sizeof cmd,
           "%s gen-model --shape small --type F32 -o %s 2>/dev/null && "
           "%s gen-lora -m %s -o %s --rank 8 --seed 7 2>/dev/null",
           nllm_bin, f32, nllm_bin, f32, lora);
  ck_assert_msg(system(cmd) == 0, "%s", cmd);
  nllm_convert_params cp;
  nllm_convert_params_init(&cp);
  cp.type_name = types[_i];
  ck_assert_msg(nllm_quantize(f32, q, &cp, NULL) == NLLM_OK, "%s", nllm_last_error());
  nllm_model *mf = load_model(f32), *mq = load_model(q);
  const int nv = nllm_model_n_vocab(mf);
  nllm_lora_adapter *af = NULL, *aq = NULL;
  ck_assert_int_eq(nllm_lora_adapter_load(mf, lora, &af), NLLM_OK);
  ck_assert_int_eq(nllm_lora_adapter_load(mq, lora, &aq), NLLM_OK);
  /* the default: the F32 adapter stays F32 next to float matrices, F16 next to quantized ones */
  ck_assert_int_eq(nllm_lora_adapter_weight_type(af), NLLM_TYPE_F32);
  ck_assert_int_eq(nllm_lora_adapter_weight_type(aq), NLLM_TYPE_F16);
  nllm_lora_adapter *aq32 = load_typed(mq, lora, NLLM_TYPE_F32);
  float *fb = malloc(sizeof(float) * (size_t)nv * N_IDS),
        *fl = malloc(sizeof(float) * (size_t)nv * N_IDS);
  float *qb = malloc(sizeof(float) * (size_t)nv * N_IDS),
        *ql = malloc(sizeof(float) * (size_t)nv * N_IDS),
        *ql32 = malloc(sizeof(float) * (size_t)nv * N_IDS);
  nllm_context *cf = new_ctx(mf), *cq = new_ctx(mq);
  run_ids(cf, fb, nv);
  run_ids(cq, qb, nv);
  ck_assert_int_eq(nllm_context_set_lora(cf, &af, NULL, 1), NLLM_OK);
  ck_assert_int_eq(nllm_context_set_lora(cq, &aq, NULL, 1), NLLM_OK);
  run_ids(cf, fl, nv);
  run_ids(cq, ql, nv);
  ck_assert_int_eq(nllm_context_set_lora(cq, &aq32, NULL, 1), NLLM_OK);
  run_ids(cq, ql32, nv);
  const double effect = max_rel(fl, fb, nv), e_base = max_rel(qb, fb, nv),
               e_lora = max_rel(ql, fl, nv), e_lora32 = max_rel(ql32, fl, nv);
  fprintf(stderr,
          "%s base: adapter effect %.3g, quantization error %.3g without, %.3g with it kept as "
          "F16, %.3g kept as F32 (%.3g apart)\n",
          types[_i], effect, e_base, e_lora, e_lora32, max_rel(ql, ql32, nv));
  /* F16, the default here, must not move the result away from the F32 reference: the base
   * rounds its activations to 8 bits before its integer dot products, so any change to them
   * (F16's 2^-11, or a sum in another order) flips roundings and moves the logits by about the
   * quantization's own noise, but not further from the reference */
  ck_assert_msg(e_lora < 1.25 * e_lora32 + 1e-4, "%s: %g kept as F16 vs %g kept as F32", types[_i],
                e_lora, e_lora32);
  ck_assert_msg(effect > 0.05, "the adapter changes the F32 logits by only %g", effect);
  ck_assert_msg(e_lora < 1.5 * e_base + 1e-4, "%s: %g with the adapter vs %g without", types[_i],
                e_lora, e_base);
  nllm_context_free(cf);
  nllm_context_free(cq);
  nllm_lora_adapter_free(af);
  nllm_lora_adapter_free(aq);
  nllm_lora_adapter_free(aq32);
  nllm_model_free(mf);
  nllm_model_free(mq);
  free(fb), free(fl), free(qb), free(ql), free(ql32);
  remove(f32), remove(q), remove(lora);
}
END_TEST

/* tiny-llama-lora-a.gguf rewritten tensor by tensor: each of its F32 tensors (n values) becomes
 * what the rewrite returns (malloc'd, *bytes long, stored as *type). */
typedef void *(*tensor_rewrite_fn)(const nllm_tensor *t, int64_t n, const void *arg, int32_t *type,
                                   uint64_t *bytes);

static void rewrite_adapter(const char *out, tensor_rewrite_fn rewrite, const void *arg) {
  char path[1024];
  snprintf(path, sizeof path, "%s/lora/tiny-llama-lora-a.gguf", testdata_dir());
  nllm_source src;
  ck_assert_int_eq(gguf_open(path, 0, &src), NLLM_OK);
  nllm_gguf_writer *w = NULL;
  ck_assert_int_eq(nllm_gguf_writer_create(&w), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str(w, "general.architecture", "llama"), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str(w, "general.type", "adapter"), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str(w, "adapter.type", "lora"), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_f32(w, "adapter.lora.alpha", 16.0f), NLLM_OK);
  void *bufs[64];
  ck_assert_int_le(src.n_tensors, 64);
  for (int64_t i = 0; i < src.n_tensors; i++) {
    const nllm_tensor *t = &src.tensors[i];
    ck_assert_int_eq(t->type, NLLM_TYPE_F32);
    int32_t type = NLLM_TYPE_F32;
    uint64_t bytes = 0;
    bufs[i] = rewrite(t, t->ne[0] * t->ne[1], arg, &type, &bytes);
    ck_assert_ptr_nonnull(bufs[i]);
    ck_assert_int_eq(nllm_gguf_add_tensor(w, t->name, type, 2, t->ne, bufs[i], bytes), NLLM_OK);
  }
  ck_assert_int_eq(nllm_gguf_write(w, out), NLLM_OK);
  nllm_gguf_writer_free(w);
  for (int64_t i = 0; i < src.n_tensors; i++) free(bufs[i]);
  nllm_source_free(&src);
}

typedef struct rounding {
  int32_t type; /* F16 or BF16 */
  int as_f32;   /* 1: stored as F32 tensors of the rounded values */
} rounding;

static void *round_tensor(const nllm_tensor *t, int64_t n, const void *arg, int32_t *type,
                          uint64_t *bytes) {
  const rounding *r = arg;
  uint16_t *h = malloc((size_t)n * 2);
  float *f = malloc((size_t)n * 4);
  ck_assert(h && f);
  ck_assert_int_eq(nllm_quantize_row(r->type, t->data, h, n), NLLM_OK);
  nllm_qtype_get(r->type)->to_float_ref(h, f, n);
  *type = r->as_f32 ? NLLM_TYPE_F32 : r->type;
  *bytes = (uint64_t)n * (r->as_f32 ? 4 : 2);
  free(r->as_f32 ? (void *)h : (void *)f);
  return r->as_f32 ? (void *)f : (void *)h;
}

/* tiny-llama-lora-a.gguf rewritten with every tensor as `type` holds it (F16, BF16), stored as
 * that type or, with as_f32, as F32 tensors of the same rounded values. */
static void write_rounded_adapter(const char *out, int32_t type, int as_f32) {
  const rounding r = {type, as_f32};
  rewrite_adapter(out, round_tensor, &r);
}

/* Whether every adapted matrix of a is stored as type. */
static int every_mat_type(const nllm_lora_adapter *a, int32_t type) {
  int all = 1;
  for (int64_t i = 0; i < (int64_t)a->model->hp.n_layer * NLLM_LORA_SLOTS; i++)
    if (a->mats[i].r) all &= a->mats[i].type == type;
  return all;
}

/* The half-precision type of loop case i (F16, BF16) with the F32 adapter's golden path, or
 * NLLM_TYPE_NONE where the golden or the base model is missing (the case skips). */
static int32_t half_case(int i, char *golden, size_t size) {
  static const int32_t types[] = {NLLM_TYPE_F16, NLLM_TYPE_BF16};
  if (!testdata_path(golden, size, "lora/golden.lora-a.s1.0.logits.txt") || !make_gguf_base())
    return NLLM_TYPE_NONE;
  return types[i];
}

/* F16 and BF16 adapters keep their type (half the bytes per decode step): the logits equal, bit
 * for bit, those of F32 tensors with the same values (the kernels widen each weight exactly,
 * activations stay F32), and the golden (from the F32 adapter) is met within the adapter's own
 * rounding. */
START_TEST(half_precision_adapters) {
  char golden[1024], f[256], f32[256];
  const int32_t type = half_case(_i, golden, sizeof golden);
  if (type == NLLM_TYPE_NONE) return;
  snprintf(f, sizeof f, "/tmp/nllm-test-lora-half-%d.gguf", (int)getpid());
  snprintf(f32, sizeof f32, "/tmp/nllm-test-lora-half32-%d.gguf", (int)getpid());
  write_rounded_adapter(f, type, 0);
  write_rounded_adapter(f32, type, 1);
  nllm_model *m = load_model(tmp_base);
  const int nv = nllm_model_n_vocab(m);
  nllm_lora_adapter *ah = NULL, *af = NULL;
  ck_assert_int_eq(nllm_lora_adapter_load(m, f, &ah), NLLM_OK);
  ck_assert_int_eq(nllm_lora_adapter_load(m, f32, &af), NLLM_OK);
  ck_assert_msg(every_mat_type(ah, type), "%s adapter not kept as %s", nllm_type_name(type),
                nllm_type_name(type));
  ck_assert(every_mat_type(af, NLLM_TYPE_F32));
  float *lh = malloc(sizeof(float) * (size_t)nv * N_IDS),
        *lf = malloc(sizeof(float) * (size_t)nv * N_IDS);
  nllm_context *ch = new_ctx(m), *cf = new_ctx(m);
  ck_assert_int_eq(nllm_context_set_lora(ch, &ah, NULL, 1), NLLM_OK);
  ck_assert_int_eq(nllm_context_set_lora(cf, &af, NULL, 1), NLLM_OK);
  run_ids(ch, lh, nv);
  run_ids(cf, lf, nv);
  ck_assert_msg(!memcmp(lh, lf, sizeof(float) * (size_t)nv * N_IDS),
                "%s storage changes the logits", nllm_type_name(type));
  golden_logits *g = golden_logits_load(golden);
  ck_assert_ptr_nonnull(g);
  nllm_context *cg = golden_context_mode(m, g, NLLM_TYPE_F32, NLLM_BF16_ACT_EXACT);
  ck_assert_int_eq(nllm_context_set_lora(cg, &ah, NULL, 1), NLLM_OK);
  cmp_result r;
  compare_golden_ctx(cg, g, &r);
  fprintf(stderr, "%s adapter vs the F32 golden: max rel RMS %.2e, greedy %d/%d\n",
          nllm_type_name(type), r.max_rel, r.argmax_agree, g->n_gen);
  /* BF16 keeps 8 bits: ~2^-9 relative on the adapter's part (a quarter of the logits here) */
  ck_assert_msg(r.max_rel < (type == NLLM_TYPE_F16 ? 2e-4 : 3e-3), "%g", r.max_rel);
  ck_assert_int_eq(r.argmax_agree, g->n_gen);
  nllm_context_free(cg);
  golden_logits_free(g);
  nllm_context_free(ch);
  nllm_context_free(cf);
  nllm_lora_adapter_free(ah);
  nllm_lora_adapter_free(af);
  nllm_model_free(m);
  free(lh), free(lf);
  remove(f), remove(f32), remove(tmp_base);
}
END_TEST

static void *scale_tensor(const nllm_tensor *t, int64_t n, const void *arg, int32_t *type,
                          uint64_t *bytes) {
  const int *e2 = arg; /* lora_a's exponent, lora_b's */
  const int e = strstr(t->name, ".lora_a") ? e2[0] : e2[1];
  float *f = malloc((size_t)n * 4);
  ck_assert_ptr_nonnull(f);
  for (int64_t k = 0; k < n; k++) f[k] = ldexpf(((const float *)t->data)[k], e);
  *type = NLLM_TYPE_F32;
  *bytes = (uint64_t)n * 4;
  return f;
}

/* tiny-llama-lora-a.gguf with every lora_a multiplied by 2^ea and every lora_b by 2^eb (exact in
 * F32: with ea = -eb the products B A are the same numbers). */
static void write_scaled_adapter(const char *out, int ea, int eb) {
  const int e2[2] = {ea, eb};
  rewrite_adapter(out, scale_tensor, e2);
}

/* An F32 adapter kept as F16 or BF16 (weight_type): every matrix in that type, the logits within
 * the type's rounding of the F32-kept adapter's and of the golden, the greedy ids kept. F16 is
 * scaled by powers of two first: an adapter whose A and B sit 2^22 apart (the same products;
 * plain F16 would overflow B and flush A to zero) gives bit-identical logits to the plain one,
 * kept as F16 or as F32. */
START_TEST(stored_types) {
  char golden[1024], adapter[1024], scaled[256];
  const int32_t type = half_case(_i, golden, sizeof golden);
  if (type == NLLM_TYPE_NONE) return;
  snprintf(adapter, sizeof adapter, "%s/lora/tiny-llama-lora-a.gguf", testdata_dir());
  nllm_model *m = load_model(tmp_base);
  const int nv = nllm_model_n_vocab(m);
  nllm_lora_adapter *af = load_typed(m, adapter, NLLM_TYPE_F32), *ah = load_typed(m, adapter, type);
  ck_assert_int_eq(nllm_lora_adapter_weight_type(af), NLLM_TYPE_F32);
  ck_assert_int_eq(nllm_lora_adapter_weight_type(ah), type);
  ck_assert(every_mat_type(ah, type));
  const size_t bytes = sizeof(float) * (size_t)nv * N_IDS;
  float *lf = malloc(bytes), *lh = malloc(bytes), *ls = malloc(bytes);
  ck_assert(lf && lh && ls);
  nllm_context *ctx = new_ctx(m);
  ck_assert_int_eq(nllm_context_set_lora(ctx, &af, NULL, 1), NLLM_OK);
  run_ids(ctx, lf, nv);
  ck_assert_int_eq(nllm_context_set_lora(ctx, &ah, NULL, 1), NLLM_OK);
  run_ids(ctx, lh, nv);
  const double e_kept = max_rel(lh, lf, nv);
  golden_logits *g = golden_logits_load(golden);
  ck_assert_ptr_nonnull(g);
  nllm_context *cg = golden_context_mode(m, g, NLLM_TYPE_F32, NLLM_BF16_ACT_EXACT);
  ck_assert_int_eq(nllm_context_set_lora(cg, &ah, NULL, 1), NLLM_OK);
  cmp_result r;
  compare_golden_ctx(cg, g, &r);
  fprintf(stderr,
          "F32 adapter kept as %s: max rel RMS %.2e vs kept as F32, %.2e vs the golden, greedy "
          "%d/%d\n",
          nllm_type_name(type), e_kept, r.max_rel, r.argmax_agree, g->n_gen);
  /* 2^-11 (F16) or 2^-8 (BF16) relative on weights that make about a quarter of these logits */
  const double bound = type == NLLM_TYPE_F16 ? 2e-4 : 3e-3;
  ck_assert_msg(e_kept < bound, "%g", e_kept);
  ck_assert_msg(r.max_rel < bound, "%g", r.max_rel);
  ck_assert_int_eq(r.argmax_agree, g->n_gen);
  if (type == NLLM_TYPE_F16) {
    snprintf(scaled, sizeof scaled, "/tmp/nllm-test-lora-scaled-%d.gguf", (int)getpid());
    write_scaled_adapter(scaled, -22, 22);
    for (int k = 0; k < 2; k++) {
      nllm_lora_adapter *as = load_typed(m, scaled, k ? NLLM_TYPE_F32 : NLLM_TYPE_F16);
      ck_assert_int_eq(nllm_context_set_lora(ctx, &as, NULL, 1), NLLM_OK);
      nllm_lora_adapter_free(as);
      run_ids(ctx, ls, nv);
      ck_assert_msg(!memcmp(ls, k ? lf : lh, bytes), "A x 2^-22, B x 2^22 kept as %s differ",
                    k ? "F32" : "F16");
    }
    remove(scaled);
  }
  nllm_context_free(cg);
  nllm_context_free(ctx);
  golden_logits_free(g);
  nllm_lora_adapter_free(af);
  nllm_lora_adapter_free(ah);
  nllm_model_free(m);
  free(lf), free(lh), free(ls);
  remove(tmp_base);
}
END_TEST

/* nllm_lora_adapter_load_params checks its params: only NONE, F32, F16, BF16; struct_size as
 * every params struct (docs/api.md); NULL params are the defaults. */
START_TEST(load_params_validation) {
  char dir[1024], path[1024];
  if (!testdata_path(path, sizeof path, "lora/tiny-llama-lora-b.gguf")) return;
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json")) return;
  *strrchr(dir, '/') = 0;
  nllm_model *m = load_model(dir);
  nllm_lora_adapter_params p;
  nllm_lora_adapter_params_init(&p);
  ck_assert_uint_eq(p.struct_size, sizeof p);
  ck_assert_int_eq(p.weight_type, NLLM_TYPE_NONE);
  nllm_lora_adapter *a = (nllm_lora_adapter *)&p; /* must come back NULL */
  static const int32_t bad[] = {NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K, NLLM_TYPE_Q4_0, -2, 999};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    p.weight_type = bad[i];
    ck_assert_int_eq(nllm_lora_adapter_load_params(m, path, &p, &a), NLLM_ERR_INVALID_ARG);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(nllm_last_error(), "weight_type"), "%s", nllm_last_error());
  }
  struct {
    nllm_lora_adapter_params p;
    int32_t newer;
  } big;
  ck_assert_int_eq(nllm_lora_adapter_params_init_sized(&big.p, sizeof big), NLLM_OK);
  ck_assert_int_eq(nllm_lora_adapter_load_params(m, path, &big.p, &a), NLLM_OK);
  nllm_lora_adapter_free(a);
  big.newer = 1; /* a field this library does not know, set */
  ck_assert_int_eq(nllm_lora_adapter_load_params(m, path, &big.p, &a), NLLM_ERR_INVALID_ARG);
  p.struct_size = 0;
  ck_assert_int_eq(nllm_lora_adapter_load_params(m, path, &p, &a), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_lora_adapter_params_init_sized(NULL, sizeof p), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_lora_adapter_params_init_sized(&p, 2), NLLM_ERR_INVALID_ARG);
  /* NULL: the defaults (a float base: kept as F32) */
  ck_assert_int_eq(nllm_lora_adapter_load_params(m, path, NULL, &a), NLLM_OK);
  ck_assert_int_eq(nllm_lora_adapter_weight_type(a), NLLM_TYPE_F32);
  nllm_lora_adapter_free(a);
  ck_assert_int_eq(nllm_lora_adapter_weight_type(NULL), NLLM_TYPE_NONE);
  nllm_model_free(m);
}
END_TEST

/* The CLI: --lora-scaled on logits gives the golden's greedy ids, convert --lora A:S merges
 * the same thing into a file, bad options and paths are one-line errors. */
START_TEST(cli_options) {
  char golden[1024], cmd[4096], out[256], merged[256];
  if (!testdata_path(golden, sizeof golden, "lora/golden.lora-a.s0.5.logits.txt")) return;
  cli_setup();
  golden_logits *g = golden_logits_load(golden);
  char ids[256] = "", want[256] = "gen_ids:";
  for (int i = 0; i < g->n_prompt; i++)
    snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? " " : "", g->prompt_ids[i]);
  for (int i = 0; i < g->n_gen; i++)
    snprintf(want + strlen(want), sizeof want - strlen(want), " %d", g->gen_ids[i]);
  const char *td = testdata_dir();
  snprintf(out, sizeof out, "/tmp/nllm-test-lora-cli-%d.txt", (int)getpid());
  snprintf(merged, sizeof merged, "/tmp/nllm-test-lora-cli-%d.gguf", (int)getpid());
  const char *models[2] = {NULL, merged};
  char hf[1024];
  snprintf(hf, sizeof hf, "%s/hf/tiny-llama", td);
  models[0] = hf;
  snprintf(cmd, sizeof cmd, "%s convert %s %s F32 --lora %s/lora/tiny-llama-lora-a:0.5", nllm_bin,
           hf, merged, td);
  char *o = NULL, *e = NULL;
  ck_assert_msg(run(cmd, &o, &e) == 0, "%s: %s", cmd, e);
  free(o), free(e);
  for (int k = 0; k < 2; k++) {
    snprintf(cmd, sizeof cmd, "%s logits -m %s --prompt-ids \"%s\" -n %d -o %s%s%s%s", nllm_bin,
             models[k], ids, g->n_gen, out, k ? "" : " --lora-scaled ", k ? "" : td,
             k ? "" : "/lora/tiny-llama-lora-a.gguf 0.5 --lora-type f16");
    ck_assert_msg(run(cmd, &o, &e) == 0, "%s: %s", cmd, e);
    free(o), free(e);
    char *txt = read_file(out, NULL);
    ck_assert_ptr_nonnull(txt);
    ck_assert_msg(strstr(txt, want), "%s: no '%s'", cmd, want);
    free(txt);
  }
  remove(out), remove(merged);
  static const struct {
    const char *args, *msg;
  } bad[] = {{"--lora-scaled %s/lora/tiny-llama-lora-a", "--lora-scaled needs PATH and SCALE"},
             {"--lora %s/nonexistent", "cannot load LoRA adapter"},
             {"--lora %s/lora/tiny-llama-lora-a --lora-scaled %s/lora/tiny-llama-lora-b nan",
              "--lora-scaled"},
             {"--lora %s/lora/tiny-llama-lora-a --lora-type q8_0", "--lora-type"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char args[2048];
    snprintf(args, sizeof args, bad[i].args, td, td);
    snprintf(cmd, sizeof cmd, "%s run -m %s -p x -n 1 %s", nllm_bin, hf, args);
    ck_assert_int_eq(run(cmd, &o, &e), 1);
    ck_assert_msg(e && strstr(e, bad[i].msg), "%s: stderr '%s'", cmd, e ? e : "");
    ck_assert_msg(strchr(e, '\n') == e + strlen(e) - 1, "not one line: %s", e);
    free(o), free(e);
  }
  golden_logits_free(g);
}
END_TEST

/* ---------------------------------------------------------------- hostile adapters */

typedef struct gguf_case {
  const char *what;
  const char *arch, *gtype, *atype;
  const char *tensor_a, *tensor_b; /* names */
  int64_t a_ne[2], b_ne[2];
  nllm_status want;
  const char *msg; /* a part of the message */
} gguf_case;

/* Against tiny-llama: attn_q is 64 in x 64 out, attn_k 64 in x 32 out. */
static const gguf_case gguf_cases[] = {
    {"fine",
     "llama",
     "adapter",
     "lora",
     "blk.0.attn_q.weight.lora_a",
     "blk.0.attn_q.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_OK,
     ""},
    {"wrong out",
     "llama",
     "adapter",
     "lora",
     "blk.0.attn_k.weight.lora_a",
     "blk.0.attn_k.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_ERR_FORMAT,
     "blk.0.attn_k.weight"},
    {"wrong in",
     "llama",
     "adapter",
     "lora",
     "blk.0.attn_q.weight.lora_a",
     "blk.0.attn_q.weight.lora_b",
     {32, 4},
     {4, 64},
     NLLM_ERR_FORMAT,
     "lora_a"},
    {"ranks differ",
     "llama",
     "adapter",
     "lora",
     "blk.0.attn_q.weight.lora_a",
     "blk.0.attn_q.weight.lora_b",
     {64, 4},
     {8, 64},
     NLLM_ERR_FORMAT,
     "rank"},
    {"no such layer",
     "llama",
     "adapter",
     "lora",
     "blk.7.attn_q.weight.lora_a",
     "blk.7.attn_q.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_ERR_FORMAT,
     "blk.7.attn_q.weight"},
    {"no such matrix",
     "llama",
     "adapter",
     "lora",
     "blk.0.attn_zz.weight.lora_a",
     "blk.0.attn_zz.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_ERR_FORMAT,
     "attn_zz"},
    {"unpaired",
     "llama",
     "adapter",
     "lora",
     "blk.0.attn_q.weight.lora_a",
     "blk.0.attn_k.weight.lora_b",
     {64, 4},
     {4, 32},
     NLLM_ERR_FORMAT,
     "blk.0.attn_q.weight.lora_b"},
    {"not lora",
     "llama",
     "adapter",
     "lora",
     "blk.0.attn_q.weight",
     "blk.0.attn_q.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_ERR_FORMAT,
     "blk.0.attn_q.weight"},
    {"embedding",
     "llama",
     "adapter",
     "lora",
     "token_embd.weight.lora_a",
     "token_embd.weight.lora_b",
     {64, 4},
     {4, 32000},
     NLLM_ERR_UNSUPPORTED,
     "token_embd.weight"},
    {"other arch",
     "qwen2",
     "adapter",
     "lora",
     "blk.0.attn_q.weight.lora_a",
     "blk.0.attn_q.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_ERR_FORMAT,
     "qwen2"},
    {"a model",
     "llama",
     "model",
     "lora",
     "blk.0.attn_q.weight.lora_a",
     "blk.0.attn_q.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_ERR_FORMAT,
     "general.type"},
    {"control vector",
     "llama",
     "adapter",
     "control_vector",
     "blk.0.attn_q.weight.lora_a",
     "blk.0.attn_q.weight.lora_b",
     {64, 4},
     {4, 64},
     NLLM_ERR_UNSUPPORTED,
     "control_vector"},
};

START_TEST(hostile_gguf_adapters) {
  char dir[1024], path[256];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json")) return;
  *strrchr(dir, '/') = 0;
  const gguf_case *c = &gguf_cases[_i];
  nllm_gguf_writer *w = NULL;
  ck_assert_int_eq(nllm_gguf_writer_create(&w), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str(w, "general.architecture", c->arch), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str(w, "general.type", c->gtype), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str(w, "adapter.type", c->atype), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_f32(w, "adapter.lora.alpha", 8.0f), NLLM_OK);
  static float data[32000 * 8];
  for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) data[i] = 0.01f * (float)(i % 7);
  ck_assert_int_eq(nllm_gguf_add_tensor(w, c->tensor_a, NLLM_TYPE_F32, 2, c->a_ne, data,
                                        (uint64_t)(c->a_ne[0] * c->a_ne[1]) * 4),
                   NLLM_OK);
  ck_assert_int_eq(nllm_gguf_add_tensor(w, c->tensor_b, NLLM_TYPE_F32, 2, c->b_ne, data,
                                        (uint64_t)(c->b_ne[0] * c->b_ne[1]) * 4),
                   NLLM_OK);
  snprintf(path, sizeof path, "/tmp/nllm-test-lora-hostile-%d.gguf", (int)getpid());
  ck_assert_int_eq(nllm_gguf_write(w, path), NLLM_OK);
  nllm_gguf_writer_free(w);
  nllm_model *m = load_model(dir);
  nllm_lora_adapter *a = NULL;
  nllm_status st = nllm_lora_adapter_load(m, path, &a);
  remove(path);
  fprintf(stderr, "%s: %s %s\n", c->what, nllm_status_name(st), nllm_last_error());
  ck_assert_msg(st == c->want, "%s: %s (%s)", c->what, nllm_status_name(st), nllm_last_error());
  if (st == NLLM_OK) {
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(nllm_lora_adapter_n_matrices(a), 1);
    ck_assert_double_eq(nllm_lora_adapter_alpha(a), 8.0);
  } else {
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(nllm_last_error(), c->msg), "%s: '%s' lacks '%s'", c->what,
                  nllm_last_error(), c->msg);
  }
  nllm_lora_adapter_free(a);
  nllm_model_free(m);
}
END_TEST

/* Every cut of the shipped GGUF adapter fails cleanly. */
START_TEST(truncated_adapters) {
  char dir[1024], src[1024], path[512], folder[256], cmd[2048];
  if (!testdata_path(src, sizeof src, "lora/tiny-llama-lora-b.gguf")) return;
  snprintf(dir, sizeof dir, "%s/hf/tiny-llama", testdata_dir());
  nllm_model *m = load_model(dir);
  size_t len = 0;
  char *buf = read_file(src, &len);
  ck_assert_ptr_nonnull(buf);
  snprintf(path, sizeof path, "/tmp/nllm-test-lora-cut-%d.gguf", (int)getpid());
  for (size_t cut = 0; cut < len; cut += cut < 512 ? 7 : 211) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(buf, 1, cut, f);
    fclose(f);
    nllm_lora_adapter *a = NULL;
    nllm_status st = nllm_lora_adapter_load(m, path, &a);
    ck_assert_msg(st == NLLM_ERR_FORMAT || st == NLLM_ERR_IO, "cut %zu: %s", cut,
                  nllm_status_name(st));
    ck_assert_ptr_null(a);
  }
  free(buf);
  remove(path);
  /* and of the PEFT folder's safetensors */
  if (!testdata_path(src, sizeof src, "lora/tiny-llama-lora-b/adapter_model.safetensors")) return;
  buf = read_file(src, &len);
  snprintf(folder, sizeof folder, "/tmp/nllm-test-lora-peft-%d", (int)getpid());
  mkdir(folder, 0700);
  snprintf(cmd, sizeof cmd, "cp %s/lora/tiny-llama-lora-b/adapter_config.json %s/", testdata_dir(),
           folder);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", folder);
  for (size_t cut = 0; cut < len; cut += cut < 512 ? 5 : 97) {
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, cut, f);
    fclose(f);
    nllm_lora_adapter *a = NULL;
    nllm_status st = nllm_lora_adapter_load(m, folder, &a);
    ck_assert_msg(st == NLLM_ERR_FORMAT, "cut %zu: %s", cut, nllm_status_name(st));
    ck_assert_ptr_null(a);
  }
  free(buf);
  snprintf(cmd, sizeof cmd, "rm -rf %s", folder);
  ck_assert_int_eq(system(cmd), 0);
  nllm_model_free(m);
}
END_TEST

/* adapter_config.json edits of tiny-llama-lora-b (r 4, alpha 4, q_proj v_proj). */
static const struct {
  const char *from, *to;
  nllm_status want;
  const char *msg;
} peft_cases[] = {
    {"\"use_dora\": false", "\"use_dora\": true", NLLM_ERR_UNSUPPORTED, "use_dora"},
    {"\"bias\": \"none\"", "\"bias\": \"all\"", NLLM_ERR_UNSUPPORTED, "bias"},
    {"\"r\": 4", "\"r\": 8", NLLM_ERR_FORMAT, "rank 4"},
    {"\"r\": 4", "\"r\": -3", NLLM_ERR_FORMAT, "'r'"},
    {"\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\"", NLLM_ERR_UNSUPPORTED, "IA3"},
    {"\"q_proj\"", "\"k_proj\"", NLLM_ERR_FORMAT, "q_proj"},
    {"{", "[", NLLM_ERR_FORMAT, "adapter_config.json"},
    {"\"use_rslora\": false", "\"use_rslora\": true", NLLM_OK, ""},
};

START_TEST(hostile_peft_configs) {
  char dir[1024], src[1024], folder[256], cmd[2048], path[512];
  if (!testdata_path(src, sizeof src, "lora/tiny-llama-lora-b/adapter_config.json")) return;
  snprintf(dir, sizeof dir, "%s/hf/tiny-llama", testdata_dir());
  size_t len = 0;
  char *cfg = read_file(src, &len);
  ck_assert_ptr_nonnull(cfg);
  char *at = strstr(cfg, peft_cases[_i].from);
  ck_assert_msg(at, "adapter_config.json has no '%s'", peft_cases[_i].from);
  snprintf(folder, sizeof folder, "/tmp/nllm-test-lora-cfg-%d", (int)getpid());
  mkdir(folder, 0700);
  snprintf(cmd, sizeof cmd, "cp %s/lora/tiny-llama-lora-b/adapter_model.safetensors %s/",
           testdata_dir(), folder);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(path, sizeof path, "%s/adapter_config.json", folder);
  FILE *f = fopen(path, "wb");
  fwrite(cfg, 1, (size_t)(at - cfg), f);
  fputs(peft_cases[_i].to, f);
  fputs(at + strlen(peft_cases[_i].from), f);
  fclose(f);
  free(cfg);
  nllm_model *m = load_model(dir);
  nllm_lora_adapter *a = NULL;
  nllm_status st = nllm_lora_adapter_load(m, folder, &a);
  fprintf(stderr, "%s: %s %s\n", peft_cases[_i].to, nllm_status_name(st), nllm_last_error());
  ck_assert_msg(st == peft_cases[_i].want, "%s: %s (%s)", peft_cases[_i].to, nllm_status_name(st),
                nllm_last_error());
  if (st) ck_assert_ptr_nonnull(strstr(nllm_last_error(), peft_cases[_i].msg));
  nllm_lora_adapter_free(a);
  nllm_model_free(m);
  snprintf(cmd, sizeof cmd, "rm -rf %s", folder);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("lora");
  TCase *tc = tcase_create("lora");
  tcase_set_timeout(tc, 600);
  const int n_combos = (int)(sizeof combos / sizeof combos[0]);
  tcase_add_loop_test(tc, peft_on_hf_base, 0, n_combos);
  tcase_add_loop_test(tc, gguf_on_gguf_base, 0, n_combos);
  tcase_add_test(tc, crossed_layouts);
  tcase_add_loop_test(tc, merged_conversion, 0, 2);
  tcase_add_test(tc, switching_equals_fresh_contexts);
  tcase_add_test(tc, per_sequence_sets);
  tcase_add_test(tc, bad_attach_arguments);
  tcase_add_loop_test(tc, quantized_base, 0, 2);
  tcase_add_loop_test(tc, half_precision_adapters, 0, 2);
  tcase_add_loop_test(tc, stored_types, 0, 2);
  tcase_add_test(tc, load_params_validation);
  tcase_add_test(tc, cli_options);
  tcase_add_loop_test(tc, hostile_gguf_adapters, 0,
                      (int)(sizeof gguf_cases / sizeof gguf_cases[0]));
  tcase_add_test(tc, truncated_adapters);
  tcase_add_loop_test(tc, hostile_peft_configs, 0, (int)(sizeof peft_cases / sizeof peft_cases[0]));
  suite_add_tcase(s, tc);
  return run_suite(s);
}
