/* `nllm convert` and `nllm quantize`: write a model as a GGUF file other engines load, through
 * the public nllm_convert / nllm_quantize. Progress goes to stderr: a bar with elapsed time and
 * ETA on a terminal, plain lines when stderr is a file or a pipe. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nllm.h"

typedef struct progress_state {
  int tty;
  double t0;
  int last;      /* last percentage shown */
  int line_open; /* a \r bar is on screen without its newline */
} progress_state;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int32_t show_progress(float p, void *ud) {
  progress_state *s = ud;
  int pct = (int)(p * 100.0f);
  if (pct <= s->last) return 0;
  double el = now_s() - s->t0;
  if (s->tty) {
    char bar[31];
    int fill = pct * 30 / 100;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(30 - fill));
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %3d%%  %.1fs", bar, pct, el);
    if (pct > 0 && pct < 100) fprintf(stderr, "  ETA %.0fs ", el * (100 - pct) / pct);
    s->line_open = 1;
  } else if (pct / 10 > s->last / 10 || s->last < 0) {
    fprintf(stderr, "%3d%%  %.1fs\n", pct, el); /* every 10%: a log stays readable */
  }
  s->last = pct;
  return 0;
}

/* Ends an open progress bar, so that what follows starts on its own line. */
static void end_line(progress_state *s) {
  if (s->line_open) fputc('\n', stderr);
  s->line_open = 0;
}

static void human(uint64_t b, char *out, size_t n) {
  if (b >= (1ull << 30))
    snprintf(out, n, "%.2f GiB", (double)b / (double)(1ull << 30));
  else if (b >= (1ull << 20))
    snprintf(out, n, "%.1f MiB", (double)b / (double)(1ull << 20));
  else
    snprintf(out, n, "%.1f KiB", (double)b / 1024.0);
}

static const char types_help[] =
    "TYPE (any case): a weight type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K\n"
    "Q6_K IQ4_NL IQ4_XS) or a mixed preset (Q3_K_M Q4_K_M Q5_K_M: some attn_v/ffn_down layers\n"
    "one step higher, output Q6_K). Norms and biases stay F32.\n";

static void free_paths(char **paths, int n) {
  for (int k = 0; k < n; k++) free(paths[k]);
}

static int run(const cli_opts *o, int quantize) {
  const char *in = o->args[0], *out = o->args[1], *type = o->n_args > 2 ? o->args[2] : NULL;
  nllm_convert_params cp;
  nllm_convert_params_init(&cp);
  cp.n_threads = (int32_t)o->threads;
  cp.type_name = type;
  /* --lora ADAPTER[:SCALE] (and --lora-scaled ADAPTER SCALE): merged into the written weights.
   * A path may itself hold ':'; only a suffix that parses as a number is a scale. */
  char *paths[CLI_MAX_LORA] = {0};
  float scales[CLI_MAX_LORA];
  for (int k = 0; k < o->n_lora; k++) {
    paths[k] = strdup(o->lora[k]);
    if (!paths[k]) return free_paths(paths, k), cli_error("out of memory");
    scales[k] = o->lora_scale[k];
    char *colon = strrchr(paths[k], ':'), *end = NULL;
    if (colon && colon[1]) {
      double v = strtod(colon + 1, &end);
      if (end && !*end) {
        if (!isfinite(v))
          return free_paths(paths, k + 1),
                 cli_error("--lora %s: the scale is not a finite number", o->lora[k]);
        scales[k] *= (float)v;
        *colon = 0;
      }
    }
  }
  cp.lora_paths = (const char *const *)paths;
  cp.lora_scales = scales;
  cp.n_lora = o->n_lora;
  progress_state ps = {isatty(STDERR_FILENO), now_s(), -1, 0};
  cp.progress = show_progress;
  cp.progress_user_data = &ps;
  nllm_convert_stats stats = {.struct_size = sizeof stats};
  nllm_status st =
      quantize ? nllm_quantize(in, out, &cp, &stats) : nllm_convert(in, out, &cp, &stats);
  end_line(&ps);
  free_paths(paths, o->n_lora);
  if (st != NLLM_OK) return cli_status_error(st, quantize ? "quantize" : "convert");
  char a[32], b[32];
  human(stats.bytes_in, a, sizeof a);
  human(stats.bytes_out, b, sizeof b);
  fprintf(stderr, "wrote %s: %d tensors, %s -> %s in %.1f s\n", out, stats.n_tensors, a, b,
          stats.seconds);
  return 0;
}

static int command(int argc, char **argv, int quantize) {
  cli_opts o;
  if (cli_parse(argc, argv, "-t --lora --lora-scaled ARGS", &o)) return 1;
  if (o.help) {
    if (quantize)
      printf(
          "usage: nllm quantize IN OUT.gguf TYPE [-t THREADS]\n"
          "Requantizes every weight matrix of a model (GGUF file or Hugging Face folder).\n");
    else
      printf(
          "usage: nllm convert MODEL OUT.gguf [TYPE] [-t THREADS] [--lora ADAPTER[:SCALE]]\n"
          "Writes a Hugging Face folder (or a GGUF file) as a GGUF v3 file that llama.cpp-class\n"
          "engines load: GGUF names and keys, tokenizer keys, Llama q/k rows in GGUF's rope\n"
          "layout. Without TYPE, weights keep their type (norms become F32).\n"
          "--lora ADAPTER[:SCALE] (repeatable) merges a LoRA adapter (PEFT folder or GGUF) into\n"
          "the weights first: W + SCALE * alpha/r * B A, then converted to TYPE.\n");
    printf("%s", types_help);
    cli_print_options("-t --lora --lora-scaled");
    return 0;
  }
  if (quantize && o.n_args == 2)
    return cli_error("quantize needs a TYPE (valid, any case: %s)", nllm_type_names());
  if (quantize ? o.n_args != 3 : o.n_args < 2 || o.n_args > 3)
    return cli_error("usage: nllm %s (see --help)",
                     quantize ? "quantize IN OUT.gguf TYPE" : "convert MODEL OUT.gguf [TYPE]");
  return run(&o, quantize);
}

int nllm_cmd_convert(int argc, char **argv) {
  return command(argc, argv, 0);
}

int nllm_cmd_quantize(int argc, char **argv) {
  return command(argc, argv, 1);
}
