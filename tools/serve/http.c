/* The HTTP front end on libmicrohttpd: routing, limits, the API key, and the bridge between a
 * connection and its job. Each connection has its own thread (MHD's thread-per-connection
 * mode), so waiting for tokens blocks only that connection; the scheduler never waits on a
 * socket. While it waits, the thread watches its socket, and a client that hangs up cancels its
 * job at once, which frees the slot for the next request. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

struct srv_http {
  struct MHD_Daemon *d;
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

/* ------------------------------------------------------------------ streaming */

typedef struct stream {
  srv_http *h;
  srv_job *job;
  srv_reply rp;
  int fd;
  int phase; /* 0 opening chunk, 1 tokens, 2 usage, 3 [DONE], 4 end */
  size_t seen_len;
  int seen_lps, seen_seg;
  char *pend;
  size_t pend_len, pend_off;
} stream;

static void stream_free(void *cls) {
  stream *s = cls;
  srv_job_release(s->h->sched, s->job);
  free(s->rp.echo);
  free(s->pend);
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

/* Next event of the stream, waiting for tokens as needed; 1 at the end, -1 to abort. */
static int stream_next(stream *s) {
  srv_sched *sc = s->h->sched;
  srv_job *j = s->job;
  if (s->phase == 0) {
    s->phase = 1;
    if (s->rp.kind == SRV_REQ_CHAT)
      return stream_event(s, srv_api_chunk(&s->h->api, &s->rp, "", 0, NULL, 0, 1, NULL));
    if (s->rp.echo)
      return stream_event(
          s, srv_api_chunk(&s->h->api, &s->rp, s->rp.echo, strlen(s->rp.echo), NULL, 0, 0, NULL));
  }
  if (s->phase == 1) {
    for (;;) {
      srv_sched_lock(sc);
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
        if (text) memcpy(text, j->out + s->seen_len, len - s->seen_len);
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
      if (client_gone(s->fd)) return -1;
      srv_job_wait(sc, j, len, done, 50);
    }
    s->phase = 2;
    if (j->finish == SRV_FINISH_ERROR || j->cancelled) {
      srv_error e;
      srv_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                    j->error[0] ? j->error : "cancelled");
      s->phase = 3;
      return stream_event(s, srv_error_json(&e));
    }
    return stream_event(
        s, srv_api_chunk(&s->h->api, &s->rp, NULL, 0, NULL, 0, 0, srv_finish_name(j->finish)));
  }
  if (s->phase == 2) {
    s->phase = 3;
    if (s->rp.include_usage) return stream_event(s, srv_api_usage_chunk(&s->h->api, &s->rp, j));
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

static enum MHD_Result handle_generate(srv_http *h, struct MHD_Connection *c, req_state *st) {
  srv_request req;
  srv_error err;
  srv_job *job = NULL;
  srv_reply rp;
  memset(&rp, 0, sizeof rp);
  srv_req_kind kind = st->route == R_CHAT ? SRV_REQ_CHAT : SRV_REQ_COMPLETION;
  if (srv_parse_request(kind, st->body ? st->body : "", st->len, &req, &err) ||
      srv_api_prepare(&h->api, &req, &job, &rp, &err)) {
    srv_request_free(&req);
    return send_error(c, &err, NULL, NULL);
  }
  srv_request_free(&req);
  if (srv_sched_submit(h->sched, job)) {
    srv_job_release(h->sched, job);
    free(rp.echo);
    srv_error_set(&err, 429, "rate_limit_error", NULL, "overloaded",
                  "the server is busy: every slot is running and the queue is full");
    return send_error(c, &err, "Retry-After", "1");
  }
  int fd = client_fd(c);
  if (rp.stream) {
    stream *s = calloc(1, sizeof *s);
    if (!s) {
      srv_job_release(h->sched, job);
      free(rp.echo);
      return send_json(c, 500, NULL);
    }
    s->h = h, s->job = job, s->rp = rp, s->fd = fd;
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
  for (;;) {
    srv_sched_lock(sc);
    int done = job->done;
    size_t len = job->out_len;
    srv_sched_unlock(sc);
    if (done) break;
    if (client_gone(fd)) {
      srv_job_release(sc, job);
      free(rp.echo);
      return MHD_NO;
    }
    srv_job_wait(sc, job, len, 0, 50);
  }
  enum MHD_Result ret;
  if (job->finish == SRV_FINISH_ERROR) {
    srv_error_set(&err, 500, "server_error", NULL, NULL, "generation failed: %s", job->error);
    ret = send_error(c, &err, NULL, NULL);
  } else {
    ret = send_json(c, 200, srv_api_response(&h->api, &rp, job));
  }
  srv_job_release(sc, job);
  free(rp.echo);
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
    st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    *con_cls = st;
    st->t_start = srv_now();
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
  free(st->body);
  free(st);
  *con_cls = NULL;
}

/* ------------------------------------------------------------------ life cycle */

int srv_http_start(const srv_config *cfg, srv_http **out) {
  *out = NULL;
  srv_http *h = calloc(1, sizeof *h);
  if (!h) return -1;
  h->cfg = *cfg;
  h->api.cfg = &h->cfg;
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
  h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
                          MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_CONNECTION_LIMIT,
                          (unsigned)cfg->max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
                          (unsigned)cfg->timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                          (size_t)65536, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                          MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
  if (!h->d) {
    fprintf(stderr, "nllm serve: error: cannot listen on %s:%d\n", cfg->host, cfg->port);
    free(h);
    return -1;
  }
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
  MHD_stop_daemon(h->d);
  free(h);
}
