/* nllm bench: prompt-processing and generation speed of a model, mean and deviation of repetitions,
 * and the weight bandwidth generation achieves (every weight byte is read once per generated
 * token). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

#define BENCH_OPTS                                                                              \
  "-m --gpu -ngl --quantize -p bench:-n bench:-t bench:-r -b --json --kv-f32 -ctk -ctv --mmap " \
  "--no-mmap "                                                                                  \
  "--no-warmup"

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
} bench_test;

/* Times one test (reps repetitions, plus an untimed warm-up one unless disabled): a prompt of
 * n random tokens decoded as one batch (pp), or n tokens decoded one at a time after BOS (tg). */
static nllm_status run_test(nllm_model *m, const cli_opts *o, bench_test *t, int reps,
                            double token_bytes) {
  int pp = t->kind[0] == 'p';
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = (int32_t)(t->n + 2);
  cp.n_threads = t->threads;
  cp.n_batch = (int32_t)(o->batch ? o->batch : pp ? t->n : 1);
  cli_kv_types(o, &cp);
  nllm_context *ctx = NULL;
  nllm_status st = nllm_context_create(m, &cp, &ctx);
  if (st) return st;
  nllm_token *ids = malloc(((size_t)t->n + 1) * sizeof *ids);
  double *tps = calloc((size_t)reps, sizeof *tps), *probe = calloc((size_t)reps, sizeof *probe);
  double *frac = calloc((size_t)reps, sizeof *frac);
  if (!ids || !tps || !probe || !frac) {
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
    double t0 = cli_now_ms();
    if (pp) {
      if ((st = nllm_decode(ctx, ids, (int32_t)t->n))) goto out;
    } else {
      if ((st = nllm_decode(ctx, &first, 1))) goto out;
      t0 = cli_now_ms();
      nllm_token tok = first;
      for (long long i = 0; i < t->n; i++)
        if ((st = nllm_decode(ctx, &tok, 1))) goto out;
    }
    double ms = cli_now_ms() - t0;
    if (r < 0) continue;
    tps[r] = ms > 0 ? 1e3 * (double)t->n / ms : 0;
    if (!pp) {
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
out:
  free(ids);
  free(tps);
  free(probe);
  free(frac);
  nllm_context_free(ctx);
  return st;
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
        "--json prints one JSON object per row.\n\n");
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
  const double token_bytes = bytes_per_token(m);
  int reps = (int)o.reps;
  if (!o.json) {
    printf("model: %s (%s, %.1f M params, %.1f MiB weights), %d repetitions%s\n", name,
           nllm_model_arch(m), (double)nllm_model_n_params(m) / 1e6,
           (double)nllm_model_size_bytes(m) / 1048576.0, reps,
           o.no_warmup ? "" : " after a warm-up");
    printf("| threads | test   |              t/s | weights GB/s | read probe GB/s |\n");
    printf("| ------: | :----- | ---------------: | -----------: | --------------: |\n");
  }
  for (int ti = 0; ti < nt; ti++)
    for (int k = 0; k < np + nn; k++) {
      bench_test t = {.kind = k < np ? "pp" : "tg", .n = k < np ? p_list[k] : n_list[k - np]};
      t.threads = t_list[ti] > 0 ? (int)t_list[ti] : nllm_default_n_threads();
      if (t.n == 0) continue; /* -p 0: no prompt test, as llama-bench */
      nllm_status st = run_test(m, &o, &t, reps, token_bytes);
      if (st) {
        cli_status_error(st, "decode failed");
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
              "\"tg_fraction_of_probe\": %.3f",
              t.mean * token_bytes / 1e9, t.probe, t.frac);
        printf("}\n");
      } else {
        char tps[64], gbs[32] = "", probe[48] = "";
        snprintf(tps, sizeof tps, "%.2f ± %.2f", t.mean, t.sd);
        if (!pp) {
          snprintf(gbs, sizeof gbs, "%.2f", t.mean * token_bytes / 1e9);
          snprintf(probe, sizeof probe, "%.2f (%.0f%%)", t.probe, 100 * t.frac);
        }
        printf("| %7d | %s%-4lld | %19s | %12s | %15s |\n" /* "±" is two bytes */, t.threads,
               t.kind, t.n, tps, gbs, probe);
      }
      fflush(stdout);
    }
  if (!o.json)
    printf(
        "read probe: memory read GB/s at the same thread count after each repetition; in\n"
        "parentheses the share of it generation reads weights at (median of the ratios)\n");
  nllm_model_free(m);
  return 0;
}
