/* Text <-> token ids. One object for every tokenizer kind (SentencePiece-style BPE, byte-level
 * BPE, WordPiece), built either from GGUF metadata (tokenizer.ggml.*) or from a Hugging Face
 * tokenizer.json (+ tokenizer_config.json). Immutable after construction: all calls are
 * thread-safe. */
#ifndef NLLM_TOKENIZER_H
#define NLLM_TOKENIZER_H

#include "formats/source.h"

typedef struct nllm_tokenizer nllm_tokenizer;

/* From tokenizer.ggml.* keys of a source (GGUF, or a source an HF loader filled in the same
 * keys). Unknown tokenizer.ggml.model / .pre values fail with NLLM_ERR_UNSUPPORTED. */
nllm_status nllm_tokenizer_from_source(const nllm_source *src, nllm_tokenizer **out);
/* From a tokenizer.json path (tokenizer_config.json is looked up beside it, optional). When
 * DIR/tokenizer.json does not exist but DIR/vocab.txt does, a BERT WordPiece tokenizer is built
 * from that and tokenizer_config.json's BertTokenizer options. */
nllm_status nllm_tokenizer_from_hf(const char *tokenizer_json_path, nllm_tokenizer **out);
void nllm_tokenizer_free(nllm_tokenizer *tok);

int32_t nllm_tokenizer_n_vocab(const nllm_tokenizer *tok);
/* NLLM_TOKEN_BOS ... from nativellm.h; -1 if none. */
nllm_token nllm_tokenizer_special(const nllm_tokenizer *tok, int32_t which);
int nllm_tokenizer_is_eog(const nllm_tokenizer *tok, nllm_token id);
/* Whether tokenize with add_bos=1 prepends BOS (tokenizer.ggml.add_bos_token or the model default).
 */
int nllm_tokenizer_adds_bos(const nllm_tokenizer *tok);

/* Same contracts as nllm_tokenize / nllm_token_to_piece / nllm_detokenize in nativellm.h. */
nllm_status nllm_tok_tokenize(const nllm_tokenizer *tok, const char *text, size_t len, int add_bos,
                              int parse_special, nllm_token *out, int32_t cap, int32_t *n_out);
nllm_status nllm_tok_token_to_piece(const nllm_tokenizer *tok, nllm_token id, int render_special,
                                    char *buf, int32_t cap, int32_t *n_out);
nllm_status nllm_tok_detokenize(const nllm_tokenizer *tok, const nllm_token *ids, int32_t n,
                                int render_special, char *buf, int32_t cap, int32_t *n_out);

/* A tokenizer as GGUF's tokenizer.ggml.* keys describe it, for writing a GGUF file: the
 * conversion layer writes these, so that tokenizer.json is parsed in one place only. Pointers
 * stay valid while both the tokenizer and this description live. */
typedef struct nllm_tokenizer_gguf {
  const char *model;   /* "llama" (SentencePiece-style: scores), "gpt2" (byte-level: merges) or
                          "bert" (WordPiece: tokens in phantom-space form, neither) */
  const char *pre;     /* gpt2, bert: tokenizer.ggml.pre; NULL for llama */
  int32_t n_vocab;     /* >= the tokenizer's: ids it never produces are [PADn], unused */
  const char **tokens; /* n_vocab texts */
  int32_t *types;      /* n_vocab GGUF token types */
  float *scores;       /* llama: n_vocab; NULL for gpt2 */
  const char **merges; /* gpt2: "a b" in rank order; NULL for llama */
  int32_t n_merges;
  nllm_token special[5]; /* NLLM_TOKEN_BOS .. NLLM_TOKEN_PAD, -1 for none */
  nllm_token sep, mask;  /* bert: seperator_token_id, mask_token_id; -1 for none */
  int add_bos, add_eos, add_space_prefix;
  const char *chat_template; /* NULL if none */
  char *storage;             /* owned: [PADn] names, merge strings, bert token texts */
} nllm_tokenizer_gguf;

/* n_vocab_min: the model's embedding rows (the description is padded up to them); 0 if
 * unknown. NLLM_ERR_UNSUPPORTED for a tokenizer GGUF cannot express. */
nllm_status nllm_tokenizer_to_gguf(const nllm_tokenizer *tok, int32_t n_vocab_min,
                                   nllm_tokenizer_gguf *out);
void nllm_tokenizer_gguf_free(nllm_tokenizer_gguf *g);

/* Chat template text (tokenizer.chat_template) or NULL. */
const char *nllm_tokenizer_chat_template(const nllm_tokenizer *tok);
/* The text of special token `which` (NLLM_TOKEN_BOS, ...) in buf, or NULL when the model has
 * none or it does not fit: the bos_token / eos_token a chat template receives. */
const char *nllm_tokenizer_special_text(const nllm_tokenizer *tok, int which, char *buf,
                                        size_t cap);

/* Renders messages with the tokenizer's chat template, recognized by family (Llama 2 [INST] with
 * <<SYS>>, Llama 3 header ids, ChatML/Qwen, Mistral [INST], Gemma, Phi-3, DeepSeek). Contract of
 * nllm_chat_format: NUL-terminated when it fits, BUFFER_TOO_SMALL with *n_out = needed,
 * NLLM_ERR_UNSUPPORTED (naming what was seen) for an unknown or missing template. */
nllm_status nllm_tokenizer_chat_format(const nllm_tokenizer *tok, const nllm_chat_message *messages,
                                       int32_t n, int add_assistant, char *buf, int32_t cap,
                                       int32_t *n_out);
/* The same for a given template text, or a family name ("chatml", "llama3", "llama2", "mistral",
 * "gemma", "phi3", "deepseek", "deepseek3"), e.g. for a --chat-template option. The text never
 * contains the leading BOS: tokenize it with add_bos = 1 and parse_special = 1. cap must hold
 * *n_out + 1 bytes (the NUL). */
nllm_status nllm_chat_format_template(const char *tmpl, const nllm_chat_message *messages,
                                      int32_t n, int add_assistant, char *buf, int32_t cap,
                                      int32_t *n_out);

/* Streaming detokenizer for generation: push ids one at a time and get back only complete UTF-8.
 * An incomplete multi-byte sequence at the end of a piece is held until the next pieces complete
 * it; bytes that can never become valid UTF-8 come out as U+FFFD as soon as that is certain;
 * flush emits what is still held (an unfinished sequence as U+FFFD). The leading-space rule of
 * nllm_tok_detokenize applies to the first piece. The state is caller-owned, one per stream;
 * the tokenizer stays shared and immutable. Zero-initialising the state equals init with
 * render_special 0. */
typedef struct nllm_detokenizer {
  uint8_t held[4];
  int32_t n_held;
  int32_t n_pushed; /* pieces seen, for the leading-space rule */
  int32_t render_special;
} nllm_detokenizer;

void nllm_detokenizer_init(nllm_detokenizer *s, int render_special);
/* Output at most 3 + piece length + 3 * (invalid bytes) bytes; a cap of 64 + the longest piece
 * is always enough. BUFFER_TOO_SMALL (with *n_out = needed) leaves the state unchanged. Not
 * NUL-terminated. */
nllm_status nllm_detokenizer_push(const nllm_tokenizer *tok, nllm_detokenizer *s, nllm_token id,
                                  char *buf, int32_t cap, int32_t *n_out);
nllm_status nllm_detokenizer_flush(nllm_detokenizer *s, char *buf, int32_t cap, int32_t *n_out);

#endif
