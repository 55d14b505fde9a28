/* The scheduler: one thread owns every slot (a sequence: KV cache, sampler, output text) and
 * advances all running requests one step at a time. New requests join between steps; a prompt
 * is evaluated in chunks of n_batch tokens, so a long prompt delays the other streams by one
 * chunk per step, not by its whole length. A slot keeps its KV after a request ends, and a new
 * request goes to the free slot sharing the longest prefix with its prompt (least recently
 * used on ties), which then evaluates only the rest: the prefix cache.
 *
 * Every slot is one sequence of one shared multi-sequence context, and a step is one
 * nllm_decode_batch call (engine_step): each running slot's prompt chunk or sampled token as
 * rows, so the weights are read once per step for all of them. A new request may also take its
 * prefix from any other slot's cache, running or idle: nllm_seq_copy shares the cells, nothing
 * is recomputed or copied. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

typedef struct slot {
  int seq;             /* sequence id in the shared context */
  const float *logits; /* after a step that asked for them */
  float *lcopy;        /* logits kept across another slot's decode (after a failed batch) */
  nllm_token *cache;   /* tokens in the KV cache, in order */
  int n_cache;
  int n_cache_shown; /* n_cache as of the last step, for the stats (under mu) */
  double last_used;
  srv_job *job;
  nllm_sampler *smp;
  int n_done_prompt;              /* prompt tokens in the KV cache */
  nllm_token pending;             /* sampled, not yet evaluated */
  float cache_lora[SRV_MAX_LORA]; /* the adapter scales the cache was computed under */
  srv_text text;
  int *counts;     /* per-token count of generated tokens (penalties), n_vocab */
  nllm_token *gen; /* generated tokens, to clear counts */
  float *work;     /* logits with penalties applied */
  srv_logprob *lps;
  int n_lps, cap_lps;
  size_t lp_text_start; /* text offset where the next sampled token's bytes begin */
  /* one step */
  const nllm_token *step_tok;
  int step_n;
  nllm_status step_status;
  /* what the step adds to the stats, counted under mu afterwards (/metrics reads them) */
  int step_first, step_gen;
  int wake; /* output was published: its reader is woken once mu is released */
} slot;

struct srv_sched {
  const nllm_model *model;
  int n_vocab;
  nllm_token *eog; /* the model's end-of-generation tokens (ignore_eos masks them) */
  int n_eog;
  srv_sched_params p;
  slot *slots;
  nllm_context *shared; /* batched mode */
  nllm_token *b_tok;    /* one step's batch rows */
  int32_t *b_pos, *b_seq, *b_logits;
  int b_cap;
  pthread_mutex_t mu;
  pthread_cond_t work;
  srv_job **queue; /* FIFO ring of waiting jobs */
  int q_head, q_len, q_cap;
  int n_running;
  int kv_cells; /* pool occupancy after the last step (under mu) */
  int stop;
  /* set under mu by whatever the scheduler must look at before its next step (a submitted,
   * cancelled or stopping job): without it, a step that ended no request goes straight on to
   * the next without taking mu again */
  atomic_int news;
  pthread_t thread;
  int started;
  srv_stats st;
};

double srv_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

srv_job *srv_job_new(void) {
  srv_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&j->cond, &ca);
  pthread_condattr_destroy(&ca);
  j->refs = 1;
  j->max_tokens = -1;
  nllm_sampler_params_init(&j->sp);
  return j;
}

static void job_free(srv_job *j) {
  free(j->prompt);
  free(j->constraint);
  for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
  free(j->out);
  free(j->lps);
  free(j->seg_out);
  free(j->seg_lps);
  pthread_cond_destroy(&j->cond);
  free(j);
}

/* under mu */
static void job_unref(srv_job *j) {
  if (--j->refs == 0) job_free(j);
}

void srv_sched_lock(srv_sched *s) {
  pthread_mutex_lock(&s->mu);
}
void srv_sched_unlock(srv_sched *s) {
  pthread_mutex_unlock(&s->mu);
}
int srv_sched_n_ctx(const srv_sched *s) {
  return s->p.n_ctx;
}

int srv_sched_submit(srv_sched *s, srv_job *job) {
  pthread_mutex_lock(&s->mu);
  if (s->stop || s->n_running + s->q_len >= s->p.n_slots + s->p.queue_max) {
    s->st.requests_rejected++;
    pthread_mutex_unlock(&s->mu);
    return 1;
  }
  job->refs++;
  job->t_submit = srv_now();
  s->queue[(s->q_head + s->q_len++) % s->q_cap] = job;
  atomic_store(&s->news, 1);
  pthread_cond_signal(&s->work);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

void srv_job_release(srv_sched *s, srv_job *job) {
  if (!job) return;
  pthread_mutex_lock(&s->mu);
  if (!job->done) {
    job->cancelled = 1;
    atomic_store(&s->news, 1);
    pthread_cond_signal(&s->work); /* the scheduler frees its slot before the next step */
  }
  job_unref(job);
  pthread_mutex_unlock(&s->mu);
}

void srv_deadline(struct timespec *until, int ms) {
  clock_gettime(CLOCK_MONOTONIC, until);
  until->tv_nsec += (long)ms * 1000000L;
  until->tv_sec += until->tv_nsec / 1000000000L;
  until->tv_nsec %= 1000000000L;
}

int srv_job_wait_locked(srv_sched *s, srv_job *job, const struct timespec *until) {
  /* a time already past returns without the system call a timed wait would make */
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (now.tv_sec > until->tv_sec || (now.tv_sec == until->tv_sec && now.tv_nsec >= until->tv_nsec))
    return 1;
  return pthread_cond_timedwait(&job->cond, &s->mu, until) != 0;
}

void srv_job_wait(srv_sched *s, srv_job *job, size_t seen_len, int seen_done, int timeout_ms) {
  struct timespec ts;
  srv_deadline(&ts, timeout_ms);
  pthread_mutex_lock(&s->mu);
  while (job->out_len == seen_len && job->done == seen_done)
    if (srv_job_wait_locked(s, job, &ts)) break;
  pthread_mutex_unlock(&s->mu);
}

void srv_sched_load(srv_sched *s, int *running, int *waiting) {
  pthread_mutex_lock(&s->mu);
  *running = s->n_running;
  *waiting = s->q_len;
  pthread_mutex_unlock(&s->mu);
}

void srv_sched_stats(srv_sched *s, srv_stats *out) {
  pthread_mutex_lock(&s->mu);
  *out = s->st;
  out->running = s->n_running;
  out->waiting = s->q_len;
  out->n_slots = s->p.n_slots;
  out->kv_used = 0;
  for (int i = 0; i < s->p.n_slots; i++)
    if (s->slots[i].job) out->kv_used += s->slots[i].n_cache_shown;
  out->kv_total = (int64_t)s->p.n_slots * s->p.n_ctx;
  out->kv_cells = s->kv_cells;
  pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------ slots */

/* A cache computed under other adapter scales is no prefix of anything this job computes. */
static int same_lora(const srv_sched *s, const float *a, const float *b) {
  return !memcmp(a, b, (size_t)s->p.n_lora * sizeof(float));
}

static int common_prefix(const nllm_token *a, int na, const nllm_token *b, int nb) {
  int n = 0;
  while (n < na && n < nb && a[n] == b[n]) n++;
  return n;
}

/* under mu: the free slot with the longest cached prefix of the prompt. A short match (a BOS,
 * a few template tokens) is not worth another conversation's cache: then the least recently
 * used slot is taken instead, so caches of recent conversations live longest. */
static slot *pick_slot(srv_sched *s, const srv_job *j, int *lcp_out) {
  slot *best = NULL, *lru = NULL;
  int best_lcp = -1, lru_lcp = 0;
  for (int i = 0; i < s->p.n_slots; i++) {
    slot *sl = &s->slots[i];
    if (sl->job) continue;
    int lcp = same_lora(s, sl->cache_lora, j->lora_scale)
                  ? common_prefix(sl->cache, sl->n_cache, j->prompt, j->n_prompt)
                  : 0;
    if (lcp > best_lcp) best = sl, best_lcp = lcp;
    if (!lru || sl->last_used < lru->last_used) lru = sl, lru_lcp = lcp;
  }
  if (best && best_lcp < 16 && 2 * best_lcp < j->n_prompt) best = lru, best_lcp = lru_lcp;
  *lcp_out = best_lcp;
  return best;
}

/* Keep the first keep cached tokens of the slot; 0, or -1 when even dropping all failed. */
static int kv_keep(srv_sched *s, slot *sl, int keep) {
  if (nllm_seq_remove(s->shared, sl->seq, keep, -1) == NLLM_OK) return 0;
  return nllm_seq_remove(s->shared, sl->seq, 0, -1) == NLLM_OK ? 0 : -1;
}

/* A longer cached prefix in another slot (running or not) is shared into this one: the cells
 * are reference counted, nothing is computed or copied. Returns the new prefix length. */
static int borrow_prefix(srv_sched *s, slot *dst, const srv_job *j, int have) {
  slot *src = NULL;
  int best = have;
  for (int i = 0; i < s->p.n_slots; i++) {
    slot *o = &s->slots[i];
    if (o == dst || !same_lora(s, o->cache_lora, j->lora_scale)) continue;
    int lcp = common_prefix(o->cache, o->n_cache, j->prompt, j->n_prompt);
    if (lcp > best) best = lcp, src = o;
  }
  if (!src) return have;
  if (best >= j->n_prompt) best = j->n_prompt - 1;
  if (best <= have) return have;
  if (nllm_seq_remove(s->shared, dst->seq, 0, -1) ||
      nllm_seq_copy(s->shared, src->seq, dst->seq, 0, best)) {
    nllm_seq_remove(s->shared, dst->seq, 0, -1);
    dst->n_cache = 0;
    return 0;
  }
  memcpy(dst->cache, src->cache, (size_t)best * sizeof *dst->cache);
  dst->n_cache = best;
  return best;
}

/* under mu: give a job a slot. Returns 0, or -1 with the job finished as failed. */
static int slot_start(srv_sched *s, slot *sl, srv_job *j, int lcp) {
  /* the slot's sequence runs the job's adapter scales; its cache, if computed under others,
   * has lcp 0 (pick_slot) and goes */
  if (s->p.n_lora) {
    if (nllm_seq_set_lora(s->shared, sl->seq, s->p.lora, j->lora_scale, s->p.n_lora)) {
      snprintf(j->error, sizeof j->error, "LoRA adapters: %s", nllm_last_error());
      return -1;
    }
    memcpy(sl->cache_lora, j->lora_scale, sizeof sl->cache_lora);
  }
  /* at least the last prompt token is evaluated again: its logits choose the first token */
  int keep = lcp < j->n_prompt ? lcp : j->n_prompt - 1;
  if (kv_keep(s, sl, keep)) keep = 0;
  sl->n_cache = keep;
  keep = borrow_prefix(s, sl, j, keep);
  sl->n_cache = sl->n_cache_shown = keep;
  nllm_sampler *smp = NULL;
  if (nllm_sampler_create(s->model, &j->sp, &smp)) {
    snprintf(j->error, sizeof j->error, "sampler: %s", nllm_last_error());
    return -1;
  }
  for (int i = 0; i < j->n_prompt; i++) nllm_sampler_accept(smp, j->prompt[i]);
  sl->smp = smp;
  sl->job = j;
  sl->n_done_prompt = keep;
  sl->pending = -1;
  sl->n_lps = 0;
  sl->lp_text_start = 0;
  srv_text_init(&sl->text, (const char *const *)j->stop, j->n_stop);
  j->n_cached = keep;
  j->running = 1;
  s->n_running++;
  s->st.cached_prompt_tokens += (uint64_t)keep;
  s->st.prompt_tokens += (uint64_t)j->n_prompt;
  return 0;
}

/* under mu: the request is over (finished, failed or cancelled); the slot keeps its KV */
static void slot_end(srv_sched *s, slot *sl) {
  srv_job *j = sl->job;
  for (int i = 0; i < j->n_gen; i++) sl->counts[sl->gen[i]] = 0;
  nllm_sampler_free(sl->smp);
  sl->smp = NULL;
  srv_text_free(&sl->text);
  sl->job = NULL;
  sl->wake = 0; /* the broadcast below wakes the reader while the job still exists */
  sl->last_used = srv_now();
  s->n_running--;
  j->done = 1;
  j->running = 0;
  j->t_done = srv_now();
  if (j->cancelled)
    s->st.requests_cancelled++;
  else if (j->finish == SRV_FINISH_ERROR)
    s->st.requests_failed++;
  else {
    s->st.requests_ok++;
    srv_hist_observe(&s->st.e2e, j->t_done - j->t_submit);
    if (j->n_gen > 1) srv_hist_observe(&s->st.tpot, (j->t_done - j->t_first) / (j->n_gen - 1));
  }
  pthread_cond_broadcast(&j->cond);
  job_unref(j);
}

/* ------------------------------------------------------------------ one step */

/* Evaluate every active slot's step tokens (a prompt chunk or the one last sampled token) and
 * point each slot's logits at its last row's. */
static void engine_step(srv_sched *s, slot **act, int n) {
  int rows = 0;
  for (int i = 0; i < n; i++) {
    slot *sl = act[i];
    for (int k = 0; k < sl->step_n; k++, rows++) {
      s->b_tok[rows] = sl->step_tok[k];
      s->b_pos[rows] = sl->n_cache + k;
      s->b_seq[rows] = sl->seq;
      /* logits only where a token is sampled: a prompt chunk that ends the prompt, or a
       * generation step */
      s->b_logits[rows] =
          k == sl->step_n - 1 && sl->n_done_prompt + sl->step_n >= sl->job->n_prompt;
    }
  }
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = rows;
  b.tokens = s->b_tok, b.pos = s->b_pos, b.seq_id = s->b_seq, b.logits = s->b_logits;
  nllm_status st = nllm_decode_batch(s->shared, &b);
  if (st == NLLM_OK) {
    for (int i = 0, r = 0; i < n; i++) {
      r += act[i]->step_n;
      act[i]->step_status = NLLM_OK;
      act[i]->logits = nllm_get_logits_ith(s->shared, r - 1);
    }
    return;
  }
  /* The batch is all or nothing: evaluate each slot alone, so one bad request does not fail
   * the others; each slot's logits are copied before the next slot's decode replaces them. */
  for (int i = 0; i < n; i++) {
    slot *sl = act[i];
    for (int k = 0; k < sl->step_n; k++) {
      s->b_pos[k] = sl->n_cache + k;
      s->b_seq[k] = sl->seq;
      s->b_logits[k] = k == sl->step_n - 1;
    }
    nllm_batch one;
    nllm_batch_init(&one);
    one.n_tokens = sl->step_n;
    one.tokens = sl->step_tok, one.pos = s->b_pos, one.seq_id = s->b_seq, one.logits = s->b_logits;
    sl->step_status = nllm_decode_batch(s->shared, &one);
    sl->logits = NULL;
    const float *lg = sl->step_status ? NULL : nllm_get_logits_ith(s->shared, sl->step_n - 1);
    if (lg) {
      memcpy(sl->lcopy, lg, (size_t)s->n_vocab * sizeof *lg);
      sl->logits = sl->lcopy;
    }
  }
}

static int lp_push(slot *sl, const srv_logprob *lp) {
  if (sl->n_lps == sl->cap_lps) {
    int cap = sl->cap_lps ? sl->cap_lps * 2 : 64;
    srv_logprob *b = realloc(sl->lps, (size_t)cap * sizeof *b);
    if (!b) return -1;
    sl->lps = b, sl->cap_lps = cap;
  }
  sl->lps[sl->n_lps++] = *lp;
  return 0;
}

/* Log-probabilities of the model's distribution (before penalties and sampling filters). */
static void fill_logprob(const float *lg, int nv, nllm_token tok, int n_top, srv_logprob *lp) {
  float mx = lg[0];
  for (int i = 1; i < nv; i++) mx = lg[i] > mx ? lg[i] : mx;
  double sum = 0;
  for (int i = 0; i < nv; i++) sum += exp((double)(lg[i] - mx));
  float lse = mx + (float)log(sum);
  lp->token = tok;
  lp->logprob = lg[tok] - lse;
  /* the n_top best in one pass, best first, the lower id first on ties: a token enters the
   * list only past every entry it does not beat */
  int n = 0;
  if (n_top > nv) n_top = nv;
  for (int i = 0; i < nv && n_top > 0; i++) {
    if (n == n_top && !(lg[i] > lg[lp->top_tok[n - 1]])) continue;
    int at = n < n_top ? n++ : n - 1;
    while (at > 0 && lg[i] > lg[lp->top_tok[at - 1]]) {
      lp->top_tok[at] = lp->top_tok[at - 1];
      at--;
    }
    lp->top_tok[at] = i;
  }
  for (int k = 0; k < n; k++) lp->top_lp[k] = lg[lp->top_tok[k]] - lse;
  lp->n_top = n;
}

/* Sample the slot's next token from its logits and feed the text; 1 when the request ends. */
static int slot_sample(srv_sched *s, slot *sl) {
  srv_job *j = sl->job;
  const float *lg = sl->logits;
  if (!lg) {
    snprintf(j->error, sizeof j->error, "no logits: %s", nllm_last_error());
    j->finish = SRV_FINISH_ERROR;
    return 1;
  }
  const float *use = lg;
  const int penalties = j->presence_penalty != 0 || j->frequency_penalty != 0;
  if (penalties || j->ignore_eos) {
    memcpy(sl->work, lg, (size_t)s->n_vocab * sizeof *lg);
    use = sl->work;
    for (int k = 0; j->ignore_eos && k < s->n_eog; k++) sl->work[s->eog[k]] = -INFINITY;
  }
  if (penalties) {
    for (int i = 0; i < j->n_gen; i++) {
      nllm_token t = sl->gen[i];
      if (sl->counts[t] < 0) continue; /* already applied: marked by sign below */
      int c = sl->counts[t];
      sl->work[t] -= (float)(c * j->frequency_penalty + j->presence_penalty);
      sl->counts[t] = -c;
    }
    for (int i = 0; i < j->n_gen; i++)
      if (sl->counts[sl->gen[i]] < 0) sl->counts[sl->gen[i]] = -sl->counts[sl->gen[i]];
  }
  nllm_token tok;
  if (nllm_sampler_sample_logits(sl->smp, use, s->n_vocab, &tok)) {
    snprintf(j->error, sizeof j->error, "sampling: %s", nllm_last_error());
    j->finish = SRV_FINISH_ERROR;
    return 1;
  }
  nllm_sampler_accept(sl->smp, tok);
  if (j->n_gen == 0) {
    j->t_first = srv_now();
    sl->step_first = 1;
  }
  if (nllm_model_token_is_eog(s->model, tok)) {
    j->finish = SRV_FINISH_STOP;
    return 1;
  }
  sl->gen[j->n_gen++] = tok;
  sl->counts[tok]++;
  sl->step_gen = 1;
  char piece[256];
  int32_t n = 0;
  if (nllm_token_to_piece(s->model, tok, j->render_special, piece, sizeof piece, &n)) n = 0;
  if (srv_text_push(&sl->text, piece, (size_t)n)) {
    snprintf(j->error, sizeof j->error, "out of memory");
    j->finish = SRV_FINISH_ERROR;
    return 1;
  }
  if (j->logprobs) {
    srv_logprob lp;
    fill_logprob(lg, s->n_vocab, tok, j->top_logprobs, &lp);
    lp.text_end = sl->text.len;
    if (lp_push(sl, &lp)) {
      j->finish = SRV_FINISH_ERROR;
      return 1;
    }
  }
  if (sl->text.stopped) {
    j->finish = SRV_FINISH_STOP;
    return 1;
  }
  if ((j->max_tokens >= 0 && j->n_gen >= j->max_tokens) || sl->n_cache + 1 > s->p.n_ctx) {
    j->finish = SRV_FINISH_LENGTH;
    return 1;
  }
  sl->pending = tok;
  return 0;
}

static int append(srv_job *j, const char *src, size_t n) {
  if (j->out_len + n + 1 > j->out_cap) {
    size_t cap = (j->out_len + n + 1) * 2;
    char *b = realloc(j->out, cap);
    if (!b) return -1;
    j->out = b, j->out_cap = cap;
  }
  memcpy(j->out + j->out_len, src, n);
  j->out_len += n;
  j->out[j->out_len] = 0;
  return 0;
}

/* under mu: hand the text released so far (and its tokens' logprobs) to the job's reader */
static void publish(slot *sl, int final) {
  srv_job *j = sl->job;
  size_t start, n = srv_text_release(&sl->text, final, &start);
  size_t sent = sl->text.sent;
  if (n) {
    char *clean = srv_utf8_clean(sl->text.buf + start, n);
    if (!clean || append(j, clean, strlen(clean))) j->finish = SRV_FINISH_ERROR;
    free(clean);
  }
  int keep = 0;
  for (int i = 0; i < sl->n_lps; i++) {
    srv_logprob *lp = &sl->lps[i];
    /* at the end, a token counts if any of its bytes made it before the stop string */
    size_t lp_start = i ? sl->lps[i - 1].text_end : sl->lp_text_start;
    int out = final ? (lp_start < sent || (lp->text_end == lp_start && lp_start <= sent))
                    : lp->text_end <= sent;
    if (!out) {
      if (!final) sl->lps[keep++] = *lp;
      continue;
    }
    if (j->n_lps == j->cap_lps) {
      int cap = j->cap_lps ? j->cap_lps * 2 : 64;
      srv_logprob *b = realloc(j->lps, (size_t)cap * sizeof *b);
      if (!b) {
        j->finish = SRV_FINISH_ERROR;
        break;
      }
      j->lps = b, j->cap_lps = cap;
    }
    j->lps[j->n_lps++] = *lp;
    if (!final) sl->lp_text_start = lp->text_end;
  }
  sl->n_lps = final ? 0 : keep;
  if ((j->n_seg ? j->seg_out[j->n_seg - 1] : 0) == j->out_len &&
      (j->n_seg ? j->seg_lps[j->n_seg - 1] : 0) == j->n_lps)
    return; /* nothing released this step */
  if (j->n_seg == j->cap_seg) {
    int cap = j->cap_seg ? j->cap_seg * 2 : 64;
    size_t *so = realloc(j->seg_out, (size_t)cap * sizeof *so);
    if (so) j->seg_out = so;
    int *sl2 = so ? realloc(j->seg_lps, (size_t)cap * sizeof *sl2) : NULL;
    if (sl2) j->seg_lps = sl2;
    if (!so || !sl2) {
      j->finish = SRV_FINISH_ERROR;
      return;
    }
    j->cap_seg = cap;
  }
  j->seg_out[j->n_seg] = j->out_len;
  j->seg_lps[j->n_seg++] = j->n_lps;
  /* a stream's reader sends each token as it comes; a whole reply's reader only needs the end,
   * which slot_end signals */
  sl->wake = j->wake_each;
}

/* One decode step of the active slots, from their prompt chunks or pending tokens to the text
 * and wake-ups of their readers. Called and returns without mu; 1 when a request ended. */
static int sched_step(srv_sched *s, slot **act, int n, int *ended, double *t_end) {
  double t0 = srv_now();
  for (int i = 0; i < n; i++) {
    slot *sl = act[i];
    srv_job *j = sl->job;
    if (sl->n_done_prompt < j->n_prompt) {
      int left = j->n_prompt - sl->n_done_prompt;
      sl->step_tok = j->prompt + sl->n_done_prompt;
      sl->step_n = left < s->p.n_batch ? left : s->p.n_batch;
    } else {
      sl->step_tok = &sl->pending;
      sl->step_n = 1;
    }
  }
  engine_step(s, act, n);
  int any_ended = 0;
  for (int i = 0; i < n; i++) {
    slot *sl = act[i];
    srv_job *j = sl->job;
    ended[i] = 0;
    if (sl->step_status) {
      snprintf(j->error, sizeof j->error, "decode: %s (%s)", nllm_last_error(),
               nllm_status_name(sl->step_status));
      j->finish = SRV_FINISH_ERROR;
      ended[i] = any_ended = 1;
      continue;
    }
    memcpy(sl->cache + sl->n_cache, sl->step_tok, (size_t)sl->step_n * sizeof(nllm_token));
    int was_prompt = sl->n_done_prompt < j->n_prompt;
    if (was_prompt) sl->n_done_prompt += sl->step_n;
    sl->n_cache += sl->step_n;
    if (was_prompt && sl->n_done_prompt < j->n_prompt) continue;
    ended[i] = slot_sample(s, sl);
    any_ended |= ended[i];
  }

  int32_t cells = 0;
  nllm_context_kv_cells(s->shared, &cells, NULL);
  double t1 = srv_now();
  pthread_mutex_lock(&s->mu);
  s->st.steps++;
  s->st.step_s += t1 - t0;
  if (*t_end > 0) s->st.gap_s += t0 - *t_end;
  *t_end = t1;
  s->kv_cells = cells;
  for (int i = 0; i < n; i++) {
    slot *sl = act[i];
    sl->n_cache_shown = sl->n_cache;
    if (sl->step_first) srv_hist_observe(&s->st.ttft, sl->job->t_first - sl->job->t_submit);
    s->st.gen_tokens += (uint64_t)sl->step_gen;
    sl->step_first = sl->step_gen = 0;
    if (sl->n_done_prompt < sl->job->n_prompt && !ended[i]) continue;
    publish(sl, ended[i]);
    if (ended[i]) slot_end(s, sl);
  }
  /* The readers of the step's text, woken once mu is free (woken under it, each would wake
   * only to wait for it). A job still running is held by its slot until this thread ends it,
   * so none of these is freed meanwhile; an ended one was woken by slot_end. */
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < n; i++)
    if (act[i]->wake) {
      act[i]->wake = 0;
      pthread_cond_broadcast(&act[i]->job->cond);
    }
  return any_ended;
}

static void *sched_main(void *arg) {
  srv_sched *s = arg;
  slot **act = calloc((size_t)s->p.n_slots, sizeof *act);
  int *ended = calloc((size_t)s->p.n_slots, sizeof *ended);
  double t_end = 0; /* when the last step ended; 0 after waiting for work */
  pthread_mutex_lock(&s->mu);
  while (act && ended) {
    atomic_store(&s->news, 0); /* all that was flagged so far is seen below, under mu */
    for (int i = 0; i < s->p.n_slots; i++) {
      slot *sl = &s->slots[i];
      if (sl->job && (sl->job->cancelled || s->stop)) {
        if (!sl->job->cancelled) {
          sl->job->finish = SRV_FINISH_ERROR;
          snprintf(sl->job->error, sizeof sl->job->error, "the server is shutting down");
        }
        slot_end(s, sl);
      }
    }
    while (s->q_len) {
      srv_job *j = s->queue[s->q_head];
      if (!j->cancelled && !s->stop) {
        int lcp;
        slot *sl = pick_slot(s, j, &lcp);
        if (!sl) break;
        s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
        if (slot_start(s, sl, j, lcp) == 0) continue;
        j->finish = SRV_FINISH_ERROR;
        s->st.requests_failed++;
      } else {
        s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
        if (s->stop) j->finish = SRV_FINISH_ERROR;
        if (j->cancelled) s->st.requests_cancelled++;
      }
      j->done = 1;
      pthread_cond_broadcast(&j->cond);
      job_unref(j);
    }
    if (s->stop) break;
    int n = 0;
    for (int i = 0; i < s->p.n_slots; i++)
      if (s->slots[i].job) act[n++] = &s->slots[i];
    if (!n) {
      t_end = 0;
      pthread_cond_wait(&s->work, &s->mu);
      continue;
    }
    pthread_mutex_unlock(&s->mu);
    /* The same slots step again until one ends or news comes: a stream's token then costs
     * this thread one lock, not two (the reader woken by the last step is taking it). */
    while (!sched_step(s, act, n, ended, &t_end) && !atomic_load(&s->news)) {
    }
    pthread_mutex_lock(&s->mu);
  }
  /* Jobs still waiting end as failed: the server stops. */
  while (s->q_len) {
    srv_job *j = s->queue[s->q_head];
    s->q_head = (s->q_head + 1) % s->q_cap, s->q_len--;
    j->finish = SRV_FINISH_ERROR;
    snprintf(j->error, sizeof j->error, "the server is shutting down");
    j->done = 1;
    pthread_cond_broadcast(&j->cond);
    job_unref(j);
  }
  pthread_mutex_unlock(&s->mu);
  free(act);
  free(ended);
  return NULL;
}

int srv_sched_create(const nllm_model *model, const srv_sched_params *p, srv_sched **out) {
  *out = NULL;
  srv_sched *s = calloc(1, sizeof *s);
  if (!s) return -1;
  s->model = model;
  s->p = *p;
  if (s->p.n_batch <= 0) s->p.n_batch = 256;
  s->n_vocab = nllm_model_n_vocab(model);
  /* submit admits up to n_slots + queue_max jobs not yet finished, and until the scheduler
   * thread moves them into slots they all sit in the queue (a burst of requests, or a list of
   * prompts submitted together): the ring holds that many, or one would overwrite another */
  s->q_cap = p->n_slots + (p->queue_max > 0 ? p->queue_max : 0);
  if (s->q_cap < 1) s->q_cap = 1;
  s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
  s->slots = calloc((size_t)p->n_slots, sizeof *s->slots);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->work, NULL);
  if (!s->queue || !s->slots) goto fail;
  for (nllm_token t = 0; t < s->n_vocab; t++)
    if (nllm_model_token_is_eog(model, t)) {
      nllm_token *e = realloc(s->eog, (size_t)(s->n_eog + 1) * sizeof *e);
      if (!e) goto fail;
      s->eog = e;
      s->eog[s->n_eog++] = t;
    }
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = p->n_ctx;
  cp.n_threads = p->n_threads;
  cp.n_batch = s->p.n_batch;
  if (p->kv_f32) cp.kv_type = NLLM_TYPE_F32;
  cp.bf16_activations = p->bf16_act;
  /* one pool for all slots: each slot (running or holding a cached prefix) keeps at most n_ctx
   * tokens, so n_slots x n_ctx cells always suffice; shared prefixes need fewer */
  if (!s->p.n_ctx) {
    int train = nllm_model_n_ctx_train(model);
    s->p.n_ctx = train > 0 && train < 4096 ? train : 4096;
  }
  cp.n_ctx = s->p.n_ctx * p->n_slots;
  cp.n_seq_max = p->n_slots;
  /* a step of prompt chunks beyond this is split by the engine; decode steps fit in one */
  cp.n_batch = s->p.n_batch > p->n_slots ? s->p.n_batch : p->n_slots;
  if (nllm_context_create(model, &cp, &s->shared)) {
    fprintf(stderr, "nllm serve: error: context of %d sequences: %s\n", p->n_slots,
            nllm_last_error());
    goto fail;
  }
  if (p->n_lora > SRV_MAX_LORA) goto fail;
  s->b_cap = s->p.n_batch * p->n_slots;
  s->b_tok = malloc((size_t)s->b_cap * sizeof *s->b_tok);
  s->b_pos = malloc((size_t)s->b_cap * sizeof *s->b_pos);
  s->b_seq = malloc((size_t)s->b_cap * sizeof *s->b_seq);
  s->b_logits = malloc((size_t)s->b_cap * sizeof *s->b_logits);
  if (!s->b_tok || !s->b_pos || !s->b_seq || !s->b_logits) goto fail;
  for (int i = 0; i < p->n_slots; i++) {
    slot *sl = &s->slots[i];
    sl->seq = i;
    if (!(sl->lcopy = malloc((size_t)s->n_vocab * sizeof *sl->lcopy))) goto fail;
    sl->cache = malloc((size_t)s->p.n_ctx * sizeof *sl->cache);
    sl->gen = malloc((size_t)s->p.n_ctx * sizeof *sl->gen);
    sl->counts = calloc((size_t)s->n_vocab, sizeof *sl->counts);
    sl->work = malloc((size_t)s->n_vocab * sizeof *sl->work);
    if (!sl->cache || !sl->gen || !sl->counts || !sl->work) goto fail;
  }
  if (pthread_create(&s->thread, NULL, sched_main, s)) goto fail;
  s->started = 1;
  *out = s;
  return 0;
fail:
  srv_sched_free(s);
  return -1;
}

void srv_sched_shutdown(srv_sched *s) {
  if (!s || !s->started) return;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  atomic_store(&s->news, 1);
  pthread_cond_signal(&s->work);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  s->started = 0;
}

void srv_sched_free(srv_sched *s) {
  if (!s) return;
  srv_sched_shutdown(s);
  for (int i = 0; s->slots && i < s->p.n_slots; i++) {
    slot *sl = &s->slots[i];
    free(sl->lcopy);
    nllm_sampler_free(sl->smp);
    srv_text_free(&sl->text);
    free(sl->cache);
    free(sl->gen);
    free(sl->counts);
    free(sl->work);
    free(sl->lps);
  }
  free(s->slots);
  nllm_context_free(s->shared);
  free(s->b_tok);
  free(s->b_pos);
  free(s->b_seq);
  free(s->b_logits);
  free(s->queue);
  free(s->eog);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->work);
  free(s);
}
