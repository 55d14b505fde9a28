/* The worker pool the CPU kernels split their work over. Each thread first claims the items of
 * its own contiguous share, then items left in the others' shares; the caller claims items too
 * and waits only for items other threads have started, never for a thread that has not woken
 * up yet. On a machine
 * whose cores are also busy with other processes this keeps a parallel step from stalling for
 * a scheduler time slice (fork-join regions wait for every thread at every step), and idle
 * workers yield their core instead of spinning on it. */
#ifndef NLLM_POOL_H
#define NLLM_POOL_H

#include <stdint.h>

/* Runs fn(ctx, item, worker) for every item in [0, n_items), on up to n_threads threads.
 * worker < n_threads identifies the thread (for per-thread scratch); one worker runs its items
 * one after another. Returns when every item has finished. Runs everything on the calling
 * thread when n_threads <= 1, when called from inside a pool item, or while another thread of
 * the application is using the pool (results are the same, only slower). */
typedef void (*nllm_pool_fn)(void *ctx, int64_t item, int worker);
void nllm_pool_run(int n_threads, int64_t n_items, nllm_pool_fn fn, void *ctx);

#endif
