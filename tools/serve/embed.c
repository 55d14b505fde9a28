/* POST /v1/embeddings: OpenAI's request and response shapes on an embeddings context of the
 * model. The context is made on the first request (a generation-only deployment never pays for
 * it) and serves one request at a time under its mutex, in the connection's thread: a batch of
 * texts is one or a few decode calls (cli_embed_seqs), so a queue would add nothing. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../nllm/nllm.h"
#include "serve.h"

/* Rows of the embeddings context: one decode call's texts together. */
#define EMBED_ROWS 2048
#define EMBED_MAX_INPUTS 2048

struct srv_embed {
  pthread_mutex_t mu;
  const nllm_model *model;
  nllm_context *ctx;
  int n_threads, max_tokens;
  int32_t bf16_act;
};

int srv_embed_create(const nllm_model *model, int n_threads, int32_t bf16_act, srv_embed **out) {
  srv_embed *e = calloc(1, sizeof *e);
  if (!e) return -1;
  pthread_mutex_init(&e->mu, NULL);
  e->model = model;
  e->n_threads = n_threads;
  e->bf16_act = bf16_act;
  /* an encoder sees at most its position table per text */
  int train = nllm_model_n_ctx_train(model);
  e->max_tokens =
      nllm_model_is_encoder(model) && train > 0 && train < EMBED_ROWS ? train : EMBED_ROWS;
  *out = e;
  return 0;
}

void srv_embed_free(srv_embed *e) {
  if (!e) return;
  nllm_context_free(e->ctx);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

/* A growable text buffer for the response (vectors are printed with %.9g: float round trip). */
typedef struct sbuf {
  char *s;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap + (size_t)n + 1) * 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p, b->cap = cap;
  }
}

static void sb_base64(sbuf *b, const unsigned char *p, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char chunk[5] = {0};
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    chunk[0] = tab[v >> 18 & 63];
    chunk[1] = tab[v >> 12 & 63];
    chunk[2] = i + 1 < n ? tab[v >> 6 & 63] : '=';
    chunk[3] = i + 2 < n ? tab[v & 63] : '=';
    sb_add(b, "%s", chunk);
  }
}

/* The inputs as token id lists: a string, a list of strings, a list of ids, a list of id lists.
 * Returns the count, or -1 with err. */
static int read_inputs(const srv_embed *e, const cJSON *input, nllm_token ***ids, int32_t **lens,
                       int *n_alloc, srv_error *err) {
  const int n_vocab = nllm_model_n_vocab(e->model);
  int n = 0, one = 0;
  *n_alloc = 0;
  if (cJSON_IsString(input)) {
    n = 1, one = 1;
  } else if (cJSON_IsArray(input) && cJSON_GetArraySize(input) > 0) {
    /* a flat list of numbers is one tokenized input */
    one = cJSON_IsNumber(input->child);
    n = one ? 1 : cJSON_GetArraySize(input);
  }
  if (n == 0) {
    srv_error_set(err, 400, "invalid_request_error", "input", NULL,
                  "'input' must be a non-empty string, array of strings, array of token ids or "
                  "array of token id arrays");
    return -1;
  }
  if (n > EMBED_MAX_INPUTS) {
    srv_error_set(err, 400, "invalid_request_error", "input", NULL,
                  "'input' has %d items, at most %d are allowed", n, EMBED_MAX_INPUTS);
    return -1;
  }
  *ids = calloc((size_t)n, sizeof **ids);
  *lens = calloc((size_t)n, sizeof **lens);
  if (!*ids || !*lens) {
    srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
  }
  *n_alloc = n;
  const cJSON *item = one ? input : input->child;
  for (int i = 0; i < n; i++, item = item->next) {
    int32_t cnt = 0;
    if (cJSON_IsString(item)) {
      const char *text = item->valuestring;
      if (!*text) {
        srv_error_set(err, 400, "invalid_request_error", "input", NULL,
                      "input %d is an empty string", i);
        return -1;
      }
      size_t len = strlen(text);
      nllm_status st = len > (1u << 30)
                           ? NLLM_ERR_INVALID_ARG
                           : nllm_tokenize(e->model, text, (int32_t)len, 1, 0, NULL, 0, &cnt);
      if (st == NLLM_OK || st == NLLM_ERR_BUFFER_TOO_SMALL) {
        (*ids)[i] = malloc(((size_t)cnt + 1) * sizeof ***ids);
        st = (*ids)[i] ? nllm_tokenize(e->model, text, (int32_t)len, 1, 0, (*ids)[i], cnt + 1, &cnt)
                       : NLLM_ERR_NOMEM;
      }
      if (st) {
        srv_error_set(err, 400, "invalid_request_error", "input", NULL,
                      "input %d cannot be tokenized: %s", i, nllm_last_error());
        return -1;
      }
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) > 0) {
      cnt = cJSON_GetArraySize(item);
      (*ids)[i] = malloc((size_t)cnt * sizeof ***ids);
      if (!(*ids)[i]) {
        srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
      }
      int k = 0;
      for (const cJSON *t = item->child; t; t = t->next, k++) {
        double v = cJSON_IsNumber(t) ? t->valuedouble : -1;
        if (!(v >= 0 && v < n_vocab && v == floor(v))) {
          srv_error_set(err, 400, "invalid_request_error", "input", NULL,
                        "input %d: item %d is not a token id of this model (0..%d)", i, k,
                        n_vocab - 1);
          return -1;
        }
        (*ids)[i][k] = (nllm_token)v;
      }
    } else {
      srv_error_set(err, 400, "invalid_request_error", "input", NULL,
                    "input %d must be a non-empty string or array of token ids", i);
      return -1;
    }
    if (cnt < 1 || cnt > e->max_tokens) {
      srv_error_set(err, 400, "invalid_request_error", "input", "context_length_exceeded",
                    "input %d has %d tokens; this model embeds 1 to %d tokens per input", i, cnt,
                    e->max_tokens);
      return -1;
    }
    (*lens)[i] = cnt;
  }
  return n;
}

char *srv_api_embeddings(srv_embed *e, const srv_api *a, const char *body, size_t len,
                         srv_error *err) {
  cJSON *in = cJSON_ParseWithLength(body, len);
  nllm_token **ids = NULL;
  int32_t *lens = NULL;
  float *vecs = NULL;
  int n = 0, locked = 0;
  char *res = NULL;
  sbuf b = {0};
  if (!in || !cJSON_IsObject(in)) {
    srv_error_set(err, 400, "invalid_request_error", NULL, NULL, "the body must be a JSON object");
    goto done;
  }
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(in, "model");
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(in, "encoding_format");
  const cJSON *dims = cJSON_GetObjectItemCaseSensitive(in, "dimensions");
  const int d = nllm_model_n_embd(e->model);
  if (model && !cJSON_IsNull(model) &&
      (!cJSON_IsString(model) || (a->cfg->alias && strcmp(model->valuestring, a->cfg->alias)))) {
    srv_error_set(err, 404, "invalid_request_error", "model", "model_not_found",
                  "the model '%s' does not exist (this server has '%s')",
                  cJSON_IsString(model) ? model->valuestring : "?",
                  a->cfg->alias ? a->cfg->alias : "");
    goto done;
  }
  int base64 = 0;
  if (fmt && !cJSON_IsNull(fmt)) {
    if (!cJSON_IsString(fmt) ||
        (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64"))) {
      srv_error_set(err, 400, "invalid_request_error", "encoding_format", NULL,
                    "'encoding_format' must be \"float\" or \"base64\"");
      goto done;
    }
    base64 = !strcmp(fmt->valuestring, "base64");
  }
  int out_dims = d;
  if (dims && !cJSON_IsNull(dims)) {
    double v = cJSON_IsNumber(dims) ? dims->valuedouble : 0;
    if (!(v >= 1 && v <= d && v == floor(v))) {
      srv_error_set(err, 400, "invalid_request_error", "dimensions", NULL,
                    "'dimensions' must be an integer from 1 to %d (the model's width)", d);
      goto done;
    }
    out_dims = (int)v;
  }
  if (read_inputs(e, cJSON_GetObjectItemCaseSensitive(in, "input"), &ids, &lens, &n, err) < 0)
    goto done;
  if (!(vecs = malloc((size_t)n * (size_t)d * sizeof *vecs))) {
    srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    goto done;
  }
  pthread_mutex_lock(&e->mu);
  locked = 1;
  if (!e->ctx) {
    nllm_context_params cp;
    nllm_context_params_init(&cp);
    cp.embeddings = NLLM_EMBEDDINGS_ONLY;
    /* OpenAI's vectors are one per input: a model without pooling is averaged */
    if (nllm_model_pooling(e->model) == NLLM_POOLING_NONE) cp.pooling = NLLM_POOLING_MEAN;
    cp.n_ctx = cp.n_batch = EMBED_ROWS;
    cp.n_seq_max = 64;
    cp.n_threads = e->n_threads;
    cp.bf16_activations = e->bf16_act;
    cp.kv_type = NLLM_TYPE_F32; /* one batch's cells only: exact and small */
    if (nllm_context_create(e->model, &cp, &e->ctx)) {
      srv_error_set(err, 500, "server_error", NULL, NULL,
                    "cannot create the embeddings context: %s", nllm_last_error());
      goto done;
    }
  }
  if (cli_embed_seqs(e->ctx, EMBED_ROWS, (const nllm_token *const *)ids, lens, n, vecs)) {
    srv_error_set(err, 500, "server_error", NULL, NULL, "embedding failed: %s", nllm_last_error());
    goto done;
  }
  const int normalized = nllm_context_normalize(e->ctx) == 1;
  pthread_mutex_unlock(&e->mu);
  locked = 0;

  long long n_tokens = 0;
  sb_add(&b, "{\"object\":\"list\",\"data\":[");
  for (int i = 0; i < n; i++) {
    float *v = vecs + (size_t)i * (size_t)d;
    n_tokens += lens[i];
    if (out_dims < d && normalized) {
      /* a shortened normalized vector is normalized again (as OpenAI's dimensions are) */
      double ss = 0;
      for (int k = 0; k < out_dims; k++) ss += (double)v[k] * v[k];
      if (ss > 0)
        for (int k = 0; k < out_dims; k++) v[k] = (float)(v[k] / sqrt(ss));
    }
    sb_add(&b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
    if (base64) {
      sb_add(&b, "\"");
      sb_base64(&b, (const unsigned char *)v, (size_t)out_dims * sizeof *v); /* little-endian */
      sb_add(&b, "\"}");
    } else {
      sb_add(&b, "[");
      for (int k = 0; k < out_dims; k++) sb_add(&b, k ? ",%.9g" : "%.9g", (double)v[k]);
      sb_add(&b, "]}");
    }
  }
  cJSON *name = cJSON_CreateString(a->cfg->alias ? a->cfg->alias : "");
  char *alias = name ? cJSON_PrintUnformatted(name) : NULL;
  cJSON_Delete(name);
  sb_add(&b, "],\"model\":%s,\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
         alias ? alias : "\"\"", n_tokens, n_tokens);
  free(alias);
  if (b.oom) {
    srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    free(b.s);
  } else {
    res = b.s;
  }
done:
  if (locked) pthread_mutex_unlock(&e->mu);
  for (int i = 0; ids && i < n; i++) free(ids[i]);
  free(ids);
  free(lens);
  free(vecs);
  cJSON_Delete(in);
  return res;
}
