/* nllm run: stream generated text (or ids) to stdout, timings to stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

#define RUN_OPTS                                                                                \
  "-m --quantize -p -f -n --gpu -ngl -t -c -b -s --temp --top-k --top-p --min-p "               \
  "--repeat-penalty --repeat-last-n --ids --no-bos --special --kv-f32 -ctk -ctv --mmap "        \
  "--no-mmap --no-repack -r --stop --ignore-eos --grammar --grammar-file --json-schema --lora " \
  "--lora-scaled "                                                                              \
  "--lora-type --bf16-act --no-bf16-act"

typedef struct stream_state {
  int ids;
  int n;
} stream_state;

static int on_token(nllm_token tok, const char *piece, int32_t len, void *ud) {
  stream_state *s = ud;
  if (s->ids) {
    if (tok >= 0) printf(s->n++ ? " %d" : "%d", tok);
  } else {
    fwrite(piece, 1, (size_t)len, stdout);
  }
  fflush(stdout);
  return 0;
}

int cmd_run(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, RUN_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm run [-m MODEL] [-p PROMPT | -f FILE | -f - ] [-n N] [--temp T] ...\n"
        "Generates text after the prompt and streams it to stdout; load time, prompt and\n"
        "generation speed go to stderr. Without -p or -f, a prompt piped to stdin is read.\n\n");
    cli_print_options(RUN_OPTS);
    return 0;
  }
  char *prompt;
  size_t plen;
  if (!cli_prompt(&o, &prompt, &plen)) return 1;
  double t0 = cli_now_ms();
  nllm_model *m = cli_load_model(&o, 0, 0);
  if (!m) {
    free(prompt);
    return 1;
  }
  double load_ms = cli_now_ms() - t0;
  int rc = 1;
  nllm_context *ctx = NULL;
  nllm_sampler *smp = NULL;
  nllm_context_params cp;
  nllm_sampler_params sp;
  cli_context_params(&o, &cp);
  cli_sampler_params(&o, &sp);
  char *grammar = NULL;
  if (!cli_grammar(&o, &sp, &grammar)) goto out;
  nllm_status st;
  if ((st = nllm_context_create(m, &cp, &ctx))) {
    cli_status_error(st, "cannot create context");
    goto out;
  }
  if (!cli_attach_lora(&o, m, ctx)) goto out;
  if ((st = nllm_sampler_create(m, &sp, &smp))) {
    cli_status_error(st, "bad sampling parameters");
    goto out;
  }
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.max_tokens = !o.has_n ? 256 : o.n == CLI_N_UNLIMITED ? INT32_MAX : (int32_t)o.n;
  gp.add_bos = !o.no_bos;
  gp.stop_at_eog = !o.ignore_eos;
  gp.stop = o.stop;
  gp.n_stop = o.n_stop;
  int32_t finish = NLLM_FINISH_NONE;
  gp.finish_reason = &finish;
  gp.parse_special = o.special;
  stream_state ss = {o.ids, 0};
  gp.on_token = on_token;
  gp.user_data = &ss;
  if (!o.ids) {
    fwrite(prompt, 1, plen, stdout);
    fflush(stdout);
  }
  int32_t n_gen = 0;
  st = nllm_generate(ctx, smp, prompt, (int32_t)plen, &gp, &n_gen);
  printf("\n");
  fflush(stdout); /* the text ends before the timings on stderr */
  /* A context that fills while generating ends the text like -n does (as -n -1 asks); a prompt
   * that does not fit at all is an error. */
  if (st && !(st == NLLM_ERR_CONTEXT_FULL && finish != NLLM_FINISH_NONE)) {
    cli_status_error(st, st == NLLM_ERR_CONTEXT_FULL ? "the prompt does not fit (use a larger -c)"
                                                     : "generation failed");
    goto out;
  }
  if (st == NLLM_ERR_CONTEXT_FULL && !(o.has_n && o.n == CLI_N_UNLIMITED))
    fprintf(stderr, "nllm: note: stopped because the context is full (%d tokens; use -c)\n",
            nllm_context_n_ctx(ctx));
  fprintf(stderr, "nllm: load: %.1f ms\n", load_ms);
  if (sp.grammar || sp.json_schema) cli_grammar_note(smp, finish);
  nllm_timings tm = {.struct_size = sizeof tm};
  nllm_context_timings(ctx, &tm);
  fprintf(stderr,
          "nllm: prompt: %d tokens in %.1f ms (%.2f tokens/s); generation: %d tokens in %.1f ms "
          "(%.2f tokens/s)\n",
          tm.n_prompt_tokens, tm.prompt_ms,
          tm.prompt_ms > 0 ? 1e3 * tm.n_prompt_tokens / tm.prompt_ms : 0.0, tm.n_gen_tokens,
          tm.gen_ms, tm.gen_ms > 0 ? 1e3 * tm.n_gen_tokens / tm.gen_ms : 0.0);
  rc = 0;
out:
  nllm_sampler_free(smp);
  nllm_context_free(ctx);
  nllm_model_free(m);
  free(prompt);
  free(grammar);
  return rc;
}
