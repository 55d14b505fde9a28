/* nllm embed: the embedding vector of each text, one line of floats per text (pooling none: one
 * line per token, a blank line between texts), or JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

#define EMBED_OPTS                                                                      \
  "-m -p -f --prompt-ids --pooling --normalize --no-normalize --json -t -b --quantize " \
  "--special --no-bos --mmap --no-mmap --bf16-act --no-bf16-act"

/* The texts: -p (one text), -f (one per line, blank lines skipped), or --prompt-ids. */
typedef struct texts {
  char *buf;
  char **line;
  int32_t n;
} texts;

static int split_lines(texts *t, char *buf, int one) {
  t->buf = buf;
  size_t cap = 16;
  t->line = malloc(cap * sizeof *t->line);
  if (!t->line) return cli_error("out of memory"), 0;
  for (char *p = buf; p && *p;) {
    char *nl = one ? NULL : strchr(p, '\n');
    if (nl) *nl = 0;
    size_t len = strlen(p);
    if (len && p[len - 1] == '\r' && !one) p[len - 1] = 0;
    if (*p) {
      if ((size_t)t->n == cap) {
        char **l = realloc(t->line, 2 * cap * sizeof *l);
        if (!l) return cli_error("out of memory"), 0;
        t->line = l, cap *= 2;
      }
      t->line[t->n++] = p;
    }
    p = nl ? nl + 1 : NULL;
  }
  return 1;
}

static void print_vec(const float *v, int32_t d, int json) {
  for (int32_t k = 0; k < d; k++) printf("%s%.8g", k ? (json ? "," : " ") : "", (double)v[k]);
}

int cmd_embed(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, EMBED_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm embed -m MODEL (-p TEXT | -f FILE | --prompt-ids IDS) [--pooling P] "
        "[--normalize | --no-normalize] [--json]\n"
        "Prints one vector per text (-f: one text per line, blank lines skipped), its floats on "
        "one line;\nwith --pooling none one line per token and a blank line after each text. "
        "Texts are embedded\nmany at a time (-b tokens per batch, default 2048).\n\n");
    cli_print_options(EMBED_OPTS);
    return 0;
  }
  if (!!o.prompt + !!o.file + !!o.prompt_ids != 1)
    return cli_error("embed needs exactly one of -p TEXT, -f FILE or --prompt-ids IDS");
  if (o.normalize && o.no_normalize) return cli_error("give --normalize or --no-normalize");
  int32_t pooling = NLLM_POOLING_MODEL;
  if (o.pooling && (pooling = cli_pooling_parse(o.pooling)) < 0)
    return cli_error("--pooling: '%s' is not one of none, mean, cls, last", o.pooling);
  texts tx = {0};
  nllm_model *m = NULL;
  nllm_context *ctx = NULL;
  nllm_token **ids = NULL;
  int32_t *lens = NULL;
  float *out = NULL;
  int rc = 1;
  if (o.prompt_ids) {
    char *copy = strdup(o.prompt_ids);
    if (!copy || !split_lines(&tx, copy, 1)) goto done;
  } else {
    char *text;
    size_t len;
    if (!cli_prompt(&o, &text, &len)) goto done;
    if (!split_lines(&tx, text, o.file == NULL)) goto done;
  }
  if (tx.n == 0) {
    cli_error("no text to embed");
    goto done;
  }
  if (!(m = cli_load_model(&o, 0, 0))) goto done;
  ids = calloc((size_t)tx.n, sizeof *ids);
  lens = calloc((size_t)tx.n, sizeof *lens);
  if (!ids || !lens) {
    cli_error("out of memory");
    goto done;
  }
  int32_t longest = 0;
  int64_t total = 0;
  for (int32_t i = 0; i < tx.n; i++) {
    nllm_status st;
    if (o.prompt_ids) {
      int32_t n = 0, cap = (int32_t)strlen(tx.line[i]) / 2 + 1;
      ids[i] = malloc((size_t)cap * sizeof **ids);
      char *p = tx.line[i], *end;
      while (ids[i] && n < cap) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (v < 0 || v >= nllm_model_n_vocab(m)) {
          cli_error("--prompt-ids: %ld is not a token id of this model (0..%d)", v,
                    nllm_model_n_vocab(m) - 1);
          goto done;
        }
        ids[i][n++] = (nllm_token)v;
        p = end;
      }
      lens[i] = n;
      st = ids[i] ? NLLM_OK : NLLM_ERR_NOMEM;
    } else {
      int32_t n = 0;
      st = nllm_tokenize(m, tx.line[i], -1, !o.no_bos, o.special, NULL, 0, &n);
      if (st == NLLM_ERR_BUFFER_TOO_SMALL || st == NLLM_OK) {
        ids[i] = malloc(((size_t)n + 1) * sizeof **ids);
        st = ids[i] ? nllm_tokenize(m, tx.line[i], -1, !o.no_bos, o.special, ids[i], n, &n)
                    : NLLM_ERR_NOMEM;
      }
      lens[i] = n;
    }
    if (st) {
      rc = cli_status_error(st, "tokenize failed");
      goto done;
    }
    if (lens[i] == 0) {
      cli_error("text %d has no tokens", i + 1);
      goto done;
    }
    if (lens[i] > longest) longest = lens[i];
    total += lens[i];
  }
  nllm_context_params cp;
  cli_context_params(&o, &cp);
  /* the cache holds one batch only: F32 costs little and keeps the vectors exact */
  if (!o.kv_f32 && o.kv_k == NLLM_TYPE_NONE) cp.kv_type = NLLM_TYPE_F32;
  cp.embeddings = NLLM_EMBEDDINGS_ONLY;
  cp.pooling = pooling;
  cp.normalize = o.normalize ? 1 : o.no_normalize ? 0 : -1;
  if (!o.batch) cp.n_batch = longest > 2048 ? longest : 2048;
  if (cp.n_batch < longest) {
    cli_error("text of %d tokens is longer than the batch size -b %d", longest, cp.n_batch);
    goto done;
  }
  cp.n_ctx = cp.n_batch;
  cp.n_seq_max = tx.n < 256 ? tx.n : 256;
  nllm_status st = nllm_context_create(m, &cp, &ctx);
  if (st) {
    rc = cli_status_error(st, "cannot create the context");
    goto done;
  }
  const int32_t d = nllm_model_n_embd(m);
  pooling = nllm_context_pooling(ctx);
  const int per_token = pooling == NLLM_POOLING_NONE;
  out = malloc((size_t)(per_token ? total : tx.n) * (size_t)d * sizeof *out);
  if (!out) {
    cli_error("out of memory for %lld vectors", (long long)(per_token ? total : tx.n));
    goto done;
  }
  if ((st = cli_embed_seqs(ctx, cp.n_batch, (const nllm_token *const *)ids, lens, tx.n, out))) {
    rc = cli_status_error(st, "embedding failed");
    goto done;
  }
  if (o.json) {
    printf("{\"model\":\"%s\",\"n_embd\":%d,\"pooling\":\"%s\",\"normalize\":%s,\"data\":[",
           nllm_model_arch(m), d, cli_pooling_name(pooling),
           nllm_context_normalize(ctx) ? "true" : "false");
    for (int32_t i = 0, row = 0; i < tx.n; i++) {
      printf("%s{\"index\":%d,\"n_tokens\":%d,\"embedding\":[", i ? "," : "", i, lens[i]);
      for (int32_t t = 0; t < (per_token ? lens[i] : 1); t++, row++) {
        if (per_token) fputs(t ? ",[" : "[", stdout);
        print_vec(out + (size_t)row * (size_t)d, d, 1);
        if (per_token) fputs("]", stdout);
      }
      printf("]}");
    }
    printf("]}\n");
  } else {
    for (int32_t i = 0, row = 0; i < tx.n; i++) {
      for (int32_t t = 0; t < (per_token ? lens[i] : 1); t++, row++) {
        print_vec(out + (size_t)row * (size_t)d, d, 0);
        printf("\n");
      }
      if (per_token) printf("\n");
    }
  }
  rc = 0;
done:
  for (int32_t i = 0; ids && i < tx.n; i++) free(ids[i]);
  free(ids);
  free(lens);
  free(out);
  free(tx.buf);
  free(tx.line);
  nllm_context_free(ctx);
  nllm_model_free(m);
  return rc;
}
