/* The installed static library (libnativellm.a) defines no global symbol outside the ABI: an
 * application that links it statically must not clash with nativellm's internal names
 * (gguf_open, tok_hash, ...). The archive is one relocatable object whose hidden symbols were
 * made local (see the Makefile), so its global definitions are exactly the ABI's functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *build_dir(void) {
  const char *b = getenv("NLLM_BUILD");
  return b && *b ? b : "build";
}

/* Output of a shell command (symbol names, sorted, one per line); NULL if it failed. */
static char *run(const char *cmd) {
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  size_t cap = 1 << 20, n = 0;
  char *s = malloc(cap);
  ck_assert_ptr_nonnull(s);
  n = fread(s, 1, cap - 1, p);
  s[n] = 0;
  int rc = pclose(p);
  if (rc != 0) {
    free(s);
    return NULL;
  }
  return s;
}

/* Global symbols the archive defines (nm's upper-case kinds; U is undefined). */
static char *archive_globals(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "nm -g --defined-only %s/libnativellm.a | "
           "awk 'NF == 3 && $2 ~ /^[A-TV-Z]$/ {print $3}' | LC_ALL=C sort -u",
           build_dir());
  return run(cmd);
}

START_TEST(archive_globals_are_prefixed) {
  char *now = archive_globals();
  ck_assert_msg(now && *now, "could not list the symbols of %s/libnativellm.a", build_dir());
  int n = 0;
  for (char *l = now; *l;) {
    char *e = strchr(l, '\n');
    const int len = (int)(e ? e - l : (long)strlen(l));
    ck_assert_msg(strncmp(l, "nllm_", 5) == 0,
                  "libnativellm.a defines the global symbol %.*s without the nllm_ prefix", len, l);
    n++;
    l = e ? e + 1 : l + len;
  }
  ck_assert_int_gt(n, 0);
  /* internal nllm_ names are local too: the archive's globals are the committed ABI (which
   * test_abi compares with the shared library's exports) */
  char *abi = read_file("abi/symbols.txt", NULL);
  ck_assert_msg(abi && *abi, "abi/symbols.txt not found (run from the repository root)");
  ck_assert_msg(strcmp(now, abi) == 0,
                "the static archive's global symbols differ from abi/symbols.txt\n"
                "--- archive:\n%s\n--- abi/symbols.txt:\n%s",
                now, abi);
  ck_assert_ptr_null(strstr(now, "nllm_qtype_get\n"));
  free(abi);
  free(now);
}
END_TEST

int main(void) {
  Suite *s = suite_create("archive");
  TCase *tc = tcase_create("symbols");
  tcase_add_test(tc, archive_globals_are_prefixed);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
