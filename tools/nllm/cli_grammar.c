/* --grammar / --grammar-file / --json-schema for the generating commands: the text goes into
 * the sampler params, and a reply cut by -n before the grammar's end is reported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

int cli_grammar(const cli_opts *o, nllm_sampler_params *sp, char **owned) {
  *owned = NULL;
  int given = !!o->grammar + !!o->grammar_file + !!o->json_schema;
  if (given > 1) return cli_error("give one of --grammar, --grammar-file and --json-schema"), 0;
  const char *file = o->grammar_file;
  if (o->json_schema && o->json_schema[0] == '@') file = o->json_schema + 1;
  const char *text = o->json_schema ? o->json_schema : o->grammar;
  if (file) {
    size_t len = 0;
    *owned = cli_read_file(file, &len);
    if (!*owned) return cli_error("cannot read '%s'", file), 0;
    if (strlen(*owned) != len) return cli_error("'%s' contains a NUL byte", file), 0;
    text = *owned;
  }
  if (!text) return 1;
  if (o->json_schema)
    sp->json_schema = text;
  else
    sp->grammar = text;
  return 1;
}

void cli_grammar_note(const nllm_sampler *s, int32_t finish) {
  if (finish == NLLM_FINISH_LENGTH && !nllm_sampler_grammar_complete(s))
    fprintf(stderr,
            "nllm: note: finish reason \"length\": stopped before the end of the grammar, so the "
            "output is incomplete and may not parse (raise -n or -c)\n");
}
