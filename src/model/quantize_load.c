/* Tensor conversion through F32 with the format table's reference quantizers, rows split
 * across OpenMP threads; quantize-on-load is its use at load time, src/convert/ its use for
 * writing files. */
#include "model/quantize_load.h"

#include <omp.h>
#include <stdlib.h>

#include "qtypes.h"

nllm_status nllm_convert_row(const void *src, int32_t src_type, void *dst, int32_t dst_type,
                             int64_t n, float *tmp) {
  if (src_type == dst_type) {
    memcpy(dst, src, nllm_row_size(src_type, n));
    return NLLM_OK;
  }
  const nllm_qtype *qs = nllm_qtype_get(src_type), *qd = nllm_qtype_get(dst_type);
  if (!qs || !qd) return NLLM_ERR_UNSUPPORTED;
  if (dst_type == NLLM_TYPE_F32) {
    qs->to_float(src, dst, n);
    return NLLM_OK;
  }
  if (src_type == NLLM_TYPE_F32)
    memcpy(tmp, src, (size_t)n * sizeof *tmp);
  else
    qs->to_float(src, tmp, n);
  qd->from_float_ref(tmp, dst, n);
  return NLLM_OK;
}

/* GGUF row j of a head of size d pairs (2i, 2i+1); HF stores them at i and i + d/2. */
static int64_t permuted_source_row(int64_t j, int64_t d) {
  int64_t h = j / d, r = j % d;
  return h * d + (r % 2) * (d / 2) + r / 2;
}

static nllm_status check_type(const nllm_tensor *t, int32_t type, const char *why) {
  if (!nllm_qtype_get(type))
    return nllm_err(NLLM_ERR_UNSUPPORTED, "tensor '%s': %s type %s is not available in this build",
                    t->name, why, nllm_ggml_type_name(type) ? nllm_ggml_type_name(type) : "?");
  return NLLM_OK;
}

nllm_status nllm_tensor_convert(const nllm_tensor_job *job, int n_threads) {
  const nllm_tensor *t = job->t;
  int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
  nllm_status st;
  if ((st = check_type(t, t->type, "source")) != NLLM_OK) return st;
  if ((st = check_type(t, job->out_type, "target")) != NLLM_OK) return st;
  if (job->out_type != t->type && job->out_type != NLLM_TYPE_F32 &&
      !nllm_qtype_get(job->out_type)->from_float_ref)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "tensor '%s': type %s is read-only (no quantizer)",
                    t->name, nllm_ggml_type_name(job->out_type));
  size_t in_row = nllm_row_size(t->type, ne0), out_row = nllm_row_size(job->out_type, ne0);
  if (!in_row || !out_row)
    return nllm_err(NLLM_ERR_FORMAT, "tensor '%s': row of %lld does not fit the block size",
                    t->name, (long long)ne0);
  if (job->permute_heads && t->n_dims == 1) {
    /* a bias: permute elements (the rows of a 1-D tensor are its elements) */
    int64_t d = ne0 / job->permute_heads;
    float *all = nllm_malloc((size_t)ne0 * sizeof *all);
    if (!all) return nllm_err(NLLM_ERR_NOMEM, "out of memory converting '%s'", t->name);
    nllm_qtype_get(t->type)->to_float(t->data, all, ne0);
    float *o = job->out;
    for (int64_t j = 0; j < ne0; j++) o[j] = all[permuted_source_row(j, d)];
    free(all);
    return NLLM_OK;
  }
  int nt = n_threads > 0 ? n_threads : nllm_default_threads();
  if (rows < nt) nt = (int)(rows > 0 ? rows : 1);
  float *tmp = nllm_aligned_alloc((size_t)nt * (size_t)ne0 * sizeof *tmp);
  if (!tmp) return nllm_err(NLLM_ERR_NOMEM, "out of memory converting '%s'", t->name);
  int64_t d = job->permute_heads ? t->ne[1] / job->permute_heads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16)
  for (int64_t r = 0; r < rows; r++) {
    int64_t sr = job->permute_heads ? permuted_source_row(r, d) : r;
    float *buf = tmp + (size_t)omp_get_thread_num() * (size_t)ne0;
    nllm_convert_row((const uint8_t *)t->data + (size_t)sr * in_row, t->type,
                     (uint8_t *)job->out + (size_t)r * out_row, job->out_type, ne0, buf);
  }
  nllm_aligned_free(tmp);
  return NLLM_OK;
}

nllm_status nllm_source_quantize_inplace(nllm_source *src, int32_t type, int n_threads,
                                         nllm_progress_fn progress, void *user_data) {
  const nllm_qtype *q = nllm_qtype_get(type);
  if (!q || !q->from_float_ref)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "quantize-on-load: type %s is not available",
                    nllm_ggml_type_name(type) ? nllm_ggml_type_name(type) : "?");
  uint64_t total = 1, done_bytes = 0;
  for (int64_t i = 0; i < src->n_tensors; i++) total += src->tensors[i].nbytes;
  for (int64_t i = 0; i < src->n_tensors; i++) {
    nllm_tensor *t = &src->tensors[i];
    done_bytes += t->nbytes;
    if (t->n_dims < 2 || !nllm_type_is_float(t->type)) continue;
    /* an expert router (and Qwen2-MoE's shared expert gate, one row) stays float: its rounding
     * decides which experts run and how much */
    size_t nl = strlen(t->name);
    if (nl >= 20 && strcmp(t->name + nl - 20, ".ffn_gate_inp.weight") == 0) continue;
    if (nl >= 26 && strcmp(t->name + nl - 26, ".ffn_gate_inp_shexp.weight") == 0) continue;
    /* pure: the output matrix gets the same type as the rest (the caller asked for one type) */
    int32_t out = type;
    int32_t bs = q->block_size;
    if (t->ne[0] % bs) {
      out = t->ne[0] % 32 == 0 && type != NLLM_TYPE_Q8_0 ? NLLM_TYPE_Q8_0 : NLLM_TYPE_F16;
      nllm_log(NLLM_LOG_INFO, "%s: row length %lld is not a multiple of %d; stored as %s", t->name,
               (long long)t->ne[0], bs, nllm_ggml_type_name(out));
    }
    if (out == t->type) continue;
    uint64_t rows = (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]), bytes = 0;
    if (!nllm_ggml_tensor_bytes(out, (uint64_t)t->ne[0], rows, &bytes) || bytes > SIZE_MAX)
      return nllm_err(NLLM_ERR_FORMAT,
                      "quantize-on-load: '%s' as %s would need more than 2^64 "
                      "bytes",
                      t->name, nllm_ggml_type_name(out));
    void *buf = nllm_source_alloc(src, (size_t)bytes);
    if (!buf)
      return nllm_err(NLLM_ERR_NOMEM, "quantize-on-load: out of memory for '%s' (%llu bytes)",
                      t->name, (unsigned long long)bytes);
    nllm_tensor_job j = {t, out, 0, buf, bytes};
    nllm_status st = nllm_tensor_convert(&j, n_threads);
    if (st != NLLM_OK) return st;
    t->data = buf;
    t->type = out;
    t->nbytes = bytes;
    if (progress && progress((float)done_bytes / (float)total, user_data))
      return nllm_err(NLLM_ERR_ABORTED, "quantize-on-load cancelled by the progress callback");
  }
  return NLLM_OK;
}
