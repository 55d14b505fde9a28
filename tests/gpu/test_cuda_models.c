/* Whole models on the GPU (n_gpu_layers) against the goldens and against the CPU run of the
 * same file. Built only with CUDA=1 (make test-gpu); a plain program like test_cuda_kernels,
 * exits 0 with "SKIP: no CUDA device" where there is no GPU. Usage (from the repo root):
 *   test_cuda_models [path/to/nllm]   (the nllm binary generates the 4k-prompt model)
 *
 * Bounds: the goldens' bounds of tests/test_models.c where the GPU computes what the CPU does
 * (quantized weights: both quantize activations to 8 bits). F32/BF16 weights become F16 on the
 * device and prompt GEMMs round activations to F16 (docs/cuda.md), so the F32 goldens get the
 * F16 rounding bound: relative 2^-11 per operand, observed as ~1e-3 on logits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda/backend_cuda.h"
#include "nativellm.h"

static int failures, checks;

#define CHECK(cond, ...)                          \
  do {                                            \
    checks++;                                     \
    if (!(cond)) {                                \
      failures++;                                 \
      printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                        \
      printf("\n");                               \
    }                                             \
  } while (0)

static const char *testdata_dir(void) {
  const char *d = getenv("NLLM_TESTDATA");
  return d && *d ? d : "../shared/testdata";
}

static int have(char *buf, size_t cap, const char *rel) {
  snprintf(buf, cap, "%s/%s", testdata_dir(), rel);
  if (access(buf, R_OK) == 0) return 1;
  printf("SKIP: %s not found\n", buf);
  return 0;
}

static double rel_rms(const float *a, const float *ref, int64_t n) {
  double d = 0, r = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = (double)a[i] - (double)ref[i];
    d += e * e;
    r += (double)ref[i] * ref[i];
  }
  return sqrt(d / (r > 0 ? r : 1));
}

static int argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

/* ---- goldens (format of ../shared/testdata/README.md) */

typedef struct golden {
  int *prompt, n_prompt, *gen, n_gen, n_vocab, n_pos;
  float *rows; /* n_pos x n_vocab: the last n_pos positions of prompt ++ gen */
} golden;

static int parse_ids(const char *s, int **out) {
  int n = 0, cap = 64;
  int *ids = malloc(sizeof(int) * (size_t)cap);
  char *end;
  for (long v; (v = strtol(s, &end, 10)), end != s; s = end) {
    if (n == cap) ids = realloc(ids, sizeof(int) * (size_t)(cap *= 2));
    ids[n++] = (int)v;
  }
  *out = ids;
  return n;
}

static golden *golden_load(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  golden *g = calloc(1, sizeof *g);
  size_t cap = 1 << 22;
  char *line = malloc(cap);
  int row = 0;
  while (fgets(line, (int)cap, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    if (!strncmp(line, "prompt_ids:", 11)) {
      g->n_prompt = parse_ids(line + 11, &g->prompt);
    } else if (!strncmp(line, "gen_ids:", 8)) {
      g->n_gen = parse_ids(line + 8, &g->gen);
    } else if (!strncmp(line, "n_vocab:", 8)) {
      g->n_vocab = atoi(line + 8);
    } else if (!strncmp(line, "n_pos:", 6)) {
      g->n_pos = atoi(line + 6);
      g->rows = calloc((size_t)g->n_pos * (size_t)g->n_vocab + 1, sizeof(float));
    } else if (g->rows && row < g->n_pos) {
      char *s = line, *end;
      for (int i = 0; i < g->n_vocab; i++, s = end)
        g->rows[(size_t)row * (size_t)g->n_vocab + (size_t)i] = strtof(s, &end);
      row++;
    }
  }
  free(line);
  fclose(f);
  return g;
}

static void golden_free(golden *g) {
  if (!g) return;
  free(g->prompt);
  free(g->gen);
  free(g->rows);
  free(g);
}

/* ---- running a model */

typedef struct run_cfg {
  int32_t ngl, kv_type, n_batch;
  int all_prompt_rows; /* keep every prompt row, else only the last */
} run_cfg;

/* Logits of ids[0..n_all): the first n_prompt in one decode call (split into n_batch chunks),
 * the rest one token at a time (teacher forcing). Rows: the prompt's (all or the last), then
 * one per later token. NULL (and a FAIL) if anything fails. */
static float *eval_rows(const char *path, const run_cfg *c, const int *ids, int n_prompt, int n_all,
                        int *n_vocab) {
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.n_gpu_layers = c->ngl;
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(path, &mp, &m);
  CHECK(st == NLLM_OK, "load %s with n_gpu_layers %d: %s", path, c->ngl, nllm_last_error());
  if (st) return NULL;
  const int nv = nllm_model_n_vocab(m);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.all_logits = c->all_prompt_rows;
  cp.kv_type = c->kv_type;
  cp.n_ctx = n_all + 1;
  cp.n_batch = c->n_batch;
  /* the CPU reference multiplies exactly (with AVX512_BF16 the default rounds the activations
   * of BF16 weights, ~5e-3 away from the GPU's F16 products) */
  cp.bf16_activations = NLLM_BF16_ACT_EXACT;
  nllm_context *ctx = NULL;
  float *rows = NULL;
  if ((st = nllm_context_create(m, &cp, &ctx))) {
    CHECK(0, "context for %s (ngl %d): %s", path, c->ngl, nllm_last_error());
    goto out;
  }
  const int n_prompt_rows = c->all_prompt_rows ? n_prompt : 1;
  rows = malloc(sizeof(float) * (size_t)nv * (size_t)(n_prompt_rows + n_all - n_prompt));
  if ((st = nllm_decode(ctx, ids, n_prompt))) goto fail;
  for (int i = 0; i < n_prompt_rows; i++)
    memcpy(rows + (size_t)i * nv,
           c->all_prompt_rows ? nllm_get_logits_ith(ctx, i) : nllm_get_logits(ctx),
           sizeof(float) * (size_t)nv);
  for (int p = n_prompt; p < n_all; p++) {
    if ((st = nllm_decode(ctx, &ids[p], 1))) goto fail;
    memcpy(rows + (size_t)(n_prompt_rows + p - n_prompt) * nv, nllm_get_logits(ctx),
           sizeof(float) * (size_t)nv);
  }
  *n_vocab = nv;
  goto out;
fail:
  CHECK(0, "decode %s (ngl %d): %s", path, c->ngl, nllm_last_error());
  free(rows);
  rows = NULL;
out:
  nllm_context_free(ctx);
  nllm_model_free(m);
  return rows;
}

static double max_rel(const float *a, const float *ref, int n_rows, int nv) {
  double e = 0;
  for (int r = 0; r < n_rows; r++) {
    double x = rel_rms(a + (size_t)r * nv, ref + (size_t)r * nv, nv);
    if (x > e || isnan(x)) e = x;
  }
  return e;
}

/* GPU (ngl) and CPU runs of a golden's prompt ++ gen: each vs the golden rows, GPU vs CPU. */
static void golden_case(const char *label, const char *model, const char *golden_path, int32_t ngl,
                        int32_t kv_type, double bound_golden, double bound_cpu) {
  golden *g = golden_load(golden_path);
  CHECK(g && g->n_prompt > 0, "cannot parse %s", golden_path);
  if (!g || !g->n_prompt) return golden_free(g);
  const int n_all = g->n_prompt + g->n_gen, first = n_all - g->n_pos;
  int *ids = malloc(sizeof(int) * (size_t)n_all);
  memcpy(ids, g->prompt, sizeof(int) * (size_t)g->n_prompt);
  memcpy(ids + g->n_prompt, g->gen, sizeof(int) * (size_t)g->n_gen);
  run_cfg gpu = {ngl, kv_type, 512, 1}, cpu = {0, kv_type, 512, 1};
  int nv = 0, nv_cpu = 0;
  float *rg = eval_rows(model, &gpu, ids, g->n_prompt, n_all, &nv);
  float *rc = eval_rows(model, &cpu, ids, g->n_prompt, n_all, &nv_cpu);
  if (rg && rc) {
    double eg = max_rel(rg + (size_t)first * nv, g->rows, g->n_pos, nv);
    double ec = max_rel(rg, rc, n_all, nv);
    int agree = 0;
    while (agree < g->n_gen &&
           argmax(rg + (size_t)(g->n_prompt - 1 + agree) * nv, nv) == g->gen[agree])
      agree++;
    printf(
        "%-22s ngl %2d: vs golden %.2e (bound %.0e), vs CPU %.2e (bound %.0e), greedy agree "
        "%d/%d\n",
        label, ngl, eg, bound_golden, ec, bound_cpu, agree, g->n_gen);
    if (bound_golden > 0) CHECK(eg < bound_golden, "%s vs golden: %g", label, eg);
    CHECK(ec < bound_cpu, "%s GPU vs CPU: %g", label, ec);
  }
  free(rg);
  free(rc);
  free(ids);
  golden_free(g);
}

/* Greedy generation: the token ids chosen one after another. */
static int greedy(const char *path, int32_t ngl, const int *prompt, int n_prompt, int n_gen,
                  int *out) {
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.n_gpu_layers = ngl;
  nllm_model *m = NULL;
  nllm_context *ctx = NULL;
  int n = 0;
  if (nllm_model_load(path, &mp, &m) || nllm_context_create(m, NULL, &ctx) ||
      nllm_decode(ctx, prompt, n_prompt)) {
    CHECK(0, "greedy %s ngl %d: %s", path, ngl, nllm_last_error());
    goto out;
  }
  for (; n < n_gen; n++) {
    int t = argmax(nllm_get_logits(ctx), nllm_model_n_vocab(m));
    out[n] = t;
    if (nllm_decode(ctx, &t, 1)) {
      CHECK(0, "greedy %s ngl %d step %d: %s", path, ngl, n, nllm_last_error());
      break;
    }
  }
out:
  nllm_context_free(ctx);
  nllm_model_free(m);
  return n;
}

/* n_layer / 2 (at least 1): the partial-offload split */
static int32_t half_layers(const char *path) {
  nllm_model *m = NULL;
  if (nllm_model_load(path, NULL, &m)) return 1;
  int32_t h = nllm_model_n_layer(m) / 2;
  nllm_model_free(m);
  return h > 0 ? h : 1;
}

static void stories260k(void) {
  const char *model = "models/stories260K.gguf";
  char gpath[1024];
  if (!have(gpath, sizeof gpath, "golden/logits/stories260K-F32.logits.txt")) return;
  golden_case("stories260K F32 cache", model, gpath, -1, NLLM_TYPE_F32, 2e-3, 2e-3);
  golden_case("stories260K F16 cache", model, gpath, -1, NLLM_TYPE_F16, 2e-3, 2e-3);
  /* partial offload: the first half on the CPU, x crosses to the device in the middle */
  golden_case("stories260K half", model, gpath, half_layers(model), NLLM_TYPE_F16, 2e-3, 2e-3);
  golden_case("stories260K last layer", model, gpath, 1, NLLM_TYPE_F16, 2e-3, 2e-3);

  if (!have(gpath, sizeof gpath, "golden/logits/stories260K-F32.greedy250.ids.txt")) return;
  golden *g = golden_load(gpath);
  int cpu_ids[250], gpu_ids[250];
  int nc = greedy(model, 0, g->prompt, g->n_prompt, 250, cpu_ids);
  int ng = greedy(model, -1, g->prompt, g->n_prompt, 250, gpu_ids);
  int same = 0;
  while (same < nc && same < ng && cpu_ids[same] == gpu_ids[same]) same++;
  printf("stories260K greedy 250: GPU equals CPU for %d tokens\n", same);
  CHECK(nc == 250 && ng == 250 && same == 250, "greedy: first difference at token %d", same);
  golden_free(g);
}

static void tiny_a(void) {
  /* bounds of tests/test_models.c (vs llama.cpp) */
  static const struct {
    const char *type;
    double bound;
  } types[] = {{"F16", 0.005}, {"Q8_0", 0.13}, {"Q4_0", 0.13}, {"Q4_K_M", 0.13}, {"Q6_K", 0.13}};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    char model[1024], gpath[1024], rel[256], label[64];
    snprintf(rel, sizeof rel, "golden/models/tiny-a-%s.gguf", types[i].type);
    if (!have(model, sizeof model, rel)) continue;
    snprintf(rel, sizeof rel, "golden/logits/tiny-a-%s.logits.txt", types[i].type);
    if (!have(gpath, sizeof gpath, rel)) continue;
    snprintf(label, sizeof label, "tiny-a-%s", types[i].type);
    golden_case(label, model, gpath, -1, NLLM_TYPE_F16, types[i].bound, types[i].bound);
    snprintf(label, sizeof label, "tiny-a-%s half", types[i].type);
    golden_case(label, model, gpath, half_layers(model), NLLM_TYPE_F16, types[i].bound,
                types[i].bound);
  }
}

static void hf_folders(void) {
  static const char *dirs[] = {"tiny-llama", "tiny-qwen2", "tiny-qwen3"};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    char dir[1024], gpath[1024], rel[256];
    snprintf(rel, sizeof rel, "hf/%s/golden.logits.txt", dirs[i]);
    if (!have(gpath, sizeof gpath, rel)) continue;
    snprintf(dir, sizeof dir, "%s/hf/%s", testdata_dir(), dirs[i]);
    golden_case(dirs[i], dir, gpath, -1, NLLM_TYPE_F32, 2e-3, 2e-3);
  }
}

/* The logits of every step of a script that mixes one-token steps (a replayed graph) with a
 * prompt chunk and a removal that moves the position back: graphs on, or off. */
static float *graph_script(const char *path, int graphs, int *n_rows, int *n_vocab) {
  if (graphs)
    unsetenv("NLLM_CUDA_GRAPH");
  else
    setenv("NLLM_CUDA_GRAPH", "0", 1);
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.n_gpu_layers = -1;
  nllm_model *m = NULL;
  nllm_context *ctx = NULL;
  float *rows = NULL;
  int n = 0;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 256;
  if (nllm_model_load(path, &mp, &m) || nllm_context_create(m, &cp, &ctx)) {
    CHECK(0, "graph script %s: %s", path, nllm_last_error());
    goto out;
  }
  const int nv = nllm_model_n_vocab(m);
  rows = malloc(sizeof(float) * (size_t)nv * 64);
  /* fixed tokens, not each run's own argmax: a near tie decided differently by the two runs
   * would send them down different texts */
  int ids[64];
  uint32_t s = 11;
  for (int i = 0; i < 64; i++) ids[i] = 3 + (int)((s = s * 1664525u + 1013904223u) % 200u);
  nllm_status st = nllm_decode(ctx, ids, 8);
  for (int step = 0; step < 48 && !st; step++) {
    memcpy(rows + (size_t)n++ * nv, nllm_get_logits(ctx), sizeof(float) * (size_t)nv);
    int t = ids[8 + step];
    if (step == 20) {
      st = nllm_decode(ctx, ids, 3); /* a chunk between replays */
    } else if (step == 30) {
      /* back 10 positions: the graph reads the position from the device */
      st = nllm_seq_remove(ctx, 0, nllm_seq_pos_max(ctx, 0) - 9, -1);
      if (!st) st = nllm_decode(ctx, &t, 1);
    } else {
      st = nllm_decode(ctx, &t, 1);
    }
  }
  CHECK(!st, "graph script %s (graphs %d): %s", path, graphs, nllm_last_error());
  *n_vocab = nv;
out:
  unsetenv("NLLM_CUDA_GRAPH");
  nllm_context_free(ctx);
  nllm_model_free(m);
  *n_rows = n;
  return rows;
}

/* bound: the same kernels, only the graph's attention split (sized for n_ctx) differs, so the
 * sums differ in their last bits; float activations keep that near 1e-6, while int8-quantized
 * activations (quantized weights) turn it into whole rounding steps now and then (~1e-2 on
 * tiny-a, against ~6e-2 GPU vs CPU). A wrong position or a stale token would give O(1). */
static void graph_vs_eager(const char *path, const char *label, double bound) {
  int ng = 0, ne = 0, nv = 0, nv2 = 0;
  float *g = graph_script(path, 1, &ng, &nv);
  float *e = graph_script(path, 0, &ne, &nv2);
  if (g && e) {
    CHECK(ng == 48 && ne == 48, "%s: %d / %d steps", label, ng, ne);
    const double err = max_rel(g, e, ng < ne ? ng : ne, nv);
    printf("%-22s graph vs kernel by kernel: max rel RMS %.2e over %d steps (bound %.0e)\n", label,
           err, ng, bound);
    CHECK(err < bound, "%s graph vs eager: %g", label, err);
  }
  free(g);
  free(e);
}

/* A 4k-token prompt (the tiled attention over a long cache, GEMM prompt batches) and a few
 * decode steps after it, GPU vs CPU, on a generated random-weight model. */
static void long_prompt(const char *nllm_bin) {
  if (!nllm_bin) {
    printf("SKIP: 4k prompt (pass the nllm binary to generate the model)\n");
    return;
  }
  const char *shape = getenv("NLLM_GPU_LONG_SHAPE"); /* e.g. 110M; default tiny (fast on CPU) */
  char path[256], cmd[1024];
  snprintf(path, sizeof path, "/tmp/nllm_gpu_long_%d.gguf", (int)getpid());
  snprintf(cmd, sizeof cmd, "%s gen-model -o %s --shape %s --type Q8_0 >/dev/null 2>&1", nllm_bin,
           path, shape && *shape ? shape : "tiny");
  CHECK(system(cmd) == 0, "'%s' failed", cmd);
  enum { N_PROMPT = 4096, N_ALL = 4096 + 8 };
  static int ids[N_ALL];
  uint32_t s = 7;
  for (int i = 0; i < N_ALL; i++) ids[i] = (int)((s = s * 1664525u + 1013904223u) % 32000u);
  run_cfg gpu = {-1, NLLM_TYPE_F16, 512, 0}, cpu = {0, NLLM_TYPE_F16, 512, 0};
  int nv = 0, nv_cpu = 0;
  float *rg = eval_rows(path, &gpu, ids, N_PROMPT, N_ALL, &nv);
  float *rc = eval_rows(path, &cpu, ids, N_PROMPT, N_ALL, &nv_cpu);
  if (rg && rc) {
    double e = max_rel(rg, rc, 1 + N_ALL - N_PROMPT, nv);
    printf("4k prompt (%s, Q8_0): GPU vs CPU max rel RMS %.2e over %d rows\n",
           shape && *shape ? shape : "tiny", e, 1 + N_ALL - N_PROMPT);
    CHECK(e < 0.13, "4k prompt GPU vs CPU: %g", e);
  }
  free(rg);
  free(rc);
  remove(path);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (nllm_cuda_device_count() == 0) {
    nllm_cuda *cu = NULL;
    nllm_status st = nllm_cuda_init(0, &cu);
    printf("SKIP: no CUDA device (%s)\n", st != NLLM_OK ? nllm_last_error() : "?");
    if (cu) nllm_cuda_free(cu);
    /* what a CUDA build does on such a machine: GPU layers fail to load with the reason, CPU
     * runs work */
    nllm_model_params mp;
    nllm_model_params_init(&mp);
    mp.n_gpu_layers = -1;
    nllm_model *m = NULL;
    st = nllm_model_load("models/stories260K.gguf", &mp, &m);
    CHECK(st == NLLM_ERR_BACKEND && !m, "n_gpu_layers -1 without a device: status %d", st);
    printf("without a device, n_gpu_layers -1: %s\n", nllm_last_error());
    nllm_model_free(m);
    m = NULL;
    mp.n_gpu_layers = 0;
    st = nllm_model_load("models/stories260K.gguf", &mp, &m);
    nllm_context *ctx = NULL;
    nllm_token bos = 1;
    CHECK(st == NLLM_OK && nllm_context_create(m, NULL, &ctx) == NLLM_OK &&
              nllm_decode(ctx, &bos, 1) == NLLM_OK,
          "CPU run in a CUDA build without a device: %s", nllm_last_error());
    nllm_context_free(ctx);
    nllm_model_free(m);
    return failures ? 1 : 0;
  }
  stories260k();
  graph_vs_eager("models/stories260K.gguf", "stories260K", 1e-4);
  {
    char model[1024];
    if (have(model, sizeof model, "golden/models/tiny-a-Q4_K_M.gguf"))
      graph_vs_eager(model, "tiny-a-Q4_K_M", 5e-2);
  }
  tiny_a();
  hf_folders();
  long_prompt(argc > 1 ? argv[1] : NULL);
  printf("%s: %d checks, %d failed\n", failures ? "FAILED" : "PASSED", checks, failures);
  return failures ? 1 : 0;
}
