/* The nllm command line as other programs drive it: exact output formats, one-line errors with a
 * non-zero exit, and the golden story from `nllm run --temp 0`. */
#include <fcntl.h>
#include <signal.h>
#include <pty.h>
#include <sys/select.h>
#include <sys/wait.h>

#include "cliutil.h"

START_TEST(run_greedy_ids_golden) {
  char golden[1024], cmd[2048];
  if (!testdata_path(golden, sizeof golden, "golden/logits/stories260K-F32.greedy250.ids.txt"))
    return;
  golden_logits *g = golden_logits_load(golden);
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 250 --temp 0 --ids", nllm_bin);
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  int ids[512];
  int n = parse_ids(out, ids, 512);
  ck_assert_int_gt(n, 100); /* the story may end with EOS before 250 */
  ck_assert_mem_eq(ids, g->gen_ids, sizeof(int) * (size_t)n);
  ck_assert_msg(strstr(err, "tokens/s"), "timings on stderr: %s", err);
  free(out);
  free(err);
  /* text mode prints the prompt, then the Lily story */
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 40 --temp 0", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strncmp(out, "Once upon a time, there was a little girl named Lily", 52) == 0, "%s",
                out);
  free(out);
  golden_logits_free(g);
}
END_TEST

START_TEST(tokenize_formats) {
  char cmd[2048], *out;
  snprintf(cmd, sizeof cmd, "%s tokenize -p 'Once upon a time'", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_str_eq(out, "1 403 407 261 378\n");
  free(out);
  snprintf(cmd, sizeof cmd, "%s tokenize -p 'Once upon a time' --no-bos", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_str_eq(out, "403 407 261 378\n");
  free(out);
  /* -f: the file's bytes exactly, trailing newline included */
  FILE *f = fopen("/tmp/nllm-cli-prompt.txt", "w");
  fputs("Once upon a time\n", f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s tokenize -f /tmp/nllm-cli-prompt.txt --no-bos", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strncmp(out, "403 407 261 378 ", 16) == 0, "%s", out); /* + newline token(s) */
  free(out);
  remove("/tmp/nllm-cli-prompt.txt");
  /* --show-pieces: one token a line, id -> 'piece' */
  snprintf(cmd, sizeof cmd, "%s tokenize -p 'Once upon a time' --show-pieces", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strstr(out, "     1 -> '<s>'\n") && strstr(out, "   403 -> ' Once'\n") &&
                    strstr(out, "   378 -> ' time'\n"),
                "%s", out);
  free(out);
  char tj[1024];
  if (testdata_path(tj, sizeof tj, "tokenizers/hf/qwen2.5/tokenizer.json")) {
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer %s -p 'Hello world'", nllm_bin, tj);
    ck_assert_int_eq(run(cmd, &out, NULL), 0);
    ck_assert_str_eq(out, "9707 1879\n");
    free(out);
  }
  /* WordPiece: [CLS] ... [SEP] unless --no-bos; invalid UTF-8 is one clear line */
  if (testdata_path(tj, sizeof tj, "embed/tiny-bert/tokenizer.json")) {
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer %s -p 'Hello world'", nllm_bin, tj);
    ck_assert_int_eq(run(cmd, &out, NULL), 0);
    ck_assert_str_eq(out, "101 7592 2088 102\n");
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer %s -p 'Hello world' --no-bos", nllm_bin, tj);
    ck_assert_int_eq(run(cmd, &out, NULL), 0);
    ck_assert_str_eq(out, "7592 2088\n");
    free(out);
    char *err;
    FILE *bf = fopen("/tmp/nllm-cli-bad-utf8.txt", "w");
    fputs("bad \xff byte", bf);
    fclose(bf);
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer %s -f /tmp/nllm-cli-bad-utf8.txt", nllm_bin,
             tj);
    ck_assert_int_ne(run(cmd, &out, &err), 0);
    ck_assert_msg(strstr(err, "UTF-8") && !strchr(strchr(err, '\n') + 1, '\n'), "%s", err);
    free(out);
    free(err);
    remove("/tmp/nllm-cli-bad-utf8.txt");
  }
}
END_TEST

START_TEST(errors_are_one_line) {
  static const char *bad[] = {
      "run -m /nonexistent/x.gguf -p hi",
      "run --temp abc",
      "run -c 0",
      "bogus",
      "run --no-such-option",
      "tokenize",
      "logits -p hi",
      "run -m Makefile",
      "run --top-p 2",
      "run -n -5",
      "info -m /dev/null",
      "run -ngl -1",
      "run --temp=abc",
      "run --ids=1",
      "bench -p 4,x",
      "bench --parallel 0",
      "bench --parallel 4,2000",
      "chat --chat-template zephyr",
      "run --bf16-act --no-bf16-act -p hi",
      /* a prompt that cannot fit in the context is an error, not an empty success */
      "run -p 'Once upon a time, there was a little girl' -c 8 -n 20",
#ifndef NLLM_CUDA /* an explicit --gpu is refused by a build without CUDA (-ngl only warns) */
      "run --gpu -p hi",
#endif
  };
  char cmd[2048];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s %s", nllm_bin, bad[i]);
    int rc = run(cmd, &out, &err);
    ck_assert_msg(rc != 0, "'%s' exited 0", bad[i]);
    ck_assert_msg(strncmp(err, "nllm: error: ", 13) == 0, "'%s': stderr '%s'", bad[i], err);
    char *nl = strchr(err, '\n');
    ck_assert_msg(nl && nl[1] == 0, "'%s': more than one line: '%s'", bad[i], err);
    free(out);
    free(err);
    remove("/tmp/nllm-cli-bad-utf8.txt");
  }
}
END_TEST

START_TEST(logits_and_info) {
  char cmd[2048], *out;
  snprintf(cmd, sizeof cmd, "%s logits -p 'Once upon a time' -n 4 -o /tmp/nllm-cli-%d.logits",
           nllm_bin, (int)getpid());
  ck_assert_int_eq(run(cmd, NULL, NULL), 0);
  char path[128];
  snprintf(path, sizeof path, "/tmp/nllm-cli-%d.logits", (int)getpid());
  golden_logits *g = golden_logits_load(path);
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(g->n_prompt, 5);
  ck_assert_int_eq(g->n_gen, 4);
  ck_assert_int_eq(g->n_vocab, 512);
  ck_assert_int_eq(g->n_pos, 9);
  ck_assert_int_eq(g->gen_ids[0], 432);
  golden_logits_free(g);
  remove(path);
  snprintf(cmd, sizeof cmd, "%s logits --prompt-ids '1 403 407' -n 2 -o /tmp/nllm-cli-%d.logits",
           nllm_bin, (int)getpid());
  ck_assert_int_eq(run(cmd, NULL, NULL), 0);
  remove(path);
  snprintf(cmd, sizeof cmd, "%s info", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert(strstr(out, "architecture: llama"));
  ck_assert(strstr(out, "token_embd.weight"));
  /* the file type and whether chat works without --chat-template */
  ck_assert_msg(strstr(out, "file type: F32\n") ||
                    strstr(out, "file type: not recorded (most weights F32)\n"),
                "%s", out);
  ck_assert_msg(strstr(out, "chat template: no"), "%s", out);
  free(out);
  char q4[1024];
  if (testdata_path(q4, sizeof q4, "golden/models/tiny-a-Q4_0.gguf")) {
    snprintf(cmd, sizeof cmd, "%s info -m %s", nllm_bin, q4);
    ck_assert_int_eq(run(cmd, &out, NULL), 0);
    ck_assert_msg(strstr(out, "file type: Q4_0\n"), "%s", out);
    free(out);
  }
  snprintf(cmd, sizeof cmd, "%s --help", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert(strstr(out, "tokenize") && strstr(out, "bench") && strstr(out, "chat"));
  free(out);
  snprintf(cmd, sizeof cmd, "%s run --help", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert(strstr(out, "--repeat-penalty"));
  free(out);
}
END_TEST

START_TEST(chat_reuses_cache) {
  char cmd[2048], *out;
  snprintf(cmd, sizeof cmd,
           "printf 'Hello\\nTell me more\\n' | %s chat --chat-template chatml -n 8 --temp 0",
           nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_int_gt((int)strlen(out), 4);
  free(out);
}
END_TEST

/* Runs cmd and returns its stderr (exit code in *rc). */
static char *stderr_of(const char *cmd, int *rc) {
  char full[4096], *out = NULL, *err = NULL;
  snprintf(full, sizeof full, "%s %s", nllm_bin, cmd);
  *rc = run(full, &out, &err);
  free(out);
  return err;
}

START_TEST(run_counts_and_limits) {
  char cmd[2048], *out, *err;
  /* BOS alone is the prompt, not a generated token */
  snprintf(cmd, sizeof cmd, "%s run -p '' -n 5 --ignore-eos", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  ck_assert_msg(strstr(err, "prompt: 1 tokens") && strstr(err, "generation: 5 tokens"), "%s", err);
  ck_assert_msg(strstr(err, "load: "), "load time: %s", err);
  free(out);
  free(err);
  /* -n -1 runs until the context is full: a normal end */
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n -1 -c 24 --ids", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  int ids[64];
  ck_assert_int_eq(parse_ids(out, ids, 64), 24 - 5 + 1);
  ck_assert_msg(strncmp(err, "nllm: error", 11) != 0, "%s", err);
  free(out);
  free(err);
  /* the error for a prompt that cannot fit names the sizes */
  int rc;
  err = stderr_of("run -p 'Once upon a time, there was a little girl' -c 8", &rc);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err, "does not fit"), "%s", err);
  free(err);
}
END_TEST

START_TEST(run_option_forms) {
  char cmd[2048], *a, *b;
  /* --opt=value, -s, and --seed give the same sampled text */
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 20 --temp=0.9 --seed=7", nllm_bin);
  ck_assert_int_eq(run(cmd, &a, NULL), 0);
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 20 --temp 0.9 -s 7", nllm_bin);
  ck_assert_int_eq(run(cmd, &b, NULL), 0);
  ck_assert_str_eq(a, b);
  free(b);
  /* the prompt from a pipe, and from -f - */
  snprintf(cmd, sizeof cmd, "printf 'Once upon a time' | %s run -n 20 --temp 0.9 -s 7", nllm_bin);
  ck_assert_int_eq(run(cmd, &b, NULL), 0);
  ck_assert_str_eq(a, b);
  free(b);
  snprintf(cmd, sizeof cmd,
           "printf 'Once upon a time' | %s run -f - -n 20 --temp=0.9 -s 7 --no-mmap", nllm_bin);
  ck_assert_int_eq(run(cmd, &b, NULL), 0);
  ck_assert_str_eq(a, b);
  free(a);
  free(b);
  /* -r / --stop: the text ends before the first stop string, which is not printed */
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 40 --temp 0 -r girl --stop Lily",
           nllm_bin);
  ck_assert_int_eq(run(cmd, &a, NULL), 0);
  ck_assert_str_eq(a, "Once upon a time, there was a little \n");
  free(a);
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 40 --temp 0 --stop=named", nllm_bin);
  ck_assert_int_eq(run(cmd, &a, NULL), 0);
  ck_assert_str_eq(a, "Once upon a time, there was a little girl \n");
  free(a);
#ifndef NLLM_CUDA
  /* -ngl without a GPU build: a warning, then a normal run */
  int rc;
  char *err = stderr_of("run -ngl 99 -p hi -n 2", &rc);
  ck_assert_int_eq(rc, 0);
  ck_assert_msg(strncmp(err, "nllm: warning: -ngl", 19) == 0, "%s", err);
  free(err);
#endif
}
END_TEST

START_TEST(bench_rows) {
  char cmd[2048], *out;
  /* -p 0: generation only (used to read an uninitialised token) */
  snprintf(cmd, sizeof cmd, "%s bench -p 0 -n 16 -r 1", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strstr(out, "tg16") && !strstr(out, "pp0"), "%s", out);
  free(out);
  /* sweeps: one JSON row per test and thread count, threads as used */
  snprintf(cmd, sizeof cmd, "%s bench -p 8,16 -n 4 -t 1,2 -r 2 --json --no-warmup", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  int rows = 0;
  for (char *l = out; (l = strstr(l, "{\"model\"")); l++) rows++;
  ck_assert_int_eq(rows, 6);
  ck_assert(strstr(out, "\"threads\": 1, \"test\": \"pp8\""));
  ck_assert(strstr(out, "\"threads\": 2, \"test\": \"tg4\""));
  ck_assert(strstr(out, "\"warmup\": false"));
  ck_assert_ptr_null(strstr(out, "\"threads\": 0"));
  free(out);
  /* without -t, the count used (all cores), not 0 */
  snprintf(cmd, sizeof cmd, "%s bench -p 4 -n 2 -r 1 --json", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_ptr_null(strstr(out, "\"threads\": 0"));
  ck_assert(strstr(out, "\"tokens_per_s_stddev\""));
  free(out);
  snprintf(cmd, sizeof cmd, "%s bench -p 4 -n 2 -r 3", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strstr(out, "± ") && strstr(out, "pp4") && strstr(out, "tg2"), "%s", out);
  free(out);
  /* --parallel: one row per sequence count, prompt and aggregate generation rates */
  snprintf(cmd, sizeof cmd, "%s bench --parallel 1,3 -p 5 -n 3 -t 1 -r 1 --json", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  rows = 0;
  for (char *l = out; (l = strstr(l, "\"test\": \"parallel\"")); l++) rows++;
  ck_assert_int_eq(rows, 2);
  ck_assert_msg(strstr(out, "\"n_seq\": 3, \"n_prompt\": 5, \"n_gen\": 3") &&
                    strstr(out, "\"tg_tokens_per_s\": ") && strstr(out, "\"pp_tokens_per_s\": "),
                "%s", out);
  ck_assert_ptr_null(strstr(out, "\"tg_tokens_per_s\": 0.000"));
  ck_assert_msg(strstr(out, "\"pp_cpu_ms_per_token\": ") && strstr(out, "\"tg_cpu_ms_per_token\": "),
                "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s bench --parallel 2 -p 4 -n 2 -r 1", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strstr(out, "| sequences |") && strstr(out, "|         2 |"), "%s", out);
  free(out);
}
END_TEST

/* The bundled model when run outside the tree: every place looked at is named, and the data dir
 * compiled in follows PREFIX (main.o is rebuilt when PREFIX changes). */
START_TEST(default_model_paths) {
  char cmd[2048], *out, *err;
  char bin[1024];
  ck_assert_ptr_nonnull(realpath(nllm_bin, bin));
  snprintf(cmd, sizeof cmd, "cd /tmp && %s run -p hi -n 1", bin);
  int rc = run(cmd, &out, &err);
  if (rc == 0) { /* an installed copy under the data dir: nothing to check */
    free(out);
    free(err);
    return;
  }
  ck_assert_msg(strstr(err, "models/stories260K.gguf") && strstr(err, "share/nativellm"), "%s",
                err);
  free(out);
  free(err);
  const char *b = getenv("NLLM_BUILD");
  snprintf(cmd, sizeof cmd,
           "make -n PREFIX=/nonexistent/nllm-prefix-test BUILD=%s %s/obj/tools/nllm/main.o",
           b && *b ? b : "build", b && *b ? b : "build");
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strstr(out, "/nonexistent/nllm-prefix-test/share/nativellm") &&
                    strstr(out, "tools/nllm/main.c"),
                "main.o not rebuilt for a new PREFIX: %s", out);
  free(out);
}
END_TEST

START_TEST(chat_checks_template_first) {
  int rc;
  /* stories260K has no chat template: refused before reading any message */
  char *err = stderr_of("chat -n 2", &rc);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err, "chat template") && strstr(err, "chatml"), "%s", err);
  free(err);
  err = stderr_of("chat --chat-template zephyr", &rc);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err, "zephyr") && strstr(err, "llama3"), "%s", err);
  free(err);
}
END_TEST

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

START_TEST(chat_long_line_is_one_turn) {
  /* 20000 bytes with a two-byte character across the 16 KiB mark, then /exit */
  char path[128], cmd[2048], *out;
  snprintf(path, sizeof path, "/tmp/nllm-cli-chat-%d.txt", (int)getpid());
  FILE *f = fopen(path, "w");
  static const char words[] = "Once upon a time ";
  for (int i = 0; i < 16383; i++) fputc(words[i % 17], f);
  fputs("\xc3\xa9", f);
  for (int i = 0; i < 3615; i++) fputc(words[i % 17], f);
  fputs("\nHello\n/exit\nnot read\n", f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s chat --chat-template chatml -n 1 --temp 0 -c 16384 < %s", nllm_bin,
           path);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  remove(path);
  /* one line per reply: two turns, each a one-token reply */
  ck_assert_msg(count_lines(out) == 2, "%d replies: '%s'", count_lines(out), out);
  free(out);
}
END_TEST

START_TEST(chat_drops_oldest_turns) {
  /* a context far smaller than the conversation: the chat goes on instead of failing */
  char cmd[2048], *out, *err;
  snprintf(cmd, sizeof cmd,
           "printf 'Tell me a story about a dog\\nAnd a cat\\nAnd a bird\\nAnd a fish\\n' | %s "
           "chat --chat-template chatml -n 24 --temp 0 -c 96 --system 'You are kind'",
           nllm_bin);
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  ck_assert_msg(strncmp(err, "nllm: error", 11) != 0, "%s", err);
  free(out);
  free(err);
  /* /clear forgets the conversation: the same question gets the same reply */
  snprintf(cmd, sizeof cmd,
           "printf 'Hello\\n/clear\\nHello\\n' | %s chat --chat-template chatml -n 6 --temp 0",
           nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  char *nl = strchr(out, '\n');
  ck_assert_ptr_nonnull(nl);
  ck_assert_msg(!strncmp(out, nl + 1, (size_t)(nl - out + 1)), "%s", out);
  free(out);
}
END_TEST

/* Ctrl-C stops the reply in progress; the chat goes on with the next message. */
START_TEST(chat_ctrl_c_stops_the_reply) {
  int in[2], outp[2];
  ck_assert_int_eq(pipe(in), 0);
  ck_assert_int_eq(pipe(outp), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(outp[1], 1);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    close(in[1]);
    close(outp[0]);
    execl(nllm_bin, nllm_bin, "chat", "--chat-template", "chatml", "-n", "-1", "--ignore-eos", "-c",
          "30000", "--temp", "0", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(outp[1]);
  ck_assert_int_eq(write(in[1], "Hello\n", 6), 6);
  char buf[4096];
  ssize_t n = read(outp[0], buf, sizeof buf); /* the reply has started */
  ck_assert_int_gt(n, 0);
  kill(pid, SIGINT);
  ck_assert_int_eq(write(in[1], "/exit\n", 6), 6);
  close(in[1]);
  while (read(outp[0], buf, sizeof buf) > 0) {
  }
  close(outp[0]);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}
END_TEST

/* Reads from fd into buf (appending, NUL-terminated) until it holds `want` count times or 20 s
 * pass. Returns 1 when found. */
static int read_until(int fd, char *buf, size_t cap, const char *want, int count) {
  size_t len = strlen(buf);
  for (int waited = 0; waited < 2000; waited++) {
    int seen = 0;
    for (const char *p = buf; (p = strstr(p, want)); p++) seen++;
    if (seen >= count) return 1;
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    struct timeval tv = {0, 10000};
    if (select(fd + 1, &rd, NULL, NULL, &tv) <= 0) continue;
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n <= 0) return 0;
    len += (size_t)n;
    buf[len] = 0;
  }
  return 0;
}

/* On a terminal: the banner, history (the up arrow recalls a message), and Ctrl-C at the prompt
 * ends the chat. */
START_TEST(chat_on_a_terminal) {
  int master;
  pid_t pid = forkpty(&master, NULL, NULL, NULL);
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    execl(nllm_bin, nllm_bin, "chat", "--chat-template", "chatml", "-n", "4", "--temp", "0",
          (char *)NULL);
    _exit(127);
  }
  static char out[65536];
  out[0] = 0;
  ck_assert_msg(read_until(master, out, sizeof out, "> ", 1), "no prompt: '%s'", out);
  ck_assert_msg(strstr(out, "/exit"), "no banner: '%s'", out);
  usleep(300000); /* the prompt is out before libedit has the terminal in its mode */
  ck_assert_int_eq(write(master, "Hello\r", 6), 6);
  ck_assert_msg(read_until(master, out, sizeof out, "> ", 2), "no reply: '%s'", out);
  /* the reply: the line before the second prompt (and the prompt after it) */
  const char *p2 = strstr(strstr(out, "> ") + 2, "> ");
  const char *r = p2 - 2;
  while (r > out && r[-1] != '\n') r--;
  char want[512];
  snprintf(want, sizeof want, "%.*s> ", (int)(p2 - r), r);
  if (!strstr(out, "Up arrow")) {
    fprintf(stderr, "SKIP: chat history (this nllm was built without libedit)\n");
  } else {
    ck_assert_int_eq(write(master, "/clear\r", 7), 7);
    ck_assert_msg(read_until(master, out, sizeof out, "cleared", 1), "no /clear: '%s'", out);
    usleep(300000);
    /* two steps back in the history is "Hello"; a cleared chat answers it as the first time */
    ck_assert_int_eq(write(master, "\x1b[A\x1b[A\r", 7), 7);
    ck_assert_msg(read_until(master, out, sizeof out, want, 2),
                  "the up arrow did not recall 'Hello' (reply '%s'): '%s'", want, out);
  }
  /* Ctrl-C at the prompt ends the chat. The prompt is on screen a moment before the chat is
   * back in its line reader (much longer under a sanitizer), and a Ctrl-C in that window only
   * stops the (finished) reply, so it is repeated, a bounded number of times. */
  int status = 0, done = 0;
  for (int i = 0; i < 20 && !done; i++) {
    ck_assert_int_eq(kill(pid, SIGINT), 0);
    for (int w = 0; w < 50 && !done; w++) {
      if (waitpid(pid, &status, WNOHANG) == pid)
        done = 1;
      else
        usleep(20000);
    }
  }
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  close(master);
  ck_assert_msg(done, "Ctrl-C at the prompt did not end the chat: '%s'", out);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: '%s'", status, out);
}
END_TEST

int main(void) {
  cli_setup();
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("cli");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, run_greedy_ids_golden);
  tcase_add_test(tc, tokenize_formats);
  tcase_add_test(tc, errors_are_one_line);
  tcase_add_test(tc, logits_and_info);
  tcase_add_test(tc, chat_reuses_cache);
  tcase_add_test(tc, run_counts_and_limits);
  tcase_add_test(tc, run_option_forms);
  tcase_add_test(tc, bench_rows);
  tcase_add_test(tc, default_model_paths);
  tcase_add_test(tc, chat_checks_template_first);
  tcase_add_test(tc, chat_long_line_is_one_turn);
  tcase_add_test(tc, chat_drops_oldest_turns);
  tcase_add_test(tc, chat_ctrl_c_stops_the_reply);
  tcase_add_test(tc, chat_on_a_terminal);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
