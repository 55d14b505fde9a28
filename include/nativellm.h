/*
 * nativellm: a transformer LLM inference engine in C.
 *
 * This is the ONE public header. Everything not declared here is internal.
 *
 * ABI rules (see docs/api.md):
 *  - Opaque handles only. No struct is passed or returned by value.
 *  - Fallible calls return nllm_status (0 = NLLM_OK, negative = error); results come back
 *    through pointer arguments. nllm_last_error() gives a thread-local, human-readable message
 *    for the last failing call made on the calling thread.
 *  - Params structs start with `uint32_t struct_size` and are filled by nllm_*_params_init(),
 *    a macro passing sizeof the caller's struct: the library writes only that many bytes, so a
 *    program built against an older (smaller) header is never written past its struct. The
 *    library reads only the fields that struct_size covers, so fields are only ever appended.
 *    A struct_size larger than the library knows is accepted only if every unknown trailing
 *    byte is zero (a newer caller that does not use a newer feature).
 *  - Fixed-width types only; booleans are int32_t (0 / non-zero).
 *
 * Ownership and lifetimes:
 *  - nllm_model: created by nllm_model_load, freed by nllm_model_free. Immutable after load:
 *    every nllm_model_* getter, the tokenizer calls and nllm_chat_format may be called from any
 *    number of threads at once. It must outlive every context and sampler made from it.
 *  - nllm_context: one or many sequences (KV cache, positions, logits). One thread at a time;
 *    different contexts of one model may run concurrently on different threads.
 *  - nllm_sampler: sampling state (RNG, recent tokens). One thread at a time.
 *  - Pointers returned by getters (strings, logits) are owned by the handle they came from and
 *    stay valid as documented per call; never free them.
 *  - Freeing NULL is a no-op for every *_free call. Use after free is undefined.
 */
#ifndef NATIVELLM_H
#define NATIVELLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NLLM_BUILDING_LIBRARY) && defined(__GNUC__)
#define NLLM_API __attribute__((visibility("default")))
#else
#define NLLM_API
#endif

/* Bumped only when an existing symbol or struct layout changes incompatibly. */
#define NLLM_ABI_VERSION 1
#define NLLM_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- status codes */

typedef int32_t nllm_status;

#define NLLM_OK 0
#define NLLM_ERR_INVALID_ARG (-1)      /* NULL pointer, out-of-range parameter, bad struct_size */
#define NLLM_ERR_IO (-2)               /* file missing, unreadable, mmap failed */
#define NLLM_ERR_FORMAT (-3)           /* malformed or malicious model/tokenizer file */
#define NLLM_ERR_UNSUPPORTED (-4)      /* valid file, but a feature/type this build lacks */
#define NLLM_ERR_NOMEM (-5)            /* allocation failed */
#define NLLM_ERR_CONTEXT_FULL (-6)     /* decode would exceed the context length */
#define NLLM_ERR_ABORTED (-7)          /* the abort callback asked to stop */
#define NLLM_ERR_BUFFER_TOO_SMALL (-8) /* output too small; *n_out holds what is needed */
#define NLLM_ERR_NOT_FOUND (-9)        /* metadata key or token absent */
#define NLLM_ERR_BACKEND (-10)         /* GPU / backend failure */
#define NLLM_ERR_INTERNAL (-11)        /* a bug: please report */

/* ---- busy context ---- */
/* The context is already inside another call (from another thread, or re-entered from one of
 * its own callbacks): a context serves one call at a time. Nothing was done. */
#define NLLM_ERR_BUSY (-12)

/* ---------------------------------------------------------------- basic types */

typedef int32_t nllm_token;
typedef struct nllm_model nllm_model;
typedef struct nllm_context nllm_context;
typedef struct nllm_sampler nllm_sampler;

/* Weight / cache element types. Numbering is GGUF's (ggml_type), so files load as they are. */
#define NLLM_TYPE_F32 0
#define NLLM_TYPE_F16 1
#define NLLM_TYPE_Q4_0 2
#define NLLM_TYPE_Q4_1 3
#define NLLM_TYPE_Q5_0 6
#define NLLM_TYPE_Q5_1 7
#define NLLM_TYPE_Q8_0 8
#define NLLM_TYPE_Q8_1 9
#define NLLM_TYPE_Q2_K 10
#define NLLM_TYPE_Q3_K 11
#define NLLM_TYPE_Q4_K 12
#define NLLM_TYPE_Q5_K 13
#define NLLM_TYPE_Q6_K 14
#define NLLM_TYPE_Q8_K 15
#define NLLM_TYPE_IQ4_NL 20
#define NLLM_TYPE_IQ4_XS 23
#define NLLM_TYPE_BF16 30
/* Load-only low-bit weight types (ternary, OCP MXFP4, codebook IQ): read and computed, never
 * written by nllm_quantize. */
#define NLLM_TYPE_TQ1_0 34
#define NLLM_TYPE_TQ2_0 35
#define NLLM_TYPE_MXFP4 39
#define NLLM_TYPE_IQ2_XXS 16
#define NLLM_TYPE_IQ2_XS 17
#define NLLM_TYPE_IQ3_XXS 18
#define NLLM_TYPE_IQ1_S 19
#define NLLM_TYPE_IQ3_S 21
#define NLLM_TYPE_IQ2_S 22
#define NLLM_TYPE_IQ1_M 29
#define NLLM_TYPE_NONE (-1)

/* Which special token nllm_model_token() returns. */
#define NLLM_TOKEN_BOS 0
#define NLLM_TOKEN_EOS 1
#define NLLM_TOKEN_EOT 2
#define NLLM_TOKEN_UNK 3
#define NLLM_TOKEN_PAD 4
#define NLLM_TOKEN_NEWLINE 5

/* Log levels, most to least severe. */
#define NLLM_LOG_ERROR 0
#define NLLM_LOG_WARN 1
#define NLLM_LOG_INFO 2
#define NLLM_LOG_DEBUG 3

/* ---------------------------------------------------------------- callbacks */

/* Log sink. msg has no trailing newline. May be called from any thread. */
typedef void (*nllm_log_fn)(int32_t level, const char *msg, void *user_data);
/* Load progress in [0, 1]. Return non-zero to cancel the load (NLLM_ERR_ABORTED). */
typedef int32_t (*nllm_progress_fn)(float progress, void *user_data);
/* Checked between layers during decode. Return non-zero to abort (NLLM_ERR_ABORTED). */
typedef int32_t (*nllm_abort_fn)(void *user_data);
/* Streaming: one generated token and its text (complete UTF-8 only; may be empty while a
 * multi-byte character is incomplete). piece is not NUL-terminated and is valid only during the
 * call. Return non-zero to stop generating. If generation ends inside an incomplete UTF-8
 * character, one last call passes token -1 and U+FFFD. */
typedef int32_t (*nllm_token_fn)(nllm_token token, const char *piece, int32_t piece_len,
                                 void *user_data);

/* ---------------------------------------------------------------- library */

/* "0.1.0". Static storage. Thread-safe. */
NLLM_API const char *nllm_version(void);
/* NLLM_ABI_VERSION of the library actually loaded. */
NLLM_API int32_t nllm_abi_version(void);
/* Message of the last failing call on this thread ("" if none). Valid until the next failing
 * call on the same thread. */
NLLM_API const char *nllm_last_error(void);
/* Static name of a status code ("NLLM_ERR_FORMAT"). */
NLLM_API const char *nllm_status_name(nllm_status status);
/* Static description of the CPU features in use ("AVX2=1 FMA=1 F16C=1 NEON=0 ..."). */
NLLM_API const char *nllm_system_info(void);
/* Process-wide log sink (NULL restores the default: warnings and errors to stderr) and level
 * threshold. Not meant to be changed while other threads are inside the library. */
NLLM_API void nllm_set_log_callback(nllm_log_fn fn, void *user_data);
NLLM_API void nllm_set_log_level(int32_t level);
/* Static name of a weight type ("Q4_K"), or NULL if unknown. */
NLLM_API const char *nllm_type_name(int32_t type);

/* ---------------------------------------------------------------- model */

typedef struct nllm_model_params {
  uint32_t struct_size;
  int32_t n_threads;     /* threads for load-time work; 0 = all cores */
  int32_t use_mmap;      /* 0 (default): weights read into memory; 1: used in place from the
                          * mapped file (instant load, shared page cache; see docs/api.md) */
  int32_t n_ctx_default; /* context length contexts get when they ask for 0; 0 = min(train, 4096) */
  int32_t n_gpu_layers;  /* layers to offload to the GPU; 0 = CPU only */
  int32_t vocab_only;    /* 1: load the tokenizer and metadata only */
  int32_t quantize_type; /* NLLM_TYPE_*: convert float weights while loading; NLLM_TYPE_NONE */
  nllm_progress_fn progress;
  void *progress_user_data;
  /* 1: keep every weight in its file's layout. 0 (default): the CPU's matmul weights in a format
   * whose kernels gain from it (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K on AVX2) are repacked once at load
   * into the layout of the interleaved kernels, which then run every token count on them (no
   * repacking per matmul; the same results bit for bit, the same resident memory: the plain
   * rows' pages are given back to the file). CLI: --no-repack. */
  int32_t no_repack;
} nllm_model_params;

/* Fills *params with the defaults. Call it through the macro nllm_*_params_init(p) (every
 * params struct has one): it passes the size of the struct this program was compiled with, and
 * the library writes no byte past that size (it sets the fields it knows within it, zeroes the
 * rest and sets struct_size = size). NLLM_ERR_INVALID_ARG for NULL, or a size below
 * sizeof(uint32_t) or above NLLM_PARAMS_MAX_SIZE (nothing written). The plain functions of the
 * same names stay for programs built before the macros and write the layouts of ABI 1.0 only. */
#define NLLM_PARAMS_MAX_SIZE 4096
NLLM_API nllm_status nllm_model_params_init_sized(nllm_model_params *params, size_t size);
NLLM_API void nllm_model_params_init(nllm_model_params *params);
#define nllm_model_params_init(p) ((void)nllm_model_params_init_sized((p), sizeof *(p)))

/* Load a GGUF file or a Hugging Face model directory. params may be NULL (defaults).
 * On failure *out is NULL and nothing is left allocated or mapped. */
NLLM_API nllm_status nllm_model_load(const char *path, const nllm_model_params *params,
                                     nllm_model **out);
NLLM_API void nllm_model_free(nllm_model *model);

/* Getters: static for the model's lifetime. Strings are owned by the model. */
NLLM_API const char *nllm_model_arch(const nllm_model *model);    /* "llama" */
NLLM_API const char *nllm_model_name(const nllm_model *model);    /* general.name or "" */
NLLM_API uint64_t nllm_model_n_params(const nllm_model *model);   /* weight element count */
NLLM_API uint64_t nllm_model_size_bytes(const nllm_model *model); /* weight bytes */
NLLM_API int32_t nllm_model_n_vocab(const nllm_model *model);
NLLM_API int32_t nllm_model_n_ctx_train(const nllm_model *model);
NLLM_API int32_t nllm_model_n_embd(const nllm_model *model);
NLLM_API int32_t nllm_model_n_layer(const nllm_model *model);
/* Special token id (NLLM_TOKEN_BOS, ...) or -1 if the model has none. */
NLLM_API nllm_token nllm_model_token(const nllm_model *model, int32_t which);
/* 1 if generation should stop at this token (EOS, EOT, <|im_end|>, ...). */
NLLM_API int32_t nllm_model_token_is_eog(const nllm_model *model, nllm_token token);

/* Metadata by key. NLLM_ERR_NOT_FOUND if absent, NLLM_ERR_INVALID_ARG if of another type.
 * meta_str: *out is NUL-terminated and owned by the model. meta_int accepts any integer or
 * bool value; meta_float any float or integer value. */
NLLM_API nllm_status nllm_model_meta_str(const nllm_model *model, const char *key,
                                         const char **out);
NLLM_API nllm_status nllm_model_meta_int(const nllm_model *model, const char *key, int64_t *out);
NLLM_API nllm_status nllm_model_meta_float(const nllm_model *model, const char *key, double *out);
/* Iterate metadata: count, then key i; value rendered as text (arrays summarized) into buf. */
NLLM_API int32_t nllm_model_meta_count(const nllm_model *model);
NLLM_API const char *nllm_model_meta_key(const nllm_model *model, int32_t i);
NLLM_API nllm_status nllm_model_meta_value_text(const nllm_model *model, int32_t i, char *buf,
                                                int32_t cap, int32_t *n_out);
/* Iterate tensors: name, type, dims (ne[0] = row length). */
NLLM_API int32_t nllm_model_tensor_count(const nllm_model *model);
NLLM_API nllm_status nllm_model_tensor_info(const nllm_model *model, int32_t i, const char **name,
                                            int32_t *type, int32_t *n_dims, int64_t ne[4]);

/* ---------------------------------------------------------------- tokenizer */

/* Tokenize text[0..text_len) (text_len < 0: NUL-terminated). add_bos: prepend BOS (and whatever
 * the model's template adds) if the model wants it. parse_special: text like "<|im_start|>" maps
 * to its control token; otherwise control tokens are plain text. On success *n_out is the count.
 * If cap is too small: NLLM_ERR_BUFFER_TOO_SMALL and *n_out is the count needed.
 * Invalid UTF-8 is not an error: bad bytes are tokenized as bytes (byte fallback or U+FFFD). */
NLLM_API nllm_status nllm_tokenize(const nllm_model *model, const char *text, int32_t text_len,
                                   int32_t add_bos, int32_t parse_special, nllm_token *tokens,
                                   int32_t cap, int32_t *n_out);
/* The bytes one token stands for ("▁the" -> " the", "<0x0A>" -> "\n"). Control tokens give
 * their text only if render_special. Not NUL-terminated; BUFFER_TOO_SMALL as above. */
NLLM_API nllm_status nllm_token_to_piece(const nllm_model *model, nllm_token token,
                                         int32_t render_special, char *buf, int32_t cap,
                                         int32_t *n_out);
/* Text of a token sequence, with the model's leading-space rule applied to the first token.
 * Output is NUL-terminated when it fits (n_out excludes the NUL). */
NLLM_API nllm_status nllm_detokenize(const nllm_model *model, const nllm_token *tokens,
                                     int32_t n_tokens, int32_t render_special, char *buf,
                                     int32_t cap, int32_t *n_out);

/* ---------------------------------------------------------------- chat templates */

typedef struct nllm_chat_message {
  const char *role;    /* "system", "user", "assistant" */
  const char *content; /* NUL-terminated UTF-8 */
} nllm_chat_message;

/* Render messages with the model's chat template (tokenizer.chat_template). Output NUL-terminated
 * when it fits; BUFFER_TOO_SMALL with *n_out = needed. NLLM_ERR_UNSUPPORTED for an unknown
 * template. Thread-safe. */
NLLM_API nllm_status nllm_chat_format(const nllm_model *model, const nllm_chat_message *messages,
                                      int32_t n_messages, int32_t add_assistant_prompt, char *buf,
                                      int32_t cap, int32_t *n_out);

/* Same with a template given by the caller: a Jinja chat template text, or a family name
 * ("chatml", "llama2", "llama3", "mistral", "mistral-v7", "gemma", "phi3", "deepseek",
 * "deepseek3"). */
NLLM_API nllm_status nllm_chat_apply_template(const char *tmpl, const nllm_chat_message *messages,
                                              int32_t n_messages, int32_t add_assistant_prompt,
                                              char *buf, int32_t cap, int32_t *n_out);

/* ---------------------------------------------------------------- chat templates: Jinja and tool
 * calls */

/* Rendering a conversation with a Jinja chat template, as transformers' apply_chat_template does
 * (docs/templates.md lists the supported Jinja subset and its limits). */
typedef struct nllm_chat_template_params {
  uint32_t struct_size;
  int32_t add_generation_prompt; /* 1: end with the assistant turn's header */
  const char *template_text;     /* NULL: the model's template (tokenizer.chat_template) */
  const char *messages_json;     /* required: JSON array of messages ({"role", "content", and
                                  * "tool_calls", "tool_call_id", ... as the template reads them}) */
  const char *tools_json;        /* NULL or a JSON array of tools; NULL passes tools = None */
  const char *vars_json;         /* NULL or a JSON object of further variables (enable_thinking,
                                  * bos_token, ...), overriding the model's bos/eos_token */
  int32_t max_output_bytes;      /* 0 = 8 MiB; more output ends with NLLM_ERR_ABORTED */
  int32_t time_limit_ms;         /* 0 = 2000 ms; NLLM_ERR_ABORTED past it */
  int64_t now;                   /* unix seconds that strftime_now formats (in UTC);
                                  * 0 = the current local time */
} nllm_chat_template_params;

NLLM_API nllm_status nllm_chat_template_params_init_sized(nllm_chat_template_params *params,
                                                          size_t size);
NLLM_API void nllm_chat_template_params_init(nllm_chat_template_params *params);
#define nllm_chat_template_params_init(p) \
  ((void)nllm_chat_template_params_init_sized((p), sizeof *(p)))
/* The exact rendered text, including any BOS text the template writes (tokenize it with
 * add_bos = 0 and parse_special = 1). model may be NULL when template_text is given; with a
 * model, bos_token and eos_token are its special tokens' text. Output NUL-terminated when it
 * fits; BUFFER_TOO_SMALL with *n_out = needed. Errors: NLLM_ERR_FORMAT (template syntax, with
 * line and column), NLLM_ERR_UNSUPPORTED (outside the subset), NLLM_ERR_INVALID_ARG (bad JSON, a
 * type error, or the template's raise_exception), NLLM_ERR_ABORTED (loop, recursion, output or
 * time limit). Thread-safe. */
NLLM_API nllm_status nllm_chat_template_render(const nllm_model *model,
                                               const nllm_chat_template_params *params, char *buf,
                                               int32_t cap, int32_t *n_out);

/* Splits model output into OpenAI-shaped tool calls. format: NULL or "auto" (recognize),
 * "hermes" (<tool_call>{...}</tool_call>, Qwen, Hermes), "llama3" (a JSON object
 * {"name", "parameters"}, optionally after <|python_tag|>), "mistral" ([TOOL_CALLS] [...]).
 * Writes a JSON object {"content": "text outside the calls" or null, "tool_calls": [{"id",
 * "type": "function", "function": {"name", "arguments": "<JSON text>"}}]}; tool_calls is []
 * when the text holds none. Ids are 9 alphanumerics derived from the text (deterministic).
 * Output NUL-terminated when it fits; BUFFER_TOO_SMALL with *n_out = needed. */
NLLM_API nllm_status nllm_tool_calls_parse(const char *text, const char *format, char *buf,
                                           int32_t cap, int32_t *n_out);

/* ---------------------------------------------------------------- context */

typedef struct nllm_context_params {
  uint32_t struct_size;
  int32_t n_ctx;      /* max positions; 0 = model's n_ctx_default */
  int32_t n_threads;  /* 0 = all cores */
  int32_t n_batch;    /* max tokens evaluated per internal batch; 0 = 512 */
  int32_t kv_type;    /* K cache: NLLM_TYPE_F16 (default), F32, BF16, Q8_0, Q4_0 (see api.md) */
  int32_t all_logits; /* 1: keep logits of every token of each decode call */
  int32_t n_seq_max;  /* sequences per context, 1 (default) to NLLM_SEQ_MAX (see below) */
  uint64_t seed;      /* seed given to samplers made with NLLM_SEED_DEFAULT when first used
                       * with this context; NLLM_SEED_DEFAULT (default) = random */
  nllm_abort_fn abort_callback;
  void *abort_user_data;
  int32_t kv_type_v; /* V cache type (as kv_type); NLLM_TYPE_NONE (default): same as kv_type */
  /* Embeddings (see "Embeddings" below). NLLM_EMBEDDINGS_OFF (default), _ONLY (no logits: the
   * output head is skipped) or _WITH_LOGITS. Encoder models (BERT) need _ONLY. */
  int32_t embeddings;
  int32_t pooling;   /* NLLM_POOLING_*; default NLLM_POOLING_MODEL */
  int32_t normalize; /* 1: L2-normalize every vector; 0: raw; -1 (default): the model's choice */
  /* NLLM_BF16_ACT_ROUND (1): BF16 weight matrices multiply the activations rounded to BF16, as
   * llama.cpp does: on a CPU with AVX512_BF16 their prompts run about twice as fast, at the
   * price of about 2^-9 relative error on each activation (logits move ~1e-2, see docs/api.md).
   * NLLM_BF16_ACT_EXACT (0): the activations stay F32 and BF16 products are exact.
   * NLLM_BF16_ACT_AUTO (-1, default): ROUND where the CPU has AVX512_BF16 (the kernel tier in
   * use at nllm_context_create), EXACT elsewhere, where rounding would gain no speed. CPU
   * layers only. */
  int32_t bf16_activations;
} nllm_context_params;

#define NLLM_BF16_ACT_AUTO (-1)
#define NLLM_BF16_ACT_EXACT 0
#define NLLM_BF16_ACT_ROUND 1

#define NLLM_EMBEDDINGS_OFF 0
#define NLLM_EMBEDDINGS_ONLY 1
#define NLLM_EMBEDDINGS_WITH_LOGITS 2

/* Pooling of a sequence's per-token vectors into one; numbering is GGUF's <arch>.pooling_type. */
#define NLLM_POOLING_MODEL (-1) /* the model's default (nllm_model_pooling) */
#define NLLM_POOLING_NONE 0     /* per-token vectors only */
#define NLLM_POOLING_MEAN 1     /* average over the sequence's rows */
#define NLLM_POOLING_CLS 2      /* the first row (BERT's [CLS]) */
#define NLLM_POOLING_LAST 3     /* the last row (decoder embedders: Qwen3-Embedding) */

#define NLLM_SEQ_MAX 1024 /* largest n_seq_max */

#define NLLM_SEED_DEFAULT 0xFFFFFFFFFFFFFFFFull

NLLM_API nllm_status nllm_context_params_init_sized(nllm_context_params *params, size_t size);
NLLM_API void nllm_context_params_init(nllm_context_params *params);
#define nllm_context_params_init(p) ((void)nllm_context_params_init_sized((p), sizeof *(p)))
/* Allocates the KV cache and all per-token buffers (no allocation happens per token after). */
NLLM_API nllm_status nllm_context_create(const nllm_model *model, const nllm_context_params *params,
                                         nllm_context **out);
NLLM_API void nllm_context_free(nllm_context *ctx);

/* Evaluate n tokens at the current position (a prompt batch or one generation step) and advance.
 * NLLM_ERR_CONTEXT_FULL if pos + n > n_ctx (nothing evaluated). On any error (including
 * ABORTED) the context is left at its position before the call. */
NLLM_API nllm_status nllm_decode(nllm_context *ctx, const nllm_token *tokens, int32_t n_tokens);
/* Logits of the last token of the last decode (n_vocab floats), or NULL before any decode.
 * Valid until the next decode/rewind/reset/free. */
NLLM_API const float *nllm_get_logits(nllm_context *ctx);
/* Logits of token i of the last decode call (needs all_logits = 1; else only the last i). */
NLLM_API const float *nllm_get_logits_ith(nllm_context *ctx, int32_t i);
NLLM_API int32_t nllm_context_pos(const nllm_context *ctx); /* tokens in the cache */
NLLM_API int32_t nllm_context_n_ctx(const nllm_context *ctx);
NLLM_API const nllm_model *nllm_context_model(const nllm_context *ctx);
/* Keep the first pos tokens of the cache and drop the rest (0 <= pos <= current position). */
NLLM_API nllm_status nllm_context_rewind(nllm_context *ctx, int32_t pos);
NLLM_API void nllm_context_reset(nllm_context *ctx);

typedef struct nllm_timings {
  uint32_t struct_size;
  /* A decode call's rows count as prompt where their sequence has several rows in the call,
   * as generated where it has one (a batched step of B sequences is B generated tokens); a
   * call mixing both splits its time between them by rows. */
  int32_t n_prompt_tokens;
  int32_t n_gen_tokens;
  double prompt_ms;
  double gen_ms;
} nllm_timings;
/* Totals since creation or the last reset. Set out->struct_size first. */
NLLM_API nllm_status nllm_context_timings(const nllm_context *ctx, nllm_timings *out);

/* ---------------------------------------------------------------- many sequences per context
 *
 * A context created with n_seq_max = N holds N sequences (ids 0..N-1) in one pool of n_ctx KV
 * cells shared by all of them: n_ctx is the TOTAL of cached tokens over all sequences, and a
 * cell copied into another sequence with nllm_seq_copy is stored once (reference counted).
 * The one-sequence calls (nllm_decode, nllm_context_pos, nllm_context_rewind, nllm_generate)
 * work on sequence 0. See docs/api.md "Many sequences" for the scheduler loop of a server. */

#define NLLM_SEQ_ALL (-1) /* every sequence, where a call says it accepts it */

/* One decode call's tokens. Rows are independent: any mix of prompt chunks of some sequences
 * and single generation tokens of others. Arrays are the caller's, read during the call only. */
typedef struct nllm_batch {
  uint32_t struct_size;
  int32_t n_tokens;         /* rows; > 0 */
  const nllm_token *tokens; /* [n_tokens] */
  /* [n_tokens] position of each row in its sequence (>= 0, not already in that sequence; rows
   * of one sequence in increasing order). NULL: each sequence continues from its last
   * position + 1, its rows in batch order. */
  const int32_t *pos;
  const int32_t *seq_id; /* [n_tokens] in [0, n_seq_max); NULL: every row is sequence 0 */
  /* [n_tokens] non-zero: keep this row's logits. NULL: the last row of each sequence in the
   * batch (all rows if the context was created with all_logits = 1). */
  const int32_t *logits;
} nllm_batch;

/* As the params inits: the macro passes sizeof the caller's struct, nothing past it is written. */
NLLM_API nllm_status nllm_batch_init_sized(nllm_batch *batch, size_t size);
NLLM_API void nllm_batch_init(nllm_batch *batch);
#define nllm_batch_init(b) ((void)nllm_batch_init_sized((b), sizeof *(b)))
/* Evaluates every row of the batch, appending its K/V to its sequence. All or nothing: on any
 * error (NLLM_ERR_CONTEXT_FULL when the pool has fewer free cells than rows, INVALID_ARG for a
 * bad token/sequence/position, ABORTED, ...) every sequence is left exactly as it was and no
 * logits are available. A batch larger than n_batch is evaluated in chunks internally. */
NLLM_API nllm_status nllm_decode_batch(nllm_context *ctx, const nllm_batch *batch);
/* After nllm_decode_batch, nllm_get_logits_ith(ctx, i) gives row i's logits (NULL if row i did
 * not ask for them) and nllm_get_logits the last row that did. Logits of sequence seq's last
 * row with logits in the last decode call, or NULL (none, or seq out of range). Valid until the
 * next decode or sequence operation. */
NLLM_API const float *nllm_get_logits_seq(nllm_context *ctx, int32_t seq);
NLLM_API int32_t nllm_context_n_seq_max(const nllm_context *ctx);

/* Sequence operations. Positions are half-open ranges [p0, p1); p1 < 0 means "to the end",
 * p0 < 0 means 0. They never evaluate anything and never allocate beyond the pool, except
 * nllm_seq_shift, which re-rotates the cached keys and may copy shared cells (copy on write):
 * NLLM_ERR_CONTEXT_FULL if the pool lacks the free cells for that, with nothing changed.
 * Invalid sequence ids give NLLM_ERR_INVALID_ARG. */
/* Drops seq's cells in [p0, p1) (seq = NLLM_SEQ_ALL: of every sequence). */
NLLM_API nllm_status nllm_seq_remove(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1);
/* dst gets src's cells in [p0, p1) at the same positions, sharing their storage (no compute,
 * no copy of the data); whatever dst held in [p0, p1) is dropped first. */
NLLM_API nllm_status nllm_seq_copy(nllm_context *ctx, int32_t src, int32_t dst, int32_t p0,
                                   int32_t p1);
/* Drops every sequence but seq. */
NLLM_API nllm_status nllm_seq_keep(nllm_context *ctx, int32_t seq);
/* Adds delta to the positions of seq's cells in [p0, p1) and re-rotates their keys (RoPE), as
 * a context shift does after nllm_seq_remove of the oldest tokens. A resulting position < 0 or
 * one that collides with another of seq's positions is NLLM_ERR_INVALID_ARG. */
NLLM_API nllm_status nllm_seq_shift(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1,
                                    int32_t delta);
/* Smallest / largest position of seq, -1 if it is empty (or seq is invalid). */
NLLM_API int32_t nllm_seq_pos_min(const nllm_context *ctx, int32_t seq);
NLLM_API int32_t nllm_seq_pos_max(const nllm_context *ctx, int32_t seq);
/* Cells of seq (its token count; shared cells count for each sequence holding them). */
NLLM_API int32_t nllm_seq_n_tokens(const nllm_context *ctx, int32_t seq);
/* Pool occupancy: cells holding data (shared cells once) and n_ctx. Either may be NULL. */
NLLM_API nllm_status nllm_context_kv_cells(const nllm_context *ctx, int32_t *used, int32_t *total);

/* ---------------------------------------------------------------- embeddings
 *
 * A context created with embeddings != NLLM_EMBEDDINGS_OFF keeps, for every row of each
 * decode call, the model's final hidden state (decoders: after the final norm, the input of
 * the output head; encoders: the last layer's output), and for every sequence with rows in that
 * call the pooled vector of those rows. Decode each text whole in one call (many texts: one
 * sequence id each, in one nllm_decode_batch). An encoder context (BERT: bidirectional
 * attention) keeps nothing between calls: each call's sequences start at position 0, and a
 * sequence's rows must be contiguous in the batch and fit in n_batch. Vectors are n_embd floats,
 * L2-normalized when the context's normalize is on, valid until the next decode. */

/* 1 for an encoder (BERT): it gives embeddings only (no logits, no generation); else 0. */
NLLM_API int32_t nllm_model_is_encoder(const nllm_model *model);
/* The model's default pooling (NLLM_POOLING_*) and normalization (1 or 0). */
NLLM_API int32_t nllm_model_pooling(const nllm_model *model);
NLLM_API int32_t nllm_model_normalize(const nllm_model *model);
/* The pooling and normalization a context uses (the model's defaults resolved); -1 for a
 * context without embeddings. */
NLLM_API int32_t nllm_context_pooling(const nllm_context *ctx);
NLLM_API int32_t nllm_context_normalize(const nllm_context *ctx);
/* Pooled vector of sequence seq from the last decode. NLLM_ERR_INVALID_ARG: a context without
 * embeddings, pooling NONE, or seq outside [0, n_seq_max); NLLM_ERR_NOT_FOUND: seq had no rows
 * in the last decode call. */
NLLM_API nllm_status nllm_get_embeddings_seq(nllm_context *ctx, int32_t seq, const float **out);
/* Per-token vector of row i of the last decode call. NLLM_ERR_INVALID_ARG: a context without
 * embeddings, or i outside the rows of that call. */
NLLM_API nllm_status nllm_get_embeddings_ith(nllm_context *ctx, int32_t i, const float **out);

/* ---------------------------------------------------------------- saved state
 *
 * A context's cached tokens saved as bytes and restored later (this process or another): to
 * resume a long conversation or reuse a long prompt without evaluating it again. seq =
 * NLLM_SEQ_ALL saves the whole context: every sequence's cells (shared cells stay shared) and
 * the logits of the last decode. A sequence id saves that sequence alone, with its last logits
 * row, and loads into any sequence id of any context of the same model.
 * A state records the model's identity (shapes and a fingerprint of its weights), the KV cache
 * types and a checksum (docs/formats.md "Saved state"). Loading checks all of it before it
 * changes anything: another model or other KV types give NLLM_ERR_INVALID_ARG, a damaged or
 * truncated state NLLM_ERR_FORMAT, a newer format NLLM_ERR_UNSUPPORTED, too few free cells
 * NLLM_ERR_CONTEXT_FULL; the context is then exactly as before. After a load, the sequence
 * holds the saved positions and nllm_get_logits / nllm_get_logits_seq give the saved logits
 * (a sequence load replaces the logits of the last decode). Not on the CUDA backend yet
 * (NLLM_ERR_UNSUPPORTED). */
/* Bytes nllm_state_save needs now. */
NLLM_API nllm_status nllm_state_size(nllm_context *ctx, int32_t seq, uint64_t *size);
/* Writes the state into buf; NLLM_ERR_BUFFER_TOO_SMALL if cap is less than needed. *n_written:
 * the state's size either way. */
NLLM_API nllm_status nllm_state_save(nllm_context *ctx, int32_t seq, void *buf, uint64_t cap,
                                     uint64_t *n_written);
NLLM_API nllm_status nllm_state_load(nllm_context *ctx, int32_t seq, const void *buf,
                                     uint64_t size);
/* The same through a file, written atomically (complete under its name or not there). */
NLLM_API nllm_status nllm_state_save_file(nllm_context *ctx, int32_t seq, const char *path);
NLLM_API nllm_status nllm_state_load_file(nllm_context *ctx, int32_t seq, const char *path);

/* ---------------------------------------------------------------- sampling */

typedef struct nllm_sampler_params {
  uint32_t struct_size;
  float temperature;     /* 0 = greedy (argmax, lowest id on ties); default 0.8 */
  int32_t top_k;         /* 0 = off; default 40 */
  float top_p;           /* 1 = off; default 0.95 */
  float min_p;           /* 0 = off; default 0.05 */
  float repeat_penalty;  /* 1 = off (default); e.g. 1.1 discourages repeating recent tokens */
  int32_t repeat_last_n; /* tokens the penalty looks back over; default 64 */
  uint64_t seed;         /* fixed seed = reproducible; NLLM_SEED_DEFAULT: the seed of the first
                          * context it samples from, or random if that is also default */
  /* Constrained output (docs/grammar.md). At most one of grammar / json_schema; both NULL by
   * default (no constraint). The strings are copied at nllm_sampler_create. */
  const char *grammar;      /* GBNF text: only tokens that keep the output in it are sampled */
  const char *grammar_root; /* its start rule; NULL = "root" */
  const char *json_schema;  /* JSON Schema text, turned into a grammar; "{}" = any JSON value */
} nllm_sampler_params;

NLLM_API nllm_status nllm_sampler_params_init_sized(nllm_sampler_params *params, size_t size);
NLLM_API void nllm_sampler_params_init(nllm_sampler_params *params);
#define nllm_sampler_params_init(p) ((void)nllm_sampler_params_init_sized((p), sizeof *(p)))
NLLM_API nllm_status nllm_sampler_create(const nllm_model *model, const nllm_sampler_params *params,
                                         nllm_sampler **out);
NLLM_API void nllm_sampler_free(nllm_sampler *sampler);
/* Forget accepted tokens and reseed (seed as in params; NLLM_SEED_DEFAULT keeps the old one). */
NLLM_API void nllm_sampler_reset(nllm_sampler *sampler, uint64_t seed);
/* Choose a token from the context's last logits. Does not call accept. */
NLLM_API nllm_status nllm_sampler_sample(nllm_sampler *sampler, nllm_context *ctx, nllm_token *out);
/* Same from a caller's logits array (n_vocab floats, not modified). */
NLLM_API nllm_status nllm_sampler_sample_logits(nllm_sampler *sampler, const float *logits,
                                                int32_t n_vocab, nllm_token *out);
/* Record a token (prompt or generated) for the repetition penalty. */
NLLM_API void nllm_sampler_accept(nllm_sampler *sampler, nllm_token token);

/* ---------------------------------------------------------------- generation */

typedef struct nllm_generate_params {
  uint32_t struct_size;
  int32_t max_tokens;    /* stop after this many generated tokens; default 256 */
  int32_t add_bos;       /* default 1: BOS before the prompt if the context is empty */
  int32_t parse_special; /* default 0 */
  int32_t stop_at_eog;   /* default 1 */
  nllm_token_fn on_token;
  void *user_data;
  /* Stop strings: generation ends when the generated text contains one of
   * the n_stop strings (non-empty, NUL-terminated; the array is read during the call only). The
   * match may span tokens; the stop string and anything after it are never passed to on_token,
   * and text that could be the start of a stop string is held back (on_token then gets an empty
   * piece) until it is known not to be one. Default: none. */
  const char *const *stop;
  int32_t n_stop;
  /* Out (may be NULL): why generation ended, one of NLLM_FINISH_*; NLLM_FINISH_NONE when the
   * call failed before generating. */
  int32_t *finish_reason;
} nllm_generate_params;

/* Finish reasons of nllm_generate / nllm_generate_tokens. */
#define NLLM_FINISH_NONE 0    /* nothing generated: an error before the first token */
#define NLLM_FINISH_EOG 1     /* an end-of-generation token (not streamed) */
#define NLLM_FINISH_LENGTH 2  /* max_tokens reached, or the context is full */
#define NLLM_FINISH_STOP 3    /* a stop string matched */
#define NLLM_FINISH_ABORTED 4 /* on_token returned non-zero, or the abort callback fired */

NLLM_API nllm_status nllm_generate_params_init_sized(nllm_generate_params *params, size_t size);
NLLM_API void nllm_generate_params_init(nllm_generate_params *params);
#define nllm_generate_params_init(p) ((void)nllm_generate_params_init_sized((p), sizeof *(p)))
/* Tokenize prompt, decode it after what the context already holds, then sample (feeding every
 * prompt token to the sampler first) and stream up to max_tokens. *n_generated (may be NULL)
 * counts generated tokens. Stops early (NLLM_OK) at an end-of-generation token, a stop string or
 * when on_token returns non-zero; params->finish_reason says which. A prompt that does not fit in
 * the context fails with NLLM_ERR_CONTEXT_FULL before anything is generated (finish reason
 * NONE); when the context fills during generation the call also returns NLLM_ERR_CONTEXT_FULL,
 * with finish reason LENGTH (or STOP / ABORTED when the last token also ended it that way) and
 * every token so far streamed (the last one is not decoded). */
NLLM_API nllm_status nllm_generate(nllm_context *ctx, nllm_sampler *sampler, const char *prompt,
                                   int32_t prompt_len, const nllm_generate_params *params,
                                   int32_t *n_generated);
/* Same with the prompt given as token ids (add_bos and parse_special do not apply). Chat
 * front-ends use it to continue a cached conversation after rewinding to the common prefix. */
NLLM_API nllm_status nllm_generate_tokens(nllm_context *ctx, nllm_sampler *sampler,
                                          const nllm_token *prompt, int32_t n_prompt,
                                          const nllm_generate_params *params, int32_t *n_generated);

/* ---------------------------------------------------------------- conversion and quantization */

/* Weight-type names, any case: a type ("Q8_0", "f16", "bf16") or a mixed preset ("Q4_K_M":
 * most matrices Q4_K, some attn_v/ffn_down layers Q6_K, the output matrix Q6_K). *type gets the
 * type, or a preset's base type; *is_preset (may be NULL) 1 for a mixed preset, else 0.
 * NLLM_ERR_INVALID_ARG, with a message listing every valid name, for anything else. */
NLLM_API nllm_status nllm_type_parse(const char *name, int32_t *type, int32_t *is_preset);
/* Every name nllm_type_parse accepts, space-separated ("F32 F16 BF16 Q4_0 ..."). Static. */
NLLM_API const char *nllm_type_names(void);

typedef struct nllm_convert_params {
  uint32_t struct_size;
  int32_t n_threads;         /* 0 = all cores */
  int32_t type;              /* NLLM_TYPE_* of every weight matrix; NLLM_TYPE_NONE (default):
                              * each tensor keeps its type, or type_name decides */
  const char *type_name;     /* a type or preset (nllm_type_parse); when set, wins over type */
  nllm_progress_fn progress; /* fraction done; non-zero cancels with NLLM_ERR_ABORTED */
  void *progress_user_data;
  /* LoRA adapters (nllm_lora_adapter_load paths) merged into the written weights, each with
   * its user scale (NULL: all 1): W + sum s * alpha/r * B A, then converted to the target type
   * (without a target, each tensor's own type). Default none. */
  const char *const *lora_paths;
  const float *lora_scales;
  int32_t n_lora;
} nllm_convert_params;

/* What a conversion did; filled up to its struct_size (which the caller sets). */
typedef struct nllm_convert_stats {
  uint32_t struct_size;
  int32_t n_tensors;
  uint64_t bytes_in;  /* tensor data of the source */
  uint64_t bytes_out; /* size of the written file */
  double seconds;     /* wall time of the whole call */
} nllm_convert_stats;

NLLM_API nllm_status nllm_convert_params_init_sized(nllm_convert_params *params, size_t size);
NLLM_API void nllm_convert_params_init(nllm_convert_params *params);
#define nllm_convert_params_init(p) ((void)nllm_convert_params_init_sized((p), sizeof *(p)))
/* Writes the model at in_path (GGUF file or Hugging Face folder) as a GGUF v3 file at out_path
 * that llama.cpp-class engines load (GGUF names and keys, tokenizer keys, Llama q/k rows in
 * GGUF's rope order), converting weight matrices to the requested type; norms and biases
 * become F32. out_path's folder is checked before any work; the file appears complete or not
 * at all (temporary file + rename). params and stats may be NULL. */
NLLM_API nllm_status nllm_convert(const char *in_path, const char *out_path,
                                  const nllm_convert_params *params, nllm_convert_stats *stats);
/* nllm_convert that needs a target: NLLM_ERR_INVALID_ARG when neither type nor type_name
 * names one. */
NLLM_API nllm_status nllm_quantize(const char *in_path, const char *out_path,
                                   const nllm_convert_params *params, nllm_convert_stats *stats);

/* ---------------------------------------------------------------- machine facts for tools */

/* Threads the library uses when a params struct asks for 0 (the cores this process may use). */
NLLM_API int32_t nllm_default_n_threads(void);
/* The machine's memory-read bandwidth in GB/s, measured now: the median of `runs` passes of
 * n_threads threads (0 = default) reading a fresh buffer of `bytes` (make it several times the
 * last-level cache). Takes time; 0 with nllm_last_error() set on bad arguments or no memory. */
NLLM_API double nllm_read_bandwidth_gbs(uint64_t bytes, int32_t n_threads, int32_t runs);
/* Bytes of a row of n values of a weight type; 0 if the type is unknown, n is negative or not a
 * multiple of its block size, or the size overflows 64 bits. */
NLLM_API uint64_t nllm_type_row_size(int32_t type, int64_t n);

/* ---------------------------------------------------------------- GGUF writer */

/* Builds a GGUF v3 file other engines load: metadata keys, then tensors, all written by
 * nllm_gguf_write. Keys keep the order of their first set; setting a key again replaces its
 * value. Values are copied; tensor data is only referenced and must stay valid until
 * nllm_gguf_write. The file is written under a temporary name and renamed: it appears complete
 * or not at all. One writer is used by one thread at a time. */
typedef struct nllm_gguf_writer nllm_gguf_writer;

NLLM_API nllm_status nllm_gguf_writer_create(nllm_gguf_writer **out);
NLLM_API void nllm_gguf_writer_free(nllm_gguf_writer *writer);
NLLM_API nllm_status nllm_gguf_set_str(nllm_gguf_writer *writer, const char *key,
                                       const char *value);
NLLM_API nllm_status nllm_gguf_set_u32(nllm_gguf_writer *writer, const char *key, uint32_t value);
NLLM_API nllm_status nllm_gguf_set_f32(nllm_gguf_writer *writer, const char *key, float value);
NLLM_API nllm_status nllm_gguf_set_bool(nllm_gguf_writer *writer, const char *key, int32_t value);
NLLM_API nllm_status nllm_gguf_set_str_array(nllm_gguf_writer *writer, const char *key,
                                             const char *const *values, uint64_t n);
NLLM_API nllm_status nllm_gguf_set_f32_array(nllm_gguf_writer *writer, const char *key,
                                             const float *values, uint64_t n);
NLLM_API nllm_status nllm_gguf_set_i32_array(nllm_gguf_writer *writer, const char *key,
                                             const int32_t *values, uint64_t n);
/* A tensor of n_dims (1..4) sizes ne, ne[0] the contiguous row, in a weight type; nbytes must
 * be the size of that shape in that type (rows of nllm_type_row_size). */
NLLM_API nllm_status nllm_gguf_add_tensor(nllm_gguf_writer *writer, const char *name, int32_t type,
                                          int32_t n_dims, const int64_t *ne, const void *data,
                                          uint64_t nbytes);
NLLM_API nllm_status nllm_gguf_write(nllm_gguf_writer *writer, const char *path);
/* Quantizes n floats into one row of `type` (nllm_type_row_size(type, n) bytes at dst) with
 * the reference quantizer, as conversion does. NLLM_ERR_UNSUPPORTED for a type this build
 * cannot quantize to, NLLM_ERR_INVALID_ARG if n is not a multiple of its block. */
NLLM_API nllm_status nllm_quantize_row(int32_t type, const float *src, void *dst, int64_t n);
/* ---------------------------------------------------------------- constrained output */
/* Grammars and JSON Schema for nllm_sampler_params.grammar / .json_schema: docs/grammar.md.
 * With a grammar, nllm_sampler_accept (and nllm_generate) advance it by the token the sampler
 * last returned; prompt tokens fed through accept never touch it. nllm_generate with a non-empty
 * prompt and nllm_sampler_reset start it over, as does the token after an accepted
 * end-of-generation token. */

/* JSON Schema text -> the GBNF text json_schema uses (start rule "root"), to inspect or edit.
 * NUL-terminated when it fits; NLLM_ERR_BUFFER_TOO_SMALL with *n_out = length (the NUL not
 * counted). NLLM_ERR_INVALID_ARG naming the schema location for what it cannot translate. */
NLLM_API nllm_status nllm_json_schema_to_grammar(const char *schema, char *buf, int32_t cap,
                                                 int32_t *n_out);
/* Checks GBNF text as nllm_sampler_create would (root NULL = "root"), without a model. */
NLLM_API nllm_status nllm_grammar_validate(const char *grammar, const char *root);
/* 1 when the sampler has a grammar and the output accepted since it started is a complete
 * sentence of it (stopping here gives text that parses); else 0. After max_tokens, 0 means the
 * output was cut short. */
NLLM_API int32_t nllm_sampler_grammar_complete(const nllm_sampler *sampler);

/* ---------------------------------------------------------------- LoRA adapters */
/* A LoRA adapter adds s * scale * B (A x) to the weight matrices it adapts (y = W x), where
 * scale is alpha / r (alpha / sqrt(r) with rsLoRA) and s the user's scale given when attaching
 * it. Adapters stay unmerged: A and B are kept in F32, F16 or BF16 next to the base weights
 * (quantized or not), so one loaded base serves any number of adapters and contexts
 * (docs/api.md). */
typedef struct nllm_lora_adapter nllm_lora_adapter;

/* Loads a PEFT folder (adapter_config.json + adapter_model.safetensors; F32/F16/BF16), the
 * folder's .safetensors file, or a GGUF adapter (general.type "adapter", adapter.type "lora",
 * as llama.cpp's convert_lora_to_gguf.py writes it) for `model`, checking every tensor against
 * it: the architecture, a base matrix of that name, shapes and ranks. A mismatch is
 * NLLM_ERR_FORMAT (or NLLM_ERR_UNSUPPORTED for DoRA, trained biases, embedding/output targets)
 * naming the tensor. The model must outlive the adapter. */
NLLM_API nllm_status nllm_lora_adapter_load(const nllm_model *model, const char *path,
                                            nllm_lora_adapter **out);

/* How an adapter is kept in memory (nllm_lora_adapter_load_params). */
typedef struct nllm_lora_adapter_params {
  uint32_t struct_size;
  /* The type F32 adapter weights are kept in; every decode step reads them next to the base.
   * NLLM_TYPE_NONE (default): F16 where the adapted base matrix is quantized (the base's own
   * rounding is the larger error, and F16 halves the adapter's bytes), F32 where it is a float
   * matrix; NLLM_TYPE_F32: always F32 (llama.cpp's choice); NLLM_TYPE_F16 / NLLM_TYPE_BF16:
   * always rounded (F16 after scaling A and B by powers of two, so nothing overflows). A pair
   * of F16 or BF16 tensors keeps its own type. Errors of each choice: docs/api.md. */
  int32_t weight_type;
} nllm_lora_adapter_params;

NLLM_API nllm_status nllm_lora_adapter_params_init_sized(nllm_lora_adapter_params *params,
                                                         size_t size);
#define nllm_lora_adapter_params_init(p) \
  ((void)nllm_lora_adapter_params_init_sized((p), sizeof *(p)))
/* nllm_lora_adapter_load with params (NULL: the defaults, which nllm_lora_adapter_load uses).
 * NLLM_ERR_INVALID_ARG for a weight_type other than those above. */
NLLM_API nllm_status nllm_lora_adapter_load_params(const nllm_model *model, const char *path,
                                                   const nllm_lora_adapter_params *params,
                                                   nllm_lora_adapter **out);
/* Releases the caller's handle. Contexts it is attached to keep it alive until they detach it
 * or are freed, so freeing an attached adapter is safe. NULL is a no-op. */
NLLM_API void nllm_lora_adapter_free(nllm_lora_adapter *adapter);
/* general.name of a GGUF adapter, else the file or folder name. Owned by the adapter. */
NLLM_API const char *nllm_lora_adapter_name(const nllm_lora_adapter *adapter);
/* Adapted matrices, their largest rank, and alpha (the file's lora_alpha). */
NLLM_API int32_t nllm_lora_adapter_n_matrices(const nllm_lora_adapter *adapter);
NLLM_API int32_t nllm_lora_adapter_rank(const nllm_lora_adapter *adapter);
NLLM_API float nllm_lora_adapter_alpha(const nllm_lora_adapter *adapter);
/* The type its weights are kept in (NLLM_TYPE_F32, _F16 or _BF16), NLLM_TYPE_NONE when its
 * matrices differ (the default weight_type on a base of float and quantized matrices). */
NLLM_API int32_t nllm_lora_adapter_weight_type(const nllm_lora_adapter *adapter);

/* Replaces the set of adapters the context applies: adapters[0..n) with scales[0..n) (NULL:
 * all 1; 0 switches one off; several add up; n = 0 removes all). Takes effect from the next
 * decode call; the KV cache already computed is kept (rewind or reset it to recompute a prompt
 * under the new set). Every sequence uses the context's set unless it has its own
 * (nllm_seq_set_lora). Each adapter must have been
 * loaded for this context's model; a context with GPU layers refuses adapters
 * (NLLM_ERR_UNSUPPORTED: merge with nllm_convert's lora fields instead). */
NLLM_API nllm_status nllm_context_set_lora(nllm_context *ctx, nllm_lora_adapter *const *adapters,
                                           const float *scales, int32_t n);
/* Adapters attached to the context now (not counting sequences' own). */
NLLM_API int32_t nllm_context_n_lora(const nllm_context *ctx);
/* The same for one sequence of a multi-sequence context: its rows use these adapters instead
 * of the context's, so sequences with different adapters share one nllm_decode_batch (the base
 * weights are read once for all of them). n = 0: the sequence runs the plain base; n = -1: it
 * goes back to the context's set. The set belongs to the sequence id and stays through
 * nllm_seq_remove / nllm_context_reset until replaced. */
NLLM_API nllm_status nllm_seq_set_lora(nllm_context *ctx, int32_t seq,
                                       nllm_lora_adapter *const *adapters, const float *scales,
                                       int32_t n);

#ifdef __cplusplus
}
#endif

#endif /* NATIVELLM_H */
