/* nllm serve: options, start-up order (listen first so /health can say "loading"), and the
 * drain on SIGTERM/SIGINT: stop accepting, let running requests finish up to the drain
 * timeout, exit 0. A second signal stops at once. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../nllm/nllm.h"
#include "serve.h"

/* Options of nllm run that apply to serving; the serve-only ones are parsed below. */
#define SERVE_COMMON_OPTS                                                                  \
  "-m --quantize -n --gpu -ngl -t -c -b --seed --temp --top-k --top-p --min-p "            \
  "--repeat-penalty --repeat-last-n --chat-template --chat-template-file --kv-f32 --mmap " \
  "--no-repack "                                                                           \
  "--lora --lora-scaled --lora-type --bf16-act --no-bf16-act"

static void usage(void) {
  printf(
      "usage: nllm serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [-np N] [-c CTX] ...\n"
      "An OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/embeddings,\n"
      "/v1/models, /tokenize, /detokenize, /health, /metrics, /lora-adapters and a chat page at\n"
      "/. See docs/server.md. LoRA adapters (--lora, --lora-scaled) are loaded at start; a\n"
      "request sets their scales with \"lora\": [{\"id\": 0, \"scale\": 0.5}].\n\n"
      "server options:\n"
      "  --host ADDR       address to bind (default 127.0.0.1; 0.0.0.0 for every interface)\n"
      "  --port N          TCP port (default 8080; 0 picks a free one, printed at start)\n"
      "  -np, --parallel N requests generating at once (slots; default 4)\n"
      "  --alias NAME      model id clients use (default: the model file's name)\n"
      "  --api-key KEY     require 'Authorization: Bearer KEY'\n"
      "  --api-key-file F  the same with the key read from file F (first line)\n"
      "  --queue N         requests that may wait for a slot before 429 (default 64)\n"
      "  --timeout S       drop idle or too slow connections after S seconds (default 600)\n"
      "  --header-timeout S  drop a connection whose request line and headers take longer\n"
      "                    than S seconds (slow-loris; default 30, at most --timeout)\n"
      "  --max-conns N     open connections at most (default: np + queue + 64)\n"
      "  --max-body N      request body limit in bytes (default 4194304)\n"
      "  --drain S         on SIGTERM, wait up to S seconds for running requests (default 30)\n"
      "  -n N              default max_tokens when a request gives none (default: fill the\n"
      "                    context)\n"
      "  -c N              context length of each slot\n"
      "  -b N              prompt chunk: tokens evaluated per slot per step (default 256)\n\n");
  cli_print_options(SERVE_COMMON_OPTS);
}

static int serve_int(const char *opt, const char *v, long long lo, long long hi, int *out) {
  long long x;
  if (!cli_int(opt, v, lo, hi, &x)) return 0;
  *out = (int)x;
  return 1;
}

static char *read_key_file(const char *path) {
  size_t len;
  char *k = cli_read_file(path, &len);
  if (!k) return NULL;
  k[strcspn(k, "\r\n")] = 0;
  return k;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  while (s && !s[1] && s > p) { /* a folder given with a trailing slash */
    const char *q = s - 1;
    while (q > p && *q != '/') q--;
    return *q == '/' ? q + 1 : q;
  }
  return s ? s + 1 : p;
}

int cmd_serve(int argc, char **argv) {
  srv_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 8080;
  cfg.timeout_s = 600;
  cfg.header_timeout_s = 30;
  cfg.max_body = 4u << 20;
  cfg.drain_s = 30;
  int n_slots = 4, queue = 64, max_conns = -1, max_body = -1;
  const char *key_file = NULL;
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  if (!rest) return cli_error("out of memory");
  int nrest = 0;
  rest[nrest++] = argv[0];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = 1, used = 1;
    if (!strcmp(a, "--host"))
      ok = v != NULL, cfg.host = v;
    else if (!strcmp(a, "--port"))
      ok = serve_int(a, v, 0, 65535, &cfg.port);
    else if (!strcmp(a, "-np") || !strcmp(a, "--parallel"))
      ok = serve_int(a, v, 1, 1024, &n_slots);
    else if (!strcmp(a, "--alias"))
      ok = v != NULL, cfg.alias = v;
    else if (!strcmp(a, "--api-key"))
      ok = v && *v, cfg.api_key = v;
    else if (!strcmp(a, "--api-key-file"))
      ok = v != NULL, key_file = v;
    else if (!strcmp(a, "--queue"))
      ok = serve_int(a, v, 0, 1 << 20, &queue);
    else if (!strcmp(a, "--timeout"))
      ok = serve_int(a, v, 1, 86400, &cfg.timeout_s);
    else if (!strcmp(a, "--header-timeout"))
      ok = serve_int(a, v, 1, 86400, &cfg.header_timeout_s);
    else if (!strcmp(a, "--max-conns"))
      ok = serve_int(a, v, 1, 1 << 16, &max_conns);
    else if (!strcmp(a, "--max-body"))
      ok = serve_int(a, v, 1024, 1 << 30, &max_body);
    else if (!strcmp(a, "--drain"))
      ok = serve_int(a, v, 0, 86400, &cfg.drain_s);
    else
      used = 0;
    if (!used) {
      rest[nrest++] = argv[i];
      continue;
    }
    if (!ok) {
      free(rest);
      return v ? 1 : cli_error("option %s needs a value", a);
    }
    i++;
  }
  cli_opts o;
  int bad = cli_parse(nrest, rest, SERVE_COMMON_OPTS, &o);
  free(rest);
  if (bad) return 1;
  if (o.help) {
    usage();
    return 0;
  }
  if (cfg.api_key && key_file) return cli_error("give either --api-key or --api-key-file");
  char *key_buf = NULL;
  if (key_file) {
    if (!(key_buf = read_key_file(key_file)) || !*key_buf) {
      free(key_buf);
      return cli_error("cannot read an API key from '%s'", key_file);
    }
    cfg.api_key = key_buf;
  }
  char *tmpl_file = NULL; /* --chat-template-file: its text replaces --chat-template */
  if (o.chat_template_file) {
    size_t len = 0;
    if (!(tmpl_file = cli_read_file(o.chat_template_file, &len)) || strlen(tmpl_file) != len) {
      free(tmpl_file);
      free(key_buf);
      return cli_error("--chat-template-file: cannot read '%s' as text", o.chat_template_file);
    }
    o.chat_template = tmpl_file;
  }
  if (max_body > 0) cfg.max_body = (size_t)max_body;
  cfg.max_conns = max_conns > 0 ? max_conns : n_slots + queue + 64;
  cfg.chat_template = o.chat_template;
  cfg.default_max_tokens = o.n > 0 ? (int)o.n : -1;
  cli_sampler_params(&o, &cfg.sp);
  const char *model_path = o.model ? o.model : cli_default_model();
  if (!cfg.alias) cfg.alias = base_name(model_path);

  /* Signals are taken by sigtimedwait below: blocked before any thread starts so every thread
   * inherits the mask. A client hanging up must not kill the server with SIGPIPE. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  int rc = 1;
  srv_http *http = NULL;
  srv_sched *sched = NULL;
  srv_embed *embed = NULL;
  nllm_model *model = NULL;
  cli_lora lora = {0};
  if (srv_http_start(&cfg, &http)) goto out;
  if (!(model = cli_load_model(&o, 0, 0))) goto out;
  if (!cfg.chat_template && !nllm_model_is_encoder(model)) {
    nllm_chat_message probe = {"user", "hi"};
    int32_t need = 0;
    nllm_status st = nllm_chat_format(model, &probe, 1, 1, NULL, 0, &need);
    if (st == NLLM_ERR_UNSUPPORTED) {
      fprintf(stderr, "nllm serve: warning: %s; chat requests use the chatml template\n",
              nllm_last_error());
      cfg.chat_template = "chatml";
    }
  }
  if (srv_embed_create(model, (int)o.threads, cli_bf16_act(&o), &embed)) {
    cli_error("out of memory");
    goto out;
  }
  srv_http_set_embed(http, embed);
  if (nllm_model_is_encoder(model)) {
    /* an encoder generates nothing: no slots, /v1/embeddings only */
    if (o.n_lora) {
      cli_error("LoRA adapters apply to generation; '%s' is an encoder (embeddings only)",
                cfg.alias);
      goto out;
    }
    srv_http_set_ready(http, model, NULL, cfg.chat_template);
    fprintf(stderr, "nllm serve: ready: model '%s' (an encoder: /v1/embeddings only)\n", cfg.alias);
  } else {
    if (!cli_lora_load(&o, model, &lora)) goto out;
    srv_http_set_lora(http, o.lora, lora.a, lora.scale, lora.n);
    srv_sched_params spp = {.n_slots = n_slots,
                            .n_ctx = (int)o.ctx,
                            .n_threads = (int)o.threads,
                            .n_batch = o.batch > 0 ? (int)o.batch : 256,
                            .queue_max = queue,
                            .kv_f32 = o.kv_f32,
                            .bf16_act = cli_bf16_act(&o),
                            .lora = lora.a,
                            .lora_scale = lora.scale,
                            .n_lora = lora.n};
    if (srv_sched_create(model, &spp, &sched)) {
      cli_error("cannot create %d slots of context %lld", n_slots, o.ctx);
      goto out;
    }
    srv_http_set_ready(http, model, sched, cfg.chat_template);
    for (int k = 0; k < lora.n; k++)
      fprintf(stderr, "nllm serve: LoRA adapter %d: %s (rank %d, %s) at scale %g\n", k, o.lora[k],
              nllm_lora_adapter_rank(lora.a[k]), cli_lora_type_name(lora.a[k]),
              (double)lora.scale[k]);
    fprintf(stderr, "nllm serve: ready: model '%s', %d slots of %d tokens\n", cfg.alias, n_slots,
            srv_sched_n_ctx(sched));
  }

  int sig;
  do sig = sigwaitinfo(&sigs, NULL);
  while (sig < 0 && errno == EINTR);
  fprintf(stderr, "nllm serve: %s: draining (up to %d s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
          cfg.drain_s);
  srv_http_quiesce(http);
  struct timespec tick = {0, 50 * 1000000L};
  double deadline = srv_now() + cfg.drain_s;
  for (;;) {
    int running = 0, waiting = 0;
    if (sched) srv_sched_load(sched, &running, &waiting);
    if (!running && !waiting && !srv_http_in_flight(http)) break;
    if (srv_now() > deadline) {
      fprintf(stderr, "nllm serve: drain timeout: %d requests cut short\n", running + waiting);
      break;
    }
    if (sigtimedwait(&sigs, NULL, &tick) > 0) {
      fprintf(stderr, "nllm serve: second signal: stopping now\n");
      break;
    }
  }
  rc = 0;
out:
  srv_sched_shutdown(sched);
  srv_http_stop(http);
  srv_sched_free(sched);
  cli_lora_free(&lora);
  srv_embed_free(embed);
  nllm_model_free(model);
  free(key_buf);
  free(tmpl_file);
  if (rc == 0) fprintf(stderr, "nllm serve: stopped\n");
  return rc;
}
