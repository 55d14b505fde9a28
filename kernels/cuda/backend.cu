/* The CUDA backend's context, memory and weight upload (see backend_cuda.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"

extern "C" {
#include "qtypes.h"
}

nllm_status nllm_cuda_fail(cudaError_t e, const char *call, const char *file, int line) {
  (void)cudaGetLastError(); /* clear a non-sticky error so the context stays usable */
  nllm_status st = e == cudaErrorMemoryAllocation ? NLLM_ERR_NOMEM : NLLM_ERR_BACKEND;
  return nllm_err(st, "CUDA: %s failed at %s:%d: %s (%s)", call, file, line, cudaGetErrorName(e),
                  cudaGetErrorString(e));
}

nllm_status nllm_cublas_fail(cublasStatus_t s, const char *call, const char *file, int line) {
  return nllm_err(s == CUBLAS_STATUS_ALLOC_FAILED ? NLLM_ERR_NOMEM : NLLM_ERR_BACKEND,
                  "cuBLAS: %s failed at %s:%d: %s (%s)", call, file, line, cublasGetStatusName(s),
                  cublasGetStatusString(s));
}

int32_t nllm_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

/* Why no device can be used, in words a user can act on. */
static nllm_status no_device_error(cudaError_t e) {
  int drv = 0, rt = 0;
  (void)cudaDriverGetVersion(&drv);
  (void)cudaRuntimeGetVersion(&rt);
  (void)cudaGetLastError();
  /* with no driver installed at all, the runtime also says "insufficient driver" */
  if (drv == 0) return nllm_err(NLLM_ERR_BACKEND, "no CUDA device found (no NVIDIA driver loaded)");
  if (e == cudaErrorInsufficientDriver || drv < rt)
    return nllm_err(NLLM_ERR_BACKEND,
                    "CUDA driver too old for this build (driver %d.%d, runtime %d.%d): update the "
                    "NVIDIA driver or run on the CPU",
                    drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
  if (e == cudaErrorNoDevice || e == cudaSuccess)
    return nllm_err(NLLM_ERR_BACKEND, "no CUDA device found");
  return nllm_err(NLLM_ERR_BACKEND, "CUDA unavailable: %s (%s)", cudaGetErrorName(e),
                  cudaGetErrorString(e));
}

nllm_status nllm_cuda_init(int32_t device, nllm_cuda **out) {
  *out = NULL;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) return no_device_error(e);
  if (device < 0 || device >= n)
    return nllm_err(NLLM_ERR_INVALID_ARG, "CUDA device %d requested, but %d found", device, n);
  nllm_cuda *cu = (nllm_cuda *)nllm_calloc(1, sizeof *cu);
  if (!cu) return nllm_err(NLLM_ERR_NOMEM, "out of memory for the CUDA context");
  cu->device = device;
  nllm_status st = NLLM_OK;
#define INIT_TRY(call)              \
  do {                              \
    if ((st = (call)) != NLLM_OK) { \
      nllm_cuda_free(cu);           \
      return st;                    \
    }                               \
  } while (0)
  cudaDeviceProp prop;
  e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) {
    nllm_cuda_free(cu);
    return e == cudaErrorInsufficientDriver
               ? no_device_error(e)
               : nllm_cuda_fail(e, "cudaSetDevice", __FILE__, __LINE__);
  }
  snprintf(cu->name, sizeof cu->name, "%s", prop.name);
  cu->cc = prop.major * 10 + prop.minor;
  if (cu->cc < 80) {
    nllm_cuda_free(cu);
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "CUDA device %d (%s) has compute capability %d.%d; this build needs 8.0 or "
                    "newer",
                    device, prop.name, prop.major, prop.minor);
  }
  e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    cu->stream = NULL;
    nllm_cuda_free(cu);
    return nllm_cuda_fail(e, "cudaStreamCreateWithFlags", __FILE__, __LINE__);
  }
  {
    cublasStatus_t bs = cublasCreate(&cu->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
      cu->blas = NULL;
      st = nllm_cublas_fail(bs, "cublasCreate", __FILE__, __LINE__);
      nllm_cuda_free(cu);
      return st;
    }
  }
  INIT_TRY(cublasSetStream(cu->blas, cu->stream) == CUBLAS_STATUS_SUCCESS
               ? NLLM_OK
               : nllm_err(NLLM_ERR_BACKEND, "cuBLAS: cublasSetStream failed"));
  {
    const size_t ws = (size_t)32 << 20;
    INIT_TRY(nllm_cuda_alloc(cu, ws, "cuBLAS workspace", &cu->blas_ws));
    cublasStatus_t bs = cublasSetWorkspace(cu->blas, cu->blas_ws, ws);
    if (bs != CUBLAS_STATUS_SUCCESS)
      INIT_TRY(nllm_cublas_fail(bs, "cublasSetWorkspace", __FILE__, __LINE__));
  }
#undef INIT_TRY
  nllm_log(NLLM_LOG_INFO, "CUDA device %d: %s, compute %d.%d, %.1f GiB", device, prop.name,
           prop.major, prop.minor, (double)prop.totalGlobalMem / 1073741824.0);
  *out = cu;
  return NLLM_OK;
}

void nllm_cuda_free(nllm_cuda *cu) {
  if (!cu) return;
  if (cu->stream) (void)cudaStreamSynchronize(cu->stream);
  (void)cudaFree(cu->act_q);
  (void)cudaFree(cu->act_ds);
  (void)cudaFree(cu->x16);
  (void)cudaFree(cu->w16);
  (void)cudaFree(cu->att);
  if (cu->blas) (void)cublasDestroy(cu->blas);
  (void)cudaFree(cu->blas_ws);
  if (cu->stream) (void)cudaStreamDestroy(cu->stream);
  (void)cudaGetLastError();
  free(cu);
}

nllm_status nllm_cuda_device_info(nllm_cuda *cu, char *name, size_t name_cap, int32_t *cc,
                                  size_t *free_bytes, size_t *total_bytes) {
  if (name && name_cap) snprintf(name, name_cap, "%s", cu->name);
  if (cc) *cc = cu->cc;
  size_t f = 0, t = 0;
  CU_TRY(cudaMemGetInfo(&f, &t));
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- memory */

nllm_status nllm_cuda_alloc(nllm_cuda *cu, size_t bytes, const char *what, void **d_out) {
  *d_out = NULL;
  cudaError_t e = cudaMalloc(d_out, bytes ? bytes : 1);
  if (e == cudaSuccess) return NLLM_OK;
  *d_out = NULL;
  (void)cudaGetLastError();
  size_t f = 0, t = 0;
  (void)cudaMemGetInfo(&f, &t);
  (void)cudaGetLastError();
  if (e == cudaErrorMemoryAllocation)
    return nllm_err(NLLM_ERR_NOMEM,
                    "CUDA out of memory allocating %s: %.1f MiB requested, %.1f MiB free of "
                    "%.1f MiB on %s",
                    what, (double)bytes / 1048576.0, (double)f / 1048576.0, (double)t / 1048576.0,
                    cu->name);
  return nllm_err(NLLM_ERR_BACKEND, "CUDA: cudaMalloc of %zu bytes for %s failed: %s", bytes, what,
                  cudaGetErrorString(e));
}

void nllm_cuda_dfree(nllm_cuda *cu, void *d_ptr) {
  (void)cu;
  if (d_ptr) (void)cudaFree(d_ptr);
  (void)cudaGetLastError();
}

nllm_status nllm_cuda_upload(nllm_cuda *cu, void *d_dst, const void *src, size_t bytes) {
  if (!bytes) return NLLM_OK;
  /* synchronous: the host buffer (pageable or pinned) is free again on return */
  CU_TRY(cudaMemcpyAsync(d_dst, src, bytes, cudaMemcpyHostToDevice, cu->stream));
  CU_TRY(cudaStreamSynchronize(cu->stream));
  return NLLM_OK;
}

nllm_status nllm_cuda_download(nllm_cuda *cu, void *dst, const void *d_src, size_t bytes) {
  if (!bytes) return nllm_cuda_sync(cu);
  CU_TRY(cudaMemcpyAsync(dst, d_src, bytes, cudaMemcpyDeviceToHost, cu->stream));
  CU_TRY(cudaStreamSynchronize(cu->stream));
  return NLLM_OK;
}

nllm_status nllm_cuda_copy(nllm_cuda *cu, void *d_dst, const void *d_src, size_t bytes) {
  if (!bytes) return NLLM_OK;
  CU_TRY(cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, cu->stream));
  return NLLM_OK;
}

nllm_status nllm_cuda_copy_rows(nllm_cuda *cu, float *d_dst, int64_t dst_stride, const float *d_src,
                                int64_t src_stride, int64_t width, int64_t n_rows) {
  if (width <= 0 || n_rows <= 0) return NLLM_OK;
  CU_TRY(cudaMemcpy2DAsync(d_dst, (size_t)dst_stride * sizeof(float), d_src,
                           (size_t)src_stride * sizeof(float), (size_t)width * sizeof(float),
                           (size_t)n_rows, cudaMemcpyDeviceToDevice, cu->stream));
  return NLLM_OK;
}

nllm_status nllm_cuda_memset(nllm_cuda *cu, void *d_dst, int value, size_t bytes) {
  if (!bytes) return NLLM_OK;
  CU_TRY(cudaMemsetAsync(d_dst, value, bytes, cu->stream));
  return NLLM_OK;
}

nllm_status nllm_cuda_sync(nllm_cuda *cu) {
  CU_TRY(cudaStreamSynchronize(cu->stream));
  return NLLM_OK;
}

nllm_status cuda_scratch_ensure(nllm_cuda *cu, void **buf, size_t *cap, size_t need, size_t elem,
                                const char *what) {
  if (need <= *cap) return NLLM_OK;
  cu->scratch_gen++; /* a recorded graph that reads the old buffer is stale */
  /* cudaFree waits for kernels still using the old buffer */
  if (*buf) (void)cudaFree(*buf);
  *buf = NULL;
  *cap = 0;
  nllm_status st = nllm_cuda_alloc(cu, need * elem, what, buf);
  if (st != NLLM_OK) return st;
  *cap = need;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- weights */

int nllm_cuda_type_native(int32_t type) {
  return nllm_cuda_native_types::visit(type, [](auto) {});
}

size_t nllm_cuda_weight_bytes(int32_t type, int64_t rows, int64_t cols) {
  int32_t dt = nllm_cuda_type_native(type) ? type : NLLM_TYPE_F16;
  return nllm_row_size(dt, cols) * (size_t)rows;
}

nllm_status nllm_cuda_weight_upload(nllm_cuda *cu, const void *host, int32_t type, int64_t rows,
                                    int64_t cols, const char *name, nllm_cuda_weight *out) {
  memset(out, 0, sizeof *out);
  const nllm_qtype *q = nllm_qtype_get(type);
  if (!q || rows <= 0 || cols <= 0 || cols % q->block_size)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "CUDA: tensor '%s': type %d with %lld x %lld cannot be "
                    "uploaded",
                    name, type, (long long)rows, (long long)cols);
  const int native = nllm_cuda_type_native(type);
  const int32_t dt = native ? type : NLLM_TYPE_F16;
  const size_t src_row = nllm_row_size(type, cols), dst_row = nllm_row_size(dt, cols);
  const size_t bytes = dst_row * (size_t)rows;
  void *d = NULL;
  char what[160];
  snprintf(what, sizeof what, "weight '%s'", name);
  nllm_status st = nllm_cuda_alloc(cu, bytes, what, &d);
  if (st != NLLM_OK) return st;
  if (native) {
    st = nllm_cuda_upload(cu, d, host, bytes);
  } else {
    nllm_log(NLLM_LOG_INFO, "CUDA: '%s' is %s, dequantized to F16 on the device (%.1f MiB)", name,
             q->name, (double)bytes / 1048576.0);
    /* rows go through a host staging buffer of about 8 MiB */
    int64_t chunk = (int64_t)(((size_t)8 << 20) / dst_row);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    float *tmp = (float *)nllm_malloc((size_t)cols * sizeof(float));
    uint16_t *stage = (uint16_t *)nllm_malloc(dst_row * (size_t)chunk);
    if (!tmp || !stage) st = nllm_err(NLLM_ERR_NOMEM, "out of host memory converting '%s'", name);
    for (int64_t r0 = 0; st == NLLM_OK && r0 < rows; r0 += chunk) {
      int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
      for (int64_t r = 0; r < nr && st == NLLM_OK; r++) {
        q->to_float((const uint8_t *)host + (size_t)(r0 + r) * src_row, tmp, cols);
        for (int64_t c = 0; c < cols; c++) {
          if (!(fabsf(tmp[c]) <= 65504.0f)) {
            st = nllm_err(NLLM_ERR_UNSUPPORTED,
                          "CUDA: tensor '%s' (%s) row %lld col %lld holds "
                          "%g, outside the F16 range it is converted to",
                          name, q->name, (long long)(r0 + r), (long long)c, (double)tmp[c]);
            break;
          }
          stage[r * cols + c] = nllm_fp32_to_fp16(tmp[c]);
        }
      }
      if (st == NLLM_OK)
        st = nllm_cuda_upload(cu, (uint8_t *)d + (size_t)r0 * dst_row, stage, dst_row * (size_t)nr);
    }
    free(tmp);
    free(stage);
  }
  if (st != NLLM_OK) {
    nllm_cuda_dfree(cu, d);
    return st;
  }
  out->data = d;
  out->type = dt;
  out->src_type = type;
  out->rows = rows;
  out->cols = cols;
  out->row_bytes = dst_row;
  return NLLM_OK;
}

void nllm_cuda_weight_free(nllm_cuda *cu, nllm_cuda_weight *w) {
  if (!w) return;
  nllm_cuda_dfree(cu, w->data);
  memset(w, 0, sizeof *w);
}

nllm_status nllm_cuda_upload_f32(nllm_cuda *cu, const float *host, int64_t n, const char *name,
                                 float **d_out) {
  *d_out = NULL;
  void *d = NULL;
  char what[160];
  snprintf(what, sizeof what, "vector '%s'", name);
  nllm_status st = nllm_cuda_alloc(cu, (size_t)n * sizeof(float), what, &d);
  if (st == NLLM_OK) st = nllm_cuda_upload(cu, d, host, (size_t)n * sizeof(float));
  if (st != NLLM_OK) {
    nllm_cuda_dfree(cu, d);
    return st;
  }
  *d_out = (float *)d;
  return NLLM_OK;
}

void *nllm_cuda_stream(nllm_cuda *cu) {
  return (void *)cu->stream;
}

struct nllm_cuda_graph {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
};

nllm_status nllm_cuda_capture_begin(nllm_cuda *cu, const int32_t *d_pos0) {
  /* thread-local: another context's calls from another thread are not part of this capture */
  CU_TRY(cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal));
  cu->d_pos0 = d_pos0;
  return NLLM_OK;
}

nllm_status nllm_cuda_capture_end(nllm_cuda *cu, nllm_cuda_graph **out) {
  *out = NULL;
  cu->d_pos0 = NULL;
  cudaGraph_t graph = NULL;
  const cudaError_t e = cudaStreamEndCapture(cu->stream, &graph);
  if (e != cudaSuccess) {
    if (graph) (void)cudaGraphDestroy(graph);
    return nllm_cuda_fail(e, "cudaStreamEndCapture", __FILE__, __LINE__);
  }
  nllm_cuda_graph *g = (nllm_cuda_graph *)calloc(1, sizeof *g);
  if (!g) {
    (void)cudaGraphDestroy(graph);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory for a CUDA graph");
  }
  g->graph = graph;
  const cudaError_t ie = cudaGraphInstantiate(&g->exec, graph, 0);
  if (ie != cudaSuccess) {
    g->exec = NULL;
    nllm_cuda_graph_free(g);
    return nllm_cuda_fail(ie, "cudaGraphInstantiate", __FILE__, __LINE__);
  }
  *out = g;
  return NLLM_OK;
}

nllm_status nllm_cuda_graph_launch(nllm_cuda *cu, nllm_cuda_graph *g) {
  CU_TRY(cudaGraphLaunch(g->exec, cu->stream));
  return NLLM_OK;
}

void nllm_cuda_graph_free(nllm_cuda_graph *g) {
  if (!g) return;
  if (g->exec) (void)cudaGraphExecDestroy(g->exec);
  if (g->graph) (void)cudaGraphDestroy(g->graph);
  free(g);
}

uint64_t nllm_cuda_scratch_generation(const nllm_cuda *cu) {
  return cu->scratch_gen;
}

nllm_status nllm_cuda_upload_async(nllm_cuda *cu, void *d_dst, const void *src, size_t bytes) {
  CU_TRY(cudaMemcpyAsync(d_dst, src, bytes, cudaMemcpyHostToDevice, cu->stream));
  return NLLM_OK;
}

nllm_status nllm_cuda_reserve(nllm_cuda *cu, int64_t max_tok, int64_t max_cols, int64_t max_rows,
                              int64_t n_ctx, int64_t n_head, int64_t head_dim) {
  nllm_status st;
  cu->n_ctx_max = n_ctx;
  const int64_t mmv_tok = max_tok < NLLM_CUDA_MMV_MAX ? max_tok : NLLM_CUDA_MMV_MAX;
  const size_t act = (size_t)(mmv_tok * max_cols);
  if ((st = cuda_scratch_ensure(cu, (void **)&cu->act_q, &cu->act_cap, act, 1,
                                "activations (int8)")))
    return st;
  if ((st = cuda_scratch_ensure(cu, (void **)&cu->act_ds, &cu->act_ds_cap, act / 32 + 1,
                                sizeof(float2), "activation scales")))
    return st;
  if (max_tok > NLLM_CUDA_MMV_MAX) {
    if ((st = cuda_scratch_ensure(cu, (void **)&cu->x16, &cu->x16_cap, (size_t)(max_tok * max_cols),
                                  sizeof(__half), "GEMM activations (F16)")))
      return st;
    const int64_t tr = cuda_gemm_tile_rows(max_rows, max_cols);
    if ((st = cuda_scratch_ensure(cu, (void **)&cu->w16, &cu->w16_cap, (size_t)(tr * max_cols),
                                  sizeof(__half), "GEMM weight tile (F16)")))
      return st;
  }
  return cuda_scratch_ensure(cu, (void **)&cu->att, &cu->att_cap,
                             cuda_attention_scratch(max_tok, n_ctx, n_head, head_dim),
                             sizeof(float), "attention partials");
}
