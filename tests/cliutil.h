/* Running the nllm binary from a test: one shell command, stdout and stderr captured. */
#ifndef NLLM_CLIUTIL_H
#define NLLM_CLIUTIL_H

#include <sys/wait.h>

#include "testutil.h"

static char nllm_bin[512];

/* $NLLM_BUILD/nllm, else build/nllm. */
static void cli_setup(void) {
  const char *b = getenv("NLLM_BUILD");
  snprintf(nllm_bin, sizeof nllm_bin, "%s/nllm", b && *b ? b : "build");
}

/* Runs a shell command, capturing stdout (and stderr into *err when given). Returns exit code. */
static int run(const char *cmd, char **out, char **err) {
  char full[4096];
  /* stdin is /dev/null unless the command pipes its own: nllm reads a piped prompt */
  snprintf(full, sizeof full, "%s >/tmp/nllm-cli-%d.out 2>/tmp/nllm-cli-%d.err%s", cmd,
           (int)getpid(), (int)getpid(), strchr(cmd, '|') || strchr(cmd, '<') ? "" : " </dev/null");
  int rc = system(full);
  char p[128];
  snprintf(p, sizeof p, "/tmp/nllm-cli-%d.out", (int)getpid());
  if (out) *out = read_file(p, NULL);
  remove(p);
  snprintf(p, sizeof p, "/tmp/nllm-cli-%d.err", (int)getpid());
  if (err) *err = read_file(p, NULL);
  remove(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

#endif
