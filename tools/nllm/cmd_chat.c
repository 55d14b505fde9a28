/* nllm chat: a conversation on the terminal. Each turn renders the whole conversation with the
 * chat template, keeps the longest prefix of tokens already in the KV cache, and decodes only
 * the rest, so earlier turns are never recomputed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nllm.h"

#define CHAT_OPTS                                                                             \
  "-m --quantize -n -t -c --seed --gpu -ngl --temp --top-k --top-p --min-p --repeat-penalty " \
  "--repeat-last-n --system --chat-template --kv-f32 --mmap --grammar --grammar-file "        \
  "--json-schema"

typedef struct reply {
  char *text;
  size_t len, cap;
  nllm_token *ids;
  int32_t n_ids, cap_ids;
} reply;

static int on_piece(nllm_token t, const char *piece, int32_t n, void *ud) {
  reply *r = ud;
  fwrite(piece, 1, (size_t)n, stdout);
  fflush(stdout);
  if (r->len + (size_t)n + 1 > r->cap) {
    size_t cap = (r->cap + (size_t)n + 1) * 2;
    char *b = realloc(r->text, cap);
    if (!b) return 1;
    r->text = b, r->cap = cap;
  }
  memcpy(r->text + r->len, piece, (size_t)n);
  r->len += (size_t)n;
  r->text[r->len] = 0;
  if (t >= 0) {
    if (r->n_ids == r->cap_ids) {
      int32_t cap = r->cap_ids ? r->cap_ids * 2 : 256;
      nllm_token *b = realloc(r->ids, (size_t)cap * sizeof *b);
      if (!b) return 1;
      r->ids = b, r->cap_ids = cap;
    }
    r->ids[r->n_ids++] = t;
  }
  return 0;
}

static char *format(const nllm_model *m, const char *tmpl, const nllm_chat_message *msgs, int n) {
  int32_t need = 0;
  nllm_status st = tmpl ? nllm_chat_apply_template(tmpl, msgs, n, 1, NULL, 0, &need)
                        : nllm_chat_format(m, msgs, n, 1, NULL, 0, &need);
  if (st != NLLM_OK && st != NLLM_ERR_BUFFER_TOO_SMALL) {
    cli_status_error(st, "chat template");
    return NULL;
  }
  char *buf = malloc((size_t)need + 1);
  if (!buf) return NULL;
  st = tmpl ? nllm_chat_apply_template(tmpl, msgs, n, 1, buf, need + 1, &need)
            : nllm_chat_format(m, msgs, n, 1, buf, need + 1, &need);
  if (st) {
    cli_status_error(st, "chat template");
    free(buf);
    return NULL;
  }
  return buf;
}

int cmd_chat(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, CHAT_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm chat [-m MODEL] [--system TEXT] [--chat-template T] [-n N] [--temp T] ...\n"
        "Reads one user message per line from stdin and streams the replies. The KV cache is\n"
        "reused across turns. Ctrl-D ends the chat.\n\n");
    cli_print_options(CHAT_OPTS);
    return 0;
  }
  nllm_model *m = cli_load_model(&o, 0, 0);
  if (!m) return 1;
  int rc = 1, tty = isatty(0);
  nllm_context *ctx = NULL;
  nllm_sampler *smp = NULL;
  nllm_chat_message *msgs = NULL;
  int n_msgs = 0, cap_msgs = 0;
  nllm_token *cached = NULL, *ids = NULL; /* what the context holds, and this turn's prompt */
  int32_t n_cached = 0;
  char line[16384];
  nllm_context_params cp;
  nllm_sampler_params sp;
  cli_context_params(&o, &cp);
  cli_sampler_params(&o, &sp);
  char *grammar = NULL;
  if (!cli_grammar(&o, &sp, &grammar)) goto out;
  nllm_status st;
  if ((st = nllm_context_create(m, &cp, &ctx)) || (st = nllm_sampler_create(m, &sp, &smp))) {
    cli_status_error(st, "cannot set up the chat");
    goto out;
  }
  cap_msgs = 64;
  msgs = calloc((size_t)cap_msgs, sizeof *msgs);
  cached = malloc((size_t)nllm_context_n_ctx(ctx) * sizeof *cached);
  if (!msgs || !cached) goto out;
  if (o.system) msgs[n_msgs++] = (nllm_chat_message){"system", strdup(o.system)};
  for (;;) {
    if (tty) fputs("> ", stdout), fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) break;
    line[strcspn(line, "\r\n")] = 0;
    if (!*line) continue;
    if (n_msgs + 2 > cap_msgs) {
      nllm_chat_message *b = realloc(msgs, (size_t)(cap_msgs *= 2) * sizeof *b);
      if (!b) goto out;
      msgs = b;
    }
    msgs[n_msgs++] = (nllm_chat_message){"user", strdup(line)};
    char *text = format(m, o.chat_template, msgs, n_msgs);
    if (!text) goto out;
    int32_t n = 0;
    st = nllm_tokenize(m, text, -1, 1, 1, NULL, 0, &n);
    free(ids);
    ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids || (st = nllm_tokenize(m, text, -1, 1, 1, ids, n, &n))) {
      free(text);
      cli_status_error(st, "tokenize");
      goto out;
    }
    free(text);
    /* Reuse the cache up to the first difference; at least one token must be decoded. */
    int32_t keep = 0;
    while (keep < n_cached && keep < n - 1 && cached[keep] == ids[keep]) keep++;
    nllm_context_rewind(ctx, keep);
    nllm_generate_params gp;
    nllm_generate_params_init(&gp);
    gp.max_tokens = o.n >= 0 ? (int32_t)o.n : 512;
    reply r = {0};
    gp.on_token = on_piece;
    gp.user_data = &r;
    int32_t n_gen = 0;
    st = nllm_generate_tokens(ctx, smp, ids + keep, n - keep, &gp, &n_gen);
    printf("\n");
    if (!st) cli_grammar_note(smp, n_gen, gp.max_tokens);
    if (st) {
      free(r.text);
      free(r.ids);
      cli_status_error(st, st == NLLM_ERR_CONTEXT_FULL
                               ? "the conversation filled the context (use -c)"
                               : "generation failed");
      goto out;
    }
    /* The context now holds the prompt and every emitted token. */
    memcpy(cached, ids, (size_t)n * sizeof *ids);
    memcpy(cached + n, r.ids, (size_t)r.n_ids * sizeof *ids);
    n_cached = n + r.n_ids;
    msgs[n_msgs++] = (nllm_chat_message){"assistant", r.text ? r.text : strdup("")};
    free(r.ids);
  }
  rc = 0;
out:
  for (int i = 0; i < n_msgs; i++) free((char *)msgs[i].content);
  free(msgs);
  free(cached);
  free(ids);
  nllm_sampler_free(smp);
  nllm_context_free(ctx);
  nllm_model_free(m);
  free(grammar);
  return rc;
}
