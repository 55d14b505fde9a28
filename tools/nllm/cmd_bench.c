/* nllm bench: prompt-processing and generation speed of a model, median of repetitions, and the
 * weight bandwidth generation achieves (every weight byte is read once per generated token). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

#define BENCH_OPTS "-m --gpu -ngl --quantize -p -n -t -r -b --json --kv-f32 --mmap"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Bytes one generated token reads: all weights except the embedding table, of which only one
 * row is read (unless it doubles as the output matrix). */
static double bytes_per_token(const nllm_model *m) {
  double total = (double)nllm_model_size_bytes(m), embd = 0;
  int tied = 1;
  for (int32_t i = 0; i < nllm_model_tensor_count(m); i++) {
    const char *name;
    int32_t type, nd;
    int64_t ne[4];
    if (nllm_model_tensor_info(m, i, &name, &type, &nd, ne)) continue;
    if (!strcmp(name, "output.weight")) tied = 0;
    if (!strcmp(name, "token_embd.weight"))
      embd = (double)nllm_type_row_size(type, ne[0]) * (double)ne[1];
  }
  return tied ? total : total - embd;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cmd_bench(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, BENCH_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm bench [-m MODEL] [-p 128] [-n 64] [-t T] [-r 3] [--json]\n"
        "-p N here is the number of prompt tokens to time (random ids).\n\n");
    cli_print_options(BENCH_OPTS);
    return 0;
  }
  long long n_prompt = 128, n_gen = o.n >= 0 ? o.n : 64;
  if (o.prompt && !cli_int("-p", o.prompt, 0, 1 << 20, &n_prompt)) return 1;
  nllm_model *m = cli_load_model(&o, 0, 0);
  if (!m) return 1;
  int rc = 1, reps = (int)o.reps;
  nllm_context *ctx = NULL;
  nllm_token *ids = malloc(((size_t)n_prompt + 1) * sizeof *ids);
  double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
  double *probe = calloc((size_t)reps, sizeof *probe), *frac = calloc((size_t)reps, sizeof *frac);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = (int32_t)(n_prompt + n_gen + 1);
  cp.n_threads = (int32_t)o.threads;
  cp.n_batch = (int32_t)(o.batch ? o.batch : (n_prompt > 0 ? n_prompt : 1));
  if (o.kv_f32) cp.kv_type = NLLM_TYPE_F32;
  nllm_status st;
  if (!ids || !pp || !tg || !probe || !frac) {
    cli_error("out of memory");
    goto out;
  }
  if ((st = nllm_context_create(m, &cp, &ctx))) {
    cli_status_error(st, "cannot create context");
    goto out;
  }
  const double token_bytes = bytes_per_token(m);
  const int nt = o.threads > 0 ? (int)o.threads : nllm_default_n_threads();
  uint32_t rng = 12345;
  int32_t nv = nllm_model_n_vocab(m);
  for (long long i = 0; i < n_prompt; i++) {
    rng = rng * 1664525u + 1013904223u;
    ids[i] = (nllm_token)(rng % (uint32_t)nv);
  }
  for (int r = 0; r < reps; r++) {
    nllm_context_reset(ctx);
    nllm_timings tm = {.struct_size = sizeof tm};
    if (n_prompt > 0 && (st = nllm_decode(ctx, ids, (int32_t)n_prompt))) goto fail;
    nllm_token t = ids[0];
    for (long long i = 0; i < n_gen; i++)
      if ((st = nllm_decode(ctx, &t, 1))) goto fail;
    nllm_context_timings(ctx, &tm);
    pp[r] = tm.prompt_ms > 0 ? 1e3 * tm.n_prompt_tokens / tm.prompt_ms : 0;
    tg[r] = tm.gen_ms > 0 ? 1e3 * tm.n_gen_tokens / tm.gen_ms : 0;
    if (n_prompt == 1) pp[r] = tg[r]; /* a 1-token prompt is timed as generation */
    /* The machine's read bandwidth at the same thread count, measured right after each
     * generation: on a shared host it moves by half within a minute, so a ratio to a probe
     * taken once at the end mostly measures the neighbours. */
    probe[r] = nllm_read_bandwidth_gbs((uint64_t)256 << 20, nt, 5);
    frac[r] = probe[r] > 0 ? tg[r] * token_bytes / 1e9 / probe[r] : 0;
  }
  double pp_med = median(pp, reps), tg_med = median(tg, reps);
  double gbs = tg_med * token_bytes / 1e9;
  double probe_med = median(probe, reps), frac_med = median(frac, reps);
  if (o.json) {
    printf(
        "{\"model\": \"%s\", \"arch\": \"%s\", \"params\": %llu, \"bytes\": %llu, "
        "\"threads\": %lld, \"n_prompt\": %lld, \"n_gen\": %lld, \"reps\": %d, "
        "\"pp_tokens_per_s\": %.3f, \"tg_tokens_per_s\": %.3f, \"tg_weight_gb_per_s\": %.3f, "
        "\"probe_gb_per_s\": %.3f, \"tg_fraction_of_probe\": %.3f}\n",
        o.model ? o.model : cli_default_model(), nllm_model_arch(m),
        (unsigned long long)nllm_model_n_params(m), (unsigned long long)nllm_model_size_bytes(m),
        o.threads, n_prompt, n_gen, reps, pp_med, tg_med, gbs, probe_med, frac_med);
  } else {
    printf("model: %s (%s, %.1f M params, %.1f MiB weights)\n",
           o.model ? o.model : cli_default_model(), nllm_model_arch(m),
           (double)nllm_model_n_params(m) / 1e6, (double)nllm_model_size_bytes(m) / 1048576.0);
    printf("prompt %lld tokens: %.2f tokens/s (median of %d)\n", n_prompt, pp_med, reps);
    printf("generation %lld tokens: %.2f tokens/s (median of %d), weights read at %.2f GB/s\n",
           n_gen, tg_med, reps, gbs);
    printf(
        "memory read probe (%d threads, after each repetition): %.2f GB/s; generation reads at "
        "%.0f%% of it (median of the per-repetition ratios)\n",
        nt, probe_med, 100 * frac_med);
  }
  rc = 0;
  goto out;
fail:
  cli_status_error(st, "decode failed");
out:
  free(ids);
  free(pp);
  free(tg);
  free(probe);
  free(frac);
  nllm_context_free(ctx);
  nllm_model_free(m);
  return rc;
}
