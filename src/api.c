/* The ABI face: every exported nllm_* function (except errors/logging in core.c). Validates
 * arguments and params structs, then calls the internal layers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "engine/token_trie.h"
#include "grammar/grammar.h"
#include "qtypes.h"
#include "template/template.h"

/* The largest context a caller may ask for, directly (n_ctx) or as the model's default. */
#define NLLM_MAX_CTX (1 << 24)

#define CHECK_ARG(cond, ...) \
  if (!(cond)) return nllm_err(NLLM_ERR_INVALID_ARG, __VA_ARGS__)

NLLM_API const char *nllm_version(void) {
  return NLLM_VERSION_STRING;
}
NLLM_API int32_t nllm_abi_version(void) {
  return NLLM_ABI_VERSION;
}
NLLM_API const char *nllm_system_info(void) {
  return nllm_cpu_features();
}

NLLM_API const char *nllm_type_name(int32_t type) {
  const nllm_qtype *q = nllm_qtype_get(type);
  return q ? q->name : nllm_ggml_type_name(type);
}

/* ---------------------------------------------------------------- model */

NLLM_API nllm_status nllm_model_params_init_sized(nllm_model_params *p, size_t size) {
  nllm_model_params d;
  memset(&d, 0, sizeof d);
  d.use_mmap = 0;
  d.quantize_type = NLLM_TYPE_NONE;
  return nllm_init_params(p, size, &d, sizeof d, "nllm_model_params");
}

/* The unsized inits are the symbols programs built before the header's macros call: the
 * parentheses keep the macros of the same names from expanding here. */
NLLM_API void(nllm_model_params_init)(nllm_model_params *p) {
  nllm_model_params_init_sized(p, NLLM_PARAMS_V1_SIZE(nllm_model_params, progress_user_data));
}

NLLM_API nllm_status nllm_model_load(const char *path, const nllm_model_params *params,
                                     nllm_model **out) {
  CHECK_ARG(out, "nllm_model_load: out is NULL");
  *out = NULL;
  CHECK_ARG(path, "nllm_model_load: path is NULL");
  nllm_model_params p;
  nllm_model_params_init(&p);
  nllm_status st = nllm_read_params(&p, sizeof p, params, "nllm_model_params");
  if (st) return st;
  CHECK_ARG(p.n_threads >= 0 && p.n_threads <= 4096,
            "nllm_model_params.n_threads must be in [0, 4096] (got %d)", p.n_threads);
  CHECK_ARG(p.n_ctx_default >= 0 && p.n_ctx_default <= NLLM_MAX_CTX,
            "nllm_model_params.n_ctx_default must be in [0, %d] (got %d)", NLLM_MAX_CTX,
            p.n_ctx_default);
  CHECK_ARG(p.n_gpu_layers >= 0 || p.n_gpu_layers == -1,
            "nllm_model_params.n_gpu_layers must be >= 0 or -1 (all)");
#ifndef NLLM_CUDA
  if (p.n_gpu_layers != 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "n_gpu_layers = %d, but this libnativellm was built without CUDA (rebuild "
                    "with make CUDA=1)",
                    p.n_gpu_layers);
#endif
  return nllm_mdl_load(path, &p, out);
}

NLLM_API void nllm_model_free(nllm_model *m) {
  if (m) nllm_token_trie_free(atomic_load(&m->token_trie));
  nllm_mdl_free(m);
}

NLLM_API const char *nllm_model_arch(const nllm_model *m) {
  return m && m->arch ? m->arch->name : "";
}
NLLM_API const char *nllm_model_name(const nllm_model *m) {
  return m ? m->name : "";
}
NLLM_API uint64_t nllm_model_n_params(const nllm_model *m) {
  return m ? m->n_params : 0;
}
NLLM_API uint64_t nllm_model_size_bytes(const nllm_model *m) {
  return m ? m->n_bytes : 0;
}
NLLM_API int32_t nllm_model_n_vocab(const nllm_model *m) {
  return m ? m->hp.n_vocab : 0;
}
NLLM_API int32_t nllm_model_n_ctx_train(const nllm_model *m) {
  return m ? m->hp.n_ctx_train : 0;
}
NLLM_API int32_t nllm_model_n_embd(const nllm_model *m) {
  return m ? m->hp.n_embd : 0;
}
NLLM_API int32_t nllm_model_n_layer(const nllm_model *m) {
  return m ? m->hp.n_layer : 0;
}

NLLM_API nllm_token nllm_model_token(const nllm_model *m, int32_t which) {
  return m ? nllm_tokenizer_special(m->tok, which) : -1;
}

NLLM_API int32_t nllm_model_token_is_eog(const nllm_model *m, nllm_token t) {
  return m ? nllm_model_is_eog(m, t) : 0;
}

NLLM_API nllm_status nllm_model_meta_str(const nllm_model *m, const char *key, const char **out) {
  CHECK_ARG(m && key && out, "nllm_model_meta_str: NULL argument");
  nllm_status st = nllm_source_get_str(&m->src, key, out);
  return st == NLLM_ERR_FORMAT ? NLLM_ERR_INVALID_ARG : st;
}

NLLM_API nllm_status nllm_model_meta_int(const nllm_model *m, const char *key, int64_t *out) {
  CHECK_ARG(m && key && out, "nllm_model_meta_int: NULL argument");
  nllm_status st = nllm_source_get_int(&m->src, key, out);
  return st == NLLM_ERR_FORMAT ? NLLM_ERR_INVALID_ARG : st;
}

NLLM_API nllm_status nllm_model_meta_float(const nllm_model *m, const char *key, double *out) {
  CHECK_ARG(m && key && out, "nllm_model_meta_float: NULL argument");
  nllm_status st = nllm_source_get_float(&m->src, key, out);
  return st == NLLM_ERR_FORMAT ? NLLM_ERR_INVALID_ARG : st;
}

NLLM_API int32_t nllm_model_meta_count(const nllm_model *m) {
  return m ? (int32_t)m->src.n_kv : 0;
}

NLLM_API const char *nllm_model_meta_key(const nllm_model *m, int32_t i) {
  return m && i >= 0 && i < m->src.n_kv ? m->src.kv[i].key : NULL;
}

/* Shared tail of every call that fills a caller's char buffer: NUL-terminate when it fits. */
static nllm_status finish_text(int32_t needed, char *buf, int32_t cap, int32_t *n_out) {
  if (n_out) *n_out = needed;
  if (needed >= cap)
    return nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "buffer of %d bytes is too small: %d needed", cap,
                    needed + 1);
  buf[needed] = 0;
  return NLLM_OK;
}

NLLM_API nllm_status nllm_model_meta_value_text(const nllm_model *m, int32_t i, char *buf,
                                                int32_t cap, int32_t *n_out) {
  CHECK_ARG(m && (buf || cap == 0) && cap >= 0, "nllm_model_meta_value_text: bad arguments");
  CHECK_ARG(i >= 0 && i < m->src.n_kv,
            "nllm_model_meta_value_text: index %d out of range [0, %lld)", i,
            (long long)m->src.n_kv);
  char tmp[1];
  int n = nllm_value_to_text(&m->src.kv[i].val, cap ? buf : tmp, cap ? (size_t)cap : 1);
  return finish_text(n, buf, cap, n_out);
}

NLLM_API int32_t nllm_model_tensor_count(const nllm_model *m) {
  return m ? (int32_t)m->src.n_tensors : 0;
}

NLLM_API nllm_status nllm_model_tensor_info(const nllm_model *m, int32_t i, const char **name,
                                            int32_t *type, int32_t *n_dims, int64_t ne[4]) {
  CHECK_ARG(m && name && type && n_dims && ne, "nllm_model_tensor_info: NULL argument");
  CHECK_ARG(i >= 0 && i < m->src.n_tensors, "nllm_model_tensor_info: index %d out of range", i);
  const nllm_tensor *t = &m->src.tensors[i];
  *name = t->name;
  *type = t->type;
  *n_dims = t->n_dims;
  memcpy(ne, t->ne, sizeof t->ne);
  return NLLM_OK;
}

/* ---------------------------------------------------------------- tokenizer */

NLLM_API nllm_status nllm_tokenize(const nllm_model *m, const char *text, int32_t text_len,
                                   int32_t add_bos, int32_t parse_special, nllm_token *tokens,
                                   int32_t cap, int32_t *n_out) {
  CHECK_ARG(m && n_out, "nllm_tokenize: model and n_out must not be NULL");
  CHECK_ARG(text || text_len == 0, "nllm_tokenize: text is NULL");
  CHECK_ARG(tokens || cap == 0, "nllm_tokenize: tokens is NULL with cap %d", cap);
  CHECK_ARG(cap >= 0, "nllm_tokenize: cap must be >= 0 (got %d)", cap);
  size_t len = text_len < 0 ? strlen(text) : (size_t)text_len;
  return nllm_tok_tokenize(m->tok, text ? text : "", len, add_bos, parse_special, tokens, cap,
                           n_out);
}

NLLM_API nllm_status nllm_token_to_piece(const nllm_model *m, nllm_token token,
                                         int32_t render_special, char *buf, int32_t cap,
                                         int32_t *n_out) {
  CHECK_ARG(m && n_out && (buf || cap == 0) && cap >= 0, "nllm_token_to_piece: bad arguments");
  return nllm_tok_token_to_piece(m->tok, token, render_special, buf, cap, n_out);
}

NLLM_API nllm_status nllm_detokenize(const nllm_model *m, const nllm_token *tokens,
                                     int32_t n_tokens, int32_t render_special, char *buf,
                                     int32_t cap, int32_t *n_out) {
  CHECK_ARG(m && n_out && (buf || cap == 0) && cap >= 0, "nllm_detokenize: bad arguments");
  CHECK_ARG(n_tokens >= 0 && (tokens || n_tokens == 0), "nllm_detokenize: bad token array");
  return nllm_tok_detokenize(m->tok, tokens, n_tokens, render_special, buf, cap, n_out);
}

/* ---------------------------------------------------------------- chat templates */

NLLM_API nllm_status nllm_chat_format(const nllm_model *m, const nllm_chat_message *messages,
                                      int32_t n_messages, int32_t add_assistant_prompt, char *buf,
                                      int32_t cap, int32_t *n_out) {
  CHECK_ARG(m, "nllm_chat_format: model is NULL");
  return nllm_tokenizer_chat_format(m->tok, messages, n_messages, add_assistant_prompt, buf, cap,
                                    n_out);
}

NLLM_API nllm_status nllm_chat_apply_template(const char *tmpl, const nllm_chat_message *messages,
                                              int32_t n_messages, int32_t add_assistant_prompt,
                                              char *buf, int32_t cap, int32_t *n_out) {
  CHECK_ARG(tmpl, "nllm_chat_apply_template: template is NULL");
  return nllm_chat_format_template(tmpl, messages, n_messages, add_assistant_prompt, buf, cap,
                                   n_out);
}

/* ---------------------------------------------------------------- chat templates: Jinja and tool
 * calls */

static nllm_status copy_out(const char *what, char *text, size_t n, char *buf, int32_t cap,
                            int32_t *n_out) {
  nllm_status st = NLLM_OK;
  if (n > INT32_MAX - 1)
    st = nllm_err(NLLM_ERR_INVALID_ARG, "%s: %zu bytes exceed an int32 count", what, n);
  else if ((*n_out = (int32_t)n), n + 1 > (size_t)cap)
    st = nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "%s: %zu bytes and a NUL, capacity %d", what, n, cap);
  else {
    memcpy(buf, text, n);
    buf[n] = 0;
  }
  free(text);
  return st;
}

NLLM_API nllm_status nllm_chat_template_params_init_sized(nllm_chat_template_params *p,
                                                          size_t size) {
  nllm_chat_template_params d;
  memset(&d, 0, sizeof d);
  return nllm_init_params(p, size, &d, sizeof d, "nllm_chat_template_params");
}

NLLM_API void(nllm_chat_template_params_init)(nllm_chat_template_params *p) {
  nllm_chat_template_params_init_sized(p, NLLM_PARAMS_V1_SIZE(nllm_chat_template_params, now));
}

NLLM_API nllm_status nllm_chat_template_render(const nllm_model *m,
                                               const nllm_chat_template_params *params, char *buf,
                                               int32_t cap, int32_t *n_out) {
  CHECK_ARG(params && n_out && (buf || cap == 0) && cap >= 0,
            "nllm_chat_template_render: bad arguments");
  nllm_chat_template_params p;
  nllm_chat_template_params_init(&p);
  CHECK_ARG(params->struct_size >= offsetof(nllm_chat_template_params, max_output_bytes) &&
                params->struct_size <= sizeof p,
            "nllm_chat_template_params.struct_size %u is not a known size", params->struct_size);
  memcpy(&p, params, params->struct_size);
  CHECK_ARG(p.messages_json, "nllm_chat_template_render: messages_json is NULL");
  CHECK_ARG(p.max_output_bytes >= 0 && p.time_limit_ms >= 0,
            "nllm_chat_template_render: negative limit");
  const char *tmpl = p.template_text;
  if (!tmpl) {
    CHECK_ARG(m, "nllm_chat_template_render: neither a model nor template_text");
    tmpl = nllm_tokenizer_chat_template(m->tok);
    if (!tmpl)
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "the model has no chat template (tokenizer.chat_template)");
  }
  char bos[256], eos[256];
  nllm_tmpl_input in = {.messages_json = p.messages_json,
                        .tools_json = p.tools_json,
                        .vars_json = p.vars_json,
                        .add_generation_prompt = p.add_generation_prompt != 0,
                        .now = p.now,
                        .max_output = (size_t)p.max_output_bytes,
                        .time_limit_ms = p.time_limit_ms};
  if (m) {
    in.bos_token = nllm_tokenizer_special_text(m->tok, NLLM_TOKEN_BOS, bos, sizeof bos);
    in.eos_token = nllm_tokenizer_special_text(m->tok, NLLM_TOKEN_EOS, eos, sizeof eos);
  }
  char *text = NULL;
  size_t n = 0;
  nllm_status st = nllm_template_render(tmpl, &in, &text, &n);
  if (st != NLLM_OK) return st;
  return copy_out("nllm_chat_template_render", text, n, buf, cap, n_out);
}

NLLM_API nllm_status nllm_tool_calls_parse(const char *text, const char *format, char *buf,
                                           int32_t cap, int32_t *n_out) {
  CHECK_ARG(text && n_out && (buf || cap == 0) && cap >= 0, "nllm_tool_calls_parse: bad arguments");
  char *out = NULL;
  size_t n = 0;
  nllm_status st = nllm_tool_calls_parse_text(text, strlen(text), format, &out, &n);
  if (st != NLLM_OK) return st;
  return copy_out("nllm_tool_calls_parse", out, n, buf, cap, n_out);
}

/* ---------------------------------------------------------------- context */

NLLM_API nllm_status nllm_context_params_init_sized(nllm_context_params *p, size_t size) {
  nllm_context_params d;
  memset(&d, 0, sizeof d);
  d.kv_type = NLLM_TYPE_F16;
  d.n_seq_max = 1;
  d.seed = NLLM_SEED_DEFAULT;
  d.kv_type_v = NLLM_TYPE_NONE;
  d.pooling = NLLM_POOLING_MODEL;
  d.normalize = -1;
  d.bf16_activations = NLLM_BF16_ACT_AUTO;
  return nllm_init_params(p, size, &d, sizeof d, "nllm_context_params");
}

NLLM_API void(nllm_context_params_init)(nllm_context_params *p) {
  nllm_context_params_init_sized(p, NLLM_PARAMS_V1_SIZE(nllm_context_params, kv_type_v));
}

NLLM_API nllm_status nllm_context_create(const nllm_model *m, const nllm_context_params *params,
                                         nllm_context **out) {
  CHECK_ARG(out, "nllm_context_create: out is NULL");
  *out = NULL;
  CHECK_ARG(m, "nllm_context_create: model is NULL");
  nllm_context_params p;
  nllm_context_params_init(&p);
  nllm_status st = nllm_read_params(&p, sizeof p, params, "nllm_context_params");
  if (st) return st;
  CHECK_ARG(p.n_ctx >= 0 && p.n_ctx <= NLLM_MAX_CTX,
            "nllm_context_params.n_ctx must be in [0, %d] (got %d)", NLLM_MAX_CTX, p.n_ctx);
  CHECK_ARG(p.n_threads >= 0 && p.n_threads <= 1024,
            "nllm_context_params.n_threads must be in [0, 1024] (got %d)", p.n_threads);
  CHECK_ARG(p.n_batch >= 0 && p.n_batch <= 65536,
            "nllm_context_params.n_batch must be in [0, 65536] (got %d)", p.n_batch);
#define KV_TYPE_OK(t)                                                       \
  ((t) == NLLM_TYPE_F16 || (t) == NLLM_TYPE_F32 || (t) == NLLM_TYPE_BF16 || \
   (t) == NLLM_TYPE_Q8_0 || (t) == NLLM_TYPE_Q4_0)
  CHECK_ARG(KV_TYPE_OK(p.kv_type),
            "nllm_context_params.kv_type must be F16, F32, BF16, Q8_0 or Q4_0 (got %d)", p.kv_type);
  CHECK_ARG(p.n_seq_max >= 0 && p.n_seq_max <= NLLM_SEQ_MAX,
            "nllm_context_params.n_seq_max must be in [1, %d] (got %d)", NLLM_SEQ_MAX, p.n_seq_max);
  CHECK_ARG(p.kv_type_v == NLLM_TYPE_NONE || KV_TYPE_OK(p.kv_type_v),
            "nllm_context_params.kv_type_v must be NLLM_TYPE_NONE, F16, F32, BF16, Q8_0 or Q4_0 "
            "(got %d)",
            p.kv_type_v);
#undef KV_TYPE_OK
  CHECK_ARG(p.embeddings >= NLLM_EMBEDDINGS_OFF && p.embeddings <= NLLM_EMBEDDINGS_WITH_LOGITS,
            "nllm_context_params.embeddings must be NLLM_EMBEDDINGS_OFF (0), _ONLY (1) or "
            "_WITH_LOGITS (2) (got %d)",
            p.embeddings);
  CHECK_ARG(p.pooling >= NLLM_POOLING_MODEL && p.pooling <= NLLM_POOLING_LAST,
            "nllm_context_params.pooling must be NLLM_POOLING_MODEL (-1), NONE (0), MEAN (1), "
            "CLS (2) or LAST (3) (got %d)",
            p.pooling);
  CHECK_ARG(p.normalize >= -1 && p.normalize <= 1,
            "nllm_context_params.normalize must be -1 (the model's), 0 or 1 (got %d)", p.normalize);
  CHECK_ARG(p.bf16_activations >= NLLM_BF16_ACT_AUTO && p.bf16_activations <= NLLM_BF16_ACT_ROUND,
            "nllm_context_params.bf16_activations must be NLLM_BF16_ACT_AUTO (-1), _EXACT (0) or "
            "_ROUND (1) (got %d)",
            p.bf16_activations);
  return nllm_ctx_create(m, &p, out);
}

/* One call at a time per context: a compare-and-swap on entry costs nothing next to a decode.
 * The flag holds the address of a thread-local byte, unique among running threads. */
static _Thread_local char thread_tag;

static nllm_status ctx_enter(nllm_context *ctx, const char *fn) {
  uintptr_t idle = 0;
  if (!atomic_compare_exchange_strong(&ctx->busy, &idle, (uintptr_t)&thread_tag))
    return nllm_err(NLLM_ERR_BUSY,
                    "%s: the context is in use by another call (another thread, or a callback "
                    "of its own call); a context serves one call at a time",
                    fn);
  return NLLM_OK;
}

static nllm_status ctx_leave(nllm_context *ctx, nllm_status st) {
  atomic_store(&ctx->busy, 0);
  return st;
}

/* The getters that read what a call rewrites or reallocates (logits, the sequences' position
 * arrays, the cell counts, timings): from a callback of the context's own call (the same
 * thread) they read as always; otherwise they hold the flag for the read, and while another
 * thread is inside a call they report NLLM_ERR_BUSY (as their status, or through
 * nllm_last_error next to their "nothing" value). Returns 1 when the read may go on; *took
 * says whether ctx_read_end must release the flag. Getters of what never changes after
 * creation (n_ctx, model, n_seq_max) and nllm_context_pos (one int, a snapshot) take no flag. */
static int ctx_read_begin(const nllm_context *cctx, const char *fn, int *took) {
  nllm_context *ctx = (nllm_context *)cctx; /* the flag is the only field written */
  uintptr_t holder = 0;
  *took = atomic_compare_exchange_strong(&ctx->busy, &holder, (uintptr_t)&thread_tag);
  if (*took || holder == (uintptr_t)&thread_tag) return 1;
  nllm_err(NLLM_ERR_BUSY, "%s: the context is inside a call on another thread", fn);
  return 0;
}

static void ctx_read_end(const nllm_context *ctx, int took) {
  if (took) atomic_store(&((nllm_context *)ctx)->busy, 0);
}

NLLM_API void nllm_context_free(nllm_context *ctx) {
  if (!ctx) return;
  /* freeing under a running call (another thread, or its own callback) would pull the memory
   * from under it: refused, the context stays alive */
  if (ctx_enter(ctx, "nllm_context_free")) {
    nllm_log(NLLM_LOG_ERROR, "%s; the context was not freed", nllm_last_error());
    return;
  }
  nllm_ctx_free(ctx);
}

NLLM_API nllm_status nllm_decode(nllm_context *ctx, const nllm_token *tokens, int32_t n) {
  CHECK_ARG(ctx && tokens, "nllm_decode: NULL argument");
  nllm_status st = ctx_enter(ctx, "nllm_decode");
  if (st) return st;
  return ctx_leave(ctx, nllm_ctx_decode(ctx, tokens, n));
}

NLLM_API const float *nllm_get_logits(nllm_context *ctx) {
  int took;
  if (!ctx || !ctx_read_begin(ctx, "nllm_get_logits", &took)) return NULL;
  const float *l = ctx->n_logits == 0
                       ? NULL
                       : ctx->logits + (size_t)(ctx->n_logits - 1) * ctx->model->hp.n_vocab;
  ctx_read_end(ctx, took);
  return l;
}

NLLM_API const float *nllm_get_logits_ith(nllm_context *ctx, int32_t i) {
  int took;
  if (!ctx || !ctx_read_begin(ctx, "nllm_get_logits_ith", &took)) return NULL;
  const float *l = ctx->n_logits == 0 || i < 0 || i >= ctx->last_n || ctx->row_out[i] < 0
                       ? NULL
                       : ctx->logits + (size_t)ctx->row_out[i] * ctx->model->hp.n_vocab;
  ctx_read_end(ctx, took);
  return l;
}

NLLM_API int32_t nllm_model_is_encoder(const nllm_model *m) {
  return m && !m->vocab_only && m->arch->bidirectional;
}
NLLM_API int32_t nllm_model_pooling(const nllm_model *m) {
  return m && !m->vocab_only ? m->hp.pooling : NLLM_POOLING_NONE;
}
NLLM_API int32_t nllm_model_normalize(const nllm_model *m) {
  return m && !m->vocab_only ? m->hp.normalize : 0;
}
NLLM_API int32_t nllm_context_pooling(const nllm_context *ctx) {
  return ctx && ctx->p.embeddings ? ctx->pooling : -1;
}
NLLM_API int32_t nllm_context_normalize(const nllm_context *ctx) {
  return ctx && ctx->p.embeddings ? ctx->normalize : -1;
}

NLLM_API nllm_status nllm_get_embeddings_seq(nllm_context *ctx, int32_t seq, const float **out) {
  CHECK_ARG(out, "nllm_get_embeddings_seq: out is NULL");
  *out = NULL;
  CHECK_ARG(ctx, "nllm_get_embeddings_seq: ctx is NULL");
  CHECK_ARG(ctx->p.embeddings,
            "nllm_get_embeddings_seq: the context was created without embeddings "
            "(nllm_context_params.embeddings)");
  CHECK_ARG(ctx->pooling != NLLM_POOLING_NONE,
            "nllm_get_embeddings_seq: the context's pooling is NONE (per-token vectors only: "
            "nllm_get_embeddings_ith)");
  CHECK_ARG(seq >= 0 && seq < ctx->n_seq,
            "nllm_get_embeddings_seq: sequence %d is outside [0, %d) (n_seq_max)", seq, ctx->n_seq);
  if (!ctx->seq_has_embd[seq])
    return nllm_err(NLLM_ERR_NOT_FOUND,
                    "nllm_get_embeddings_seq: sequence %d had no rows in the last decode call",
                    seq);
  *out = ctx->embd_seq + (size_t)seq * (size_t)ctx->model->hp.n_embd;
  return NLLM_OK;
}

NLLM_API nllm_status nllm_get_embeddings_ith(nllm_context *ctx, int32_t i, const float **out) {
  CHECK_ARG(out, "nllm_get_embeddings_ith: out is NULL");
  *out = NULL;
  CHECK_ARG(ctx, "nllm_get_embeddings_ith: ctx is NULL");
  CHECK_ARG(ctx->p.embeddings,
            "nllm_get_embeddings_ith: the context was created without embeddings "
            "(nllm_context_params.embeddings)");
  CHECK_ARG(i >= 0 && i < ctx->n_embd_rows,
            "nllm_get_embeddings_ith: row %d is outside the last decode call's %d rows", i,
            ctx->n_embd_rows);
  *out = ctx->embd + (size_t)i * (size_t)ctx->model->hp.n_embd;
  return NLLM_OK;
}

NLLM_API int32_t nllm_context_pos(const nllm_context *ctx) {
  return ctx ? ctx->pos : 0;
}
NLLM_API int32_t nllm_context_n_ctx(const nllm_context *ctx) {
  return ctx ? ctx->n_ctx : 0;
}
NLLM_API const nllm_model *nllm_context_model(const nllm_context *ctx) {
  return ctx ? ctx->model : NULL;
}

NLLM_API nllm_status nllm_context_rewind(nllm_context *ctx, int32_t pos) {
  CHECK_ARG(ctx, "nllm_context_rewind: ctx is NULL");
  nllm_status st = ctx_enter(ctx, "nllm_context_rewind");
  if (st) return st;
  if (pos < 0 || pos > ctx->pos)
    return ctx_leave(
        ctx, nllm_err(NLLM_ERR_INVALID_ARG,
                      "nllm_context_rewind: position %d is outside [0, %d] (the current position)",
                      pos, ctx->pos));
  if (pos != ctx->pos) {
    st = nllm_ctx_seq_remove(ctx, 0, pos, -1);
    if (!st) ctx->n_logits = 0;
  }
  return ctx_leave(ctx, st);
}

NLLM_API void nllm_context_reset(nllm_context *ctx) {
  if (!ctx) return;
  /* clearing the cache under a running call would corrupt it: refused, with a logged error */
  if (ctx_enter(ctx, "nllm_context_reset")) {
    nllm_log(NLLM_LOG_ERROR, "%s; nothing was reset", nllm_last_error());
    return;
  }
  nllm_ctx_clear(ctx);
  memset(&ctx->tm, 0, sizeof ctx->tm);
  ctx->tm.struct_size = sizeof ctx->tm;
  ctx_leave(ctx, NLLM_OK);
}

NLLM_API nllm_status nllm_context_timings(const nllm_context *ctx, nllm_timings *out) {
  CHECK_ARG(ctx && out, "nllm_context_timings: NULL argument");
  CHECK_ARG(out->struct_size >= sizeof(uint32_t), "nllm_timings.struct_size must be set");
  int took;
  if (!ctx_read_begin(ctx, "nllm_context_timings", &took)) return NLLM_ERR_BUSY;
  uint32_t n = out->struct_size < sizeof ctx->tm ? out->struct_size : (uint32_t)sizeof ctx->tm;
  memcpy(out, &ctx->tm, n);
  out->struct_size = n;
  ctx_read_end(ctx, took);
  return NLLM_OK;
}

/* ---------------------------------------------------------------- many sequences per context */

NLLM_API nllm_status nllm_batch_init_sized(nllm_batch *b, size_t size) {
  nllm_batch d;
  memset(&d, 0, sizeof d);
  return nllm_init_params(b, size, &d, sizeof d, "nllm_batch");
}

NLLM_API void(nllm_batch_init)(nllm_batch *b) {
  nllm_batch_init_sized(b, NLLM_PARAMS_V1_SIZE(nllm_batch, logits));
}

NLLM_API nllm_status nllm_decode_batch(nllm_context *ctx, const nllm_batch *batch) {
  CHECK_ARG(ctx && batch, "nllm_decode_batch: NULL argument");
  nllm_batch b;
  nllm_batch_init(&b);
  nllm_status st = nllm_read_params(&b, sizeof b, batch, "nllm_batch");
  if (st || (st = ctx_enter(ctx, "nllm_decode_batch"))) return st;
  return ctx_leave(ctx, nllm_ctx_decode_batch(ctx, &b));
}

NLLM_API const float *nllm_get_logits_seq(nllm_context *ctx, int32_t seq) {
  int took;
  if (!ctx || !ctx_read_begin(ctx, "nllm_get_logits_seq", &took)) return NULL;
  const float *l = ctx->n_logits == 0 || seq < 0 || seq >= ctx->n_seq || ctx->seq_out[seq] < 0
                       ? NULL
                       : ctx->logits + (size_t)ctx->seq_out[seq] * ctx->model->hp.n_vocab;
  ctx_read_end(ctx, took);
  return l;
}

NLLM_API int32_t nllm_context_n_seq_max(const nllm_context *ctx) {
  return ctx ? ctx->n_seq : 0;
}

#define CHECK_SEQ(ctx, seq, all_ok, fn)                                                  \
  CHECK_ARG(ctx, fn ": ctx is NULL");                                                    \
  CHECK_ARG(((all_ok) && (seq) == NLLM_SEQ_ALL) || ((seq) >= 0 && (seq) < (ctx)->n_seq), \
            fn ": sequence id %d is outside [0, %d) (n_seq_max)%s", (seq), (ctx)->n_seq, \
            (all_ok) ? " and not NLLM_SEQ_ALL" : "")

NLLM_API nllm_status nllm_seq_remove(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1) {
  CHECK_SEQ(ctx, seq, 1, "nllm_seq_remove");
  nllm_status st = ctx_enter(ctx, "nllm_seq_remove");
  return st ? st : ctx_leave(ctx, nllm_ctx_seq_remove(ctx, seq, p0, p1));
}

NLLM_API nllm_status nllm_seq_copy(nllm_context *ctx, int32_t src, int32_t dst, int32_t p0,
                                   int32_t p1) {
  CHECK_SEQ(ctx, src, 0, "nllm_seq_copy");
  CHECK_SEQ(ctx, dst, 0, "nllm_seq_copy");
  nllm_status st = ctx_enter(ctx, "nllm_seq_copy");
  return st ? st : ctx_leave(ctx, nllm_ctx_seq_copy(ctx, src, dst, p0, p1));
}

NLLM_API nllm_status nllm_seq_keep(nllm_context *ctx, int32_t seq) {
  CHECK_SEQ(ctx, seq, 0, "nllm_seq_keep");
  nllm_status st = ctx_enter(ctx, "nllm_seq_keep");
  return st ? st : ctx_leave(ctx, nllm_ctx_seq_keep(ctx, seq));
}

NLLM_API nllm_status nllm_seq_shift(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1,
                                    int32_t delta) {
  CHECK_SEQ(ctx, seq, 0, "nllm_seq_shift");
  nllm_status st = ctx_enter(ctx, "nllm_seq_shift");
  return st ? st : ctx_leave(ctx, nllm_ctx_seq_shift(ctx, seq, p0, p1, delta));
}

NLLM_API int32_t nllm_seq_pos_min(const nllm_context *ctx, int32_t seq) {
  int took;
  if (!ctx || seq < 0 || seq >= ctx->n_seq || !ctx_read_begin(ctx, "nllm_seq_pos_min", &took))
    return -1;
  const nllm_kv_seq *q = &ctx->cells.seq[seq];
  int32_t p = q->n == 0 ? -1 : q->pos[0];
  ctx_read_end(ctx, took);
  return p;
}

NLLM_API int32_t nllm_seq_pos_max(const nllm_context *ctx, int32_t seq) {
  int took;
  if (!ctx || seq < 0 || seq >= ctx->n_seq || !ctx_read_begin(ctx, "nllm_seq_pos_max", &took))
    return -1;
  const nllm_kv_seq *q = &ctx->cells.seq[seq];
  int32_t p = q->n == 0 ? -1 : q->pos[q->n - 1];
  ctx_read_end(ctx, took);
  return p;
}

NLLM_API int32_t nllm_seq_n_tokens(const nllm_context *ctx, int32_t seq) {
  int took;
  if (!ctx || seq < 0 || seq >= ctx->n_seq || !ctx_read_begin(ctx, "nllm_seq_n_tokens", &took))
    return 0;
  int32_t n = ctx->cells.seq[seq].n;
  ctx_read_end(ctx, took);
  return n;
}

NLLM_API nllm_status nllm_context_kv_cells(const nllm_context *ctx, int32_t *used, int32_t *total) {
  CHECK_ARG(ctx, "nllm_context_kv_cells: ctx is NULL");
  int took;
  if (!ctx_read_begin(ctx, "nllm_context_kv_cells", &took)) return NLLM_ERR_BUSY;
  if (used) *used = ctx->cells.n_used;
  if (total) *total = ctx->cells.n_cells;
  ctx_read_end(ctx, took);
  return NLLM_OK;
}

/* ---------------------------------------------------------------- saved state */

#define CHECK_STATE(ctx, seq, fn)                                                             \
  CHECK_ARG(ctx, fn ": ctx is NULL");                                                         \
  CHECK_ARG((seq) == NLLM_SEQ_ALL || ((seq) >= 0 && (seq) < (ctx)->n_seq),                    \
            fn ": sequence id %d is outside [0, %d) (n_seq_max) and not NLLM_SEQ_ALL", (seq), \
            (ctx)->n_seq)

NLLM_API nllm_status nllm_state_size(nllm_context *ctx, int32_t seq, uint64_t *size) {
  CHECK_STATE(ctx, seq, "nllm_state_size");
  CHECK_ARG(size, "nllm_state_size: size is NULL");
  nllm_status st = ctx_enter(ctx, "nllm_state_size");
  return st ? st : ctx_leave(ctx, nllm_ctx_state_size(ctx, seq, size));
}

NLLM_API nllm_status nllm_state_save(nllm_context *ctx, int32_t seq, void *buf, uint64_t cap,
                                     uint64_t *n_written) {
  CHECK_STATE(ctx, seq, "nllm_state_save");
  CHECK_ARG(n_written && (buf || cap == 0), "nllm_state_save: NULL argument");
  nllm_status st = ctx_enter(ctx, "nllm_state_save");
  return st ? st : ctx_leave(ctx, nllm_ctx_state_save(ctx, seq, buf, cap, n_written));
}

NLLM_API nllm_status nllm_state_load(nllm_context *ctx, int32_t seq, const void *buf,
                                     uint64_t size) {
  CHECK_STATE(ctx, seq, "nllm_state_load");
  CHECK_ARG(buf || size == 0, "nllm_state_load: buf is NULL");
  static const uint8_t none[1];
  nllm_status st = ctx_enter(ctx, "nllm_state_load");
  return st ? st : ctx_leave(ctx, nllm_ctx_state_load(ctx, seq, buf ? buf : none, size));
}

NLLM_API nllm_status nllm_state_save_file(nllm_context *ctx, int32_t seq, const char *path) {
  CHECK_STATE(ctx, seq, "nllm_state_save_file");
  CHECK_ARG(path && *path, "nllm_state_save_file: path is NULL or empty");
  nllm_status st = ctx_enter(ctx, "nllm_state_save_file");
  return st ? st : ctx_leave(ctx, nllm_ctx_state_save_file(ctx, seq, path));
}

NLLM_API nllm_status nllm_state_load_file(nllm_context *ctx, int32_t seq, const char *path) {
  CHECK_STATE(ctx, seq, "nllm_state_load_file");
  CHECK_ARG(path && *path, "nllm_state_load_file: path is NULL or empty");
  nllm_status st = ctx_enter(ctx, "nllm_state_load_file");
  return st ? st : ctx_leave(ctx, nllm_ctx_state_load_file(ctx, seq, path));
}

/* ---------------------------------------------------------------- sampling */

NLLM_API nllm_status nllm_sampler_params_init_sized(nllm_sampler_params *p, size_t size) {
  nllm_sampler_params d;
  memset(&d, 0, sizeof d);
  d.temperature = 0.8f;
  d.top_k = 40;
  d.top_p = 0.95f;
  d.min_p = 0.05f;
  d.repeat_penalty = 1.0f; /* off, so temperature 0 is plain greedy */
  d.repeat_last_n = 64;
  d.seed = NLLM_SEED_DEFAULT;
  return nllm_init_params(p, size, &d, sizeof d, "nllm_sampler_params");
}

NLLM_API void(nllm_sampler_params_init)(nllm_sampler_params *p) {
  nllm_sampler_params_init_sized(p, NLLM_PARAMS_V1_SIZE(nllm_sampler_params, json_schema));
}

NLLM_API nllm_status nllm_sampler_create(const nllm_model *m, const nllm_sampler_params *params,
                                         nllm_sampler **out) {
  CHECK_ARG(out, "nllm_sampler_create: out is NULL");
  *out = NULL;
  CHECK_ARG(m, "nllm_sampler_create: model is NULL");
  nllm_sampler_params p;
  nllm_sampler_params_init(&p);
  nllm_status st = nllm_read_params(&p, sizeof p, params, "nllm_sampler_params");
  if (st) return st;
  return nllm_smp_create(m, &p, out);
}

NLLM_API void nllm_sampler_free(nllm_sampler *s) {
  nllm_smp_free(s);
}

NLLM_API void nllm_sampler_reset(nllm_sampler *s, uint64_t seed) {
  if (s) nllm_smp_reset(s, seed);
}

NLLM_API nllm_status nllm_sampler_sample(nllm_sampler *s, nllm_context *ctx, nllm_token *out) {
  CHECK_ARG(s && ctx && out, "nllm_sampler_sample: NULL argument");
  const float *l = nllm_get_logits(ctx);
  CHECK_ARG(l, "nllm_sampler_sample: the context has no logits (decode something first)");
  nllm_status st = ctx_enter(ctx, "nllm_sampler_sample");
  if (st) return st;
  nllm_smp_bind_seed(s, ctx);
  return ctx_leave(ctx, nllm_smp_sample(s, l, ctx->model->hp.n_vocab, out));
}

NLLM_API nllm_status nllm_sampler_sample_logits(nllm_sampler *s, const float *logits,
                                                int32_t n_vocab, nllm_token *out) {
  CHECK_ARG(s && logits && out, "nllm_sampler_sample_logits: NULL argument");
  return nllm_smp_sample(s, logits, n_vocab, out);
}

NLLM_API void nllm_sampler_accept(nllm_sampler *s, nllm_token t) {
  if (s) nllm_smp_accept(s, t);
}

/* ---------------------------------------------------------------- generation */

NLLM_API nllm_status nllm_generate_params_init_sized(nllm_generate_params *p, size_t size) {
  nllm_generate_params d;
  memset(&d, 0, sizeof d);
  d.max_tokens = 256;
  d.add_bos = 1;
  d.stop_at_eog = 1;
  return nllm_init_params(p, size, &d, sizeof d, "nllm_generate_params");
}

NLLM_API void(nllm_generate_params_init)(nllm_generate_params *p) {
  nllm_generate_params_init_sized(p, NLLM_PARAMS_V1_SIZE(nllm_generate_params, finish_reason));
}

NLLM_API nllm_status nllm_generate(nllm_context *ctx, nllm_sampler *s, const char *prompt,
                                   int32_t prompt_len, const nllm_generate_params *params,
                                   int32_t *n_generated) {
  if (n_generated) *n_generated = 0;
  CHECK_ARG(ctx && s, "nllm_generate: context and sampler must not be NULL");
  CHECK_ARG(prompt || prompt_len == 0, "nllm_generate: prompt is NULL");
  CHECK_ARG(s->model == ctx->model,
            "nllm_generate: sampler and context belong to different models");
  nllm_generate_params p;
  nllm_generate_params_init(&p);
  nllm_status st = nllm_read_params(&p, sizeof p, params, "nllm_generate_params");
  if (st) return st;
  size_t len = prompt_len < 0 ? strlen(prompt) : (size_t)prompt_len;
  if ((st = ctx_enter(ctx, "nllm_generate"))) return st;
  nllm_smp_bind_seed(s, ctx);
  if (s->gr && len > 0) nllm_sgrammar_restart(s->gr); /* a new reply: the grammar starts over */
  return ctx_leave(ctx, nllm_run_generate(ctx, s, prompt ? prompt : "", len, &p, n_generated));
}

NLLM_API nllm_status nllm_generate_tokens(nllm_context *ctx, nllm_sampler *s,
                                          const nllm_token *prompt, int32_t n_prompt,
                                          const nllm_generate_params *params,
                                          int32_t *n_generated) {
  if (n_generated) *n_generated = 0;
  CHECK_ARG(ctx && s, "nllm_generate_tokens: context and sampler must not be NULL");
  CHECK_ARG(n_prompt >= 0 && (prompt || n_prompt == 0), "nllm_generate_tokens: bad prompt array");
  CHECK_ARG(s->model == ctx->model,
            "nllm_generate_tokens: sampler and context belong to different models");
  nllm_generate_params p;
  nllm_generate_params_init(&p);
  nllm_status st = nllm_read_params(&p, sizeof p, params, "nllm_generate_params");
  if (st) return st;
  if ((st = ctx_enter(ctx, "nllm_generate_tokens"))) return st;
  nllm_smp_bind_seed(s, ctx);
  if (s->gr && n_prompt > 0) nllm_sgrammar_restart(s->gr);
  return ctx_leave(ctx, nllm_run_generate_tokens(ctx, s, prompt, n_prompt, &p, n_generated));
}

/* ---------------------------------------------------------------- constrained output */

NLLM_API nllm_status nllm_json_schema_to_grammar(const char *schema, char *buf, int32_t cap,
                                                 int32_t *n_out) {
  CHECK_ARG(schema && n_out && cap >= 0 && (buf || cap == 0),
            "nllm_json_schema_to_grammar: NULL argument or negative capacity");
  *n_out = 0;
  char *text = NULL;
  nllm_status st = nllm_json_schema_to_gbnf(schema, strlen(schema), &text);
  if (st) return st;
  size_t n = strlen(text);
  if (n > INT32_MAX - 1) {
    free(text);
    return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_json_schema_to_grammar: grammar too large");
  }
  *n_out = (int32_t)n;
  if ((size_t)cap < n + 1) {
    free(text);
    return nllm_err(NLLM_ERR_BUFFER_TOO_SMALL,
                    "nllm_json_schema_to_grammar: grammar of %zu bytes (+1 for the NUL), "
                    "capacity %d",
                    n, cap);
  }
  memcpy(buf, text, n + 1);
  free(text);
  return NLLM_OK;
}

NLLM_API nllm_status nllm_grammar_validate(const char *grammar, const char *root) {
  CHECK_ARG(grammar, "nllm_grammar_validate: grammar is NULL");
  nllm_grammar *g = NULL;
  nllm_status st = nllm_grammar_parse(grammar, strlen(grammar), root, &g);
  nllm_gmatch *m = NULL;
  if (st == NLLM_OK) st = nllm_gmatch_new(g, &m);
  nllm_gmatch_free(m);
  nllm_grammar_free(g);
  return st;
}

NLLM_API int32_t nllm_sampler_grammar_complete(const nllm_sampler *s) {
  return s && s->gr && nllm_sgrammar_complete(s->gr);
}

/* ---------------------------------------------------------------- LoRA adapters */

NLLM_API nllm_status nllm_lora_adapter_params_init_sized(nllm_lora_adapter_params *p, size_t size) {
  nllm_lora_adapter_params d;
  memset(&d, 0, sizeof d);
  d.weight_type = NLLM_TYPE_NONE;
  return nllm_init_params(p, size, &d, sizeof d, "nllm_lora_adapter_params");
}

NLLM_API nllm_status nllm_lora_adapter_load_params(const nllm_model *model, const char *path,
                                                   const nllm_lora_adapter_params *params,
                                                   nllm_lora_adapter **out) {
  CHECK_ARG(out, "nllm_lora_adapter_load: out is NULL");
  *out = NULL;
  CHECK_ARG(model && path, "nllm_lora_adapter_load: model or path is NULL");
  CHECK_ARG(!model->vocab_only, "nllm_lora_adapter_load: the model was loaded vocab_only");
  nllm_lora_adapter_params p;
  nllm_lora_adapter_params_init(&p);
  nllm_status st = nllm_read_params(&p, sizeof p, params, "nllm_lora_adapter_params");
  if (st) return st;
  CHECK_ARG(p.weight_type == NLLM_TYPE_NONE || p.weight_type == NLLM_TYPE_F32 ||
                p.weight_type == NLLM_TYPE_F16 || p.weight_type == NLLM_TYPE_BF16,
            "nllm_lora_adapter_params.weight_type must be NLLM_TYPE_NONE (-1), F32 (0), F16 (1) "
            "or BF16 (30) (got %d)",
            p.weight_type);
  return nllm_lora_load(model, path, p.weight_type, out);
}

NLLM_API nllm_status nllm_lora_adapter_load(const nllm_model *model, const char *path,
                                            nllm_lora_adapter **out) {
  return nllm_lora_adapter_load_params(model, path, NULL, out);
}

NLLM_API void nllm_lora_adapter_free(nllm_lora_adapter *adapter) {
  nllm_lora_release(adapter);
}

NLLM_API const char *nllm_lora_adapter_name(const nllm_lora_adapter *a) {
  return a ? a->name : "";
}
NLLM_API int32_t nllm_lora_adapter_n_matrices(const nllm_lora_adapter *a) {
  return a ? a->n_mats : 0;
}
NLLM_API int32_t nllm_lora_adapter_rank(const nllm_lora_adapter *a) {
  return a ? a->max_rank : 0;
}
NLLM_API float nllm_lora_adapter_alpha(const nllm_lora_adapter *a) {
  return a ? a->alpha : 0.0f;
}
NLLM_API int32_t nllm_lora_adapter_weight_type(const nllm_lora_adapter *a) {
  int32_t type = NLLM_TYPE_NONE;
  if (!a) return type;
  for (int64_t i = 0; i < (int64_t)a->model->hp.n_layer * NLLM_LORA_SLOTS; i++) {
    const nllm_lora_mat *lm = &a->mats[i];
    if (!lm->r) continue;
    if (type != NLLM_TYPE_NONE && lm->type != type) return NLLM_TYPE_NONE;
    type = lm->type;
  }
  return type;
}

NLLM_API nllm_status nllm_context_set_lora(nllm_context *ctx, nllm_lora_adapter *const *adapters,
                                           const float *scales, int32_t n) {
  CHECK_ARG(ctx, "nllm_context_set_lora: ctx is NULL");
  nllm_status st = ctx_enter(ctx, "nllm_context_set_lora");
  if (st) return st;
  return ctx_leave(ctx, nllm_ctx_set_lora(ctx, -1, adapters, scales, n));
}

NLLM_API int32_t nllm_context_n_lora(const nllm_context *ctx) {
  return ctx ? ctx->lora.n : 0;
}

NLLM_API nllm_status nllm_seq_set_lora(nllm_context *ctx, int32_t seq,
                                       nllm_lora_adapter *const *adapters, const float *scales,
                                       int32_t n) {
  CHECK_ARG(ctx, "nllm_seq_set_lora: ctx is NULL");
  CHECK_ARG(seq >= 0, "nllm_seq_set_lora: sequence %d is negative", seq);
  nllm_status st = ctx_enter(ctx, "nllm_seq_set_lora");
  if (st) return st;
  return ctx_leave(ctx, nllm_ctx_set_lora(ctx, seq, adapters, scales, n));
}
