/* The kernels' worker pool (see pool.h). One job at a time. Each thread owns a contiguous
 * range of the job's items (memory is then read in long sequential runs, as with a static
 * split) and, when its range is done, takes items from the others' ranges. A range's counter
 * holds the job's number (high half) with the next item and the range's end, so a worker that
 * wakes late and still thinks of an old job fails its claim instead of running an item of the
 * new one. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define POOL_MAX_THREADS 64
/* An idle worker polls (yielding its core to anyone who wants it) this long after its last
 * job before it sleeps; a forward pass issues jobs every few microseconds, a user's pause
 * between requests is much longer. */
#define IDLE_POLL_NS 2000000

static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;
static atomic_int n_sleepers;
static int n_workers; /* threads started so far; under run_lock */

/* Items per range are at most 0xffff: a job of more runs them in chunks of several. */
#define MAX_CHUNKS 0xffff
typedef struct {
  _Alignas(64) _Atomic uint64_t c; /* job << 32 | next chunk << 16 | end chunk */
} range_counter;
static range_counter ranges[POOL_MAX_THREADS];
static _Atomic uint32_t job_seq; /* the current job's number */
static _Atomic(nllm_pool_fn) job_fn;
static _Atomic(void *) job_ctx;
static atomic_llong job_items, job_chunk;
static atomic_int job_threads;
static _Alignas(64) atomic_llong chunks_done;

static _Thread_local int inside_pool;
/* Set when the library is unloaded: workers leave their loop so none is left running code that
 * dlclose is about to unmap. */
static atomic_int stopping, n_alive;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs chunks of job `job`, from the worker's own range first, until none is left
 * anywhere or the job is no longer current. A claim takes several chunks while many are left,
 * one near the end, so that the threads still finish together. */
static void run_items(uint32_t job, int nt, int64_t n, int64_t chunk, nllm_pool_fn fn, void *ctx,
                      int worker) {
  int64_t done = 0; /* counted once at the end: the shared counter is polled by the caller */
  for (int k = 0; k < nt; k++) {
    _Atomic uint64_t *rc = &ranges[(worker + k) % nt].c;
    uint64_t c = atomic_load(rc);
    for (;;) {
      const uint64_t next = (c >> 16) & 0xffff, end = c & 0xffff;
      if ((uint32_t)(c >> 32) != job || next >= end) break;
      /* an eighth of what is left in the range, at least one chunk: the locked compare-
       * exchange of a claim an item took 5% of a 16-sequence decode step's CPU time (perf,
       * 1.1B Q8_0; a 16-row group an item, ~1,100 items a layer), while a thread descheduled
       * after its claim holds up the others by at most an eighth of its range */
      const uint64_t take = (end - next + 7) / 8;
      if (!atomic_compare_exchange_weak(rc, &c, c + (take << 16))) continue;
      const int64_t i0 = (int64_t)next * chunk;
      const int64_t i1 = i0 + (int64_t)take * chunk < n ? i0 + (int64_t)take * chunk : n;
      for (int64_t i = i0; i < i1; i++) fn(ctx, i, worker);
      done += (int64_t)take;
      c = atomic_load(rc);
    }
  }
  if (done) atomic_fetch_add(&chunks_done, done);
}

static uint32_t wait_for_job(uint32_t seen) {
  int64_t t0 = 0;
  for (unsigned spin = 0;; spin++) {
    uint32_t c = atomic_load(&job_seq);
    if (c != seen) return c;
    if (spin < 256) {
      cpu_relax();
      continue;
    }
    sched_yield();
    if (spin % 64) continue;
    if (!t0) t0 = now_ns();
    if (now_ns() - t0 < IDLE_POLL_NS) continue;
    pthread_mutex_lock(&sleep_lock);
    atomic_fetch_add(&n_sleepers, 1);
    while ((c = atomic_load(&job_seq)) == seen) pthread_cond_wait(&sleep_cond, &sleep_lock);
    atomic_fetch_sub(&n_sleepers, 1);
    pthread_mutex_unlock(&sleep_lock);
    return c;
  }
}

static void *worker_main(void *arg) {
  /* the job current when the thread was made: the next one is its first */
  const int id = (int)((uintptr_t)arg & 0xff);
  uint32_t seen = (uint32_t)((uintptr_t)arg >> 8);
  inside_pool = 1;
  for (;;) {
    seen = wait_for_job(seen);
    if (atomic_load(&stopping)) break;
    /* these may already belong to a later job; run_items then claims nothing */
    int nt = atomic_load(&job_threads);
    if (id >= nt) continue;
    run_items(seen, nt, atomic_load(&job_items), atomic_load(&job_chunk), atomic_load(&job_fn),
              atomic_load(&job_ctx), id);
  }
  atomic_fetch_sub(&n_alive, 1);
  return NULL;
}

/* Runs at dlclose (and process exit): wakes every worker with a last "job" that tells it to
 * stop, and waits a bounded time for them to leave the library's code. */
__attribute__((destructor)) static void pool_shutdown(void) {
  if (!atomic_load(&n_alive)) return;
  atomic_store(&stopping, 1);
  atomic_fetch_add(&job_seq, 1);
  pthread_mutex_lock(&sleep_lock);
  pthread_cond_broadcast(&sleep_cond);
  pthread_mutex_unlock(&sleep_lock);
  for (int64_t t0 = now_ns(); atomic_load(&n_alive) > 0 && now_ns() - t0 < 200000000;)
    sched_yield();
}

static void run_serial(int64_t n_items, nllm_pool_fn fn, void *ctx) {
  for (int64_t i = 0; i < n_items; i++) fn(ctx, i, 0);
}

void nllm_pool_run(int n_threads, int64_t n_items, nllm_pool_fn fn, void *ctx) {
  if (n_items <= 0) return;
  if (n_threads > POOL_MAX_THREADS) n_threads = POOL_MAX_THREADS;
  if (n_threads <= 1 || n_items == 1 || inside_pool || pthread_mutex_trylock(&run_lock) != 0) {
    run_serial(n_items, fn, ctx);
    return;
  }
  while (n_workers < n_threads - 1) {
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    uintptr_t arg = (uintptr_t)atomic_load(&job_seq) << 8 | (uintptr_t)(n_workers + 1);
    atomic_fetch_add(&n_alive, 1);
    int ok = pthread_create(&th, &attr, worker_main, (void *)arg) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) {
      atomic_fetch_sub(&n_alive, 1);
      break; /* run with the workers we have */
    }
    n_workers++;
  }
  if (n_threads > n_workers + 1) n_threads = n_workers + 1;

  inside_pool = 1;
  const int64_t chunk = (n_items + MAX_CHUNKS - 1) / MAX_CHUNKS;
  const int64_t n_chunks = (n_items + chunk - 1) / chunk;
  if (n_threads > n_chunks) n_threads = (int)n_chunks;
  const uint32_t job = atomic_load(&job_seq) + 1;
  atomic_store(&job_fn, fn);
  atomic_store(&job_ctx, ctx);
  atomic_store(&job_items, n_items);
  atomic_store(&job_chunk, chunk);
  atomic_store(&job_threads, n_threads);
  atomic_store(&chunks_done, 0);
  for (int w = 0; w < n_threads; w++) {
    uint64_t a = (uint64_t)(n_chunks * w / n_threads),
             b = (uint64_t)(n_chunks * (w + 1) / n_threads);
    atomic_store(&ranges[w].c, (uint64_t)job << 32 | a << 16 | b);
  }
  atomic_store(&job_seq, job);
  if (atomic_load(&n_sleepers)) {
    pthread_mutex_lock(&sleep_lock);
    pthread_cond_broadcast(&sleep_cond);
    pthread_mutex_unlock(&sleep_lock);
  }
  run_items(job, n_threads, n_items, chunk, fn, ctx, 0);
  /* every chunk is claimed; wait only for the ones still running elsewhere */
  for (unsigned spin = 0; atomic_load(&chunks_done) < n_chunks; spin++) {
    if (spin < 1024)
      cpu_relax();
    else
      sched_yield();
  }
  inside_pool = 0;
  pthread_mutex_unlock(&run_lock);
}
