/* The HTTP front end on libmicrohttpd: routing, limits, the API key, and the bridge between a
 * connection and its job. Each connection has its own thread (MHD's thread-per-connection
 * mode), so waiting for tokens blocks only that connection; the scheduler never waits on a
 * socket. While it waits, the thread watches its socket, and a client that hangs up cancels its
 * job at once, which frees the slot for the next request. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

/* A connection whose request headers are still arriving: libmicrohttpd's own timeout only
 * counts idle time, so a client that sends a header byte now and then would hold its
 * connection (and thread) forever. The watchdog shuts such a socket down once the headers have
 * taken longer than header_timeout_s. */
typedef struct conn_track {
  struct conn_track *prev, *next;
  int fd;
  double t_start; /* when the current request began to arrive */
  int in_request; /* headers complete: the request is being served */
  int killed;
} conn_track;

struct srv_http {
  struct MHD_Daemon *d;
  pthread_mutex_t conns_mu;
  conn_track conns; /* list head */
  pthread_t watchdog;
  int watchdog_started;
  atomic_int stopping;
  srv_config cfg;
  srv_api api;
  srv_sched *sched; /* NULL for an encoder (embeddings only) */
  srv_embed *embed;
  atomic_int ready, draining, in_flight;
  long long started;
};

enum route {
  R_NONE,
  R_PAGE,
  R_HEALTH,
  R_METRICS,
  R_MODELS,
  R_CHAT,
  R_COMPLETIONS,
  R_TOKENIZE,
  R_DETOKENIZE,
  R_LORA,
  R_EMBEDDINGS
};

static const struct {
  const char *path;
  const char *method;
  enum route r;
} routes[] = {
    {"/", "GET", R_PAGE},
    {"/index.html", "GET", R_PAGE},
    {"/health", "GET", R_HEALTH},
    {"/v1/health", "GET", R_HEALTH},
    {"/metrics", "GET", R_METRICS},
    {"/v1/models", "GET", R_MODELS},
    {"/models", "GET", R_MODELS},
    {"/v1/chat/completions", "POST", R_CHAT},
    {"/chat/completions", "POST", R_CHAT},
    {"/v1/completions", "POST", R_COMPLETIONS},
    {"/completions", "POST", R_COMPLETIONS},
    {"/tokenize", "POST", R_TOKENIZE},
    {"/detokenize", "POST", R_DETOKENIZE},
    {"/lora-adapters", "GET", R_LORA},
    {"/v1/embeddings", "POST", R_EMBEDDINGS},
    {"/embeddings", "POST", R_EMBEDDINGS},
};

typedef struct req_state {
  enum route route;
  int counted;
  char *body;
  size_t len, cap;
  int too_big, method_ok;
  double t_start;
} req_state;

/* ------------------------------------------------------------------ responses */

static enum MHD_Result send_buf(struct MHD_Connection *c, int status, const char *type, char *buf,
                                size_t len, enum MHD_ResponseMemoryMode mode) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, mode);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, char *json) {
  if (!json) {
    static char oom[] =
        "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
        "\"param\":null,\"code\":null}}";
    return send_buf(c, 500, "application/json", oom, strlen(oom), MHD_RESPMEM_PERSISTENT);
  }
  return send_buf(c, status, "application/json", json, strlen(json), MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result send_error(struct MHD_Connection *c, const srv_error *e,
                                  const char *extra_header, const char *extra_value) {
  char *json = srv_error_json(e);
  if (!json) return send_json(c, 500, NULL);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(json);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  if (extra_header) MHD_add_response_header(r, extra_header, extra_value);
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)e->status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result fail(struct MHD_Connection *c, int status, const char *type,
                            const char *code, const char *msg) {
  srv_error e;
  srv_error_set(&e, status, type, NULL, code, "%s", msg);
  return send_error(c, &e, NULL, NULL);
}

/* ------------------------------------------------------------------ client liveness */

static int client_fd(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  return ci ? ci->connect_fd : -1;
}

/* The peer closed its end (or the socket broke): its request is abandoned. */
static int client_gone(int fd) {
  if (fd < 0) return 0;
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* ------------------------------------------------------------------ thread policy */

/* Connection threads run as SCHED_BATCH. A stream's thread is woken at every token by the
 * decoding thread, and Linux often queues it on the waker's core; a normal thread then preempts
 * the decoding thread there for its whole turn (building the chunk, the loopback send: 0.1-0.2
 * ms a token, 4-6% of a 3 ms step of the 110M model, seen with perf sched). A batch thread
 * never preempts on wake-up: it runs on an idle core if there is one, or waits for its fair
 * turn, which the tick gives it. Its share of the CPU is the same, and no privilege is needed.
 * Measured at one client under load (bench/serve_vs_llama.sh, gap_us): the time from the end
 * of one decode step to the start of the next fell from 1.5-2.6 ms to 0.46-0.96 ms. */
static void connection_thread_policy(void) {
#ifdef SCHED_BATCH
  static _Thread_local int set;
  if (set) return;
  set = 1;
  struct sched_param sp = {0};
  pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
}

/* ------------------------------------------------------------------ streaming */

typedef struct stream {
  srv_http *h;
  srv_job *job; /* the one being sent: jobs[cur] */
  srv_reply rp; /* rps[cur] */
  /* a list of prompts streams one job after the other, each chunk with its choice index */
  srv_job **jobs;
  srv_reply *rps;
  int n_jobs, cur;
  int fd;
  struct timespec check_at; /* when to look again whether the client is still there */
  int phase;                /* 0 opening chunk, 1 tokens, 2 usage, 3 [DONE], 4 end */
  size_t seen_len;
  int seen_lps, seen_seg;
  char *pend;
  size_t pend_len, pend_off;
  char *q[2 * 64 + 1]; /* events decided at once (a reply's tool calls), sent in order */
  int nq, iq;
} stream;

static void release_jobs(srv_http *h, srv_job **jobs, srv_reply *rps, int n) {
  for (int i = 0; i < n; i++) {
    srv_job_release(h->sched, jobs[i]);
    free(rps[i].echo);
  }
  free(jobs);
  free(rps);
}

static void stream_free(void *cls) {
  stream *s = cls;
  release_jobs(s->h, s->jobs, s->rps, s->n_jobs);
  free(s->pend);
  for (int i = s->iq; i < s->nq; i++) free(s->q[i]);
  free(s);
}

/* Queue "data: JSON\n\n" (takes json). */
static int stream_event(stream *s, char *json) {
  if (!json) return -1;
  size_t n = strlen(json);
  free(s->pend);
  s->pend = malloc(n + 9);
  if (!s->pend) {
    free(json);
    return -1;
  }
  memcpy(s->pend, "data: ", 6);
  memcpy(s->pend + 6, json, n);
  memcpy(s->pend + 6 + n, "\n\n", 3);
  s->pend_len = n + 8;
  s->pend_off = 0;
  free(json);
  return 0;
}

static void queue(stream *s, char *json) {
  if (s->nq < (int)(sizeof s->q / sizeof *s->q))
    s->q[s->nq++] = json;
  else
    free(json);
}

static char *content_chunk(stream *s, const char *text, size_t n, const srv_logprob *lps,
                           int n_lps) {
  return srv_api_chunk(&s->h->api, &s->rp, text, n, lps, n_lps, 0, NULL);
}

/* The closing chunk with the finish reason, or the error of a failed job (then no usage). */
static char *finish_event(stream *s) {
  srv_job *j = s->job;
  s->phase = 2;
  if (j->finish == SRV_FINISH_ERROR || j->cancelled) {
    srv_error e;
    srv_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                  j->error[0] ? j->error : "cancelled");
    s->phase = 3;
    return srv_error_json(&e);
  }
  return srv_api_chunk(&s->h->api, &s->rp, NULL, 0, NULL, 0, 0, srv_finish_name(j->finish));
}

/* A reply that may hold tool calls: content goes out while it surely is content; what is or
 * may become a call waits for the end, which decides between tool-call deltas ("tool_calls")
 * and the held text as content. 0 with an event queued, 1 when the reply is over (phase 2
 * next), -1 to abort. */
static int stream_tools_step(stream *s) {
  srv_sched *sc = s->h->sched;
  srv_job *j = s->job;
  for (;;) {
    srv_sched_lock(sc);
    size_t len = j->out_len;
    int n_lps = j->n_lps, done = j->done;
    /* what is surely content goes out first, one token's text a chunk as the plain path sends
     * it, however far the reader is behind (even when the reply is already over) */
    size_t end = srv_tools_content_end(&s->rp, j->out ? j->out : "", len);
    while (s->seen_seg < j->n_seg && j->seg_out[s->seen_seg] <= s->seen_len) s->seen_seg++;
    if (s->seen_seg < j->n_seg && j->seg_out[s->seen_seg] < end) end = j->seg_out[s->seen_seg];
    if (end > s->seen_len)
      done = 0;
    else if (done)
      end = len;
    int k = s->seen_lps;
    while (k < n_lps && (done || j->lps[k].text_end <= end)) k++;
    if (!done && end <= s->seen_len) {
      srv_sched_unlock(sc);
      if (client_gone(s->fd)) return -1;
      srv_job_wait(sc, j, len, done, 50);
      continue;
    }
    char *text = malloc(len - s->seen_len + 1);
    srv_logprob *lps = malloc((size_t)(k - s->seen_lps + 1) * sizeof *lps);
    char *all = done ? malloc(len + 1) : NULL;
    if (text && len > s->seen_len) memcpy(text, j->out + s->seen_len, len - s->seen_len);
    if (lps && k > s->seen_lps)
      memcpy(lps, j->lps + s->seen_lps, (size_t)(k - s->seen_lps) * sizeof *lps);
    if (all) {
      memcpy(all, j->out ? j->out : "", len);
      all[len] = 0;
    }
    srv_finish fin = j->finish;
    srv_sched_unlock(sc);
    if (!text || !lps || (done && !all)) {
      free(text), free(lps), free(all);
      return -1;
    }
    int n_new = k - s->seen_lps;
    s->seen_lps = k;
    if (!done) {
      size_t n = end - s->seen_len;
      s->seen_len = end;
      queue(s, content_chunk(s, text, n, lps, n_new));
      free(text), free(lps);
      return 0;
    }
    cJSON *calls = fin == SRV_FINISH_STOP ? srv_tools_parse(&s->rp, all) : NULL;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(calls, "tool_calls");
    if (arr) {
      const cJSON *c;
      int i = 0;
      cJSON_ArrayForEach(c, arr) {
        queue(s, srv_api_tool_chunk(&s->h->api, &s->rp, c, i, 1, lps, i ? 0 : n_new));
        queue(s, srv_api_tool_chunk(&s->h->api, &s->rp, c, i, 0, NULL, 0));
        i++;
      }
      queue(s, srv_api_chunk(&s->h->api, &s->rp, NULL, 0, NULL, 0, 0, "tool_calls"));
      s->phase = 2;
    } else {
      if (len > s->seen_len || n_new)
        queue(s, content_chunk(s, text, len - s->seen_len, lps, n_new));
      queue(s, finish_event(s));
    }
    s->seen_len = len;
    cJSON_Delete(calls);
    free(text), free(lps), free(all);
    return 0;
  }
}

/* Next event of the stream, waiting for tokens as needed; 1 at the end, -1 to abort. */
static int stream_next(stream *s) {
  srv_sched *sc = s->h->sched;
  srv_job *j = s->job;
  if (s->iq < s->nq) {
    char *ev = s->q[s->iq];
    s->q[s->iq++] = NULL;
    return stream_event(s, ev);
  }
  if (s->phase == 1 && s->rp.tools) {
    if (stream_tools_step(s)) return -1;
    return stream_next(s);
  }
  if (s->phase == 0) {
    s->phase = 1;
    if (s->rp.kind == SRV_REQ_CHAT)
      return stream_event(s, srv_api_chunk(&s->h->api, &s->rp, "", 0, NULL, 0, 1, NULL));
    if (s->rp.echo)
      return stream_event(
          s, srv_api_chunk(&s->h->api, &s->rp, s->rp.echo, strlen(s->rp.echo), NULL, 0, 0, NULL));
  }
  if (s->phase == 1 && !s->rp.tools) {
    for (;;) {
      srv_sched_lock(sc);
      /* One lock per token: the wait for it is under the lock that reads it. The client is
       * looked at when 50 ms pass without one; while tokens flow, a client that is gone makes
       * the next send fail, which ends the stream as well. */
      while (s->seen_seg == j->n_seg && j->out_len == s->seen_len && j->n_lps == s->seen_lps &&
             !j->done) {
        if (!srv_job_wait_locked(sc, j, &s->check_at)) continue;
        srv_sched_unlock(sc);
        if (client_gone(s->fd)) return -1;
        srv_deadline(&s->check_at, 50);
        srv_sched_lock(sc);
      }
      size_t len = j->out_len;
      int n_lps = j->n_lps, done = j->done;
      if (s->seen_seg < j->n_seg) { /* the next token's piece only */
        len = j->seg_out[s->seen_seg];
        n_lps = j->seg_lps[s->seen_seg++];
        done = 0;
      }
      char *text = NULL;
      srv_logprob *lps = NULL;
      if (len > s->seen_len) {
        text = malloc(len - s->seen_len);
        if (text && len > s->seen_len) memcpy(text, j->out + s->seen_len, len - s->seen_len);
      }
      if (n_lps > s->seen_lps) {
        lps = malloc((size_t)(n_lps - s->seen_lps) * sizeof *lps);
        if (lps) memcpy(lps, j->lps + s->seen_lps, (size_t)(n_lps - s->seen_lps) * sizeof *lps);
      }
      srv_sched_unlock(sc);
      if (len > s->seen_len || n_lps > s->seen_lps) {
        int rc = -1;
        if ((text || len == s->seen_len) && (lps || n_lps == s->seen_lps))
          rc = stream_event(s, srv_api_chunk(&s->h->api, &s->rp, text, len - s->seen_len, lps,
                                             n_lps - s->seen_lps, 0, NULL));
        free(text);
        free(lps);
        s->seen_len = len;
        s->seen_lps = n_lps;
        return rc;
      }
      if (done) break;
    }
  }
  if (s->phase == 1) return stream_event(s, finish_event(s));
  if (s->phase == 2 && s->cur + 1 < s->n_jobs) {
    /* the next prompt's choice */
    s->cur++;
    s->job = s->jobs[s->cur];
    s->rp = s->rps[s->cur];
    s->phase = 0;
    s->seen_len = 0;
    s->seen_lps = s->seen_seg = 0;
    return stream_next(s);
  }
  if (s->phase == 2) {
    s->phase = 3;
    if (s->rp.include_usage) {
      srv_job sum; /* the usage of all the request's prompts */
      memset(&sum, 0, sizeof sum);
      for (int i = 0; i < s->n_jobs; i++) {
        sum.n_prompt += s->jobs[i]->n_prompt;
        sum.n_gen += s->jobs[i]->n_gen;
        sum.n_cached += s->jobs[i]->n_cached;
      }
      return stream_event(s, srv_api_usage_chunk(&s->rp, &sum));
    }
  }
  if (s->phase == 3) {
    s->phase = 4;
    free(s->pend);
    s->pend = strdup("data: [DONE]\n\n");
    s->pend_len = s->pend ? strlen(s->pend) : 0;
    s->pend_off = 0;
    return s->pend ? 0 : -1;
  }
  return 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  stream *s = cls;
  while (s->pend_off >= s->pend_len) {
    int rc = stream_next(s);
    if (rc < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (rc > 0) return MHD_CONTENT_READER_END_OF_STREAM;
  }
  size_t n = s->pend_len - s->pend_off;
  if (n > max) n = max;
  memcpy(buf, s->pend + s->pend_off, n);
  s->pend_off += n;
  return (ssize_t)n;
}

/* ------------------------------------------------------------------ generation requests */

/* The whole reply of finished jobs: one choice per job (its prompt's index), usage summed. */
static char *batch_response(srv_http *h, srv_job **jobs, srv_reply *rps, int n) {
  if (n == 1) return srv_api_response(&h->api, &rps[0], jobs[0]);
  cJSON *all = NULL, *choices = NULL;
  int prompt = 0, gen = 0, cached = 0;
  for (int i = 0; i < n; i++) {
    char *txt = srv_api_response(&h->api, &rps[i], jobs[i]);
    cJSON *o = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    if (!o) {
      cJSON_Delete(all);
      return NULL;
    }
    prompt += jobs[i]->n_prompt, gen += jobs[i]->n_gen, cached += jobs[i]->n_cached;
    if (!all) {
      all = o;
      choices = cJSON_GetObjectItemCaseSensitive(all, "choices");
      continue;
    }
    cJSON *c = cJSON_DetachItemFromArray(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
    if (c) cJSON_AddItemToArray(choices, c);
    cJSON_Delete(o);
  }
  cJSON *u = cJSON_GetObjectItemCaseSensitive(all, "usage");
  cJSON_ReplaceItemInObjectCaseSensitive(u, "prompt_tokens", cJSON_CreateNumber(prompt));
  cJSON_ReplaceItemInObjectCaseSensitive(u, "completion_tokens", cJSON_CreateNumber(gen));
  cJSON_ReplaceItemInObjectCaseSensitive(u, "total_tokens", cJSON_CreateNumber(prompt + gen));
  cJSON_ReplaceItemInObjectCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"), "cached_tokens",
      cJSON_CreateNumber(cached));
  char *res = cJSON_PrintUnformatted(all);
  cJSON_Delete(all);
  return res;
}

static enum MHD_Result handle_generate(srv_http *h, struct MHD_Connection *c, req_state *st) {
  srv_request req;
  srv_error err;
  srv_req_kind kind = st->route == R_CHAT ? SRV_REQ_CHAT : SRV_REQ_COMPLETION;
  if (srv_parse_request(kind, st->body ? st->body : "", st->len, &req, &err)) {
    srv_request_free(&req);
    return send_error(c, &err, NULL, NULL);
  }
  int n = kind == SRV_REQ_COMPLETION ? req.n_prompts : 1;
  srv_job **jobs = calloc((size_t)n, sizeof *jobs);
  srv_reply *rps = calloc((size_t)n, sizeof *rps);
  if (!jobs || !rps) {
    free(jobs), free(rps);
    srv_request_free(&req);
    return send_json(c, 500, NULL);
  }
  int n_jobs = 0;
  for (int i = 0; i < n; i++) {
    if (kind == SRV_REQ_COMPLETION) srv_request_select_prompt(&req, i);
    if (srv_api_prepare(&h->api, &req, &jobs[i], &rps[i], &err)) {
      srv_request_free(&req);
      release_jobs(h, jobs, rps, n_jobs);
      return send_error(c, &err, NULL, NULL);
    }
    rps[i].index = i;
    if (i) { /* one response: the first prompt's id and time */
      memcpy(rps[i].id, rps[0].id, sizeof rps[i].id);
      rps[i].created = rps[0].created;
    }
    n_jobs++;
  }
  srv_request_free(&req);
  for (int i = 0; i < n_jobs; i++)
    if (srv_sched_submit(h->sched, jobs[i])) {
      /* all or none: the jobs already queued are cancelled with their release */
      release_jobs(h, jobs, rps, n_jobs);
      srv_error_set(&err, 429, "rate_limit_error", NULL, "overloaded",
                    "the server is busy: every slot is running and the queue is full");
      return send_error(c, &err, "Retry-After", "1");
    }
  int fd = client_fd(c);
  if (rps[0].stream) {
    stream *s = calloc(1, sizeof *s);
    if (!s) {
      release_jobs(h, jobs, rps, n_jobs);
      return send_json(c, 500, NULL);
    }
    s->h = h, s->jobs = jobs, s->rps = rps, s->n_jobs = n_jobs, s->fd = fd;
    srv_deadline(&s->check_at, 50);
    s->job = jobs[0], s->rp = rps[0];
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
    if (!r) {
      stream_free(s);
      return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
  }
  /* whole response: wait here (this connection's own thread), watching the client */
  srv_sched *sc = h->sched;
  for (int i = 0; i < n_jobs; i++)
    for (;;) {
      srv_sched_lock(sc);
      int done = jobs[i]->done;
      size_t len = jobs[i]->out_len;
      srv_sched_unlock(sc);
      if (done) break;
      if (client_gone(fd)) {
        release_jobs(h, jobs, rps, n_jobs);
        return MHD_NO;
      }
      srv_job_wait(sc, jobs[i], len, 0, 50);
    }
  enum MHD_Result ret;
  int failed = -1;
  for (int i = 0; i < n_jobs; i++)
    if (jobs[i]->finish == SRV_FINISH_ERROR) failed = i;
  if (failed >= 0) {
    srv_error_set(&err, 500, "server_error", NULL, NULL, "generation failed: %s",
                  jobs[failed]->error);
    ret = send_error(c, &err, NULL, NULL);
  } else {
    ret = send_json(c, 200, batch_response(h, jobs, rps, n_jobs));
  }
  release_jobs(h, jobs, rps, n_jobs);
  return ret;
}

/* ------------------------------------------------------------------ dispatch */

/* Equal-time comparison: the time taken does not depend on where the strings differ. */
static int key_equal(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < lb; i++) diff |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
  return diff == 0 && la > 0;
}

static int authorized(srv_http *h, struct MHD_Connection *c) {
  if (!h->cfg.api_key) return 1;
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!v || strncasecmp(v, "Bearer ", 7)) return 0;
  v += 7;
  while (*v == ' ') v++;
  return key_equal(v, h->cfg.api_key);
}

static enum MHD_Result dispatch(srv_http *h, struct MHD_Connection *c, req_state *st) {
  srv_error err;
  if (st->route == R_NONE)
    return fail(c, 404, "invalid_request_error", "not_found", "no such route");
  if (!st->method_ok)
    return fail(c, 405, "invalid_request_error", "method_not_allowed",
                "method not allowed on this route");
  if (st->too_big) {
    srv_error_set(&err, 413, "invalid_request_error", NULL, "request_too_large",
                  "the request body is over the limit of %zu bytes", h->cfg.max_body);
    return send_error(c, &err, NULL, NULL);
  }
  if (st->route == R_PAGE)
    return send_buf(c, 200, "text/html; charset=utf-8", (char *)srv_page_html,
                    strlen(srv_page_html), MHD_RESPMEM_PERSISTENT);
  int ready = atomic_load(&h->ready), draining = atomic_load(&h->draining);
  if (st->route == R_HEALTH) {
    if (ready && !draining) {
      static char ok[] = "{\"status\":\"ok\"}";
      return send_buf(c, 200, "application/json", ok, strlen(ok), MHD_RESPMEM_PERSISTENT);
    }
    return fail(c, 503, "unavailable_error", draining ? "draining" : "loading",
                draining ? "the server is shutting down" : "the model is loading");
  }
  if (st->route == R_METRICS) {
    srv_stats s;
    memset(&s, 0, sizeof s);
    if (ready && h->sched) srv_sched_stats(h->sched, &s);
    char *txt = srv_metrics_text(&s, ready && !draining);
    if (!txt) return send_json(c, 500, NULL);
    return send_buf(c, 200, "text/plain; version=0.0.4", txt, strlen(txt), MHD_RESPMEM_MUST_FREE);
  }
  if (!authorized(h, c))
    return fail(c, 401, "invalid_request_error", "invalid_api_key",
                "a valid API key is needed (Authorization: Bearer KEY)");
  if (!ready) return fail(c, 503, "unavailable_error", "loading", "the model is loading");
  if (draining) return fail(c, 503, "unavailable_error", "draining", "the server is shutting down");
  char *out = NULL;
  switch (st->route) {
    case R_MODELS: return send_json(c, 200, srv_api_models(&h->api, h->started));
    case R_LORA: return send_json(c, 200, srv_api_lora_adapters(&h->api));
    case R_TOKENIZE:
    case R_DETOKENIZE:
      out = st->route == R_TOKENIZE
                ? srv_api_tokenize(&h->api, st->body ? st->body : "", st->len, &err)
                : srv_api_detokenize(&h->api, st->body ? st->body : "", st->len, &err);
      return out ? send_json(c, 200, out) : send_error(c, &err, NULL, NULL);
    case R_EMBEDDINGS:
      out = srv_api_embeddings(h->embed, &h->api, st->body ? st->body : "", st->len, &err);
      return out ? send_json(c, 200, out) : send_error(c, &err, NULL, NULL);
    case R_CHAT:
    case R_COMPLETIONS:
      if (!h->sched)
        return fail(c, 400, "invalid_request_error", "model_not_generative",
                    "this model is an encoder: it gives embeddings (/v1/embeddings) only");
      return handle_generate(h, c, st);
    default: return fail(c, 404, "invalid_request_error", "not_found", "no such route");
  }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  srv_http *h = cls;
  req_state *st = *con_cls;
  if (!st) {
    connection_thread_policy();
    st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    *con_cls = st;
    st->t_start = srv_now();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) {
      pthread_mutex_lock(&h->conns_mu);
      ((conn_track *)ci->socket_context)->in_request = 1;
      pthread_mutex_unlock(&h->conns_mu);
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
      if (!strcmp(url, routes[i].path)) {
        st->route = routes[i].r;
        if (!strcmp(method, routes[i].method) ||
            (!strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET")))
          st->method_ok = 1;
      }
    if (st->route == R_CHAT || st->route == R_COMPLETIONS) {
      st->counted = 1;
      atomic_fetch_add(&h->in_flight, 1);
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > h->cfg.max_body) {
      /* answered before the body is read; MHD closes the connection after it */
      st->too_big = 1;
      return dispatch(h, c, st);
    }
    return MHD_YES;
  }
  if (*upload_data_size) {
    /* a client trickling its body is dropped once it has taken longer than the timeout */
    if (h->cfg.timeout_s > 0 && srv_now() - st->t_start > h->cfg.timeout_s) return MHD_NO;
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (st->too_big || st->len + n > h->cfg.max_body) {
      st->too_big = 1;
      return MHD_YES;
    }
    if (st->len + n + 1 > st->cap) {
      size_t cap = (st->len + n + 1) * 2;
      if (cap > h->cfg.max_body + 1) cap = h->cfg.max_body + 1;
      char *b = realloc(st->body, cap);
      if (!b) return MHD_NO;
      st->body = b, st->cap = cap;
    }
    memcpy(st->body + st->len, upload_data, n);
    st->len += n;
    st->body[st->len] = 0;
    return MHD_YES;
  }
  return dispatch(h, c, st);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  srv_http *h = cls;
  req_state *st = *con_cls;
  if (!st) return;
  if (st->counted) atomic_fetch_sub(&h->in_flight, 1);
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (ci && ci->socket_context) { /* keep-alive: the next request's headers are timed afresh */
    pthread_mutex_lock(&h->conns_mu);
    conn_track *t = ci->socket_context;
    t->in_request = 0;
    t->t_start = srv_now();
    pthread_mutex_unlock(&h->conns_mu);
  }
  free(st->body);
  free(st);
  *con_cls = NULL;
}

/* ------------------------------------------------------------------ life cycle */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  srv_http *h = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    conn_track *t = calloc(1, sizeof *t);
    if (!t) return; /* untracked: only MHD's own timeouts apply */
    t->fd = client_fd(c);
    t->t_start = srv_now();
    pthread_mutex_lock(&h->conns_mu);
    t->next = h->conns.next, t->prev = &h->conns;
    h->conns.next->prev = t;
    h->conns.next = t;
    pthread_mutex_unlock(&h->conns_mu);
    *socket_context = t;
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
    conn_track *t = *socket_context;
    pthread_mutex_lock(&h->conns_mu);
    t->prev->next = t->next;
    t->next->prev = t->prev;
    pthread_mutex_unlock(&h->conns_mu);
    free(t);
    *socket_context = NULL;
  }
}

static void *watchdog_main(void *arg) {
  srv_http *h = arg;
  while (!atomic_load(&h->stopping)) {
    double now = srv_now();
    pthread_mutex_lock(&h->conns_mu);
    for (conn_track *t = h->conns.next; t != &h->conns; t = t->next)
      if (!t->in_request && !t->killed && t->fd >= 0 &&
          now - t->t_start > h->cfg.header_timeout_s) {
        /* the connection's thread sees the socket end and closes it */
        shutdown(t->fd, SHUT_RDWR);
        t->killed = 1;
      }
    pthread_mutex_unlock(&h->conns_mu);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int srv_http_start(const srv_config *cfg, srv_http **out) {
  *out = NULL;
  srv_http *h = calloc(1, sizeof *h);
  if (!h) return -1;
  h->cfg = *cfg;
  if (h->cfg.header_timeout_s <= 0 || h->cfg.header_timeout_s > h->cfg.timeout_s)
    h->cfg.header_timeout_s = h->cfg.timeout_s;
  h->api.cfg = &h->cfg;
  pthread_mutex_init(&h->conns_mu, NULL);
  h->conns.next = h->conns.prev = &h->conns;
  h->started = (long long)time(NULL);
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  memset(&a4, 0, sizeof a4);
  memset(&a6, 0, sizeof a6);
  struct sockaddr *sa;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG;
  if (inet_pton(AF_INET, cfg->host, &a4.sin_addr) == 1) {
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)cfg->port);
    sa = (struct sockaddr *)&a4;
  } else if (inet_pton(AF_INET6, cfg->host, &a6.sin6_addr) == 1) {
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)cfg->port);
    sa = (struct sockaddr *)&a6;
    flags |= MHD_USE_IPv6;
  } else {
    fprintf(stderr, "nllm serve: error: --host '%s' is not an IPv4 or IPv6 address\n", cfg->host);
    free(h);
    return -1;
  }
  h->d = MHD_start_daemon(
      flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, sa,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)cfg->timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
      MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
  if (!h->d) {
    fprintf(stderr, "nllm serve: error: cannot listen on %s:%d\n", cfg->host, cfg->port);
    free(h);
    return -1;
  }
  if (pthread_create(&h->watchdog, NULL, watchdog_main, h) == 0) h->watchdog_started = 1;
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  int port = di ? di->port : cfg->port;
  fprintf(stderr, "nllm serve: listening on http://%s%s%s:%d\n",
          sa->sa_family == AF_INET6 ? "[" : "", cfg->host, sa->sa_family == AF_INET6 ? "]" : "",
          port);
  *out = h;
  return 0;
}

void srv_http_set_embed(srv_http *h, srv_embed *e) {
  h->embed = e;
}

void srv_http_set_ready(srv_http *h, const nllm_model *model, srv_sched *s,
                        const char *chat_template) {
  h->api.model = model;
  h->api.tmpl = chat_template;
  h->api.n_ctx = s ? srv_sched_n_ctx(s) : nllm_model_n_ctx_train(model);
  h->sched = s;
  atomic_store(&h->ready, 1);
}

void srv_http_set_lora(srv_http *h, const char *const *paths, nllm_lora_adapter *const *lora,
                       const float *scales, int n) {
  h->cfg.lora_paths = paths;
  h->cfg.lora = lora;
  h->cfg.lora_scale = scales;
  h->cfg.n_lora = n;
}

void srv_http_quiesce(srv_http *h) {
  atomic_store(&h->draining, 1);
  MHD_socket fd = MHD_quiesce_daemon(h->d);
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

int srv_http_in_flight(srv_http *h) {
  return atomic_load(&h->in_flight);
}

void srv_http_stop(srv_http *h) {
  if (!h) return;
  atomic_store(&h->stopping, 1);
  if (h->watchdog_started) pthread_join(h->watchdog, NULL);
  MHD_stop_daemon(h->d);
  pthread_mutex_destroy(&h->conns_mu);
  free(h);
}
