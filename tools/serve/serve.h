/* nllm serve: an OpenAI-compatible HTTP server on the public ABI. Shared types of its parts:
 * request parsing (request.c), text output with stop strings (textout.c), the scheduler that
 * owns the model's contexts (sched.c), metrics (metrics.c), the HTTP front end (http.c) and
 * the command (cmd_serve.c). */
#ifndef NLLM_SERVE_H
#define NLLM_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "nativellm.h"

struct cJSON;

#define SRV_MAX_STOP 16
#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_LORA 16    /* adapters loaded at start (--lora, --lora-scaled) */
#define SRV_MAX_PROMPTS 64 /* prompts in one /v1/completions request */

/* ------------------------------------------------------------------ parsed requests */

typedef enum { SRV_REQ_CHAT, SRV_REQ_COMPLETION } srv_req_kind;

/* One completion prompt: text, or (text NULL) token ids. */
typedef struct srv_prompt {
  char *text;
  nllm_token *ids;
  int n_ids;
} srv_prompt;

typedef struct srv_message {
  char *role, *content;
} srv_message;

/* tool_choice, after the checks: off (no tools, or "none"), auto, required, a named function */
typedef enum { SRV_TOOLS_OFF, SRV_TOOLS_AUTO, SRV_TOOLS_REQUIRED, SRV_TOOLS_NAMED } srv_tools_mode;
/* The tool-call formats of nllm_tool_calls_parse; NONE: the reply is plain content. */
typedef enum {
  SRV_TOOLS_NONE,
  SRV_TOOLS_HERMES,
  SRV_TOOLS_LLAMA3,
  SRV_TOOLS_MISTRAL
} srv_tools_format;

/* One /v1/chat/completions or /v1/completions body, validated, model-independent. Unset
 * numbers are negative (or NAN for floats) so the server's defaults apply. */
typedef struct srv_request {
  srv_req_kind kind;
  char *model; /* NULL if absent */
  srv_message *messages;
  int n_messages;
  /* the messages as the Jinja template reads them: content as one string, assistant
   * tool_calls with their arguments as objects, tool_call_id and name kept */
  char *messages_json;
  int has_tool_messages; /* a tool result or an assistant tool_calls in the history */
  srv_prompt *prompts;   /* completions: every prompt of the request (a list gives several) */
  int n_prompts;
  /* completions: the prompt being prepared (srv_request_select_prompt; not owned) */
  char *prompt;           /* text prompt (NULL if given as ids) */
  nllm_token *prompt_ids; /* token ids */
  int n_prompt_ids;
  int stream, include_usage, echo;
  int max_tokens; /* -1: until the context is full or the model stops */
  double temperature, top_p, min_p, presence_penalty, frequency_penalty, repeat_penalty;
  int top_k; /* -1: server default */
  int has_seed;
  uint64_t seed;
  int logprobs;     /* chat: bool; completions: the top count (0..20) sets it */
  int top_logprobs; /* alternatives per token, 0..20 */
  char *stop[SRV_MAX_STOP];
  int n_stop;
  char *user;
  /* llama-server's "ignore_eos": end-of-generation tokens are never sampled, so a request
   * runs to max_tokens (how a benchmark gets equal token counts) */
  int ignore_eos;
  /* Hooks for the grammar (response_format) and template/tool-call work: the raw JSON of
   * these fields, passed through untouched; NULL when absent. */
  char *response_format_json, *tools_json, *tool_choice_json;
  /* llama-server's constrained-output fields: GBNF text, and a JSON Schema (raw JSON) */
  char *grammar, *json_schema_json;
  /* llama-server's "lora": [{"id", "scale"}]: scales of adapters loaded at start; the others
   * keep their start-up scale */
  int lora_id[SRV_MAX_LORA];
  double lora_scale[SRV_MAX_LORA];
  int n_lora;
} srv_request;

/* An error for the client: HTTP status and OpenAI's error fields. */
typedef struct srv_error {
  int status;
  const char *type;  /* "invalid_request_error", ... (static) */
  const char *param; /* static name of the offending field or NULL */
  const char *code;  /* static or NULL */
  char message[512];
} srv_error;

/* Parse and validate a request body. Returns 0 and fills req, or -1 and fills err (status 400).
 * On either result srv_request_free(req) is safe. */
int srv_parse_request(srv_req_kind kind, const char *body, size_t len, srv_request *req,
                      srv_error *err);
void srv_request_free(srv_request *req);
/* Makes prompt / prompt_ids the request's prompt i (0 after parsing). */
void srv_request_select_prompt(srv_request *req, int i);
void srv_error_set(srv_error *err, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error":{...}} as a malloc'd NUL-terminated string. */
char *srv_error_json(const srv_error *err);
/* The request's output constraint (constrain.c): response_format json_object / json_schema, or
 * llama-server's grammar / json_schema. Returns 0 with *text NULL (none) or a malloc'd grammar
 * (*is_schema 0) or JSON Schema (*is_schema 1) the library accepts; -1 with err (400) else. */
int srv_constraint(const srv_request *r, char **text, int *is_schema, srv_error *err);

/* ------------------------------------------------------------------ text output */

/* Turns generated token bytes into text that is safe to send: only whole UTF-8 characters
 * (invalid bytes become U+FFFD), never any part of a stop string, and never text a stop string
 * could still begin in. */
typedef struct srv_text {
  char *buf; /* all generated bytes so far */
  size_t len, cap;
  size_t sent; /* bytes of buf already released */
  const char *const *stop;
  int n_stop;
  size_t max_stop;
  int stopped; /* a stop string was found: buf is cut before it */
} srv_text;

void srv_text_init(srv_text *t, const char *const *stop, int n_stop);
void srv_text_free(srv_text *t);
/* Append bytes; returns -1 on allocation failure. */
int srv_text_push(srv_text *t, const char *bytes, size_t n);
/* Bytes [sent, *end) may now be sent (final: nothing more comes, release all that is left);
 * returns the count and advances sent. The caller sanitizes with srv_utf8_clean. */
size_t srv_text_release(srv_text *t, int final, size_t *start);
/* Copy src to a new NUL-terminated string with invalid UTF-8 replaced by U+FFFD. */
char *srv_utf8_clean(const char *src, size_t n);

/* ------------------------------------------------------------------ scheduler */

typedef enum { SRV_FINISH_NONE, SRV_FINISH_STOP, SRV_FINISH_LENGTH, SRV_FINISH_ERROR } srv_finish;

/* One generated token's log-probability with its alternatives, sent with the text it ends. */
typedef struct srv_logprob {
  nllm_token token;
  float logprob;
  int n_top;
  nllm_token top_tok[SRV_MAX_TOP_LOGPROBS];
  float top_lp[SRV_MAX_TOP_LOGPROBS];
  size_t text_end; /* byte offset in the job's text after this token */
} srv_logprob;

/* A generation job: the scheduler writes its output, one HTTP thread reads it. All fields
 * below "shared" are guarded by the scheduler's mutex. */
typedef struct srv_job {
  /* input, fixed once submitted */
  nllm_token *prompt;
  int n_prompt;
  int max_tokens;
  nllm_sampler_params sp;
  double presence_penalty, frequency_penalty;
  int logprobs, top_logprobs;
  int ignore_eos; /* end-of-generation tokens get no probability */
  char *stop[SRV_MAX_STOP];
  int n_stop;
  const char *response_format_json; /* grammar hook: owned by the request */
  char *constraint;   /* owned grammar or JSON Schema text that sp.grammar / sp.json_schema use */
  int render_special; /* control tokens go into the text (Mistral's [TOOL_CALLS]) */
  int wake_each;      /* a stream: its reader is woken at every released token, not at the end */
  float lora_scale[SRV_MAX_LORA]; /* the scale of each loaded adapter (0: off) */
  /* shared */
  char *out; /* released text (clean UTF-8) */
  size_t out_len, out_cap;
  srv_logprob *lps; /* one per released token when logprobs */
  int n_lps, cap_lps;
  /* each step's release: where its text and logprobs end, so a stream sends one chunk per
   * token as OpenAI does even when the reader falls behind */
  size_t *seg_out;
  int *seg_lps;
  int n_seg, cap_seg;
  int n_gen;    /* generated tokens */
  int n_cached; /* prompt tokens reused from the prefix cache */
  srv_finish finish;
  int done, cancelled, running;
  char error[256];
  double t_submit, t_first, t_done;
  pthread_cond_t cond;
  int refs; /* the HTTP side and the scheduler; freed at 0 */
} srv_job;

typedef struct srv_sched srv_sched;

typedef struct srv_sched_params {
  int n_slots, n_ctx, n_threads, n_batch, queue_max, kv_f32;
  int32_t bf16_act; /* the contexts' bf16_activations (NLLM_BF16_ACT_*) */
  /* LoRA adapters loaded at start and their start-up scales. Each slot's sequence runs its
   * request's scales (nllm_seq_set_lora), so requests with different adapters share every
   * step; a cached prefix is reused only under the same scales. */
  nllm_lora_adapter *const *lora;
  const float *lora_scale;
  int n_lora;
} srv_sched_params;

int srv_sched_create(const nllm_model *model, const srv_sched_params *p, srv_sched **out);
/* Stops the thread; jobs still queued or running end with SRV_FINISH_ERROR. Jobs may still be
 * released afterwards, until srv_sched_free. */
void srv_sched_shutdown(srv_sched *s);
void srv_sched_free(srv_sched *s);
int srv_sched_n_ctx(const srv_sched *s);
/* New job owned by the caller (refs 1); fill the input, then submit. */
srv_job *srv_job_new(void);
/* 0: queued; 1: overloaded (queue full). The scheduler takes a reference. */
int srv_sched_submit(srv_sched *s, srv_job *job);
/* Drop the caller's reference; cancels the job if it is still running. */
void srv_job_release(srv_sched *s, srv_job *job);
/* Wait until the job has output past out_len/n_lps/done changes or timeout_ms passes. */
void srv_job_wait(srv_sched *s, srv_job *job, size_t seen_len, int seen_done, int timeout_ms);
/* With the scheduler's lock held (srv_sched_lock): wait on the job until woken or until the
 * CLOCK_MONOTONIC time until; 1 when that time has passed. */
int srv_job_wait_locked(srv_sched *s, srv_job *job, const struct timespec *until);
/* until = now + ms on CLOCK_MONOTONIC, the clock the waits above use */
void srv_deadline(struct timespec *until, int ms);
void srv_sched_lock(srv_sched *s);
void srv_sched_unlock(srv_sched *s);
/* Requests running and waiting now. */
void srv_sched_load(srv_sched *s, int *running, int *waiting);

/* ------------------------------------------------------------------ metrics */

#define SRV_HIST_BUCKETS 14
typedef struct srv_hist {
  uint64_t count, bucket[SRV_HIST_BUCKETS]; /* bucket[i]: observations <= srv_hist_bounds[i] */
  double sum;
} srv_hist;
extern const double srv_hist_bounds[SRV_HIST_BUCKETS];
void srv_hist_observe(srv_hist *h, double seconds);

typedef struct srv_stats {
  int running, waiting, n_slots;
  uint64_t requests_ok, requests_cancelled, requests_failed, requests_rejected;
  uint64_t prompt_tokens, cached_prompt_tokens, gen_tokens;
  int64_t kv_used, kv_total; /* tokens held by running requests / capacity of all slots */
  int64_t kv_cells;          /* pool cells holding data, idle slots' cached prefixes included */
  srv_hist ttft, tpot, e2e;
  /* the scheduler thread's time: in decode steps (evaluation and sampling), and between two
   * steps that follow one another without waiting for work (publishing text, waking readers,
   * admitting requests: what the server adds to a token beyond the engine) */
  uint64_t steps;
  double step_s, gap_s;
} srv_stats;

/* A consistent copy of the scheduler's counters. */
void srv_sched_stats(srv_sched *s, srv_stats *out);

double srv_now(void); /* monotonic seconds */
/* Prometheus text of the server's counters, gauges and histograms (malloc'd). */
char *srv_metrics_text(const srv_stats *st, int ready);

/* ------------------------------------------------------------------ HTTP */

typedef struct srv_config {
  const char *host;
  int port;
  const char *alias;         /* model id clients name */
  const char *api_key;       /* NULL: no key needed */
  const char *chat_template; /* NULL: the model's (chatml when it has none) */
  int timeout_s;             /* idle/slow connection limit */
  int header_timeout_s;      /* request line + headers must arrive within this (slow-loris) */
  int max_conns;
  size_t max_body;
  int drain_s;
  /* sampling defaults from the command line */
  nllm_sampler_params sp;
  int default_max_tokens; /* -1: fill the context */
  /* LoRA adapters loaded at start (GET /lora-adapters; a request's "lora" field) */
  const char *const *lora_paths;
  nllm_lora_adapter *const *lora;
  const float *lora_scale;
  int n_lora;
} srv_config;

/* ------------------------------------------------------------------ OpenAI shapes (api.c) */

typedef struct srv_api {
  const nllm_model *model;
  const srv_config *cfg;
  const char *tmpl; /* chat template text/family, or NULL for the model's own */
  int n_ctx;
} srv_api;

/* Everything of a response that does not change while it streams. */
typedef struct srv_reply {
  srv_req_kind kind;
  char id[48];
  long long created;
  int index; /* the choice's index: the prompt's place in a list of prompts */
  const char *model;
  int include_usage, stream;
  char *echo;               /* completions with echo: the prompt text, sent first */
  srv_tools_format tools;   /* NONE: the reply is not parsed for tool calls */
  int tools_forced;         /* tool_choice required or named: the whole reply is the call */
  const char *tools_prefix; /* static text the parser sees before the reply, or NULL */
} srv_reply;

/* Turn a parsed request into a job (prompt tokens, sampling, limits): 0, or -1 with err set
 * (400 for a prompt that does not fit, 404 for an unknown model). */
int srv_api_prepare(const srv_api *a, const srv_request *r, srv_job **out, srv_reply *reply,
                    srv_error *err);
/* The whole non-streamed response of a finished job (malloc'd JSON). */
char *srv_api_response(const srv_api *a, const srv_reply *rp, const srv_job *j);
/* One streamed chunk: text (n bytes of clean UTF-8) and its tokens' logprobs; role: the
 * opening chunk; finish: the closing chunk's reason or NULL. */
char *srv_api_chunk(const srv_api *a, const srv_reply *rp, const char *text, size_t n,
                    const srv_logprob *lps, int n_lps, int role, const char *finish);
/* A streamed tool call (one element of srv_tools_parse's tool_calls): head_part sends its id,
 * type and name with empty arguments, else the arguments' text. */
char *srv_api_tool_chunk(const srv_api *a, const srv_reply *rp, const struct cJSON *call, int index,
                         int head_part, const srv_logprob *lps, int n_lps);
/* The closing usage chunk (stream_options.include_usage). */
char *srv_api_usage_chunk(const srv_reply *rp, const srv_job *j);
const char *srv_finish_name(srv_finish f);
/* /tokenize, /detokenize, /v1/models bodies; NULL with err set on a bad request. */
char *srv_api_tokenize(const srv_api *a, const char *body, size_t len, srv_error *err);
char *srv_api_detokenize(const srv_api *a, const char *body, size_t len, srv_error *err);
char *srv_api_models(const srv_api *a, long long created);
/* GET /lora-adapters: [{"id", "path", "scale"}] as llama-server lists them. */
char *srv_api_lora_adapters(const srv_api *a);

/* ------------------------------------------------------------------ tool calls (toolcall.c) */

/* Checks tools and tool_choice: 0 with *mode (and *named, malloc'd, for a named function), or
 * -1 with err (400). */
int srv_tools_choice(const srv_request *r, srv_tools_mode *mode, char **named, srv_error *err);
/* The format a chat template's literals teach (hermes when none is recognized). */
srv_tools_format srv_tools_detect(const char *tmpl);
const char *srv_tools_format_name(srv_tools_format f);
/* GBNF that makes the reply one call of a tool (any for required, the named one) with arguments
 * valid for its parameters schema, wrapped in the format's markers; start rule
 * srv_tools_grammar_root(). 0 with *grammar malloc'd, or -1 with err. */
int srv_tools_grammar(const srv_request *r, srv_tools_mode mode, const char *named,
                      srv_tools_format fmt, char **grammar, srv_error *err);
const char *srv_tools_grammar_root(void);
/* The reply parsed as {"content", "tool_calls"} (cJSON, owned by the caller), or NULL when it
 * holds no complete, well-formed call. */
struct cJSON *srv_tools_parse(const srv_reply *rp, const char *text);
/* How many leading bytes of a growing reply are surely content: the rest is, or may still
 * become, a tool call and is held until the reply ends. */
size_t srv_tools_content_end(const srv_reply *rp, const char *text, size_t n);

/* /v1/embeddings (embed.c): an embeddings context of the model, made on first use. */
typedef struct srv_embed srv_embed;
int srv_embed_create(const nllm_model *model, int n_threads, int32_t bf16_act, srv_embed **out);
void srv_embed_free(srv_embed *e);
/* The response body (malloc'd JSON), or NULL with err set. Thread-safe. */
char *srv_api_embeddings(srv_embed *e, const srv_api *a, const char *body, size_t len,
                         srv_error *err);

typedef struct srv_http srv_http;
/* Starts listening (the model may still be loading: /health answers 503). */
int srv_http_start(const srv_config *cfg, srv_http **out);
/* Model and scheduler are ready: requests are served from now on. chat_template: the template
 * chat requests use (NULL: the model's own). */
void srv_http_set_ready(srv_http *h, const nllm_model *model, srv_sched *s,
                        const char *chat_template);
/* The LoRA adapters loaded at start (before srv_http_set_ready; they outlive the server). */
void srv_http_set_lora(srv_http *h, const char *const *paths, nllm_lora_adapter *const *lora,
                       const float *scales, int n);
/* /v1/embeddings is served from e (set before srv_http_set_ready). s may be NULL in
 * srv_http_set_ready for an encoder model: generation routes then answer 400. */
void srv_http_set_embed(srv_http *h, srv_embed *e);
/* Stop accepting connections and answer 503 to new requests on open ones. */
void srv_http_quiesce(srv_http *h);
/* Open requests still in flight (streams included). */
int srv_http_in_flight(srv_http *h);
void srv_http_stop(srv_http *h);

/* The chat page served at GET /. */
extern const char srv_page_html[];

#endif
