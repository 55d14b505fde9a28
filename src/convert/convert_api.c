/* The public conversion ABI (nllm_convert, nllm_quantize, nllm_type_parse): argument checks,
 * the destination check before any work, and the stats. */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "convert/convert.h"

NLLM_API nllm_status nllm_type_parse(const char *name, int32_t *type, int32_t *is_preset) {
  if (!type) return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_type_parse: type is NULL");
  if (!name || !*name)
    return nllm_err(NLLM_ERR_INVALID_ARG, "empty weight type name (valid: %s)",
                    nllm_quant_target_names());
  nllm_quant_target tg;
  nllm_status st = nllm_quant_target_parse(name, &tg);
  if (st != NLLM_OK) return st;
  *type = tg.type;
  if (is_preset) *is_preset = tg.kind >= NLLM_PRESET_Q3_K_M;
  return NLLM_OK;
}

NLLM_API const char *nllm_type_names(void) {
  return nllm_quant_target_names();
}

NLLM_API nllm_status nllm_convert_params_init_sized(nllm_convert_params *p, size_t size) {
  nllm_convert_params d;
  memset(&d, 0, sizeof d);
  d.type = NLLM_TYPE_NONE;
  return nllm_init_params(p, size, &d, sizeof d, "nllm_convert_params");
}

NLLM_API void(nllm_convert_params_init)(nllm_convert_params *p) {
  nllm_convert_params_init_sized(p, NLLM_PARAMS_V1_SIZE(nllm_convert_params, progress_user_data));
}

/* The user's path is named in every message: a missing folder or an unwritable one is found
 * here, before minutes of conversion, not when the temporary file is created. */
static nllm_status check_destination(const char *out_path) {
  struct stat sb;
  if (stat(out_path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return nllm_err(NLLM_ERR_IO, "cannot write %s: it is a folder (give a file name)", out_path);
  size_t n = strlen(out_path) + 1;
  char *copy = nllm_malloc(n);
  if (!copy) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  memcpy(copy, out_path, n);
  const char *dir = dirname(copy);
  nllm_status st = NLLM_OK;
  if (stat(dir, &sb) != 0)
    st = nllm_err(NLLM_ERR_IO, "cannot write %s: folder %s: %s", out_path, dir, strerror(errno));
  else if (!S_ISDIR(sb.st_mode))
    st = nllm_err(NLLM_ERR_IO, "cannot write %s: %s is not a folder", out_path, dir);
  else if (access(dir, W_OK) != 0)
    st = nllm_err(NLLM_ERR_IO, "cannot write %s: folder %s: %s", out_path, dir, strerror(errno));
  free(copy);
  return st;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The base is loaded as a model (mapped, nothing computed) so the adapters are checked against
 * it exactly as at run time; its source is then converted with the adapters merged. */
static nllm_status convert_merged(const nllm_convert_params *p, const char *in_path,
                                  const char *out_path, const char *target, uint64_t *bytes_in,
                                  int32_t *n_tensors) {
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.use_mmap = 1;
  mp.n_threads = p->n_threads;
  nllm_model *m = NULL;
  nllm_status st = nllm_mdl_load(in_path, &mp, &m);
  if (st) return st;
  nllm_lora_active *lora = nllm_calloc((size_t)p->n_lora, sizeof *lora);
  int32_t n = 0;
  if (!lora) st = nllm_err(NLLM_ERR_NOMEM, "out of memory");
  for (; !st && n < p->n_lora; n++) {
    if (p->lora_scales && !isfinite(p->lora_scales[n])) {
      st = nllm_err(NLLM_ERR_INVALID_ARG, "lora_scales[%d] is not finite", n);
      break;
    }
    if (!p->lora_paths[n]) {
      st = nllm_err(NLLM_ERR_INVALID_ARG, "lora_paths[%d] is NULL", n);
      break;
    }
    /* F32 kept: the merge adds B A to the weights exactly before any conversion */
    if ((st = nllm_lora_load(m, p->lora_paths[n], NLLM_TYPE_F32, &lora[n].a))) break;
    lora[n].scale = p->lora_scales ? p->lora_scales[n] : 1.0f;
  }
  if (!st) {
    for (int64_t i = 0; i < m->src.n_tensors; i++) *bytes_in += m->src.tensors[i].nbytes;
    *n_tensors = (int32_t)m->src.n_tensors;
    st = nllm_convert_source_merged(&m->src, out_path, target, p->n_threads, p->progress,
                                    p->progress_user_data, lora, n);
  }
  for (int32_t k = 0; lora && k < n; k++) nllm_lora_release(lora[k].a);
  free(lora);
  nllm_mdl_free(m);
  return st;
}

static nllm_status run(const char *fn, int need_type, const char *in_path, const char *out_path,
                       const nllm_convert_params *params, nllm_convert_stats *stats) {
  double t0 = now_seconds();
  nllm_convert_params p;
  nllm_convert_params_init(&p);
  if (!in_path || !out_path) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: NULL path", fn);
  if (params) {
    if (params->struct_size < sizeof(uint32_t) || params->struct_size > sizeof p)
      return nllm_err(NLLM_ERR_INVALID_ARG, "%s: params.struct_size %u is not valid", fn,
                      params->struct_size);
    memcpy(&p, params, params->struct_size);
  }
  if (stats && stats->struct_size < sizeof(uint32_t))
    return nllm_err(NLLM_ERR_INVALID_ARG, "%s: stats.struct_size must be set", fn);
  if (p.n_threads < 0) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: n_threads < 0", fn);
  const char *target = p.type_name && *p.type_name ? p.type_name : NULL;
  if (!target && p.type != NLLM_TYPE_NONE) {
    target = nllm_type_name(p.type);
    if (!target)
      return nllm_err(NLLM_ERR_INVALID_ARG, "%s: type %d is not a weight type (valid: %s)", fn,
                      p.type, nllm_quant_target_names());
  }
  if (need_type && !target)
    return nllm_err(NLLM_ERR_INVALID_ARG, "%s: no target type given (valid: %s)", fn,
                    nllm_quant_target_names());
  nllm_quant_target tg;
  nllm_status st = nllm_quant_target_parse(target, &tg);
  if (st != NLLM_OK) return st;
  if ((st = check_destination(out_path)) != NLLM_OK) return st;

  if (p.n_lora < 0 || p.n_lora > 64 || (p.n_lora > 0 && !p.lora_paths))
    return nllm_err(NLLM_ERR_INVALID_ARG, "%s: n_lora %d (0..64) or lora_paths NULL", fn, p.n_lora);
  uint64_t bytes_in = 0;
  int32_t n_tensors = 0;
  if (p.n_lora > 0) {
    st = convert_merged(&p, in_path, out_path, target, &bytes_in, &n_tensors);
  } else {
    nllm_source src;
    if ((st = nllm_source_open(in_path, 1, &src)) != NLLM_OK) return st;
    for (int64_t i = 0; i < src.n_tensors; i++) bytes_in += src.tensors[i].nbytes;
    n_tensors = (int32_t)src.n_tensors;
    st = nllm_convert_source(&src, out_path, target, p.n_threads, p.progress, p.progress_user_data);
    nllm_source_free(&src);
  }
  if (st != NLLM_OK) return st;
  if (stats) {
    struct stat sb;
    nllm_convert_stats s = {sizeof s, n_tensors, bytes_in,
                            stat(out_path, &sb) == 0 ? (uint64_t)sb.st_size : 0,
                            now_seconds() - t0};
    uint32_t n = stats->struct_size < sizeof s ? stats->struct_size : (uint32_t)sizeof s;
    memcpy(stats, &s, n);
    stats->struct_size = n;
  }
  return NLLM_OK;
}

NLLM_API nllm_status nllm_convert(const char *in_path, const char *out_path,
                                  const nllm_convert_params *params, nllm_convert_stats *stats) {
  return run("nllm_convert", 0, in_path, out_path, params, stats);
}

NLLM_API nllm_status nllm_quantize(const char *in_path, const char *out_path,
                                   const nllm_convert_params *params, nllm_convert_stats *stats) {
  return run("nllm_quantize", 1, in_path, out_path, params, stats);
}
