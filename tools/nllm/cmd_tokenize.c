/* nllm tokenize: ids of a text, space separated, on one line. */
#include <stdio.h>
#include <stdlib.h>

#include "nllm.h"

#define TOK_OPTS "-m -p -f --no-bos --special --tokenizer --show-pieces"

int cmd_tokenize(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, TOK_OPTS, &o)) return 1;
  if (o.help) {
    printf(
        "usage: nllm tokenize (-m MODEL | --tokenizer tokenizer.json) (-p TEXT | -f FILE) "
        "[--no-bos] [--special] [--show-pieces]\n\n");
    cli_print_options(TOK_OPTS);
    return 0;
  }
  if (!o.prompt && !o.file) return cli_error("tokenize needs -p TEXT or -f FILE");
  if (o.tokenizer && o.model) return cli_error("give either -m or --tokenizer, not both");
  char *text;
  size_t len;
  if (!cli_prompt(&o, &text, &len)) return 1;
  if (len > 0x7fffffff) {
    free(text);
    return cli_error("input of %zu bytes is too large", len);
  }
  cli_opts mo = o;
  if (o.tokenizer) mo.model = o.tokenizer;
  nllm_model *m = cli_load_model(&mo, 1, 0);
  if (!m) {
    free(text);
    return 1;
  }
  int32_t n = 0;
  nllm_status st = nllm_tokenize(m, text, (int32_t)len, !o.no_bos, o.special, NULL, 0, &n);
  nllm_token *ids = NULL;
  if (st == NLLM_ERR_BUFFER_TOO_SMALL || st == NLLM_OK) {
    ids = malloc(((size_t)n + 1) * sizeof *ids);
    st = ids ? nllm_tokenize(m, text, (int32_t)len, !o.no_bos, o.special, ids, n, &n)
             : NLLM_ERR_NOMEM;
  }
  int rc = 0;
  if (st) {
    rc = cli_status_error(st, "tokenize failed");
  } else {
    if (o.show_pieces) {
      /* one token a line, llama-tokenize's format: id -> 'piece' (control tokens as text) */
      char piece[256];
      for (int32_t i = 0; i < n && !rc; i++) {
        int32_t plen = 0;
        st = nllm_token_to_piece(m, ids[i], 1, piece, (int32_t)sizeof piece, &plen);
        if (st == NLLM_ERR_BUFFER_TOO_SMALL) st = NLLM_OK, plen = (int32_t)sizeof piece;
        if (st) {
          rc = cli_status_error(st, "token piece");
          break;
        }
        printf("%6d -> '%.*s'\n", ids[i], (int)plen, piece);
      }
    } else {
      for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
      printf("\n");
    }
  }
  free(ids);
  free(text);
  nllm_model_free(m);
  return rc;
}
