/* nllm bench: prompt-processing and generation speed of a model, mean and deviation of repetitions,
 * and the weight bandwidth generation achieves (every weight byte is read once per generated
 * token); with --parallel, the aggregate speed of many sequences decoded together. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nllm.h"

#define BENCH_OPTS                                                                              \
  "-m --gpu -ngl --quantize -p bench:-n bench:-t bench:-r -b --json --kv-f32 -ctk -ctv --mmap " \
  "--no-mmap --no-repack "                                                                      \
  "--no-warmup --lora --lora-scaled --lora-type --embed -P bench:-np --bf16-act --no-bf16-act"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Bytes one generated token reads: all weights except the embedding table, of which only one
 * row is read (unless it doubles as the output matrix), and of each layer's stacked experts
 * (a 3-D *_exps tensor, ne[2] experts) only the expert_used_count chosen ones. */
static double bytes_per_token(const nllm_model *m) {
  double total = (double)nllm_model_size_bytes(m), embd = 0, unread = 0;
  int tied = 1;
  char key[96];
  int64_t used = 0;
  snprintf(key, sizeof key, "%s.expert_used_count", nllm_model_arch(m));
  if (nllm_model_meta_int(m, key, &used)) used = 0;
  for (int32_t i = 0; i < nllm_model_tensor_count(m); i++) {
    const char *name;
    int32_t type, nd;
    int64_t ne[4];
    if (nllm_model_tensor_info(m, i, &name, &type, &nd, ne)) continue;
    if (!strcmp(name, "output.weight")) tied = 0;
    if (!strcmp(name, "token_embd.weight"))
      embd = (double)nllm_type_row_size(type, ne[0]) * (double)ne[1];
    size_t len = strlen(name);
    if (used > 0 && nd == 3 && ne[2] > used && len > 12 && !strcmp(name + len - 12, "_exps.weight"))
      unread += (double)nllm_type_row_size(type, ne[0]) * (double)ne[1] * (double)(ne[2] - used);
  }
  return (tied ? total : total - embd) - unread;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void mean_sd(const double *v, int n, double *mean, double *sd) {
  double s = 0, q = 0;
  for (int i = 0; i < n; i++) s += v[i];
  *mean = s / n;
  for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
  *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* "32,128,512" into values in [lo, hi]; returns the count, 0 after printing an error. */
static int parse_list(const char *opt, const char *s, long long lo, long long hi, long long *out,
                      int max) {
  int n = 0;
  char item[64];
  for (const char *p = s;; p++) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (n == max) return cli_error("option %s: more than %d values", opt, max), 0;
    snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), p);
    if (!cli_int(opt, item, lo, hi, &out[n++])) return 0;
    if (!e) return n;
    p = e;
  }
}

typedef struct bench_test {
  const char *kind; /* "pp" or "tg" */
  long long n;
  int threads;
  double mean, sd, probe, frac;
  double cpu_ms; /* tg: CPU time of the whole process per generated token (median) */
} bench_test;

/* CPU time of every thread of the process: generation's cost apart from the neighbours' load
 * on a shared host (and what a server's CPU per token compares with). */
static double process_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Times one test (reps repetitions, plus an untimed warm-up one unless disabled): a prompt of
 * n random tokens decoded as one batch (pp), or n tokens decoded one at a time after BOS (tg). */
static nllm_status run_test(nllm_model *m, const cli_opts *o, const cli_lora *lora, bench_test *t,
                            int reps, double token_bytes) {
  int pp = t->kind[0] == 'p';
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = (int32_t)(t->n + 2);
  cp.n_threads = t->threads;
  cp.n_batch = (int32_t)(o->batch ? o->batch : pp ? t->n : 1);
  cli_number_formats(o, &cp);
  nllm_context *ctx = NULL;
  nllm_status st = nllm_context_create(m, &cp, &ctx);
  if (st) return st;
  if (lora->n && (st = nllm_context_set_lora(ctx, lora->a, lora->scale, lora->n))) {
    nllm_context_free(ctx);
    return st;
  }
  nllm_token *ids = malloc(((size_t)t->n + 1) * sizeof *ids);
  double *tps = calloc((size_t)reps, sizeof *tps), *probe = calloc((size_t)reps, sizeof *probe);
  double *frac = calloc((size_t)reps, sizeof *frac), *cpu = calloc((size_t)reps, sizeof *cpu);
  if (!ids || !tps || !probe || !frac || !cpu) {
    st = NLLM_ERR_NOMEM;
    goto out;
  }
  uint32_t rng = 12345;
  int32_t nv = nllm_model_n_vocab(m);
  for (long long i = 0; i < t->n; i++) {
    rng = rng * 1664525u + 1013904223u;
    ids[i] = (nllm_token)(rng % (uint32_t)nv);
  }
  /* generation starts from BOS (token 0 if the model has none) */
  nllm_token first = nllm_model_token(m, NLLM_TOKEN_BOS);
  if (first < 0 || first >= nv) first = 0;
  for (int r = o->no_warmup ? 0 : -1; r < reps; r++) {
    nllm_context_reset(ctx);
    double t0 = cli_now_ms(), c0 = 0;
    if (pp) {
      if ((st = nllm_decode(ctx, ids, (int32_t)t->n))) goto out;
    } else {
      if ((st = nllm_decode(ctx, &first, 1))) goto out;
      t0 = cli_now_ms();
      c0 = process_cpu_ms();
      nllm_token tok = first;
      for (long long i = 0; i < t->n; i++)
        if ((st = nllm_decode(ctx, &tok, 1))) goto out;
    }
    double ms = cli_now_ms() - t0;
    if (r < 0) continue;
    tps[r] = ms > 0 ? 1e3 * (double)t->n / ms : 0;
    if (!pp) cpu[r] = (process_cpu_ms() - c0) / (double)t->n;
    if (!pp && !o->gpu) { /* the CPU's probe says nothing of a GPU's memory */
      /* The machine's read bandwidth at the same thread count, measured right after each
       * generation: on a shared host it moves by half within a minute, so a ratio to a probe
       * taken once at the end mostly measures the neighbours. */
      probe[r] = nllm_read_bandwidth_gbs((uint64_t)256 << 20, t->threads, 5);
      frac[r] = probe[r] > 0 ? tps[r] * token_bytes / 1e9 / probe[r] : 0;
    }
  }
  mean_sd(tps, reps, &t->mean, &t->sd);
  t->probe = pp ? 0 : median(probe, reps);
  t->frac = pp ? 0 : median(frac, reps);
  t->cpu_ms = pp ? 0 : median(cpu, reps);
out:
  free(ids);
  free(tps);
  free(probe);
  free(frac);
  free(cpu);
  nllm_context_free(ctx);
  return st;
}

/* B sequences in one context, as a server runs them: each sequence's prompt of n_prompt
 * random tokens (all prompts in one decode call, chunked by n_batch), then n_gen steps of one
 * token per sequence in one batch. Aggregate tokens/s of both phases. */
typedef struct par_test {
  long long n_seq, n_prompt, n_gen;
  int threads;
  double pp_mean, pp_sd, tg_mean, tg_sd;
  /* CPU time of the whole process per token of each phase (median): the generation
   * against prompt ratio on a host whose neighbours move the wall clock */
  double pp_cpu_ms, tg_cpu_ms;
} par_test;

static nllm_status run_parallel(nllm_model *m, const cli_opts *o, par_test *t, int reps) {
  const int32_t B = (int32_t)t->n_seq, np = (int32_t)t->n_prompt, ng = (int32_t)t->n_gen;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_seq_max = B;
  cp.n_ctx = B * (np + ng + 1);
  cp.n_threads = t->threads;
  cp.n_batch = (int32_t)(o->batch ? o->batch : 512);
  cli_number_formats(o, &cp);
  nllm_context *ctx = NULL;
  nllm_status st = nllm_context_create(m, &cp, &ctx);
  if (st) return st;
  const size_t rows = (size_t)B * (size_t)(np > 1 ? np : 1); /* >= B: a step's ids */
  nllm_token *ids = malloc(rows * sizeof *ids);
  int32_t *seq = malloc(rows * sizeof *seq), *step_seq = malloc((size_t)B * sizeof *step_seq);
  double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
  double *ppc = calloc((size_t)reps, sizeof *ppc), *tgc = calloc((size_t)reps, sizeof *tgc);
  if (!ids || !seq || !step_seq || !pp || !tg || !ppc || !tgc) {
    st = NLLM_ERR_NOMEM;
    goto out;
  }
  uint32_t rng = 12345;
  const int32_t nv = nllm_model_n_vocab(m);
  for (size_t i = 0; i < rows; i++) {
    rng = rng * 1664525u + 1013904223u;
    ids[i] = (nllm_token)(rng % (uint32_t)nv);
    seq[i] = (int32_t)(i / (size_t)(np > 1 ? np : 1));
  }
  for (int32_t s = 0; s < B; s++) step_seq[s] = s;
  nllm_batch b;
  nllm_batch_init(&b);
  b.tokens = ids;
  b.seq_id = seq;
  for (int r = o->no_warmup ? 0 : -1; r < reps; r++) {
    nllm_context_reset(ctx);
    const double c0 = process_cpu_ms(), t0 = cli_now_ms();
    b.n_tokens = B * np;
    if (np > 0 && (st = nllm_decode_batch(ctx, &b))) goto out;
    const double t1 = cli_now_ms(), c1 = process_cpu_ms();
    /* a step: one row per sequence (the token does not matter to the speed) */
    nllm_batch sb = b;
    sb.n_tokens = B;
    sb.seq_id = step_seq;
    for (int32_t i = 0; i < ng; i++)
      if ((st = nllm_decode_batch(ctx, &sb))) goto out;
    const double t2 = cli_now_ms(), c2 = process_cpu_ms();
    if (r < 0) continue;
    pp[r] = t1 > t0 ? 1e3 * (double)B * np / (t1 - t0) : 0;
    tg[r] = t2 > t1 ? 1e3 * (double)B * ng / (t2 - t1) : 0;
    ppc[r] = np > 0 ? (c1 - c0) / ((double)B * np) : 0;
    tgc[r] = ng > 0 ? (c2 - c1) / ((double)B * ng) : 0;
  }
  mean_sd(pp, reps, &t->pp_mean, &t->pp_sd);
  mean_sd(tg, reps, &t->tg_mean, &t->tg_sd);
  t->pp_cpu_ms = median(ppc, reps);
  t->tg_cpu_ms = median(tgc, reps);
out:
  free(ids);
  free(seq);
  free(step_seq);
  free(pp);
  free(tg);
  free(ppc);
  free(tgc);
  nllm_context_free(ctx);
  return st;
}

static int bench_parallel(nllm_model *m, const cli_opts *o, const char *name, long long n_prompt,
                          long long n_gen, const long long *t_list, int nt) {
  long long b_list[16];
  int nb = parse_list("--parallel", o->par_list, 1, NLLM_SEQ_MAX, b_list, 16);
  if (!nb) return 1;
  const int reps = (int)o->reps;
  if (!o->json) {
    printf(
        "model: %s (%s, %.1f M params), %d repetitions%s; each sequence: a %lld-token "
        "prompt, then %lld tokens, one per step\n",
        name, nllm_model_arch(m), (double)nllm_model_n_params(m) / 1e6, reps,
        o->no_warmup ? "" : " after a warm-up", n_prompt, n_gen);
    printf("| threads | sequences |        prompt t/s |    generation t/s | gen t/s per seq | "
           "prompt CPU ms/t | gen CPU ms/t |\n");
    printf("| ------: | --------: | ----------------: | ----------------: | --------------: | "
           "--------------: | -----------: |\n");
  }
  for (int ti = 0; ti < nt; ti++)
    for (int k = 0; k < nb; k++) {
      par_test t = {.n_seq = b_list[k], .n_prompt = n_prompt, .n_gen = n_gen};
      t.threads = t_list[ti] > 0 ? (int)t_list[ti] : nllm_default_n_threads();
      nllm_status st = run_parallel(m, o, &t, reps);
      if (st) return cli_status_error(st, "decode failed"), 1;
      if (o->json) {
        printf(
            "{\"model\": \"%s\", \"arch\": \"%s\", \"threads\": %d, \"test\": "
            "\"parallel\", \"n_seq\": %lld, \"n_prompt\": %lld, \"n_gen\": %lld, "
            "\"reps\": %d, \"pp_tokens_per_s\": %.3f, \"pp_tokens_per_s_stddev\": %.3f, "
            "\"tg_tokens_per_s\": %.3f, \"tg_tokens_per_s_stddev\": %.3f, "
            "\"pp_cpu_ms_per_token\": %.3f, \"tg_cpu_ms_per_token\": %.3f}\n",
            name, nllm_model_arch(m), t.threads, t.n_seq, t.n_prompt, t.n_gen, reps, t.pp_mean,
            t.pp_sd, t.tg_mean, t.tg_sd, t.pp_cpu_ms, t.tg_cpu_ms);
      } else {
        char pp[48], tg[48];
        snprintf(pp, sizeof pp, "%.2f ± %.2f", t.pp_mean, t.pp_sd);
        snprintf(tg, sizeof tg, "%.2f ± %.2f", t.tg_mean, t.tg_sd);
        printf("| %7d | %9lld | %19s | %19s | %15.2f | %15.2f | %12.2f |\n" /* "±": two bytes */,
               t.threads, t.n_seq, pp, tg, t.tg_mean / (double)t.n_seq, t.pp_cpu_ms, t.tg_cpu_ms);
      }
      fflush(stdout);
    }
  return 0;
}

/* --embed: batches of -np texts of -P random ids each, one decode per batch in an embeddings
 * context (the model's pooling), as an embedding service runs them. Median of the reps. */
static int run_embed_bench(nllm_model *m, const cli_opts *o, const char *name, int threads,
                           int reps) {
  const int32_t n_tok = o->n_prompt > 0 ? (int32_t)o->n_prompt : 64;
  const int32_t n_texts = o->par_list ? (int32_t)atoi(o->par_list) : 32;
  if (n_texts < 1 || n_texts > 65536)
    return cli_error("--embed: -np must be one number of texts from 1 to 65536, not '%s'",
                     o->par_list);
  const int64_t rows64 = (int64_t)n_tok * n_texts;
  if (rows64 > 65536)
    return cli_error("--embed: -P x -np = %lld rows is over 65536", (long long)rows64);
  const int32_t rows = (int32_t)rows64;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.embeddings = NLLM_EMBEDDINGS_ONLY;
  cp.n_ctx = rows;
  cp.n_batch = rows;
  cp.n_seq_max = n_texts;
  cp.n_threads = threads;
  cli_number_formats(o, &cp);
  nllm_context *ctx = NULL;
  nllm_status st = nllm_context_create(m, &cp, &ctx);
  if (st) return cli_status_error(st, "cannot create the context");
  nllm_token *ids = malloc((size_t)rows * sizeof *ids);
  int32_t *seq = malloc((size_t)rows * sizeof *seq);
  double *ms = calloc((size_t)reps, sizeof *ms);
  if (!ids || !seq || !ms) {
    st = NLLM_ERR_NOMEM;
    goto out;
  }
  uint32_t rng = 12345;
  const int32_t nv = nllm_model_n_vocab(m);
  for (int32_t i = 0; i < rows; i++) {
    rng = rng * 1664525u + 1013904223u;
    ids[i] = (nllm_token)(rng % (uint32_t)nv);
    seq[i] = i / n_tok;
  }
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = rows;
  b.tokens = ids;
  b.seq_id = seq;
  for (int r = o->no_warmup ? 0 : -1; r < reps; r++) {
    if ((st = nllm_seq_remove(ctx, NLLM_SEQ_ALL, -1, -1))) goto out;
    double t0 = cli_now_ms();
    if ((st = nllm_decode_batch(ctx, &b))) goto out;
    if (r >= 0) ms[r] = cli_now_ms() - t0;
  }
  const double med = median(ms, reps);
  const double texts_s = med > 0 ? 1e3 * n_texts / med : 0, toks_s = texts_s * n_tok;
  if (o->json)
    printf(
        "{\"model\": \"%s\", \"arch\": \"%s\", \"threads\": %d, \"test\": \"embed\", "
        "\"texts\": %d, \"tokens_per_text\": %d, \"reps\": %d, \"batch_ms_median\": %.3f, "
        "\"texts_per_s\": %.3f, \"tokens_per_s\": %.3f}\n",
        name, nllm_model_arch(m), threads, n_texts, n_tok, reps, med, texts_s, toks_s);
  else
    printf("| %7d | embed %dx%d | %10.1f ms | %10.2f texts/s | %10.1f tokens/s |\n", threads,
           n_texts, n_tok, med, texts_s, toks_s);
  fflush(stdout);
out:
  free(ids);
  free(seq);
  free(ms);
  nllm_context_free(ctx);
  return st ? cli_status_error(st, "embedding decode failed") : 0;
}

int cmd_bench(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, BENCH_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm bench [-m MODEL] [-p 32,128,512] [-n 64,128] [-t 1,2] [-r 3] [--json]\n"
        "Times a prompt of each -p size (random ids, one batch) and generation of each -n size\n"
        "at each thread count of -t, like llama-bench: one row per test, mean +- standard\n"
        "deviation of the repetitions after an untimed warm-up one (--no-warmup: none).\n"
        "--json prints one JSON object per row.\n"
        "--parallel 1,4,16,64: instead, B sequences decoded together in one context for each\n"
        "count B: every sequence gets its own prompt of the first -p size (default 128), then\n"
        "the first -n size (default 64) tokens are generated, one per sequence per step;\n"
        "aggregate prompt and generation tokens/s (as llama-batched-bench's S_PP and S_TG).\n"
        "--embed: embedding throughput instead: batches of -np texts (default 32) of -P random\n"
        "ids each (default 64), one decode per batch; texts/s and tokens/s (median).\n\n");
    cli_print_options(BENCH_OPTS);
    return 0;
  }
  long long p_list[16] = {128}, n_list[16] = {64}, t_list[16] = {0};
  int np = 1, nn = 1, nt = 1;
  if (o.prompt && !(np = parse_list("-p", o.prompt, 0, 1 << 20, p_list, 16))) return 1;
  if (o.n_list && !(nn = parse_list("-n", o.n_list, 0, 1 << 20, n_list, 16))) return 1;
  if (o.t_list && !(nt = parse_list("-t", o.t_list, 1, 1024, t_list, 16))) return 1;
  o.threads = t_list[0];
  nllm_model *m = cli_load_model(&o, 0, 0);
  if (!m) return 1;
  const char *name = o.model ? o.model : cli_default_model();
  cli_lora lora;
  if (!cli_lora_load(&o, m, &lora)) {
    nllm_model_free(m);
    return 1;
  }
  const double token_bytes = bytes_per_token(m);
  int reps = (int)o.reps;
  if (o.embed) {
    if (!o.json)
      printf(
          "model: %s (%s, %.1f M params, %.1f MiB weights), median of %d repetitions\n"
          "| threads | test | batch time | texts/s | tokens/s |\n",
          name, nllm_model_arch(m), (double)nllm_model_n_params(m) / 1e6,
          (double)nllm_model_size_bytes(m) / 1048576.0, reps);
    int rc = 0;
    for (int ti = 0; ti < nt && !rc; ti++)
      rc = run_embed_bench(m, &o, name, t_list[ti] > 0 ? (int)t_list[ti] : nllm_default_n_threads(),
                           reps);
    cli_lora_free(&lora);
    nllm_model_free(m);
    return rc;
  }
  if (o.par_list) {
    int rc = bench_parallel(m, &o, name, p_list[0], n_list[0], t_list, nt);
    cli_lora_free(&lora);
    nllm_model_free(m);
    return rc;
  }
  if (!o.json) {
    printf("model: %s (%s, %.1f M params, %.1f MiB weights), %d repetitions%s\n", name,
           nllm_model_arch(m), (double)nllm_model_n_params(m) / 1e6,
           (double)nllm_model_size_bytes(m) / 1048576.0, reps,
           o.no_warmup ? "" : " after a warm-up");
    for (int k = 0; k < lora.n; k++)
      printf("lora: %s (rank %d, %d matrices, %s) x %g\n", o.lora[k],
             nllm_lora_adapter_rank(lora.a[k]), nllm_lora_adapter_n_matrices(lora.a[k]),
             cli_lora_type_name(lora.a[k]), (double)lora.scale[k]);
    printf("| threads | test   |              t/s | weights GB/s | read probe GB/s |\n");
    printf("| ------: | :----- | ---------------: | -----------: | --------------: |\n");
  }
  for (int ti = 0; ti < nt; ti++)
    for (int k = 0; k < np + nn; k++) {
      bench_test t = {.kind = k < np ? "pp" : "tg", .n = k < np ? p_list[k] : n_list[k - np]};
      t.threads = t_list[ti] > 0 ? (int)t_list[ti] : nllm_default_n_threads();
      if (t.n == 0) continue; /* -p 0: no prompt test, as llama-bench */
      nllm_status st = run_test(m, &o, &lora, &t, reps, token_bytes);
      if (st) {
        cli_status_error(st, "decode failed");
        cli_lora_free(&lora);
        nllm_model_free(m);
        return 1;
      }
      int pp = t.kind[0] == 'p';
      if (o.json) {
        printf(
            "{\"model\": \"%s\", \"arch\": \"%s\", \"params\": %llu, \"bytes\": %llu, "
            "\"threads\": %d, \"test\": \"%s%lld\", \"n_prompt\": %lld, \"n_gen\": %lld, "
            "\"reps\": %d, \"warmup\": %s, \"tokens_per_s\": %.3f, \"tokens_per_s_stddev\": %.3f",
            name, nllm_model_arch(m), (unsigned long long)nllm_model_n_params(m),
            (unsigned long long)nllm_model_size_bytes(m), t.threads, t.kind, t.n, pp ? t.n : 0,
            pp ? 0 : t.n, reps, o.no_warmup ? "false" : "true", t.mean, t.sd);
        if (!pp)
          printf(
              ", \"tg_weight_gb_per_s\": %.3f, \"probe_gb_per_s\": %.3f, "
              "\"tg_fraction_of_probe\": %.3f, \"tg_cpu_ms_per_token\": %.3f",
              t.mean * token_bytes / 1e9, t.probe, t.frac, t.cpu_ms);
        printf("}\n");
      } else {
        char tps[64], gbs[32] = "", probe[48] = "";
        snprintf(tps, sizeof tps, "%.2f ± %.2f", t.mean, t.sd);
        if (!pp) {
          snprintf(gbs, sizeof gbs, "%.2f", t.mean * token_bytes / 1e9);
          if (t.probe > 0) snprintf(probe, sizeof probe, "%.2f (%.0f%%)", t.probe, 100 * t.frac);
        }
        printf("| %7d | %s%-4lld | %19s | %12s | %15s |\n" /* "±" is two bytes */, t.threads,
               t.kind, t.n, tps, gbs, probe);
      }
      fflush(stdout);
    }
  if (!o.json && o.gpu)
    printf("weights GB/s on the GPU: compare with bench_cuda's device copy bandwidth (the CPU's\n"
           "read probe does not apply)\n");
  else if (!o.json)
    printf(
        "read probe: memory read GB/s at the same thread count after each repetition; in\n"
        "parentheses the share of it generation reads weights at (median of the ratios)\n");
  cli_lora_free(&lora);
  nllm_model_free(m);
  return 0;
}
