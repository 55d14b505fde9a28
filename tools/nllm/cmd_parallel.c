/* nllm parallel: every line of a file is its own prompt; up to -np of them are decoded together
 * in one context (one batch per step: prompt chunks of new sequences, one token of each running
 * one), the rest queued and started as others finish. Outputs are printed in input order once
 * all are done. Each sequence stops exactly where `nllm run` with the same options would stop
 * for that prompt alone (end of generation, -n, or its context of -c tokens filling up), and
 * its sampler is seeded as run's is, so greedy ids are the same as run's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

#define PARALLEL_OPTS                                                                         \
  "-m -f -n -np -t -c -b -s --temp --top-k --top-p --min-p --repeat-penalty "                 \
  "--repeat-last-n --ids --no-bos --special --kv-f32 -ctk -ctv --mmap --no-repack --grammar " \
  "--grammar-file "                                                                           \
  "--json-schema --lora --lora-scaled --lora-type --bf16-act --no-bf16-act"

typedef struct job {
  nllm_token *prompt;
  int32_t n_prompt, max_gen; /* max_gen: what run would print for this prompt alone */
  nllm_token *gen;
  int32_t n_gen;
  int cut; /* stopped at -n before the end of the grammar */
} job;

typedef struct slot {
  int job;         /* -1: free */
  int32_t fed;     /* prompt tokens decoded so far */
  nllm_token next; /* sampled, to decode next step */
  nllm_sampler *smp;
  int row; /* the batch row whose logits it samples from this step, or -1 */
} slot;

/* Lines of text (the last may lack its newline); empty lines are skipped. */
static int split_lines(char *text, size_t len, char ***lines) {
  int n = 0, cap = 16;
  *lines = malloc(sizeof **lines * (size_t)cap);
  for (size_t i = 0; i < len;) {
    size_t j = i;
    while (j < len && text[j] != '\n') j++;
    size_t e = j;
    if (e > i && text[e - 1] == '\r') e--;
    text[e] = 0;
    if (e > i) {
      if (n == cap) *lines = realloc(*lines, sizeof **lines * (size_t)(cap *= 2));
      (*lines)[n++] = text + i;
    }
    i = j + 1;
  }
  return n;
}

static void print_job(const nllm_model *m, const job *jb, const char *line, int ids) {
  if (ids) {
    for (int32_t k = 0; k < jb->n_gen; k++) printf(k ? " %d" : "%d", jb->gen[k]);
    printf("\n");
    return;
  }
  fputs(line, stdout);
  char piece[1024];
  for (int32_t k = 0; k < jb->n_gen; k++) {
    int32_t n = 0;
    if (nllm_token_to_piece(m, jb->gen[k], 0, piece, (int32_t)sizeof piece, &n) == NLLM_OK)
      fwrite(piece, 1, (size_t)n, stdout);
  }
  printf("\n");
}

int cmd_parallel(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, PARALLEL_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm parallel [-m MODEL] -f PROMPTS.txt [-n N] [-np B] [--temp T] [--seed S] "
        "[--ids]\n"
        "Generates for every non-empty line of PROMPTS.txt, up to B sequences at once in one\n"
        "context, and prints the outputs in input order (--ids: one line of ids each).\n"
        "Each output is what `nllm run` gives for that line alone with the same options;\n"
        "-c is the context of one sequence, as in run. Timings go to stderr.\n\n");
    cli_print_options(PARALLEL_OPTS);
    return 0;
  }
  if (!o.file) return cli_error("nllm parallel needs -f PROMPTS.txt (one prompt per line)");
  size_t len = 0;
  char *text = cli_read_file(o.file, &len);
  if (!text) return cli_error("cannot read prompt file '%s'", o.file);
  char **lines = NULL;
  const int n_jobs = split_lines(text, len, &lines);
  if (n_jobs == 0) {
    free(text);
    free(lines);
    return cli_error("'%s' has no prompts (no non-empty line)", o.file);
  }
  nllm_model *m = cli_load_model(&o, 0, 0);
  if (!m) {
    free(text);
    free(lines);
    return 1;
  }
  int rc = 1;
  char *grammar = NULL;
  nllm_status st = NLLM_OK;
  nllm_context *ctx = NULL;
  job *jobs = calloc((size_t)n_jobs, sizeof *jobs);
  const int n_par = (int)(o.n_parallel > 0 ? o.n_parallel : 4) < n_jobs
                        ? (int)(o.n_parallel > 0 ? o.n_parallel : 4)
                        : n_jobs;
  slot *slots = calloc((size_t)n_par, sizeof *slots);
  nllm_token *tok = NULL;
  int32_t *sid = NULL, *keep = NULL;
  /* one sequence's context, as run has it: -c, else the model's default */
  const int32_t train = nllm_model_n_ctx_train(m);
  const int32_t seq_ctx = o.ctx > 0 ? (int32_t)o.ctx : train > 0 && train < 4096 ? train : 4096;
  /* as run: 256 by default, -n -1 until the end of text or a full context */
  const int32_t n_predict = !o.has_n ? 256 : o.n == CLI_N_UNLIMITED ? seq_ctx : (int32_t)o.n;
  int32_t longest = 0;
  for (int i = 0; i < n_jobs; i++) {
    job *jb = &jobs[i];
    int32_t n = 0;
    st = nllm_tokenize(m, lines[i], -1, !o.no_bos, o.special, NULL, 0, &n);
    if (st && st != NLLM_ERR_BUFFER_TOO_SMALL) goto fail_st;
    jb->prompt = malloc(sizeof *jb->prompt * (size_t)(n ? n : 1));
    if ((st = nllm_tokenize(m, lines[i], -1, !o.no_bos, o.special, jb->prompt, n, &n)))
      goto fail_st;
    jb->n_prompt = n;
    /* run: the prompt must fit; each printed token but the last is decoded after it */
    jb->max_gen = n == 0 || n > seq_ctx         ? 0
                  : n_predict < seq_ctx - n + 1 ? n_predict
                                                : seq_ctx - n + 1;
    jb->gen = malloc(sizeof *jb->gen * (size_t)(jb->max_gen ? jb->max_gen : 1));
    if (n > seq_ctx)
      fprintf(stderr, "nllm: note: prompt %d has %d tokens, more than the context (%d; use -c)\n",
              i + 1, n, seq_ctx);
    int32_t need = n + jb->max_gen;
    if (need > longest) longest = need;
  }
  nllm_context_params cp;
  cli_context_params(&o, &cp);
  cp.n_seq_max = n_par;
  /* enough cells that no running sequence ever waits for another */
  cp.n_ctx = n_par * (longest < seq_ctx ? longest : seq_ctx);
  if ((st = nllm_context_create(m, &cp, &ctx))) {
    cli_status_error(st, "cannot create context");
    goto out;
  }
  if (!cli_attach_lora(&o, m, ctx)) goto out;
  nllm_sampler_params sp;
  cli_sampler_params(&o, &sp);
  if (!cli_grammar(&o, &sp, &grammar)) goto out;
  for (int s = 0; s < n_par; s++) {
    slots[s].job = -1;
    if ((st = nllm_sampler_create(m, &sp, &slots[s].smp))) {
      cli_status_error(st, "bad sampling parameters");
      goto out;
    }
  }
  const int32_t budget = nllm_context_n_ctx(ctx) < (cp.n_batch > 0 ? cp.n_batch : 512)
                             ? nllm_context_n_ctx(ctx)
                             : (cp.n_batch > 0 ? cp.n_batch : 512);
  tok = malloc(sizeof *tok * (size_t)budget);
  sid = malloc(sizeof *sid * (size_t)budget);
  keep = malloc(sizeof *keep * (size_t)budget);
  const int32_t nv = nllm_model_n_vocab(m);
  int next_job = 0, n_done = 0;
  long long n_gen_tok = 0;
  while (n_done < n_jobs) {
    /* start queued prompts in free slots; a prompt that cannot run finishes at once */
    for (int s = 0; s < n_par; s++) {
      while (slots[s].job < 0 && next_job < n_jobs) {
        job *jb = &jobs[next_job];
        if (jb->max_gen == 0) {
          next_job++, n_done++;
          continue;
        }
        slots[s].job = next_job++;
        slots[s].fed = 0;
        nllm_sampler_reset(slots[s].smp, sp.seed);
        for (int32_t k = 0; k < jb->n_prompt; k++) nllm_sampler_accept(slots[s].smp, jb->prompt[k]);
      }
    }
    /* one batch: a token of each generating sequence first (they are latency-bound), then
     * prompt chunks in the remaining budget */
    int32_t n = 0;
    for (int pass = 0; pass < 2; pass++)
      for (int s = 0; s < n_par; s++) {
        slot *sl = &slots[s];
        if (pass == 0) sl->row = -1;
        if (sl->job < 0) continue;
        job *jb = &jobs[sl->job];
        const int prompting = sl->fed < jb->n_prompt;
        if (pass == 0 && !prompting && n < budget) {
          tok[n] = sl->next, sid[n] = s, keep[n] = 1, sl->row = n++;
        } else if (pass == 1 && prompting) {
          while (sl->fed < jb->n_prompt && n < budget) {
            tok[n] = jb->prompt[sl->fed++], sid[n] = s;
            keep[n] = sl->fed == jb->n_prompt;
            if (keep[n]) sl->row = n;
            n++;
          }
        }
      }
    if (n == 0) break; /* nothing runnable: cannot happen with the pool sized above */
    nllm_batch b;
    nllm_batch_init(&b);
    b.n_tokens = n;
    b.tokens = tok;
    b.seq_id = sid;
    b.logits = keep;
    if ((st = nllm_decode_batch(ctx, &b))) {
      cli_status_error(st, "decode failed");
      goto out;
    }
    for (int s = 0; s < n_par; s++) {
      slot *sl = &slots[s];
      if (sl->row < 0) continue;
      job *jb = &jobs[sl->job];
      nllm_token t;
      if ((st = nllm_sampler_sample_logits(sl->smp, nllm_get_logits_ith(ctx, sl->row), nv, &t))) {
        cli_status_error(st, "sampling failed");
        goto out;
      }
      nllm_sampler_accept(sl->smp, t);
      const int eog = nllm_model_token_is_eog(m, t);
      if (!eog) jb->gen[jb->n_gen++] = t, n_gen_tok++;
      if (eog || jb->n_gen == jb->max_gen) {
        jb->cut = !eog && (sp.grammar || sp.json_schema) && !nllm_sampler_grammar_complete(sl->smp);
        nllm_seq_remove(ctx, s, 0, -1);
        sl->job = -1;
        n_done++;
      } else {
        sl->next = t;
      }
    }
  }
  for (int i = 0; i < n_jobs; i++) print_job(m, &jobs[i], lines[i], o.ids);
  for (int i = 0; i < n_jobs; i++)
    if (jobs[i].cut)
      fprintf(stderr,
              "nllm: note: prompt %d: finish reason \"length\" before the end of the grammar (the "
              "output is incomplete; raise -n)\n",
              i + 1);
  fflush(stdout);
  nllm_timings tm = {.struct_size = sizeof tm};
  nllm_context_timings(ctx, &tm);
  const double ms = tm.prompt_ms + tm.gen_ms;
  fprintf(stderr,
          "nllm: %d prompts, %d at a time: %d tokens evaluated in %.1f ms (%.2f tokens/s), %lld "
          "generated\n",
          n_jobs, n_par, tm.n_prompt_tokens + tm.n_gen_tokens, ms,
          ms > 0 ? 1e3 * (tm.n_prompt_tokens + tm.n_gen_tokens) / ms : 0.0, n_gen_tok);
  rc = 0;
  goto out;
fail_st:
  cli_status_error(st, "cannot tokenize a prompt");
out:
  for (int s = 0; slots && s < n_par; s++) nllm_sampler_free(slots[s].smp);
  for (int i = 0; jobs && i < n_jobs; i++) {
    free(jobs[i].prompt);
    free(jobs[i].gen);
  }
  free(jobs);
  free(slots);
  free(tok);
  free(sid);
  free(keep);
  nllm_context_free(ctx);
  nllm_model_free(m);
  free(lines);
  free(text);
  free(grammar);
  return rc;
}
