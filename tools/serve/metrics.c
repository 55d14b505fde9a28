/* /metrics in Prometheus' text format. Names follow the gauges an inference gateway reads to
 * pick a replica (queue length, running requests, KV cache use) plus the latency histograms. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

const double srv_hist_bounds[SRV_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,    1,     2.5,  5,     10,   30};

void srv_hist_observe(srv_hist *h, double v) {
  h->count++;
  h->sum += v;
  for (int i = 0; i < SRV_HIST_BUCKETS; i++)
    if (v <= srv_hist_bounds[i]) h->bucket[i]++;
}

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q, b->cap = cap;
  }
}

static void metric(sbuf *b, const char *name, const char *type, const char *help, double v) {
  add(b, "# HELP nllm_%s %s\n# TYPE nllm_%s %s\nnllm_%s %.17g\n", name, help, name, type, name, v);
}

static void hist(sbuf *b, const char *name, const char *help, const srv_hist *h) {
  add(b, "# HELP nllm_%s %s\n# TYPE nllm_%s histogram\n", name, help, name);
  for (int i = 0; i < SRV_HIST_BUCKETS; i++)
    add(b, "nllm_%s_bucket{le=\"%g\"} %llu\n", name, srv_hist_bounds[i],
        (unsigned long long)h->bucket[i]);
  add(b, "nllm_%s_bucket{le=\"+Inf\"} %llu\nnllm_%s_sum %.9g\nnllm_%s_count %llu\n", name,
      (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

char *srv_metrics_text(const srv_stats *st, int ready) {
  sbuf b = {malloc(4096), 0, 4096, 0};
  if (!b.p) return NULL;
  metric(&b, "ready", "gauge", "1 when the model is loaded and requests are served", ready);
  metric(&b, "requests_running", "gauge", "requests holding a slot", st->running);
  metric(&b, "requests_waiting", "gauge", "requests queued for a slot", st->waiting);
  metric(&b, "slots", "gauge", "parallel sequences (-np)", st->n_slots);
  metric(&b, "kv_cache_usage_ratio", "gauge",
         "KV cache positions held by running requests over all positions",
         st->kv_total ? (double)st->kv_used / (double)st->kv_total : 0.0);
  metric(&b, "kv_cache_tokens", "gauge", "KV cache positions held by running requests",
         (double)st->kv_used);
  metric(&b, "kv_cache_cells_used", "gauge",
         "KV pool cells holding data (shared prefixes once, idle slots' caches included)",
         (double)st->kv_cells);
  metric(&b, "prompt_tokens_total", "counter", "prompt tokens of admitted requests",
         (double)st->prompt_tokens);
  metric(&b, "prompt_tokens_cached_total", "counter",
         "prompt tokens reused from the prefix cache instead of evaluated",
         (double)st->cached_prompt_tokens);
  metric(&b, "generation_tokens_total", "counter", "tokens generated", (double)st->gen_tokens);
  add(&b,
      "# HELP nllm_requests_total requests that ended, by outcome\n"
      "# TYPE nllm_requests_total counter\n");
  add(&b, "nllm_requests_total{outcome=\"ok\"} %llu\n", (unsigned long long)st->requests_ok);
  add(&b, "nllm_requests_total{outcome=\"cancelled\"} %llu\n",
      (unsigned long long)st->requests_cancelled);
  add(&b, "nllm_requests_total{outcome=\"failed\"} %llu\n",
      (unsigned long long)st->requests_failed);
  add(&b, "nllm_requests_total{outcome=\"rejected\"} %llu\n",
      (unsigned long long)st->requests_rejected);
  metric(&b, "decode_steps_total", "counter",
         "decode steps run (one batch of every running request's next token or prompt chunk)",
         (double)st->steps);
  metric(&b, "decode_step_seconds_total", "counter",
         "time the scheduler spent in decode steps: evaluation, sampling and text", st->step_s);
  metric(&b, "decode_gap_seconds_total", "counter",
         "time between the end of a decode step and the start of the next when no wait for "
         "requests came between: publishing, waking readers, admitting requests",
         st->gap_s);
  hist(&b, "time_to_first_token_seconds", "time from arrival to the first generated token",
       &st->ttft);
  hist(&b, "time_per_output_token_seconds", "mean time between generated tokens of a request",
       &st->tpot);
  hist(&b, "request_duration_seconds", "time from arrival to the last token", &st->e2e);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}
