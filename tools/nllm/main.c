/* nllm: the command-line face of libnativellm. Other programs drive it, so its options and
 * output formats are part of the contract (see docs/cli.md). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nllm.h"

int cli_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("nllm: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

int cli_status_error(nllm_status st, const char *what) {
  return cli_error("%s: %s (%s)", what, nllm_last_error(), nllm_status_name(st));
}

int cli_int(const char *opt, const char *val, long long lo, long long hi, long long *out) {
  if (!val) return cli_error("option %s needs a value", opt), 0;
  char *end;
  errno = 0;
  long long v = strtoll(val, &end, 10);
  if (errno || end == val || *end || v < lo || v > hi)
    return cli_error("option %s: '%s' is not an integer in [%lld, %lld]", opt, val, lo, hi), 0;
  *out = v;
  return 1;
}

int cli_float(const char *opt, const char *val, double lo, double hi, double *out) {
  if (!val) return cli_error("option %s needs a value", opt), 0;
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (errno || end == val || *end || !(v >= lo && v <= hi))
    return cli_error("option %s: '%s' is not a number in [%g, %g]", opt, val, lo, hi), 0;
  *out = v;
  return 1;
}

char *cli_read_stream(FILE *f, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  size_t r;
  while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  if (!buf || ferror(f)) {
    free(buf);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

char *cli_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = cli_read_stream(f, len);
  fclose(f);
  return buf;
}

double cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Where the bundled model may be: the source tree (run from its root), beside the installed
 * binary (PREFIX/bin/../share/nativellm, also after the tree moved), and the PREFIX it was built
 * for. Fills tried (when not NULL) with the places looked at. */
const char *cli_default_model_tried(char *tried, size_t cap) {
  static char beside[4200];
  const char *candidates[3];
  int n = 0;
  candidates[n++] = "models/stories260K.gguf";
  char exe[4096];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      snprintf(beside, sizeof beside, "%.4000s/../share/nativellm/stories260K.gguf", exe);
      candidates[n++] = beside;
    }
  }
#ifdef NLLM_DATADIR
  candidates[n++] = NLLM_DATADIR "/stories260K.gguf";
#endif
  if (tried && cap) tried[0] = 0;
  for (int i = 0; i < n; i++) {
    if (access(candidates[i], R_OK) == 0) return candidates[i];
    if (tried && cap) {
      size_t used = strlen(tried);
      snprintf(tried + used, cap - used, "%s%s", used ? ", " : "", candidates[i]);
    }
  }
  return NULL;
}

const char *cli_default_model(void) {
  const char *p = cli_default_model_tried(NULL, 0);
  return p ? p : "models/stories260K.gguf";
}

typedef struct command {
  const char *name;
  int (*fn)(int, char **);
  const char *summary;
} command;

static const command commands[] = {
    {"run", cmd_run, "generate text from a prompt, streaming it to stdout"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"logits", cmd_logits, "write prompt + greedy ids and every position's logits (golden format)"},
    {"info", cmd_info, "print architecture, hyperparameters, metadata and tensors"},
    {"bench", cmd_bench, "measure prompt and generation tokens/s"},
    {"embed", cmd_embed, "print the embedding vector of each text (pooled, optionally normalized)"},
    {"parallel", cmd_parallel, "generate for every line of a file, many sequences at once"},
    {"chat", cmd_chat, "chat on the terminal with the model's chat template"},
    {"template", cmd_template, "print a conversation rendered with a chat template (Jinja)"},
    {"convert", nllm_cmd_convert,
     "write a model (GGUF or Hugging Face folder) as GGUF, optionally quantized"},
    {"quantize", nllm_cmd_quantize, "quantize a GGUF to a type or preset (Q4_K_M, Q8_0, ...)"},
    {"serve", cmd_serve, "an OpenAI-compatible HTTP server (docs/server.md)"},
    {"gen-model", cmd_gen_model, "write a random-weight Llama of a real shape (for benchmarks)"},
    {"gen-lora", cmd_gen_lora, "write a random LoRA adapter (GGUF) for a model (for benchmarks)"},
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: nllm <command> [options]   (nllm <command> --help for its options)\n\n"
          "commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nlibnativellm %s (ABI %d), %s\n", nllm_version(), nllm_abi_version(),
          nllm_system_info());
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 1;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("nllm %s (ABI %d)\n", nllm_version(), nllm_abi_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  cli_error("unknown command '%s' (try nllm --help)", argv[1]);
  return 1;
}
