/* Soak: generate N tokens (default 20,000) on one context of the bundled model with periodic
 * rewinds, resets and streamed generate calls, and check that resident memory stays flat.
 * RSS comes from /proc/self/statm after a warm-up (so first-touch pages of the mapped model and
 * the KV cache are counted on both sides). Exit status 1 if RSS grew by more than 1 MiB, unless
 * NLLM_SOAK_NO_RSS_CHECK is set (valgrind and ASan hold freed blocks back, so RSS means little
 * there; their own leak reports are the check).
 * Usage: soak [N_TOKENS] [MODEL]   (`make soak`; `make soak-valgrind` for memcheck) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nativellm.h"

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (!f) return -1;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int fail(const char *what, nllm_status st) {
  fprintf(stderr, "soak: %s: %s (%s)\n", what, nllm_status_name(st), nllm_last_error());
  return 1;
}

static int32_t count_pieces(nllm_token t, const char *piece, int32_t len, void *ud) {
  (void)t;
  (void)piece;
  *(long *)ud += len;
  return 0;
}

/* One unit of work: decode + sample + accept, rewinding when the context is nearly full or on
 * a fixed period, with a streamed generate call now and then. Returns tokens generated. */
static int run(nllm_context *c, nllm_sampler *s, const nllm_model *m, long target, long *bytes) {
  const int32_t n_ctx = nllm_context_n_ctx(c);
  long done = 0, step = 0;
  nllm_token prompt[3] = {nllm_model_token(m, NLLM_TOKEN_BOS), 403, 407};
  nllm_status st = nllm_decode(c, prompt, 3);
  if (st) return fail("decode prompt", st), -1;
  char piece[128];
  while (done < target) {
    step++;
    nllm_token t;
    if ((st = nllm_sampler_sample(s, c, &t))) return fail("sample", st), -1;
    nllm_sampler_accept(s, t);
    int32_t n;
    if (nllm_token_to_piece(m, t, 0, piece, sizeof piece, &n) == NLLM_OK) *bytes += n;
    if (nllm_context_pos(c) >= n_ctx - 1 || step % 97 == 0) {
      /* Keep a prefix of varying length, then re-decode one token so logits exist. */
      int32_t keep =
          1 + (int32_t)(step * 7919 % (nllm_context_pos(c) > 1 ? nllm_context_pos(c) - 1 : 1));
      if ((st = nllm_context_rewind(c, keep))) return fail("rewind", st), -1;
    }
    if ((st = nllm_decode(c, &t, 1))) return fail("decode", st), -1;
    done++;
    if (step % 2500 == 0) {
      /* A chat-like turn: streamed generation after what the cache holds, then a reset. */
      nllm_generate_params gp;
      nllm_generate_params_init(&gp);
      gp.max_tokens = 40;
      gp.stop_at_eog = 0;
      gp.on_token = count_pieces;
      gp.user_data = bytes;
      int32_t n_gen = 0;
      if (nllm_context_pos(c) + 60 >= n_ctx) nllm_context_rewind(c, 8);
      st = nllm_generate(c, s, " and then", -1, &gp, &n_gen);
      if (st) return fail("generate", st), -1;
      done += n_gen;
      nllm_context_reset(c);
      nllm_sampler_reset(s, (uint64_t)step);
      if ((st = nllm_decode(c, prompt, 3))) return fail("decode prompt", st), -1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  long n_tokens = argc > 1 ? atol(argv[1]) : 20000;
  const char *path = argc > 2 ? argv[2] : "models/stories260K.gguf";
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(path, NULL, &m);
  if (st) return fail(path, st);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 256;
  cp.n_threads = 1;
  nllm_context *c = NULL;
  if ((st = nllm_context_create(m, &cp, &c))) return fail("context", st);
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.seed = 42;
  nllm_sampler *s = NULL;
  if ((st = nllm_sampler_create(m, &sp, &s))) return fail("sampler", st);

  long bytes = 0;
  long warm = n_tokens / 10 < 2600 ? n_tokens / 10 : 2600;
  if (run(c, s, m, warm > 0 ? warm : 1, &bytes)) return 1;
  nllm_context_reset(c);
  long before = rss_kib();
  double t0 = (double)clock();
  if (run(c, s, m, n_tokens, &bytes)) return 1;
  double secs = ((double)clock() - t0) / CLOCKS_PER_SEC;
  long after = rss_kib();
  printf(
      "soak: %ld tokens (+%ld warm-up) with rewinds every 97 steps and at n_ctx %d, "
      "generate+reset every 2500; %ld bytes of text; %.1f s CPU\n",
      n_tokens, warm, cp.n_ctx, bytes, secs);
  printf("soak: RSS before %ld KiB, after %ld KiB, growth %ld KiB\n", before, after,
         after - before);
  nllm_sampler_free(s);
  nllm_context_free(c);
  nllm_model_free(m);
  if (after - before > 1024 && !getenv("NLLM_SOAK_NO_RSS_CHECK")) {
    fprintf(stderr, "soak: FAILED: resident memory grew by %ld KiB\n", after - before);
    return 1;
  }
  return 0;
}
