/* nllm chat: a conversation on the terminal. Each turn renders the whole conversation with the
 * chat template, keeps the longest prefix of tokens already in the KV cache, and decodes only
 * the rest, so earlier turns are never recomputed. When the conversation outgrows the context,
 * the oldest turns are dropped (the system message stays). Ctrl-C stops a reply; at the prompt
 * it ends the chat. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nllm.h"

#ifdef NLLM_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

#define CHAT_OPTS                                                                               \
  "-m --quantize -n -t -c -s --gpu -ngl --temp --top-k --top-p --min-p --repeat-penalty "       \
  "--repeat-last-n --system --chat-template --chat-template-file --kv-f32 -ctk -ctv --mmap "    \
  "--no-mmap --no-repack -r --stop --ignore-eos --grammar --grammar-file --json-schema --lora " \
  "--lora-scaled "                                                                              \
  "--lora-type --bf16-act --no-bf16-act"

/* The names nllm_chat_apply_template knows besides Jinja text (include/nativellm.h). */
#define CHAT_TEMPLATE_NAMES \
  "chatml, llama2, llama3, mistral, mistral-v7, gemma, phi3, deepseek, deepseek3"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

/* Checked between layers, so Ctrl-C also stops a long prompt being decoded. */
static int32_t abort_on_interrupt(void *ud) {
  (void)ud;
  return interrupted;
}

#ifdef NLLM_HAVE_LIBEDIT
/* libedit reads through this: Ctrl-C at the prompt (on_sigint set `interrupted`) ends the input
 * instead of libedit retrying the interrupted read. */
static int edit_getc(FILE *f) {
  unsigned char c;
  for (;;) {
    ssize_t n = read(fileno(f), &c, 1);
    if (n == 1) return c;
    if (n < 0 && errno == EINTR && !interrupted) continue;
    return EOF;
  }
}
#endif

/* The next message, without its line end, in *line; -1 at the end of input or on Ctrl-C at the
 * prompt. On a terminal built with libedit: line editing and history (up arrow). */
static ssize_t read_message(int tty, char **line, size_t *cap) {
#ifdef NLLM_HAVE_LIBEDIT
  if (tty) {
    char *l = readline("> ");
    if (!l) return -1;
    if (*l) add_history(l);
    free(*line);
    *line = l;
    *cap = strlen(l) + 1;
    return (ssize_t)strlen(l);
  }
#endif
  if (tty) fputs("> ", stdout), fflush(stdout);
  ssize_t len = getline(line, cap, stdin);
  while (len > 0 && ((*line)[len - 1] == '\n' || (*line)[len - 1] == '\r')) (*line)[--len] = 0;
  return len;
}

typedef struct reply {
  char *text;
  size_t len, cap;
  nllm_token *ids;
  int32_t n_ids, cap_ids;
} reply;

static int32_t on_piece(nllm_token t, const char *piece, int32_t n, void *ud) {
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
  return interrupted;
}

static char *format(const nllm_model *m, const char *tmpl, const nllm_chat_message *msgs, int n) {
  int32_t need = 0;
  nllm_status st = tmpl ? nllm_chat_apply_template(tmpl, msgs, n, 1, NULL, 0, &need)
                        : nllm_chat_format(m, msgs, n, 1, NULL, 0, &need);
  if (st != NLLM_OK && st != NLLM_ERR_BUFFER_TOO_SMALL) return NULL;
  char *buf = malloc((size_t)need + 1);
  if (!buf) return NULL;
  st = tmpl ? nllm_chat_apply_template(tmpl, msgs, n, 1, buf, need + 1, &need)
            : nllm_chat_format(m, msgs, n, 1, buf, need + 1, &need);
  if (st) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* A template that cannot render a one-message conversation fails now, not after the first
 * message was typed. */
static int check_template(const nllm_model *m, const char *tmpl) {
  nllm_chat_message probe = {"user", "hi"};
  char *text = format(m, tmpl, &probe, 1);
  if (text) {
    free(text);
    return 1;
  }
  if (tmpl)
    cli_error("--chat-template '%.60s%s': %s (known names: %s, or Jinja template text)", tmpl,
              strlen(tmpl) > 60 ? "..." : "", nllm_last_error(), CHAT_TEMPLATE_NAMES);
  else
    cli_error(
        "this model has no usable chat template (%s); give one with --chat-template "
        "(known names: %s)",
        nllm_last_error(), CHAT_TEMPLATE_NAMES);
  return 0;
}

/* The conversation's tokens (template applied, ready for the assistant's reply) in *ids. */
static nllm_status render(const nllm_model *m, const char *tmpl, const nllm_chat_message *msgs,
                          int n_msgs, nllm_token **ids, int32_t *n) {
  char *text = format(m, tmpl, msgs, n_msgs);
  if (!text) return NLLM_ERR_INVALID_ARG;
  nllm_status st = nllm_tokenize(m, text, -1, 1, 1, NULL, 0, n);
  if (st == NLLM_OK || st == NLLM_ERR_BUFFER_TOO_SMALL) {
    free(*ids);
    *ids = malloc(((size_t)*n + 1) * sizeof **ids);
    st = *ids ? nllm_tokenize(m, text, -1, 1, 1, *ids, *n, n) : NLLM_ERR_NOMEM;
  }
  free(text);
  return st;
}

typedef struct chat {
  nllm_chat_message *msgs;
  int n, cap, first_turn; /* msgs[first_turn..] are user/assistant turns (before: system) */
} chat;

static void drop_messages(chat *c, int from, int count) {
  for (int i = from; i < from + count; i++) free((char *)c->msgs[i].content);
  memmove(c->msgs + from, c->msgs + from + count, (size_t)(c->n - from - count) * sizeof *c->msgs);
  c->n -= count;
}

static int add_message(chat *c, const char *role, char *content) {
  if (!content) return 0;
  if (c->n == c->cap) {
    int cap = c->cap ? c->cap * 2 : 16;
    nllm_chat_message *b = realloc(c->msgs, (size_t)cap * sizeof *b);
    if (!b) {
      free(content);
      return 0;
    }
    c->msgs = b, c->cap = cap;
  }
  c->msgs[c->n++] = (nllm_chat_message){role, content};
  return 1;
}

static char *dup_bytes(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n), d[n] = 0;
  return d;
}

int cmd_chat(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, CHAT_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm chat [-m MODEL] [--system TEXT] [--chat-template T | --chat-template-file F]\n"
        "                 [-n N] [--temp T] ...\n"
        "Reads one user message per line from stdin and streams the replies. The KV cache is\n"
        "reused across turns; when the context is full the oldest turns are dropped (the system\n"
        "message stays). /clear starts over, /exit or Ctrl-D ends the chat, Ctrl-C stops a reply\n"
        "(at the prompt it ends the chat).\n\n");
    cli_print_options(CHAT_OPTS);
    return 0;
  }
  char *tmpl_file = NULL; /* --chat-template-file: its text replaces --chat-template */
  if (o.chat_template_file) {
    size_t len = 0;
    if (!(tmpl_file = cli_read_file(o.chat_template_file, &len)) || strlen(tmpl_file) != len) {
      free(tmpl_file);
      return cli_error("--chat-template-file: cannot read '%s' as text", o.chat_template_file);
    }
    o.chat_template = tmpl_file;
  }
  nllm_model *m = cli_load_model(&o, 0, 0);
  if (!m) return free(tmpl_file), 1;
  int rc = 1, tty = isatty(0);
  nllm_context *ctx = NULL;
  nllm_sampler *smp = NULL;
  chat c = {0};
  nllm_token *cached = NULL, *ids = NULL; /* what the context holds, and this turn's prompt */
  int32_t n_cached = 0;
  char *line = NULL;
  size_t line_cap = 0;
  nllm_context_params cp;
  nllm_sampler_params sp;
  cli_context_params(&o, &cp);
  cp.abort_callback = abort_on_interrupt;
  cli_sampler_params(&o, &sp);
  char *grammar = NULL;
  if (!cli_grammar(&o, &sp, &grammar)) goto out;
  nllm_status st;
  if (!check_template(m, o.chat_template)) goto out;
  if ((st = nllm_context_create(m, &cp, &ctx)) || (st = nllm_sampler_create(m, &sp, &smp))) {
    cli_status_error(st, "cannot set up the chat");
    goto out;
  }
  if (!cli_attach_lora(&o, m, ctx)) goto out;
  const int32_t n_ctx = nllm_context_n_ctx(ctx);
  cached = malloc(((size_t)n_ctx + 1) * sizeof *cached);
  if (!cached) goto out;
  if (o.system && !add_message(&c, "system", strdup(o.system))) goto out;
  c.first_turn = c.n;
  /* No SA_RESTART: Ctrl-C at the prompt must interrupt the read. */
  struct sigaction sa = {0};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
#ifdef NLLM_HAVE_LIBEDIT
  const char *editing = " Up arrow: earlier messages.";
#else
  const char *editing = "";
#endif
  if (tty)
    fprintf(stderr,
            "nllm chat: type a message and press Enter. /clear starts over, /exit or Ctrl-D "
            "ends the chat, Ctrl-C stops a reply.%s\n",
            editing);
#ifdef NLLM_HAVE_LIBEDIT
  if (tty) {
    rl_catch_signals = 0; /* Ctrl-C is ours (on_sigint) */
    rl_getc_function = edit_getc;
  }
#endif
  for (;;) {
    ssize_t len = read_message(tty, &line, &line_cap);
    if (len < 0) {
      if (interrupted && tty) fputc('\n', stdout);
      break; /* Ctrl-D, end of input, or Ctrl-C at the prompt */
    }
    if (len == 0) continue;
    if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
    if (!strcmp(line, "/clear")) {
      drop_messages(&c, c.first_turn, c.n - c.first_turn);
      n_cached = 0;
      nllm_context_reset(ctx);
      if (tty) fprintf(stderr, "nllm chat: conversation cleared\n");
      continue;
    }
    if (!add_message(&c, "user", dup_bytes(line, (size_t)len))) goto out;
    /* Room for the reply: what -n asks for, but at most a quarter of the context. */
    int32_t max_tokens = !o.has_n ? 512 : o.n == CLI_N_UNLIMITED ? INT32_MAX : (int32_t)o.n;
    int32_t room = max_tokens < n_ctx / 4 ? max_tokens : n_ctx / 4;
    int32_t n = 0;
    for (;;) {
      if ((st = render(m, o.chat_template, c.msgs, c.n, &ids, &n))) {
        cli_status_error(st, "chat template");
        goto out;
      }
      if (n + room <= n_ctx || c.n - c.first_turn <= 1) break;
      /* the oldest turn: a user message and the reply after it */
      int drop = c.n - c.first_turn >= 3 ? 2 : 1;
      drop_messages(&c, c.first_turn, drop);
    }
    if (n >= n_ctx) {
      fprintf(stderr, "nllm: error: this message needs %d tokens, the context holds %d (use -c)\n",
              n, n_ctx);
      drop_messages(&c, c.n - 1, 1);
      continue;
    }
    /* Reuse the cache up to the first difference; at least one token must be decoded. */
    int32_t keep = 0;
    while (keep < n_cached && keep < n - 1 && cached[keep] == ids[keep]) keep++;
    nllm_context_rewind(ctx, keep);
    nllm_generate_params gp;
    nllm_generate_params_init(&gp);
    gp.max_tokens = max_tokens;
    gp.stop_at_eog = !o.ignore_eos;
    gp.stop = o.stop;
    gp.n_stop = o.n_stop;
    int32_t finish = NLLM_FINISH_NONE;
    gp.finish_reason = &finish;
    reply r = {0};
    gp.on_token = on_piece;
    gp.user_data = &r;
    interrupted = 0;
    st = nllm_generate_tokens(ctx, smp, ids + keep, n - keep, &gp, NULL);
    printf("\n");
    if (interrupted) fprintf(stderr, "nllm chat: reply stopped\n");
    if (!st && (sp.grammar || sp.json_schema)) cli_grammar_note(smp, finish);
    interrupted = 0;
    if (st && st != NLLM_ERR_CONTEXT_FULL && st != NLLM_ERR_ABORTED) {
      free(r.text);
      free(r.ids);
      cli_status_error(st, "generation failed");
      goto out;
    }
    /* The context holds the prompt and the reply's tokens up to its position. */
    int32_t pos = nllm_context_pos(ctx);
    memcpy(cached, ids, (size_t)(n < pos ? n : pos) * sizeof *ids);
    if (pos > n) memcpy(cached + n, r.ids, (size_t)(pos - n) * sizeof *ids);
    n_cached = pos;
    if (!add_message(&c, "assistant", r.text ? r.text : strdup(""))) {
      free(r.ids);
      goto out;
    }
    free(r.ids);
  }
  rc = 0;
out:
  signal(SIGINT, SIG_DFL);
  for (int i = 0; i < c.n; i++) free((char *)c.msgs[i].content);
  free(c.msgs);
  free(line);
  free(cached);
  free(ids);
  nllm_sampler_free(smp);
  nllm_context_free(ctx);
  nllm_model_free(m);
  free(grammar);
  free(tmpl_file);
  return rc;
}
