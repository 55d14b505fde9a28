/* Option table and parsing shared by all nllm subcommands, so every command spells and checks
 * an option the same way and --help is generated from one list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nllm.h"

typedef enum { O_STR, O_INT, O_FLOAT, O_FLAG, O_LIST, O_LORA } kind;

typedef struct opt {
  /* key: the word a command's allowed list uses (name when NULL); two entries may share a name
   * with different keys when commands read it differently (bench -n takes a list) */
  const char *key, *name, *alt;
  kind k;
  size_t off;
  long long lo, hi; /* ints; floats use dlo/dhi */
  double dlo, dhi;
  const char *help;
} opt;

#define OFF(f) offsetof(cli_opts, f)
static const opt opts[] = {
    {NULL, "-m", "--model", O_STR, OFF(model), 0, 0, 0, 0,
     "MODEL  GGUF file or Hugging Face folder (default: bundled stories260K)"},
    {NULL, "-p", "--prompt", O_STR, OFF(prompt), 0, 0, 0, 0, "TEXT   prompt text"},
    {NULL, "-f", "--file", O_STR, OFF(file), 0, 0, 0, 0,
     "FILE   read the prompt from FILE (bytes as they are)"},
    {NULL, "-o", "--output", O_STR, OFF(out), 0, 0, 0, 0, "FILE   output file"},
    {NULL, "--prompt-ids", NULL, O_STR, OFF(prompt_ids), 0, 0, 0, 0,
     "\"1 2 3\"  use these token ids as the prompt"},
    {NULL, "--tokenizer", NULL, O_STR, OFF(tokenizer), 0, 0, 0, 0,
     "PATH  a tokenizer.json (no model needed)"},
    {NULL, "--quantize", NULL, O_STR, OFF(quantize), 0, 0, 0, 0,
     "TYPE  convert float weights to TYPE while loading (Q8_0, Q4_K, ...)"},
    {NULL, "--system", NULL, O_STR, OFF(system), 0, 0, 0, 0, "TEXT  system message (chat)"},
    {NULL, "--chat-template", NULL, O_STR, OFF(chat_template), 0, 0, 0, 0,
     "T  template text or family (chatml, llama3, ...) instead of the model's"},
    {NULL, "--chat-template-file", NULL, O_STR, OFF(chat_template_file), 0, 0, 0, 0,
     "F  a Jinja chat template file instead of the model's"},
    {NULL, "-n", "--n-predict", O_INT, OFF(n), -1, 1 << 24, 0, 0,
     "N      tokens to generate (-1: until end of text or a full context)"},
    {"bench:-n", "-n", "--n-gen", O_STR, OFF(n_list), 0, 0, 0, 0,
     "N,N..  generated tokens to time (bench; default 64)"},
    {"bench:-t", "-t", "--threads", O_STR, OFF(t_list), 0, 0, 0, 0,
     "T,T..  thread counts to time (bench; default all cores)"},
    {NULL, "-t", "--threads", O_INT, OFF(threads), 1, 1024, 0, 0,
     "N      threads (default: all cores)"},
    {NULL, "-c", "--ctx-size", O_INT, OFF(ctx), 1, 1 << 24, 0, 0,
     "N      context length (default: model's, at most 4096)"},
    {NULL, "-b", "--batch-size", O_INT, OFF(batch), 1, 65536, 0, 0,
     "N      tokens per prompt batch (default 512)"},
    {NULL, "-s", "--seed", O_INT, OFF(seed), 0, (long long)(~0ull >> 1), 0, 0,
     "S      random seed (default: random)"},
    {NULL, "--temp", NULL, O_FLOAT, OFF(temp), 0, 0, 0, 100,
     "T      temperature, 0 = greedy (default 0.8)"},
    {NULL, "--top-k", NULL, O_INT, OFF(top_k), 0, 1 << 24, 0, 0,
     "K      keep the K most likely tokens, 0 = off (default 40)"},
    {NULL, "--top-p", NULL, O_FLOAT, OFF(top_p), 0, 0, 1e-9, 1,
     "P      nucleus sampling, 1 = off (default 0.95)"},
    {NULL, "--min-p", NULL, O_FLOAT, OFF(min_p), 0, 0, 0, 1,
     "M      drop tokens below M x the top probability (default 0.05)"},
    {NULL, "--repeat-penalty", NULL, O_FLOAT, OFF(repeat_penalty), 0, 0, 1e-3, 100,
     "R  penalize recent tokens, 1 = off (default), e.g. 1.1"},
    {NULL, "--repeat-last-n", NULL, O_INT, OFF(repeat_last_n), 0, 1 << 20, 0, 0,
     "N  tokens the penalty looks back over (default 64)"},
    {NULL, "--ids", NULL, O_FLAG, OFF(ids), 0, 0, 0, 0,
     "       print the generated ids on one line instead of text"},
    {NULL, "--no-bos", NULL, O_FLAG, OFF(no_bos), 0, 0, 0, 0,
     "       do not add BOS (or other template tokens)"},
    {NULL, "--special", NULL, O_FLAG, OFF(special), 0, 0, 0, 0,
     "       parse special-token text such as <|im_start|>"},
    {NULL, "--json", NULL, O_FLAG, OFF(json), 0, 0, 0, 0, "       machine-readable output"},
    {NULL, "--kv-f32", NULL, O_FLAG, OFF(kv_f32), 0, 0, 0, 0,
     "       keep the KV cache in F32 (default F16)"},
    {NULL, "--bf16-act", NULL, O_FLAG, OFF(bf16_act), 0, 0, 0, 0,
     "     BF16 weights meet activations rounded to BF16, as llama.cpp does (results move "
     "~1e-2; the default where the CPU has AVX512_BF16, which runs such prompts ~1.7x faster)"},
    {NULL, "--no-bf16-act", NULL, O_FLAG, OFF(no_bf16_act), 0, 0, 0, 0,
     "  BF16 weights meet the F32 activations: exact products (the default without "
     "AVX512_BF16)"},
    {NULL, "--mmap", NULL, O_FLAG, OFF(mmap), 0, 0, 0, 0,
     "       use the weights in place from the mapped file (instant load; decode up to ~20% "
     "slower)"},
    {"bench:-r", "-r", "--repetitions", O_INT, OFF(reps), 1, 1000, 0, 0,
     "N      repetitions (mean and standard deviation are reported)"},
    {NULL, "-r", "--reverse-prompt", O_LIST, OFF(stop), 0, 0, 0, 0,
     "TEXT   stop when the output contains TEXT (repeatable; not printed)"},
    {NULL, "--stop", NULL, O_LIST, OFF(stop), 0, 0, 0, 0, "TEXT same as -r"},
    {NULL, "--ignore-eos", NULL, O_FLAG, OFF(ignore_eos), 0, 0, 0, 0,
     "       keep generating after an end-of-generation token"},
    {NULL, "--no-mmap", NULL, O_FLAG, OFF(no_mmap), 0, 0, 0, 0,
     "       copy the weights into memory (the default; overrides --mmap)"},
    {NULL, "--no-repack", NULL, O_FLAG, OFF(no_repack), 0, 0, 0, 0,
     "       keep the weights in the file's layout (default: Q4_0/Q8_0/Q4_K/Q5_K/Q6_K matmul "
     "weights are repacked once at load for the interleaved kernels, the same results)"},
    {NULL, "--no-warmup", NULL, O_FLAG, OFF(no_warmup), 0, 0, 0, 0,
     "       no untimed warm-up repetition (bench)"},
    {NULL, "--show-pieces", NULL, O_FLAG, OFF(show_pieces), 0, 0, 0, 0,
     "       one token a line: id -> 'piece' (tokenize)"},
    {NULL, "--gpu", NULL, O_FLAG, OFF(gpu), 0, 0, 0, 0,
     "       run every layer on the GPU (CUDA builds)"},
    {NULL, "-ngl", "--n-gpu-layers", O_INT, OFF(ngl), 0, 1 << 20, 0, 0,
     "N    run the last N layers on the GPU (CUDA builds; default 0)"},
    {NULL, "--grammar", NULL, O_STR, OFF(grammar), 0, 0, 0, 0,
     "G  only output that matches GBNF grammar G (docs/grammar.md)"},
    {NULL, "--grammar-file", NULL, O_STR, OFF(grammar_file), 0, 0, 0, 0,
     "F  the same, grammar read from file F"},
    {NULL, "--json-schema", NULL, O_STR, OFF(json_schema), 0, 0, 0, 0,
     "S  only JSON valid for JSON Schema S (text, or @FILE; '{}' = any JSON)"},
    {NULL, "-ctk", "--cache-type-k", O_STR, OFF(cache_k), 0, 0, 0, 0,
     "TYPE KV cache type of K: f16 (default), f32, bf16, q8_0, q4_0"},
    {NULL, "-ctv", "--cache-type-v", O_STR, OFF(cache_v), 0, 0, 0, 0,
     "TYPE KV cache type of V (default: as K)"},
    {"bench:-np", "-np", "--parallel", O_STR, OFF(par_list), 0, 0, 0, 0,
     "B,B..  sequences decoded together: aggregate t/s of each count (bench)"},
    {NULL, "-np", "--parallel", O_INT, OFF(n_parallel), 1, 1024, 0, 0,
     "N    sequences decoded together, the rest queued (parallel; default 4)"},
    {NULL, "--lora", NULL, O_LORA, OFF(lora), 0, 0, 0, 0,
     "PATH  apply a LoRA adapter (PEFT folder or GGUF; repeatable)"},
    {NULL, "--lora-scaled", NULL, O_LORA, OFF(lora), 0, 0, 0, 0,
     "PATH SCALE  a LoRA adapter at a user scale (repeatable)"},
    {NULL, "--lora-type", NULL, O_STR, OFF(lora_type), 0, 0, 0, 0,
     "TYPE  keep F32 adapter weights as auto (default: f16 next to quantized base matrices, "
     "else f32), f32, f16 or bf16"},
    {NULL, "-P", "--n-prompt", O_INT, OFF(n_prompt), 0, 1 << 20, 0, 0,
     "N      prompt tokens to time (bench; default 128)"},
    {NULL, "--pooling", NULL, O_STR, OFF(pooling), 0, 0, 0, 0,
     "P  none, mean, cls or last (default: the model's)"},
    {NULL, "--normalize", NULL, O_FLAG, OFF(normalize), 0, 0, 0, 0,
     "    L2-normalize the vectors (default: the model's choice)"},
    {NULL, "--no-normalize", NULL, O_FLAG, OFF(no_normalize), 0, 0, 0, 0, " raw vectors"},
    {NULL, "--embed", NULL, O_FLAG, OFF(embed), 0, 0, 0, 0,
     "        time embeddings: batches of texts (bench; -P tokens each, -b texts per batch)"},
};

static int allowed_has(const char *allowed, const char *name) {
  size_t n = strlen(name);
  for (const char *p = allowed; (p = strstr(p, name)); p += n)
    if ((p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
  return 0;
}

static const char *opt_key(const opt *op) {
  return op->key ? op->key : op->name;
}

/* The entry a command means by the word a (name or alias; "--x=v" is looked up as "--x"). */
static const opt *find_opt(const char *allowed, const char *a, size_t alen) {
  for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++) {
    const opt *op = &opts[j];
    if (!allowed_has(allowed, opt_key(op))) continue;
    if ((strlen(op->name) == alen && !strncmp(a, op->name, alen)) ||
        (op->alt && strlen(op->alt) == alen && !strncmp(a, op->alt, alen)))
      return op;
  }
  return NULL;
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
    /* --opt=value as getopt_long accepts it (long options only, as there) */
    const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
    size_t alen = eq ? (size_t)(eq - a) : strlen(a);
    const opt *op = find_opt(allowed, a, alen);
    if (!op)
      return cli_error("unknown option '%.*s' for %s (see nllm %s --help)", (int)alen, a, argv[0],
                       argv[0]);
    char *field = (char *)o + op->off;
    if (op->k == O_FLAG) {
      if (eq) return cli_error("option %.*s takes no value", (int)alen, a);
      *(int *)field = 1;
      continue;
    }
    if (!eq && i + 1 >= argc) return cli_error("option %s needs a value", a);
    const char *v = eq ? eq + 1 : argv[++i];
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)alen, a);
    if (op->k == O_STR) {
      *(const char **)field = v;
    } else if (op->k == O_LORA) {
      if (o->n_lora == CLI_MAX_LORA)
        return cli_error("too many LoRA adapters (at most %d)", CLI_MAX_LORA);
      double scale = 1.0;
      if (!strcmp(name, "--lora-scaled")) {
        if (eq || i + 1 >= argc) return cli_error("--lora-scaled needs PATH and SCALE");
        if (!cli_float(name, argv[++i], -1e6, 1e6, &scale)) return 1;
      }
      o->lora[o->n_lora] = v;
      o->lora_scale[o->n_lora++] = (float)scale;
    } else if (op->k == O_LIST) {
      if (o->n_stop == (int)(sizeof o->stop / sizeof o->stop[0]))
        return cli_error("too many %s options (at most %d)", name, o->n_stop);
      if (!*v) return cli_error("option %s needs a non-empty text", name);
      o->stop[o->n_stop++] = v;
    } else if (op->k == O_INT) {
      if (!cli_int(name, v, op->lo, op->hi, (long long *)field)) return 1;
      if (op->off == OFF(seed)) o->has_seed = 1;
      if (op->off == OFF(n)) o->has_n = 1;
    } else if (!cli_float(name, v, op->dlo, op->dhi, (double *)field)) {
      return 1;
    }
  }
  if (o->prompt && o->file) return cli_error("give either -p or -f, not both");
  /* -ctk / -ctv: a type name in any case, one of the cache types */
  const char *const names[2] = {o->cache_k, o->cache_v};
  int32_t *const types[2] = {&o->kv_k, &o->kv_v};
  for (int k = 0; k < 2; k++) {
    *types[k] = NLLM_TYPE_NONE;
    if (!names[k]) continue;
    static const int32_t ok[] = {NLLM_TYPE_F16, NLLM_TYPE_F32, NLLM_TYPE_BF16, NLLM_TYPE_Q8_0,
                                 NLLM_TYPE_Q4_0};
    for (size_t j = 0; j < sizeof ok / sizeof ok[0]; j++)
      if (!strcasecmp(names[k], nllm_type_name(ok[j]))) *types[k] = ok[j];
    if (*types[k] == NLLM_TYPE_NONE)
      return cli_error("%s: unknown KV cache type '%s' (f16, f32, bf16, q8_0, q4_0)",
                       k ? "-ctv" : "-ctk", names[k]);
  }
  /* --lora-type: auto or a float type, in any case */
  o->lora_wtype = NLLM_TYPE_NONE;
  if (o->lora_type && strcasecmp(o->lora_type, "auto")) {
    static const int32_t ok[] = {NLLM_TYPE_F32, NLLM_TYPE_F16, NLLM_TYPE_BF16};
    for (size_t j = 0; j < sizeof ok / sizeof ok[0]; j++)
      if (!strcasecmp(o->lora_type, nllm_type_name(ok[j]))) o->lora_wtype = ok[j];
    if (o->lora_wtype == NLLM_TYPE_NONE)
      return cli_error("--lora-type: unknown adapter weight type '%s' (auto, f32, f16, bf16)",
                       o->lora_type);
  }
  if (o->no_mmap) o->mmap = 0;
  if (o->bf16_act && o->no_bf16_act)
    return cli_error("--bf16-act and --no-bf16-act contradict each other: give one");
  return 0;
}

void cli_print_options(const char *allowed) {
  printf("options:\n");
  for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++)
    if (allowed_has(allowed, opt_key(&opts[j])))
      printf("  %s%s%s %s\n", opts[j].name, opts[j].alt ? ", " : "", opts[j].alt ? opts[j].alt : "",
             opts[j].help);
  printf("  -h, --help     this help\n");
}

/* A load progress line on a terminal, shown once loading has taken half a second (small models
 * load silently), rewritten in place and erased at the end. */
typedef struct load_progress {
  double t0;
  int shown;
} load_progress;

static int32_t on_load_progress(float p, void *ud) {
  load_progress *lp = ud;
  double el = (cli_now_ms() - lp->t0) / 1e3;
  if (el < 0.5 && !lp->shown) return 0;
  lp->shown = 1;
  if (p > 0.01f)
    fprintf(stderr, "\rnllm: loading %3.0f%% (%.1f s, about %.0f s left) ", 100.0 * p, el,
            el * (1 - p) / p);
  else
    fprintf(stderr, "\rnllm: loading %3.0f%% (%.1f s) ", 100.0 * p, el);
  fflush(stderr);
  return 0;
}

nllm_model *cli_load_model(const cli_opts *o, int vocab_only, int map_only) {
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.vocab_only = vocab_only;
  mp.n_threads = (int32_t)o->threads;
  mp.n_gpu_layers = o->gpu ? -1 : (int32_t)o->ngl;
#ifndef NLLM_CUDA
  /* llama.cpp users pass -ngl out of habit; only an explicit --gpu is an error here */
  if (o->ngl > 0 && !o->gpu) {
    fprintf(stderr,
            "nllm: warning: -ngl %lld ignored: this build has no GPU support (make CUDA=1)\n",
            o->ngl);
    mp.n_gpu_layers = 0;
  }
#endif
  /* nllm info computes with no weights: map instead of copying the file (a vocab_only load
   * maps it by itself) */
  mp.use_mmap = o->mmap || map_only;
  mp.no_repack = o->no_repack;
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
  char tried[8192];
  const char *path = o->model ? o->model : cli_default_model_tried(tried, sizeof tried);
  if (!path) {
    cli_error("no model given (-m) and the bundled model is not in any of: %s", tried);
    return NULL;
  }
  load_progress lp = {cli_now_ms(), 0};
  if (!vocab_only && isatty(2)) {
    mp.progress = on_load_progress;
    mp.progress_user_data = &lp;
  }
  nllm_status st = nllm_model_load(path, &mp, &m);
  if (lp.shown) fputs("\r\033[K", stderr);
  if (st) {
    cli_error("cannot load model: %s (%s)", nllm_last_error(), nllm_status_name(st));
    return NULL;
  }
  return m;
}

/* Standard input as the prompt: "-f -", or no -p/-f with a pipe or file on stdin (a terminal
 * or /dev/null is not read, so a bare `nllm run` never waits for input). */
static int prompt_from_stdin(const cli_opts *o) {
  if (o->file) return !strcmp(o->file, "-");
  if (o->prompt) return 0;
  struct stat sb;
  return fstat(0, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISREG(sb.st_mode));
}

int cli_prompt(const cli_opts *o, char **text, size_t *len) {
  if (prompt_from_stdin(o)) {
    *text = cli_read_stream(stdin, len);
    if (!*text) return cli_error("cannot read the prompt from standard input"), 0;
    return 1;
  }
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
  cli_number_formats(o, cp);
}

int32_t cli_bf16_act(const cli_opts *o) {
  return o->bf16_act      ? NLLM_BF16_ACT_ROUND
         : o->no_bf16_act ? NLLM_BF16_ACT_EXACT
                          : NLLM_BF16_ACT_AUTO;
}

void cli_number_formats(const cli_opts *o, nllm_context_params *cp) {
  if (o->kv_f32) cp->kv_type = NLLM_TYPE_F32;
  if (o->kv_k != NLLM_TYPE_NONE) cp->kv_type = o->kv_k;
  cp->kv_type_v = o->kv_v;
  cp->bf16_activations = cli_bf16_act(o);
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

int cli_lora_load(const cli_opts *o, const nllm_model *m, cli_lora *l) {
  memset(l, 0, sizeof *l);
  for (int k = 0; k < o->n_lora; k++) {
    nllm_lora_adapter_params lp;
    nllm_lora_adapter_params_init(&lp);
    lp.weight_type = o->lora_wtype;
    nllm_status st = nllm_lora_adapter_load_params(m, o->lora[k], &lp, &l->a[k]);
    if (st) {
      cli_error("cannot load LoRA adapter: %s (%s)", nllm_last_error(), nllm_status_name(st));
      cli_lora_free(l);
      return 0;
    }
    l->scale[k] = o->lora_scale[k];
    l->n = k + 1;
  }
  return 1;
}

int cli_lora_attach(const cli_lora *l, nllm_context *ctx) {
  if (!l->n) return 1;
  nllm_status st = nllm_context_set_lora(ctx, l->a, l->scale, l->n);
  if (st) return cli_status_error(st, "cannot apply the LoRA adapters"), 0;
  return 1;
}

const char *cli_lora_type_name(const nllm_lora_adapter *a) {
  const int32_t t = nllm_lora_adapter_weight_type(a);
  return t == NLLM_TYPE_NONE ? "mixed" : nllm_type_name(t);
}

void cli_lora_free(cli_lora *l) {
  for (int k = 0; k < l->n; k++) nllm_lora_adapter_free(l->a[k]);
  l->n = 0;
}

int cli_attach_lora(const cli_opts *o, const nllm_model *m, nllm_context *ctx) {
  cli_lora l;
  if (!cli_lora_load(o, m, &l)) return 0;
  int ok = cli_lora_attach(&l, ctx);
  cli_lora_free(&l);
  return ok;
}
