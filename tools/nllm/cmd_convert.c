/* `nllm convert` and `nllm quantize`: write a model as a GGUF file other engines load. The
 * lead's main.c dispatches "convert" and "quantize" here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"

int nllm_cmd_convert(int argc, char **argv);
int nllm_cmd_quantize(int argc, char **argv);

static int32_t print_progress(float p, void *ud) {
  int *last = ud;
  int pct = (int)(p * 100.0f);
  if (pct != *last) {
    fprintf(stderr, "\r%3d%%", pct);
    if (pct == 100) fputc('\n', stderr);
    *last = pct;
  }
  return 0;
}

static int fail(const char *what) {
  fprintf(stderr, "nllm: error: %s\n", what);
  return 1;
}

/* Positional arguments plus -t/--threads N; --help handled by the caller. */
static int parse_args(int argc, char **argv, const char **pos, int max_pos, int *n_pos,
                      int *threads) {
  *n_pos = 0;
  *threads = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) {
      char *end;
      if (i + 1 >= argc) return fail("-t needs a thread count");
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 0 || v > 1024) return fail("-t: not a thread count");
      *threads = (int)v;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      char msg[256];
      snprintf(msg, sizeof msg, "unknown option '%.100s' (see --help)", argv[i]);
      return fail(msg);
    } else if (*n_pos < max_pos) {
      pos[(*n_pos)++] = argv[i];
    } else {
      return fail("too many arguments (see --help)");
    }
  }
  return 0;
}

static int wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
  return 0;
}

static const char types_help[] =
    "TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS, or the\n"
    "mixed presets Q3_K_M Q4_K_M Q5_K_M (some attn_v/ffn_down layers one step higher, output\n"
    "Q6_K). Norms and biases stay F32.\n";

static int run(const char *in, const char *out, const char *type, int threads) {
  nllm_source src;
  nllm_status st = nllm_source_open(in, 1, &src);
  if (st != NLLM_OK) return fail(nllm_last_error());
  int last = -1;
  st = nllm_convert_source(&src, out, type, threads, print_progress, &last);
  nllm_source_free(&src);
  if (st != NLLM_OK) {
    /* end the progress line first, or the message is glued to "  99%" */
    if (last >= 0 && last != 100) fputc('\n', stderr);
    return fail(nllm_last_error());
  }
  fprintf(stderr, "wrote %s\n", out);
  return 0;
}

int nllm_cmd_convert(int argc, char **argv) {
  if (wants_help(argc, argv)) {
    printf(
        "usage: nllm convert MODEL OUT.gguf [TYPE] [-t THREADS]\n"
        "Writes a Hugging Face folder (or a GGUF file) as a GGUF v3 file that llama.cpp-class\n"
        "engines load: GGUF names and keys, tokenizer from tokenizer.json, Llama q/k rows in\n"
        "GGUF's rope layout. Without TYPE, weights keep their type (norms become F32).\n%s",
        types_help);
    return 0;
  }
  const char *pos[3];
  int n, threads;
  if (parse_args(argc, argv, pos, 3, &n, &threads)) return 1;
  if (n < 2) return fail("usage: nllm convert MODEL OUT.gguf [TYPE] (see --help)");
  return run(pos[0], pos[1], n > 2 ? pos[2] : NULL, threads);
}

int nllm_cmd_quantize(int argc, char **argv) {
  if (wants_help(argc, argv)) {
    printf(
        "usage: nllm quantize IN.gguf OUT.gguf TYPE [-t THREADS]\n"
        "Requantizes every weight matrix of a model (GGUF file or Hugging Face folder).\n%s",
        types_help);
    return 0;
  }
  const char *pos[3];
  int n, threads;
  if (parse_args(argc, argv, pos, 3, &n, &threads)) return 1;
  if (n != 3) return fail("usage: nllm quantize IN.gguf OUT.gguf TYPE (see --help)");
  return run(pos[0], pos[1], pos[2], threads);
}
