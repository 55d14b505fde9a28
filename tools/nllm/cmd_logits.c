/* nllm logits: the golden format of ../shared/testdata/README.md. The prompt is evaluated as one
 * batch, then N greedy steps, each generated token fed back; every position's logits written. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nllm.h"

#define LOGITS_OPTS                                                                           \
  "-m --gpu -ngl --quantize -p -f --prompt-ids -n -o -t -c --no-bos --special --mmap --lora " \
  "--lora-scaled --lora-type"

static int parse_id_list(const char *s, nllm_token **ids, int32_t *n) {
  size_t cap = 16;
  *n = 0;
  *ids = malloc(cap * sizeof **ids);
  while (*ids) {
    while (*s == ' ' || *s == ',' || *s == '\t') s++;
    if (!*s) return 1;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > 0x7fffffff) {
      cli_error("--prompt-ids: '%s' is not a list of token ids", s);
      break;
    }
    if ((size_t)*n == cap) {
      nllm_token *b = realloc(*ids, (cap *= 2) * sizeof **ids);
      if (!b) break;
      *ids = b;
    }
    (*ids)[(*n)++] = (nllm_token)v;
    s = end;
  }
  free(*ids);
  *ids = NULL;
  return 0;
}

static int argmax(const float *x, int32_t n) {
  int32_t b = 0;
  for (int32_t i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

int cmd_logits(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, LOGITS_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm logits [-m MODEL] (-p PROMPT | -f FILE | --prompt-ids \"1 2 3\") -n N "
        "-o FILE\nWrites prompt ids (BOS added unless --no-bos), N greedy ids and the logits of "
        "every\n"
        "position. The KV cache is F32 here, for comparisons against references.\n\n");
    cli_print_options(LOGITS_OPTS);
    return 0;
  }
  if (!o.out) return cli_error("logits needs -o FILE");
  if (!o.prompt && !o.file && !o.prompt_ids)
    return cli_error("logits needs -p, -f or --prompt-ids");
  nllm_model *m = cli_load_model(&o, 0, 0);
  if (!m) return 1;
  int rc = 1;
  nllm_token *ids = NULL, *gen = NULL;
  char *text = NULL;
  float *rows = NULL;
  nllm_context *ctx = NULL;
  FILE *f = NULL;
  char *tmp = NULL;
  size_t tmp_len = 0;
  int32_t n_prompt = 0, n_gen = o.n >= 0 ? (int32_t)o.n : 16, nv = nllm_model_n_vocab(m);
  nllm_status st;
  if (o.prompt_ids) {
    if (!parse_id_list(o.prompt_ids, &ids, &n_prompt)) goto out;
  } else {
    size_t len;
    if (!cli_prompt(&o, &text, &len)) goto out;
    st = nllm_tokenize(m, text, (int32_t)len, !o.no_bos, o.special, NULL, 0, &n_prompt);
    ids = malloc(((size_t)n_prompt + 1) * sizeof *ids);
    if (!ids) goto out;
    if ((st = nllm_tokenize(m, text, (int32_t)len, !o.no_bos, o.special, ids, n_prompt,
                            &n_prompt))) {
      cli_status_error(st, "tokenize failed");
      goto out;
    }
  }
  if (n_prompt == 0) {
    cli_error("the prompt has no tokens");
    goto out;
  }
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.all_logits = 1;
  cp.kv_type = NLLM_TYPE_F32;
  cp.n_threads = (int32_t)o.threads;
  cp.n_ctx = o.ctx ? (int32_t)o.ctx : n_prompt + n_gen;
  cp.n_batch = n_prompt;
  if ((st = nllm_context_create(m, &cp, &ctx))) {
    cli_status_error(st, "cannot create context");
    goto out;
  }
  if (!cli_attach_lora(&o, m, ctx)) goto out;
  size_t n_pos = (size_t)n_prompt + (size_t)n_gen;
  rows = malloc(n_pos * (size_t)nv * sizeof *rows);
  gen = malloc(((size_t)n_gen + 1) * sizeof *gen);
  if (!rows || !gen) {
    cli_error("out of memory");
    goto out;
  }
  if ((st = nllm_decode(ctx, ids, n_prompt))) {
    cli_status_error(st, "decode failed");
    goto out;
  }
  for (int32_t i = 0; i < n_prompt; i++)
    memcpy(rows + (size_t)i * nv, nllm_get_logits_ith(ctx, i), (size_t)nv * sizeof *rows);
  for (int32_t j = 0; j < n_gen; j++) {
    gen[j] = argmax(rows + ((size_t)n_prompt + j - 1) * nv, nv);
    if ((st = nllm_decode(ctx, &gen[j], 1))) {
      cli_status_error(st, "decode failed");
      goto out;
    }
    memcpy(rows + ((size_t)n_prompt + j) * nv, nllm_get_logits(ctx), (size_t)nv * sizeof *rows);
  }
  /* Written under a fresh temporary name beside the destination, then renamed over it: a full
   * disk or a kill leaves an existing file as it was, never half-written or deleted. */
  tmp_len = strlen(o.out) + 16;
  tmp = malloc(tmp_len);
  if (!tmp) {
    cli_error("out of memory");
    goto out;
  }
  snprintf(tmp, tmp_len, "%s.tmpXXXXXX", o.out);
  int fd = mkstemp(tmp); /* O_EXCL: never follows a name planted in advance */
  if (fd < 0) {
    cli_error("cannot create a temporary file beside '%s': %s", o.out, strerror(errno));
    free(tmp);
    tmp = NULL;
    goto out;
  }
  mode_t um = umask(0);
  umask(um);
  (void)fchmod(fd, 0666 & ~um); /* mkstemp's 0600 would make the output private */
  f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    cli_error("cannot write '%s': %s", tmp, strerror(errno));
    goto out;
  }
  fprintf(f, "# nllm logits: %d prompt positions, then %d greedy tokens fed back\nprompt_ids:",
          n_prompt, n_gen);
  for (int32_t i = 0; i < n_prompt; i++) fprintf(f, " %d", ids[i]);
  fprintf(f, "\ngen_ids:");
  for (int32_t j = 0; j < n_gen; j++) fprintf(f, " %d", gen[j]);
  fprintf(f, "\nn_vocab: %d\nn_pos: %zu\n", nv, n_pos);
  for (size_t r = 0; r < n_pos; r++) {
    for (int32_t i = 0; i < nv; i++) fprintf(f, i ? " %.6g" : "%.6g", (double)rows[r * nv + i]);
    fputc('\n', f);
  }
  int werr = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0 ? errno : 0;
  if (fclose(f) != 0 && !werr) werr = errno ? errno : EIO;
  f = NULL;
  if (werr) {
    cli_error("error writing '%s': %s ('%s' left as it was)", o.out, strerror(werr), o.out);
    goto out;
  }
  if (rename(tmp, o.out) != 0) {
    cli_error("cannot rename '%s' to '%s': %s", tmp, o.out, strerror(errno));
    goto out;
  }
  free(tmp);
  tmp = NULL;
  rc = 0;
out:
  if (f) fclose(f);
  if (tmp) {
    remove(tmp);
    free(tmp);
  }
  free(ids);
  free(gen);
  free(text);
  free(rows);
  nllm_context_free(ctx);
  nllm_model_free(m);
  return rc;
}
