/* Saved states: a context's KV cells, positions and last logits as bytes (a buffer or a file)
 * and back, for the whole context or one sequence. docs/formats.md "Saved state" has the byte
 * layout. A load checks everything before it changes anything: a state of another model, of
 * other KV types, truncated or altered gives a status and leaves the context as it was. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "engine/engine.h"
#include "qtypes.h"

#define STATE_MAGIC "NLLMKVST"
#define STATE_VERSION 1u
#define STATE_KIND_ALL 0u
#define STATE_KIND_SEQ 1u
#define HEADER_BYTES 72 /* 64 of fields, then the hash of payload + fields */
#define POS_MAX (1 << 30)

/* ---- a word-at-a-time 64-bit hash: catches a flipped or cut byte anywhere in gigabytes of
 * cache at memory speed (FNV-1a byte by byte would be several times slower) */

typedef struct hasher {
  uint64_t h, len;
  uint8_t carry[8];
  int nc;
} hasher;

static void hash_word(hasher *hs, uint64_t w) {
  uint64_t h = (hs->h ^ w) * 0x100000001b3ull;
  hs->h = h ^ (h >> 29);
}

static void hash_init(hasher *hs) {
  memset(hs, 0, sizeof *hs);
  hs->h = 0xcbf29ce484222325ull;
}

static void hash_update(hasher *hs, const void *data, size_t n) {
  const uint8_t *p = data;
  hs->len += n;
  while (hs->nc && n) {
    hs->carry[hs->nc++] = *p++, n--;
    if (hs->nc == 8) {
      uint64_t w;
      memcpy(&w, hs->carry, 8);
      hash_word(hs, w);
      hs->nc = 0;
    }
  }
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    hash_word(hs, w);
  }
  memcpy(hs->carry, p, n);
  hs->nc = (int)n;
}

static uint64_t hash_final(hasher *hs) {
  if (hs->nc) {
    memset(hs->carry + hs->nc, 0, (size_t)(8 - hs->nc));
    uint64_t w;
    memcpy(&w, hs->carry, 8);
    hash_word(hs, w);
  }
  hash_word(hs, hs->len);
  hash_word(hs, 0x9e3779b97f4a7c15ull);
  return hs->h;
}

/* The model's identity: architecture, shapes and a sample of every matrix's bytes (its types
 * included), so a state never loads into a different model of the same shape, e.g. another
 * fine-tune or another quantization of it. Reads a few KiB per layer. */
static void hash_weight(hasher *hs, const nllm_weight *w) {
  const int32_t head[2] = {w->type, w->data != NULL};
  hash_update(hs, head, sizeof head);
  if (!w->data) return;
  const int64_t shape[2] = {w->rows, w->cols};
  hash_update(hs, shape, sizeof shape);
  const uint64_t bytes = (uint64_t)nllm_row_size(w->type, w->cols) * (uint64_t)w->rows;
  const uint64_t take = bytes < 1024 ? bytes : 1024;
  hash_update(hs, w->data, (size_t)take);
  hash_update(hs, (const uint8_t *)w->data + (bytes - take), (size_t)take);
}

static uint64_t model_fingerprint(const nllm_model *m) {
  hasher hs;
  hash_init(&hs);
  hash_update(&hs, m->arch->name, strlen(m->arch->name) + 1);
  const nllm_hparams *hp = &m->hp;
  const int32_t dims[] = {hp->n_vocab,  hp->n_embd, hp->n_layer, hp->n_head,    hp->n_head_kv,
                          hp->head_dim, hp->n_ff,   hp->n_rot,   hp->rope_neox, hp->sliding_window};
  hash_update(&hs, dims, sizeof dims);
  const float reals[] = {hp->rms_eps, hp->rope_base, hp->attn_softcap, hp->final_softcap,
                         hp->attn_scale};
  hash_update(&hs, reals, sizeof reals);
  hash_update(&hs, m->inv_freq, (size_t)(hp->n_rot / 2) * sizeof *m->inv_freq);
  hash_weight(&hs, &m->tok_embd);
  hash_weight(&hs, &m->output);
  for (int32_t il = 0; il < hp->n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    hash_weight(&hs, &L->wq);
    hash_weight(&hs, &L->wk);
    hash_weight(&hs, &L->wv);
    hash_weight(&hs, &L->wo);
    hash_weight(&hs, &L->w_up);
    hash_weight(&hs, &L->w_down);
  }
  return hash_final(&hs);
}

/* ---- the header */

typedef struct state_header {
  uint32_t version, kind;
  uint64_t model;
  uint32_t n_layer, n_head_kv, head_dim, n_vocab;
  int32_t type_k, type_v, n_ctx, n_seq;
  uint64_t payload;
} state_header;

static void put32(uint8_t *p, uint32_t v) {
  memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v) {
  memcpy(p, &v, 8);
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static void header_encode(const state_header *h, uint8_t *out) {
  memset(out, 0, HEADER_BYTES);
  memcpy(out, STATE_MAGIC, 8);
  put32(out + 8, h->version);
  put32(out + 12, h->kind);
  put64(out + 16, h->model);
  put32(out + 24, h->n_layer);
  put32(out + 28, h->n_head_kv);
  put32(out + 32, h->head_dim);
  put32(out + 36, h->n_vocab);
  put32(out + 40, (uint32_t)h->type_k);
  put32(out + 44, (uint32_t)h->type_v);
  put32(out + 48, (uint32_t)h->n_ctx);
  put32(out + 52, (uint32_t)h->n_seq);
  put64(out + 56, h->payload);
}

static void header_decode(const uint8_t *in, state_header *h) {
  h->version = get32(in + 8);
  h->kind = get32(in + 12);
  h->model = get64(in + 16);
  h->n_layer = get32(in + 24);
  h->n_head_kv = get32(in + 28);
  h->head_dim = get32(in + 32);
  h->n_vocab = get32(in + 36);
  h->type_k = (int32_t)get32(in + 40);
  h->type_v = (int32_t)get32(in + 44);
  h->n_ctx = (int32_t)get32(in + 48);
  h->n_seq = (int32_t)get32(in + 52);
  h->payload = get64(in + 56);
}

static void header_of(const nllm_context *ctx, uint32_t kind, uint64_t payload, state_header *h) {
  const nllm_hparams *hp = &ctx->model->hp;
  *h = (state_header){.version = STATE_VERSION,
                      .kind = kind,
                      .model = model_fingerprint(ctx->model),
                      .n_layer = (uint32_t)hp->n_layer,
                      .n_head_kv = (uint32_t)hp->n_head_kv,
                      .head_dim = (uint32_t)hp->head_dim,
                      .n_vocab = (uint32_t)hp->n_vocab,
                      .type_k = ctx->fs.kv.type,
                      .type_v = ctx->fs.kv.type_v,
                      .n_ctx = ctx->n_ctx,
                      .n_seq = ctx->n_seq,
                      .payload = payload};
}

/* ---- saving: one walk over what is saved, into a sink that counts, fills a buffer or
 * writes a file */

typedef struct sink {
  uint8_t *buf; /* buffer mode: the payload's start */
  int fd;       /* file mode (buf NULL, fd >= 0); fd < 0 and no buf: count only */
  uint64_t n;
  hasher hs;
  uint8_t *wb; /* file mode: writes gathered into big ones */
  size_t wn, wcap;
  nllm_status st;
} sink;

static void sink_flush(sink *k) {
  size_t off = 0;
  while (off < k->wn && !k->st) {
    ssize_t w = write(k->fd, k->wb + off, k->wn - off);
    if (w < 0)
      k->st = nllm_err(NLLM_ERR_IO, "state: writing the file failed: %s", strerror(errno));
    else
      off += (size_t)w;
  }
  k->wn = 0;
}

static void put(sink *k, const void *p, size_t n) {
  if (k->st || n == 0) return;
  if (k->buf || k->fd >= 0) hash_update(&k->hs, p, n);
  if (k->buf) {
    if (p != k->buf + k->n) memcpy(k->buf + k->n, p, n); /* cells are copied in place */
  } else if (k->fd >= 0) {
    if (k->wn + n > k->wcap) sink_flush(k);
    if (n >= k->wcap) {
      k->wn = 0;
      const uint8_t *q = p;
      for (size_t off = 0; off < n && !k->st;) {
        ssize_t w = write(k->fd, q + off, n - off);
        if (w < 0)
          k->st = nllm_err(NLLM_ERR_IO, "state: writing the file failed: %s", strerror(errno));
        else
          off += (size_t)w;
      }
    } else {
      memcpy(k->wb + k->wn, p, n);
      k->wn += n;
    }
  }
  k->n += n;
}

static void put_u32(sink *k, uint32_t v) {
  put(k, &v, 4);
}

/* The payload: the cells (each saved once however many sequences hold it), every saved
 * sequence's (position, cell) list, the last decode's logits, and the cells' cached K/V. seq
 * NLLM_SEQ_ALL: every sequence; else that one alone. */
static nllm_status write_payload(nllm_context *ctx, int32_t seq, sink *k) {
  const nllm_kv_cells *kc = &ctx->cells;
  const int32_t nv = ctx->model->hp.n_vocab;
  const int all = seq == NLLM_SEQ_ALL;
  const int32_t s0 = all ? 0 : seq, s1 = all ? ctx->n_seq : seq + 1;
  /* saved index of each pool cell: in pool order for the whole context, in position order
   * for one sequence */
  int32_t *index = nllm_malloc((size_t)kc->n_cells * sizeof *index);
  uint8_t *cell_buf = nllm_malloc((size_t)nllm_forward_kv_cell_bytes(&ctx->fs));
  if (!index || !cell_buf) {
    free(index);
    free(cell_buf);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory (saving a state)");
  }
  int32_t n_saved = 0;
  if (all) {
    for (int32_t c = 0; c < kc->n_cells; c++) index[c] = kc->ref[c] ? n_saved++ : -1;
  } else {
    const nllm_kv_seq *q = &kc->seq[seq];
    for (int32_t i = 0; i < q->n; i++) index[q->cell[i]] = n_saved++;
  }
  put_u32(k, (uint32_t)n_saved);
  put_u32(k, (uint32_t)(s1 - s0));
  for (int32_t s = s0; s < s1; s++) put_u32(k, (uint32_t)kc->seq[s].n);
  for (int32_t s = s0; s < s1; s++) {
    const nllm_kv_seq *q = &kc->seq[s];
    for (int32_t i = 0; i < q->n; i++) {
      put_u32(k, (uint32_t)q->pos[i]);
      put_u32(k, (uint32_t)index[q->cell[i]]);
    }
  }
  /* logits: the whole last decode, or this sequence's row of it */
  if (all) {
    put_u32(k, (uint32_t)ctx->n_logits);
    put_u32(k, (uint32_t)ctx->last_n);
    for (int32_t i = 0; i < ctx->last_n; i++) put_u32(k, (uint32_t)ctx->row_out[i]);
    for (int32_t s = 0; s < ctx->n_seq; s++)
      put_u32(k, (uint32_t)(ctx->n_logits ? ctx->seq_out[s] : -1));
    put(k, ctx->logits, (size_t)ctx->n_logits * (size_t)nv * sizeof(float));
  } else {
    const int32_t row = ctx->n_logits ? ctx->seq_out[seq] : -1;
    put_u32(k, row >= 0);
    put_u32(k, row >= 0);
    if (row >= 0) {
      put_u32(k, 0);
      put_u32(k, 0);
      put(k, ctx->logits + (size_t)row * nv, (size_t)nv * sizeof(float));
    } else {
      put_u32(k, (uint32_t)-1);
    }
  }
  /* the cached K/V of each saved cell, in saved order */
  const size_t cell_bytes = (size_t)nllm_forward_kv_cell_bytes(&ctx->fs);
  if (all) {
    for (int32_t c = 0; c < kc->n_cells && !k->st; c++)
      if (kc->ref[c]) {
        if (k->buf)
          nllm_forward_kv_cell_get(&ctx->fs, c, k->buf + k->n);
        else if (k->fd >= 0)
          nllm_forward_kv_cell_get(&ctx->fs, c, cell_buf);
        put(k, k->buf ? k->buf + k->n : cell_buf, cell_bytes);
      }
  } else {
    const nllm_kv_seq *q = &kc->seq[seq];
    for (int32_t i = 0; i < q->n && !k->st; i++) {
      if (k->buf)
        nllm_forward_kv_cell_get(&ctx->fs, q->cell[i], k->buf + k->n);
      else if (k->fd >= 0)
        nllm_forward_kv_cell_get(&ctx->fs, q->cell[i], cell_buf);
      put(k, k->buf ? k->buf + k->n : cell_buf, cell_bytes);
    }
  }
  free(index);
  free(cell_buf);
  return k->st;
}

static nllm_status check_cpu(const nllm_context *ctx, const char *what) {
  if (ctx->model->n_gpu_layers > 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: saved states are not supported on the CUDA backend yet (n_gpu_layers > 0)",
                    what);
  return NLLM_OK;
}

nllm_status nllm_ctx_state_size(nllm_context *ctx, int32_t seq, uint64_t *size) {
  nllm_status st = check_cpu(ctx, "state size");
  if (st) return st;
  sink k = {.fd = -1};
  if ((st = write_payload(ctx, seq, &k))) return st;
  *size = HEADER_BYTES + k.n;
  return NLLM_OK;
}

static void finish_header(const nllm_context *ctx, int32_t seq, sink *k, uint8_t *hdr) {
  state_header h;
  header_of(ctx, seq == NLLM_SEQ_ALL ? STATE_KIND_ALL : STATE_KIND_SEQ, k->n, &h);
  header_encode(&h, hdr);
  hash_update(&k->hs, hdr, 64);
  put64(hdr + 64, hash_final(&k->hs));
}

nllm_status nllm_ctx_state_save(nllm_context *ctx, int32_t seq, void *buf, uint64_t cap,
                                uint64_t *n_written) {
  uint64_t need = 0;
  nllm_status st = nllm_ctx_state_size(ctx, seq, &need);
  if (st) return st;
  *n_written = need;
  if (cap < need)
    return nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "state save: the state needs %llu bytes, got %llu",
                    (unsigned long long)need, (unsigned long long)cap);
  sink k = {.buf = (uint8_t *)buf + HEADER_BYTES, .fd = -1};
  hash_init(&k.hs);
  if ((st = write_payload(ctx, seq, &k))) return st;
  finish_header(ctx, seq, &k, buf);
  return NLLM_OK;
}

nllm_status nllm_ctx_state_save_file(nllm_context *ctx, int32_t seq, const char *path) {
  nllm_status st = check_cpu(ctx, "state save");
  if (st) return st;
  nllm_atomic_file f;
  if ((st = nllm_atomic_file_open(&f, path))) return st;
  sink k = {.fd = f.fd, .wcap = (size_t)1 << 20};
  hash_init(&k.hs);
  k.wb = nllm_malloc(k.wcap);
  uint8_t hdr[HEADER_BYTES] = {0};
  if (!k.wb) {
    st = nllm_err(NLLM_ERR_NOMEM, "out of memory (saving a state)");
  } else if (lseek(f.fd, HEADER_BYTES, SEEK_SET) < 0) {
    st = nllm_err(NLLM_ERR_IO, "state save: %s", strerror(errno));
  } else if (!(st = write_payload(ctx, seq, &k))) {
    sink_flush(&k);
    st = k.st;
    if (!st) {
      finish_header(ctx, seq, &k, hdr);
      if (pwrite(f.fd, hdr, HEADER_BYTES, 0) != HEADER_BYTES)
        st = nllm_err(NLLM_ERR_IO, "state save: %s", strerror(errno));
    }
  }
  free(k.wb);
  if (st) {
    nllm_atomic_file_abort(&f);
    return nllm_err_prefix(st, "%s: ", path);
  }
  if ((st = nllm_atomic_file_commit(&f))) return nllm_err_prefix(st, "state save: ");
  return NLLM_OK;
}

/* ---- loading: parse and check the whole state, then apply it */

uint64_t nllm_state_checksum(const uint8_t *state, uint64_t size) {
  hasher hs;
  hash_init(&hs);
  hash_update(&hs, state + HEADER_BYTES, (size_t)(size - HEADER_BYTES));
  hash_update(&hs, state, 64);
  return hash_final(&hs);
}

typedef struct parsed {
  state_header h;
  uint32_t n_cells, n_seqs, n_rows, last_n;
  const uint8_t *n_entries; /* [n_seqs] u32 */
  const uint8_t *entries;   /* (pos, cell) pairs of every sequence, in order */
  const uint8_t *row_out;   /* [last_n] i32 */
  const uint8_t *seq_out;   /* [n_seqs] i32 */
  const uint8_t *logits;    /* [n_rows][n_vocab] f32 */
  const uint8_t *cells;     /* [n_cells][cell_bytes] */
  uint64_t n_entries_total;
} parsed;

/* Takes bytes from the payload, or fails on a truncated one. */
typedef struct reader {
  const uint8_t *p;
  uint64_t left;
} reader;

static const uint8_t *take(reader *r, uint64_t count, uint64_t each) {
  uint64_t n;
  if (!nllm_mul_ok(count, each, &n) || n > r->left) return NULL;
  const uint8_t *p = r->p;
  r->p += n;
  r->left -= n;
  return p;
}

#define BAD(...) nllm_err(NLLM_ERR_FORMAT, "state load: " __VA_ARGS__)

static nllm_status parse(const nllm_context *ctx, const uint8_t *buf, uint64_t size, parsed *ps) {
  memset(ps, 0, sizeof *ps);
  if (size < HEADER_BYTES)
    return BAD("%llu bytes are too few for a state (its header alone is %d)",
               (unsigned long long)size, HEADER_BYTES);
  if (memcmp(buf, STATE_MAGIC, 8) != 0) return BAD("not a nativellm state (no " STATE_MAGIC ")");
  header_decode(buf, &ps->h);
  const state_header *h = &ps->h;
  if (h->version != STATE_VERSION)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "state load: the state has format version %u, this build reads version %u",
                    h->version, STATE_VERSION);
  if (h->payload != size - HEADER_BYTES)
    return BAD("the header says %llu bytes of payload, the state holds %llu (truncated?)",
               (unsigned long long)h->payload, (unsigned long long)(size - HEADER_BYTES));
  if (nllm_state_checksum(buf, size) != get64(buf + 64))
    return BAD("the checksum does not match: the state is damaged");
  if (h->kind != STATE_KIND_ALL && h->kind != STATE_KIND_SEQ)
    return BAD("unknown kind %u", h->kind);
  /* the identity of the model and the cache: a state is raw K/V rows of one model's layers */
  state_header mine;
  header_of(ctx, h->kind, h->payload, &mine);
  if (h->n_layer != mine.n_layer || h->n_head_kv != mine.n_head_kv ||
      h->head_dim != mine.head_dim || h->n_vocab != mine.n_vocab || h->model != mine.model)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "state load: the state was saved from another model (%u layers, %u KV heads "
                    "of %u, %u tokens, fingerprint %016llx; this model: %u, %u of %u, %u, "
                    "%016llx)",
                    h->n_layer, h->n_head_kv, h->head_dim, h->n_vocab, (unsigned long long)h->model,
                    mine.n_layer, mine.n_head_kv, mine.head_dim, mine.n_vocab,
                    (unsigned long long)mine.model);
  if (h->type_k != mine.type_k || h->type_v != mine.type_v)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "state load: the state's KV cache types are %s/%s, this context's %s/%s",
                    nllm_qtype_get(h->type_k) ? nllm_qtype_get(h->type_k)->name : "unknown",
                    nllm_qtype_get(h->type_v) ? nllm_qtype_get(h->type_v)->name : "unknown",
                    nllm_qtype_get(mine.type_k)->name, nllm_qtype_get(mine.type_v)->name);

  reader r = {buf + HEADER_BYTES, h->payload};
  const uint8_t *p = take(&r, 2, 4);
  if (!p) return BAD("payload truncated");
  ps->n_cells = get32(p);
  ps->n_seqs = get32(p + 4);
  if (ps->n_seqs == 0 || ps->n_seqs > NLLM_SEQ_MAX ||
      (h->kind == STATE_KIND_SEQ && ps->n_seqs != 1))
    return BAD("%u sequences", ps->n_seqs);
  /* counts stay far below INT32_MAX (the pool's own limit), whatever the file's size */
  if (ps->n_cells > POS_MAX) return BAD("%u cells", ps->n_cells);
  if (!(ps->n_entries = take(&r, ps->n_seqs, 4))) return BAD("payload truncated");
  for (uint32_t s = 0; s < ps->n_seqs; s++) {
    const uint32_t n = get32(ps->n_entries + 4 * s);
    if (n > POS_MAX) return BAD("sequence %u holds %u cells", s, n);
    ps->n_entries_total += n;
  }
  if (!(ps->entries = take(&r, ps->n_entries_total, 8))) return BAD("payload truncated");
  if (!(p = take(&r, 2, 4))) return BAD("payload truncated");
  ps->n_rows = get32(p);
  ps->last_n = get32(p + 4);
  if (ps->n_rows > ps->last_n || ps->last_n > POS_MAX ||
      (h->kind == STATE_KIND_SEQ && ps->last_n > 1))
    return BAD("%u rows of logits of %u", ps->n_rows, ps->last_n);
  if (!(ps->row_out = take(&r, ps->last_n, 4)) || !(ps->seq_out = take(&r, ps->n_seqs, 4)) ||
      !(ps->logits = take(&r, ps->n_rows, (uint64_t)h->n_vocab * 4)))
    return BAD("payload truncated");
  const uint64_t cell_bytes = nllm_forward_kv_cell_bytes(&ctx->fs);
  if (!(ps->cells = take(&r, ps->n_cells, cell_bytes))) return BAD("payload truncated");
  if (r.left) return BAD("%llu bytes past the end of the payload", (unsigned long long)r.left);
  /* logits rows: the kept rows in order, each sequence's pointing at one of them */
  for (uint32_t i = 0, k = 0; i < ps->last_n; i++) {
    const int32_t o = (int32_t)get32(ps->row_out + 4 * i);
    if (o != -1 && o != (int32_t)k) return BAD("logits row %d of row %u is out of order", o, i);
    k += o >= 0;
    if (i + 1 == ps->last_n && k != ps->n_rows)
      return BAD("%u logits rows, %u kept", ps->n_rows, k);
  }
  for (uint32_t s = 0; s < ps->n_seqs; s++) {
    const int32_t o = (int32_t)get32(ps->seq_out + 4 * s);
    if (o < -1 || o >= (int32_t)ps->n_rows) return BAD("sequence %u's logits row %d", s, o);
  }
  return NLLM_OK;
}

/* Second pass over the sequences' lists (needs a table of n_cells): ascending positions in
 * range, every cell used, and one position per cell (its keys are rotated for it). */
static nllm_status check_entries(const parsed *ps, int32_t *cell_pos) {
  for (uint32_t c = 0; c < ps->n_cells; c++) cell_pos[c] = -1;
  const uint8_t *e = ps->entries;
  for (uint32_t s = 0; s < ps->n_seqs; s++) {
    const uint32_t n = get32(ps->n_entries + 4 * s);
    int64_t prev = -1;
    for (uint32_t i = 0; i < n; i++, e += 8) {
      const int64_t pos = (int32_t)get32(e);
      const uint32_t c = get32(e + 4);
      if (pos <= prev || pos > POS_MAX)
        return BAD("sequence %u: position %lld after %lld", s, (long long)pos, (long long)prev);
      if (c >= ps->n_cells) return BAD("sequence %u: cell %u of %u", s, c, ps->n_cells);
      if (cell_pos[c] >= 0 && cell_pos[c] != pos)
        return BAD("cell %u is at positions %d and %lld", c, cell_pos[c], (long long)pos);
      cell_pos[c] = (int32_t)pos;
      prev = pos;
    }
  }
  for (uint32_t c = 0; c < ps->n_cells; c++)
    if (cell_pos[c] < 0) return BAD("cell %u belongs to no sequence", c);
  return NLLM_OK;
}

nllm_status nllm_ctx_state_load(nllm_context *ctx, int32_t seq, const void *buf, uint64_t size) {
  nllm_status st = check_cpu(ctx, "state load");
  if (st) return st;
  parsed ps;
  if ((st = parse(ctx, buf, size, &ps))) return st;
  const int all = seq == NLLM_SEQ_ALL;
  nllm_kv_cells *kc = &ctx->cells;
  if (all != (ps.h.kind == STATE_KIND_ALL))
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    all ? "state load: the state holds one sequence: load it into a sequence id"
                        : "state load: the state holds a whole context: load it with "
                          "NLLM_SEQ_ALL");
  /* room: the whole pool, or the free cells plus those only the replaced sequence holds */
  int64_t room = kc->n_cells;
  if (!all) {
    room = kc->n_cells - kc->n_used;
    for (int32_t i = 0; i < kc->seq[seq].n; i++) room += kc->ref[kc->seq[seq].cell[i]] == 1;
  }
  if ((int64_t)ps.n_cells > room)
    return nllm_err(NLLM_ERR_CONTEXT_FULL,
                    "state load: the state holds %u KV cells, this context has room for %lld "
                    "(n_ctx %d)",
                    ps.n_cells, (long long)room, kc->n_cells);
  if (all)
    for (uint32_t s = (uint32_t)ctx->n_seq; s < ps.n_seqs; s++)
      if (get32(ps.n_entries + 4 * s))
        return nllm_err(NLLM_ERR_INVALID_ARG,
                        "state load: the state holds sequence %u, this context has n_seq_max %d", s,
                        ctx->n_seq);
  int32_t *cell_pos = nllm_malloc(((size_t)ps.n_cells + 1) * sizeof *cell_pos);
  if (!cell_pos) return nllm_err(NLLM_ERR_NOMEM, "out of memory (loading a state)");
  if ((st = check_entries(&ps, cell_pos))) goto out;
  /* everything that allocates, before the first change */
  const uint32_t n_seqs =
      all && ps.n_seqs > (uint32_t)ctx->n_seq ? (uint32_t)ctx->n_seq : ps.n_seqs;
  for (uint32_t s = 0; s < n_seqs && !st; s++) {
    const int32_t n = (int32_t)get32(ps.n_entries + 4 * s);
    if (n > kc->n_cells) {
      st = nllm_err(NLLM_ERR_CONTEXT_FULL, "state load: sequence %u holds %d cells of %d", s, n,
                    kc->n_cells);
      break;
    }
    st = nllm_kv_seq_reserve(kc, all ? (int32_t)s : seq, n);
  }
  if (!st) st = nllm_ctx_reserve_out(ctx, (int32_t)ps.last_n, ps.n_rows);
  if (st) goto out;

  /* apply: drop what is replaced, take a fresh cell per saved cell (shared ones once) */
  if (all)
    nllm_ctx_clear(ctx);
  else
    nllm_kv_seq_remove(kc, seq, 0, INT32_MAX);
  for (uint32_t c = 0; c < ps.n_cells; c++) cell_pos[c] = -1; /* now: the new cell */
  const uint64_t cell_bytes = nllm_forward_kv_cell_bytes(&ctx->fs);
  const uint8_t *e = ps.entries;
  for (uint32_t s = 0; s < ps.n_seqs; s++) {
    const uint32_t n = get32(ps.n_entries + 4 * s);
    for (uint32_t i = 0; i < n; i++, e += 8) {
      const int32_t pos = (int32_t)get32(e);
      const uint32_t c = get32(e + 4);
      if (cell_pos[c] < 0) {
        cell_pos[c] = nllm_kv_cell_take(kc, pos);
        nllm_forward_kv_cell_set(&ctx->fs, cell_pos[c], ps.cells + c * cell_bytes);
      }
      nllm_kv_seq_insert(kc, all ? (int32_t)s : seq, pos, cell_pos[c]);
    }
  }
  /* the logits the state was saved with: sampling goes on as if its decode had just run */
  const size_t nv = (size_t)ctx->model->hp.n_vocab;
  memcpy(ctx->logits, ps.logits, (size_t)ps.n_rows * nv * sizeof(float));
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_out[s] = -1;
  for (uint32_t i = 0; i < ps.last_n; i++) ctx->row_out[i] = (int32_t)get32(ps.row_out + 4 * i);
  if (all) {
    for (uint32_t s = 0; s < n_seqs; s++) ctx->seq_out[s] = (int32_t)get32(ps.seq_out + 4 * s);
  } else {
    ctx->seq_out[seq] = (int32_t)get32(ps.seq_out);
  }
  ctx->n_logits = (int32_t)ps.n_rows;
  ctx->last_n = (int32_t)ps.last_n;
  nllm_ctx_sync_pos(ctx);
out:
  free(cell_pos);
  return st;
}

nllm_status nllm_ctx_state_load_file(nllm_context *ctx, int32_t seq, const char *path) {
  nllm_status st = check_cpu(ctx, "state load");
  if (st) return st;
  nllm_file_map map;
  if ((st = nllm_file_map_open(path, 1, &map))) return st;
  st = nllm_ctx_state_load(ctx, seq, map.data, map.size);
  nllm_file_map_close(&map);
  if (st) return nllm_err_prefix(st, "%s: ", path);
  return NLLM_OK;
}
