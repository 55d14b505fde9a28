/* Shared pieces of the nllm command-line tool: each subcommand is one function. */
#ifndef NLLM_CLI_H
#define NLLM_CLI_H

#include <stdio.h>

#include "nativellm.h"

/* Prints "nllm: error: ..." to stderr; returns 1 (the exit code). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, appending nllm_last_error() and the status name. */
int cli_status_error(nllm_status st, const char *what);
/* Parses a number option value; on failure prints an error naming opt and returns 0. */
int cli_int(const char *opt, const char *val, long long lo, long long hi, long long *out);
int cli_float(const char *opt, const char *val, double lo, double hi, double *out);
/* Reads a whole file (bytes exactly as stored); cli_read_stream reads an open stream to its end. */
char *cli_read_file(const char *path, size_t *len);
char *cli_read_stream(FILE *f, size_t *len);
/* Monotonic clock in milliseconds. */
double cli_now_ms(void);
/* The bundled model when -m is not given; cli_default_model_tried returns NULL when it is nowhere
 * and lists the paths looked at in tried. */
const char *cli_default_model(void);
const char *cli_default_model_tried(char *tried, size_t cap);

int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_gen_lora(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_template(int argc, char **argv);
int nllm_cmd_convert(int argc, char **argv);
int nllm_cmd_quantize(int argc, char **argv);
int cmd_serve(int argc, char **argv); /* tools/serve/cmd_serve.c */
int cmd_parallel(int argc, char **argv);
int cmd_embed(int argc, char **argv);

/* Embeddings of many token sequences (tools/nllm/embed_seqs.c), for nllm embed, nllm bench
 * --embed and nllm serve: packed into decode calls of at most n_batch rows and n_seq_max
 * sequences of ctx (an embeddings context). out: n_embd floats per sequence (pooled), or per
 * token of every sequence in order (pooling NONE). A sequence longer than n_batch is
 * NLLM_ERR_INVALID_ARG naming its index. */
nllm_status cli_embed_seqs(nllm_context *ctx, int32_t n_batch, const nllm_token *const *seqs,
                           const int32_t *lens, int32_t n, float *out);
/* "none" "mean" "cls" "last" -> NLLM_POOLING_*, -9 for anything else; and back. */
int32_t cli_pooling_parse(const char *s);
const char *cli_pooling_name(int32_t pooling);

#endif

#define CLI_MAX_LORA 16

/* Options shared by the subcommands; each command names the ones it accepts. */
typedef struct cli_opts {
  const char *model, *prompt, *file, *out, *prompt_ids, *tokenizer, *quantize, *system,
      *chat_template, *chat_template_file, *grammar, *grammar_file, *json_schema;
  long long n, threads, ctx, seed, top_k, repeat_last_n, reps, n_prompt, batch, ngl;
  long long n_parallel;          /* -np: sequences decoded together (nllm parallel) */
  const char *cache_k, *cache_v; /* -ctk / -ctv: KV cache type names */
  int32_t kv_k, kv_v;            /* ... as NLLM_TYPE_*, or NLLM_TYPE_NONE when not given */
  double temp, top_p, min_p, repeat_penalty;
  int ids, no_bos, special, json, kv_f32, mmap, help, has_seed, gpu, has_n, ignore_eos, no_mmap,
      no_warmup, show_pieces, bf16_act, no_bf16_act, no_repack;
  const char *args[4]; /* positional arguments, for commands whose `allowed` names ARGS */
  int n_args;
  /* Repeatable options (-r/--reverse-prompt, --stop): every value, in order. */
  const char *stop[64];
  int n_stop;
  /* nllm bench: comma-separated value lists of -n and -t (-p is the prompt option's text). */
  const char *n_list, *t_list;
  /* --lora PATH / --lora-scaled PATH SCALE (repeatable): adapters in order */
  const char *lora[CLI_MAX_LORA];
  float lora_scale[CLI_MAX_LORA];
  int n_lora;
  const char *lora_type; /* --lora-type: auto, f32, f16, bf16 */
  int32_t lora_wtype;    /* ... as nllm_lora_adapter_params.weight_type */
  /* nllm embed / bench --embed */
  const char *pooling; /* none, mean, cls, last */
  int normalize, no_normalize, embed;
  const char *par_list; /* nllm bench --parallel: sequence counts */
} cli_opts;

/* Loaded --lora adapters (handles owned here; contexts hold their own references). */
typedef struct cli_lora {
  nllm_lora_adapter *a[CLI_MAX_LORA];
  float scale[CLI_MAX_LORA];
  int n;
} cli_lora;

/* Loads the adapters of o for m; 0 (error printed) on failure. */
int cli_lora_load(const cli_opts *o, const nllm_model *m, cli_lora *l);
/* Attaches them to ctx; 0 (error printed) on failure. */
int cli_lora_attach(const cli_lora *l, nllm_context *ctx);
void cli_lora_free(cli_lora *l);
/* The type an adapter's weights are kept in ("F16"), "mixed" when its matrices differ. */
const char *cli_lora_type_name(const nllm_lora_adapter *a);
/* Load + attach + release the handles (the context keeps the adapters): 0 on failure. */
int cli_attach_lora(const cli_opts *o, const nllm_model *m, nllm_context *ctx);

/* -n -1: generate until an end-of-generation token or a full context. */
#define CLI_N_UNLIMITED (-1)

/* Parses argv[1..] allowing only the options listed in `allowed` (space-separated names such
 * as "-m -p --temp"; "ARGS" also collects positional arguments into o->args). Returns 0 on
 * success, else prints an error and returns 1. */
int cli_parse(int argc, char **argv, const char *allowed, cli_opts *o);
/* Prints the help of the options in `allowed`. */
void cli_print_options(const char *allowed);
/* Loads the model named by o->model (or the default); prints the error itself. */
/* map_only: map the file whatever --mmap says (nllm info: lists weights, computes with none) */
nllm_model *cli_load_model(const cli_opts *o, int vocab_only, int map_only);
/* Context and sampler params from the shared options (defaults where an option is absent). */
void cli_context_params(const cli_opts *o, nllm_context_params *cp);
/* --bf16-act / --no-bf16-act as NLLM_BF16_ACT_* (neither: AUTO). */
int32_t cli_bf16_act(const cli_opts *o);
/* -ctk / -ctv (and --kv-f32) into cp's kv_type / kv_type_v, --bf16-act / --no-bf16-act into
 * bf16_activations (neither: NLLM_BF16_ACT_AUTO). */
void cli_number_formats(const cli_opts *o, nllm_context_params *cp);
void cli_sampler_params(const cli_opts *o, nllm_sampler_params *sp);
/* --grammar / --grammar-file / --json-schema TEXT|@FILE into sp (strings stay valid until *owned
 * is freed). Returns 0 and prints on failure. */
int cli_grammar(const cli_opts *o, nllm_sampler_params *sp, char **owned);
/* Warns on stderr when finish (NLLM_FINISH_*) is "length" before the grammar's end. */
void cli_grammar_note(const nllm_sampler *s, int32_t finish);
/* The prompt as bytes: -p text, or -f file's bytes exactly. Returns 0 and prints on failure. */
int cli_prompt(const cli_opts *o, char **text, size_t *len);
