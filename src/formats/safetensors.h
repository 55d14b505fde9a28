/* safetensors reader: one file = 8-byte little-endian header length, a JSON header describing
 * each tensor (dtype, shape, [begin, end) offsets into the data section), then the raw data.
 * Entries come out as nllm_tensor rows with the file's own (Hugging Face) names; hf.c renames. */
#ifndef NLLM_SAFETENSORS_H
#define NLLM_SAFETENSORS_H

#include "formats/source.h"

/* Headers larger than this are refused: real ones are a few hundred KB even for 100B models,
 * so anything bigger is a corrupt or hostile length field. */
#define NLLM_ST_MAX_HEADER (100u * 1024u * 1024u)

/* A growable list of tensor rows (heap, nllm_realloc); names and copies are source-owned. */
typedef struct nllm_tensor_list {
  nllm_tensor *t;
  int64_t n, cap;
} nllm_tensor_list;

nllm_status nllm_tensor_list_push(nllm_tensor_list *list, const nllm_tensor *t);
void nllm_tensor_list_free(nllm_tensor_list *list);

/* Parses and validates a safetensors image buf[0..size). Appends one row per tensor to list;
 * data points into buf, names are copied into src. `file` names the file in messages.
 * Tensors whose data is not aligned to their element size are copied into aligned source
 * memory so every consumer may read them as typed arrays. */
nllm_status safetensors_parse(nllm_source *src, const uint8_t *buf, uint64_t size, const char *file,
                              nllm_tensor_list *list);

/* Maps path (kept in src->maps so tensor data lives as long as src) and parses it. */
nllm_status safetensors_open(nllm_source *src, const char *path, int use_mmap,
                             nllm_tensor_list *list);

#endif
