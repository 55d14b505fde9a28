/* The machine's memory-read bandwidth, measured: the yardstick every decode figure is reported
 * against (decode reads each weight byte once per token). */
#ifndef NLLM_BANDWIDTH_H
#define NLLM_BANDWIDTH_H

#include <stddef.h>

/* Median GB/s over `runs` passes of `threads` threads reading disjoint parts of a fresh buffer
 * of `bytes` (make it several times the last-level cache). 0 if the buffer cannot be had. */
double nllm_probe_read_gbs(size_t bytes, int threads, int runs);

#endif
