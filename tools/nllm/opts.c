/* Option table and parsing shared by all nllm subcommands, so every command spells and checks
 * an option the same way and --help is generated from one list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

typedef enum { O_STR, O_INT, O_FLOAT, O_FLAG } kind;

typedef struct opt {
  const char *name, *alt;
  kind k;
  size_t off;
  long long lo, hi; /* ints; floats use dlo/dhi */
  double dlo, dhi;
  const char *help;
} opt;

#define OFF(f) offsetof(cli_opts, f)
static const opt opts[] = {
    {"-m", "--model", O_STR, OFF(model), 0, 0, 0, 0,
     "MODEL  GGUF file or Hugging Face folder (default: bundled stories260K)"},
    {"-p", "--prompt", O_STR, OFF(prompt), 0, 0, 0, 0, "TEXT   prompt text"},
    {"-f", "--file", O_STR, OFF(file), 0, 0, 0, 0,
     "FILE   read the prompt from FILE (bytes as they are)"},
    {"-o", "--output", O_STR, OFF(out), 0, 0, 0, 0, "FILE   output file"},
    {"--prompt-ids", NULL, O_STR, OFF(prompt_ids), 0, 0, 0, 0,
     "\"1 2 3\"  use these token ids as the prompt"},
    {"--tokenizer", NULL, O_STR, OFF(tokenizer), 0, 0, 0, 0,
     "PATH  a tokenizer.json (no model needed)"},
    {"--quantize", NULL, O_STR, OFF(quantize), 0, 0, 0, 0,
     "TYPE  convert float weights to TYPE while loading (Q8_0, Q4_K, ...)"},
    {"--system", NULL, O_STR, OFF(system), 0, 0, 0, 0, "TEXT  system message (chat)"},
    {"--chat-template", NULL, O_STR, OFF(chat_template), 0, 0, 0, 0,
     "T  template text or family (chatml, llama3, ...) instead of the model's"},
    {"-n", "--n-predict", O_INT, OFF(n), 0, 1 << 24, 0, 0, "N      tokens to generate"},
    {"-t", "--threads", O_INT, OFF(threads), 1, 1024, 0, 0, "N      threads (default: all cores)"},
    {"-c", "--ctx-size", O_INT, OFF(ctx), 1, 1 << 24, 0, 0,
     "N      context length (default: model's, at most 4096)"},
    {"-b", "--batch-size", O_INT, OFF(batch), 1, 65536, 0, 0,
     "N      tokens per prompt batch (default 512)"},
    {"--seed", NULL, O_INT, OFF(seed), 0, (long long)(~0ull >> 1), 0, 0,
     "S      random seed (default: random)"},
    {"--temp", NULL, O_FLOAT, OFF(temp), 0, 0, 0, 100,
     "T      temperature, 0 = greedy (default 0.8)"},
    {"--top-k", NULL, O_INT, OFF(top_k), 0, 1 << 24, 0, 0,
     "K      keep the K most likely tokens, 0 = off (default 40)"},
    {"--top-p", NULL, O_FLOAT, OFF(top_p), 0, 0, 1e-9, 1,
     "P      nucleus sampling, 1 = off (default 0.95)"},
    {"--min-p", NULL, O_FLOAT, OFF(min_p), 0, 0, 0, 1,
     "M      drop tokens below M x the top probability (default 0.05)"},
    {"--repeat-penalty", NULL, O_FLOAT, OFF(repeat_penalty), 0, 0, 1e-3, 100,
     "R  penalize recent tokens, 1 = off (default), e.g. 1.1"},
    {"--repeat-last-n", NULL, O_INT, OFF(repeat_last_n), 0, 1 << 20, 0, 0,
     "N  tokens the penalty looks back over (default 64)"},
    {"--ids", NULL, O_FLAG, OFF(ids), 0, 0, 0, 0,
     "       print the generated ids on one line instead of text"},
    {"--no-bos", NULL, O_FLAG, OFF(no_bos), 0, 0, 0, 0,
     "       do not add BOS (or other template tokens)"},
    {"--special", NULL, O_FLAG, OFF(special), 0, 0, 0, 0,
     "       parse special-token text such as <|im_start|>"},
    {"--json", NULL, O_FLAG, OFF(json), 0, 0, 0, 0, "       machine-readable output"},
    {"--kv-f32", NULL, O_FLAG, OFF(kv_f32), 0, 0, 0, 0,
     "       keep the KV cache in F32 (default F16)"},
    {"--mmap", NULL, O_FLAG, OFF(mmap), 0, 0, 0, 0,
     "       use the weights in place from the mapped file (instant load; decode up to ~20% "
     "slower)"},
    {"-r", "--repetitions", O_INT, OFF(reps), 1, 1000, 0, 0,
     "N      repetitions (median is reported)"},
    {"--gpu", NULL, O_FLAG, OFF(gpu), 0, 0, 0, 0,
     "       run every layer on the GPU (CUDA builds)"},
    {"-ngl", "--n-gpu-layers", O_INT, OFF(ngl), 0, 1 << 20, 0, 0,
     "N    run the last N layers on the GPU (CUDA builds; default 0)"},
    {"-P", "--n-prompt", O_INT, OFF(n_prompt), 0, 1 << 20, 0, 0,
     "N      prompt tokens to time (bench; default 128)"},
};

static int allowed_has(const char *allowed, const char *name) {
  size_t n = strlen(name);
  for (const char *p = allowed; (p = strstr(p, name)); p += n)
    if ((p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
  return 0;
}

int cli_parse(int argc, char **argv, const char *allowed, cli_opts *o) {
  memset(o, 0, sizeof *o);
  o->n = -1, o->threads = 0, o->ctx = 0, o->top_k = -1, o->repeat_last_n = -1, o->reps = 3;
  o->n_prompt = -1, o->temp = -1, o->top_p = -1, o->min_p = -1, o->repeat_penalty = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      o->help = 1;
      continue;
    }
    if ((a[0] != '-' || !a[1]) && allowed_has(allowed, "ARGS")) {
      if (o->n_args == (int)(sizeof o->args / sizeof o->args[0]))
        return cli_error("too many arguments for %s (see nllm %s --help)", argv[0], argv[0]);
      o->args[o->n_args++] = a;
      continue;
    }
    const opt *op = NULL;
    for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++)
      if (!strcmp(a, opts[j].name) || (opts[j].alt && !strcmp(a, opts[j].alt))) op = &opts[j];
    if (!op || !allowed_has(allowed, op->name))
      return cli_error("unknown option '%s' for %s (see nllm %s --help)", a, argv[0], argv[0]);
    char *field = (char *)o + op->off;
    if (op->k == O_FLAG) {
      *(int *)field = 1;
      continue;
    }
    if (i + 1 >= argc) return cli_error("option %s needs a value", a);
    const char *v = argv[++i];
    if (op->k == O_STR) {
      *(const char **)field = v;
    } else if (op->k == O_INT) {
      if (!cli_int(a, v, op->lo, op->hi, (long long *)field)) return 1;
      if (op->off == OFF(seed)) o->has_seed = 1;
    } else if (!cli_float(a, v, op->dlo, op->dhi, (double *)field)) {
      return 1;
    }
  }
  if (o->prompt && o->file) return cli_error("give either -p or -f, not both");
  return 0;
}

void cli_print_options(const char *allowed) {
  printf("options:\n");
  for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++)
    if (allowed_has(allowed, opts[j].name))
      printf("  %s%s%s %s\n", opts[j].name, opts[j].alt ? ", " : "", opts[j].alt ? opts[j].alt : "",
             opts[j].help);
  printf("  -h, --help     this help\n");
}

nllm_model *cli_load_model(const cli_opts *o, int vocab_only, int map_only) {
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.vocab_only = vocab_only;
  mp.n_threads = (int32_t)o->threads;
  mp.n_gpu_layers = o->gpu ? -1 : (int32_t)o->ngl;
  /* nllm info computes with no weights: map instead of copying the file (a vocab_only load
   * maps it by itself) */
  mp.use_mmap = o->mmap || map_only;
  if (o->quantize) {
    int32_t t, preset;
    if (nllm_type_parse(o->quantize, &t, &preset) != NLLM_OK) {
      cli_error("--quantize: %s", nllm_last_error());
      return NULL;
    }
    if (preset) {
      /* a mixed preset's per-tensor rules apply when writing a file, not while loading */
      cli_error(
          "--quantize: %s is a mixed preset, for `nllm quantize`; while loading give one "
          "type, such as its base type %s",
          o->quantize, nllm_type_name(t));
      return NULL;
    }
    mp.quantize_type = t;
  }
  nllm_model *m = NULL;
  const char *path = o->model ? o->model : cli_default_model();
  nllm_status st = nllm_model_load(path, &mp, &m);
  if (st) {
    cli_error("cannot load model: %s (%s)", nllm_last_error(), nllm_status_name(st));
    return NULL;
  }
  return m;
}

int cli_prompt(const cli_opts *o, char **text, size_t *len) {
  if (o->file) {
    *text = cli_read_file(o->file, len);
    if (!*text) return cli_error("cannot read prompt file '%s'", o->file), 0;
    return 1;
  }
  const char *p = o->prompt ? o->prompt : "";
  *len = strlen(p);
  *text = malloc(*len + 1);
  if (!*text) return cli_error("out of memory"), 0;
  memcpy(*text, p, *len + 1);
  return 1;
}

void cli_context_params(const cli_opts *o, nllm_context_params *cp) {
  nllm_context_params_init(cp);
  cp->n_ctx = (int32_t)o->ctx;
  cp->n_threads = (int32_t)o->threads;
  cp->n_batch = (int32_t)o->batch;
  if (o->kv_f32) cp->kv_type = NLLM_TYPE_F32;
}

void cli_sampler_params(const cli_opts *o, nllm_sampler_params *sp) {
  nllm_sampler_params_init(sp);
  if (o->temp >= 0) sp->temperature = (float)o->temp;
  if (o->top_k >= 0) sp->top_k = (int32_t)o->top_k;
  if (o->top_p >= 0) sp->top_p = (float)o->top_p;
  if (o->min_p >= 0) sp->min_p = (float)o->min_p;
  if (o->repeat_penalty >= 0) sp->repeat_penalty = (float)o->repeat_penalty;
  if (o->repeat_last_n >= 0) sp->repeat_last_n = (int32_t)o->repeat_last_n;
  if (o->has_seed) sp->seed = (uint64_t)o->seed;
}
