/* See atomic_file.h. */
#include "core/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The folder part of path ("." when there is none), in buf. */
static void dir_of(const char *path, char *buf, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(buf, cap, ".");
  } else if (slash == path) {
    snprintf(buf, cap, "/");
  } else {
    snprintf(buf, cap, "%.*s", (int)(slash - path), path);
  }
}

/* Removes "<base>.tmp.<pid>" and "<base>.tmp.<pid>.<n>" left by processes that no longer run
 * (kill -9 during a write): they are this writer's own names, and nothing else reclaims them. */
static void remove_stale(const char *path) {
  char dir[4096];
  dir_of(path, dir, sizeof dir);
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t bl = strlen(base);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
    char *end;
    errno = 0;
    long pid = strtol(n + bl + 5, &end, 10);
    if (errno || end == n + bl + 5 || pid <= 0 || pid == (long)getpid()) continue;
    if (*end == '.') {
      char *e2;
      (void)strtoul(end + 1, &e2, 10);
      if (e2 == end + 1 || *e2) continue;
    } else if (*end) {
      continue;
    }
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
    char full[8192];
    snprintf(full, sizeof full, "%s/%s", dir, n);
    struct stat sb;
    if (lstat(full, &sb) == 0 && (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode))) {
      if (unlink(full) == 0)
        nllm_log(NLLM_LOG_INFO, "removed %s, left by process %ld that no longer runs", full, pid);
    }
  }
  closedir(d);
}

/* A fresh name "<path>.tmp.<pid>.<n>" created by make(name) (returns < 0 with errno on failure);
 * EEXIST moves on to the next n. */
static char *fresh_name(const char *path, int (*make)(const char *name, void *ud), void *ud,
                        int *err) {
  size_t cap = strlen(path) + 48;
  char *name = nllm_malloc(cap);
  if (!name) {
    *err = ENOMEM;
    return NULL;
  }
  static _Atomic unsigned counter;
  for (int tries = 0; tries < 1000; tries++) {
    snprintf(name, cap, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
    if (make(name, ud) == 0) return name;
    if (errno != EEXIST) break;
  }
  *err = errno;
  free(name);
  return NULL;
}

static int make_excl(const char *name, void *ud) {
  int *fd = ud;
  *fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  return *fd < 0 ? -1 : 0;
}

nllm_status nllm_atomic_file_open(nllm_atomic_file *f, const char *path) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  if (!(f->path = nllm_strdup(path))) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  remove_stale(path);
#ifdef O_TMPFILE
  char dir[4096];
  dir_of(path, dir, sizeof dir);
  f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (f->fd >= 0) return NLLM_OK;
    /* not supported by this kernel or file system: fall back to a named temporary file */
#endif
  int err = 0;
  f->tmp = fresh_name(path, make_excl, &f->fd, &err);
  if (!f->tmp) {
    nllm_status st =
        nllm_err(err == ENOMEM ? NLLM_ERR_NOMEM : NLLM_ERR_IO,
                 "%s: cannot create a temporary file beside it: %s", path, strerror(err));
    free(f->path);
    f->path = NULL;
    return st;
  }
  return NLLM_OK;
}

static int link_fd(const char *name, void *ud) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", *(int *)ud);
  return linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
}

static void release(nllm_atomic_file *f) {
  if (f->fd >= 0) close(f->fd);
  if (f->tmp) unlink(f->tmp);
  free(f->tmp);
  free(f->path);
  memset(f, 0, sizeof *f);
  f->fd = -1;
}

nllm_status nllm_atomic_file_commit(nllm_atomic_file *f) {
  nllm_status st = NLLM_OK;
  if (fsync(f->fd) != 0) {
    st = nllm_err(NLLM_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
    release(f);
    return st;
  }
  if (!f->tmp) {
    /* an unnamed file gets a name only now, complete: a kill before this leaves nothing */
    int err = 0;
    f->tmp = fresh_name(f->path, link_fd, &f->fd, &err);
    if (!f->tmp) {
      st = nllm_err(err == ENOMEM ? NLLM_ERR_NOMEM : NLLM_ERR_IO, "%s: cannot link the file: %s",
                    f->path, strerror(err));
      release(f);
      return st;
    }
  }
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0)
    st = nllm_err(NLLM_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
  else if (rename(f->tmp, f->path) != 0)
    st =
        nllm_err(NLLM_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp, strerror(errno));
  else {
    free(f->tmp); /* renamed: nothing left to unlink */
    f->tmp = NULL;
  }
  release(f);
  return st;
}

void nllm_atomic_file_abort(nllm_atomic_file *f) {
  release(f);
}
