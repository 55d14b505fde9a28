/* A file that appears under its final name only when complete: written unnamed (O_TMPFILE)
 * or under a fresh exclusive temporary name beside it, synced, then renamed over the target.
 * An existing target stays untouched until the rename; a crash leaves it as it was. */
#ifndef NLLM_ATOMIC_FILE_H
#define NLLM_ATOMIC_FILE_H

#include "core/core.h"

typedef struct nllm_atomic_file {
  int fd;     /* write here */
  char *path; /* the target */
  char *tmp;  /* the temporary name when the file has one (no O_TMPFILE), else NULL */
} nllm_atomic_file;

/* Creates the unnamed/temporary file beside path. Temporary names are "<path>.tmp.<pid>.<n>",
 * created with O_EXCL (a name planted in advance, a symlink included, is never followed); ones
 * that a killed process left behind (its pid no longer running) are removed first. */
nllm_status nllm_atomic_file_open(nllm_atomic_file *f, const char *path);
/* fsync, close and put the file under its name. On failure the target is unchanged and the
 * temporary file is gone. Either way f is released. */
nllm_status nllm_atomic_file_commit(nllm_atomic_file *f);
/* Discards the file (after a write error). */
void nllm_atomic_file_abort(nllm_atomic_file *f);

#endif
