/* Internal layout of the tokenizer object shared by the loaders (GGUF, tokenizer.json), the
 * encoder, the decoder and the chat templates. Everything here is built once at load and read
 * only afterwards, which is what makes the public calls thread-safe. */
#ifndef NLLM_TOK_INTERNAL_H
#define NLLM_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
enum {
  TT_UNDEFINED = 0,
  TT_NORMAL = 1,
  TT_UNKNOWN = 2,
  TT_CONTROL = 3,
  TT_USER = 4,
  TT_UNUSED = 5,
  TT_BYTE = 6,
};

/* Added-token flags (tokenizer.json added_tokens). */
enum { TF_LSTRIP = 1, TF_RSTRIP = 2 };

typedef struct tok_entry {
  uint32_t text_off, text_len;   /* the token as the vocabulary spells it */
  uint32_t piece_off, piece_len; /* the bytes it stands for when decoded */
  float score;
  uint8_t type, flags;
} tok_entry;

/* Open-addressing map from a byte string (a token's text or piece) to its id. */
typedef struct tok_strmap {
  int32_t *slots; /* -1 empty */
  uint32_t mask;
  int use_piece; /* keys are pieces (byte-level BPE) instead of texts */
} tok_strmap;

/* Open-addressing map from a token pair to its merge (rank and result id). */
typedef struct tok_merge {
  uint64_t key; /* (left id << 32) | right id; UINT64_MAX empty */
  int32_t rank, result;
} tok_merge;

/* Byte trie over the tokens matched before normalization (control and user-defined). */
typedef struct tok_trie_node {
  int32_t child, sibling, token;
  uint8_t byte;
} tok_trie_node;

/* MODEL_WORDPIECE: BERT's greedy longest-match-first over words, "##" on continuations. */
enum { MODEL_SPM, MODEL_BPE, MODEL_WORDPIECE };

enum {
  NORM_NFC,
  NORM_NFKC,
  NORM_REPLACE,
  NORM_PREPEND,
  NORM_LOWERCASE,
  NORM_SPACE_PREFIX,
  NORM_NFD,
  NORM_STRIP_ACCENTS, /* drop nonspacing marks (Mn): an NFD normalizer comes before it */
  NORM_BERT,          /* BertNormalizer, steps chosen by tok_norm.flags (BERT_*) */
};

/* BertNormalizer steps, in the order they run. */
enum { BERT_CLEAN = 1, BERT_CHINESE = 2, BERT_STRIP_ACCENTS = 4, BERT_LOWERCASE = 8 };

typedef struct tok_norm {
  int kind;
  char *from, *to; /* REPLACE: from -> to; PREPEND: to */
  size_t from_len, to_len;
  unsigned flags; /* NORM_BERT: BERT_* */
} tok_norm;

/* PRE_BERT: BertPreTokenizer (split on whitespace, every punctuation character alone). */
enum { PRE_SPLIT, PRE_ADD_PREFIX_SPACE, PRE_METASPACE, PRE_BERT };

/* The split of a tokenizer.json ByteLevel pre-tokenizer with use_regex (GPT-2's). */
#define HF_BYTELEVEL_REGEX \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Split behaviours (tokenizer.json SplitDelimiterBehavior). */
enum { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGE_PREV, SPLIT_MERGE_NEXT, SPLIT_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

typedef struct tok_pre {
  int kind;
  pcre2_code *re; /* SPLIT (JIT-compiled when the platform allows) */
  char *pattern;  /* SPLIT: the regex as written, for naming it in a GGUF file */
  int behavior, invert, jit;
  char repl[8]; /* METASPACE replacement (UTF-8) */
  int repl_len, prepend_scheme, split;
} tok_pre;

#define TOK_MAX_NORM 8
#define TOK_MAX_PRE 8
#define TOK_WP_PREFIX_MAX 16

struct nllm_tokenizer {
  char *name;        /* file path, for messages */
  int model;         /* MODEL_SPM or MODEL_BPE */
  int byte_level;    /* GPT-2 bytes_to_unicode vocabulary */
  int byte_fallback; /* <0xNN> tokens for pieces outside the vocab */
  int ignore_merges; /* a word that is itself a token is not merged (Llama 3) */
  /* WordPiece: a word of more characters is one unknown token; the prefix marks a piece that
   * continues a word ("##"); the longest token text bounds the candidate pieces. */
  int32_t wp_max_chars;
  char wp_prefix[TOK_WP_PREFIX_MAX];
  uint32_t wp_prefix_len, wp_max_token_len;
  int fuse_unk;
  /* No token has U+2581 right after another character, so no merge can cross the start of a
   * "▁" run: words may be cut there before merging (same result, far smaller heaps). */
  int split_metaspace;

  int32_t n_vocab;
  tok_entry *tokens;
  char *strings;
  size_t strings_len, strings_cap;

  tok_strmap map;
  tok_merge *merges;
  uint32_t merges_mask;
  int32_t byte_token[256]; /* <0xNN> (fallback) or byte-level single-byte token */

  tok_trie_node *trie;
  int32_t n_trie, cap_trie;
  uint8_t trie_first[256]; /* bytes that can start a trie match */

  tok_norm norms[TOK_MAX_NORM];
  int n_norms;
  tok_pre pres[TOK_MAX_PRE];
  int n_pres;

  /* special ids (-1 none) indexed by NLLM_TOKEN_*; NEWLINE included */
  nllm_token special[6];
  nllm_token sep_id, mask_id; /* BERT's [SEP] and [MASK] (-1 none), for GGUF export */
  int add_bos, add_eos;
  int strip_leading_space; /* detokenize drops one leading space of the first piece */
  uint8_t *eog;            /* n_vocab flags */

  char *chat_template;
};

/* ---- WordPiece and the BERT text steps (tok_wordpiece.c) */
/* BertNormalizer over valid UTF-8 src[0..n) into *dst (grown as needed; *cap its size); returns
 * the length, SIZE_MAX when out of memory, SIZE_MAX - 1 past max_len bytes. */
size_t tok_bert_normalize(unsigned flags, const char *src, size_t n, char **dst, size_t *cap,
                          size_t max_len);
/* BertPreTokenizer: calls emit for each word of valid UTF-8 text[s..e). */
typedef void (*tok_word_fn)(void *user, size_t s, size_t e);
void tok_bert_pre_split(const char *text, size_t s, size_t e, tok_word_fn emit, void *user);
/* WordPiece of one word: appends ids with push (which returns 0 when out of memory); returns
 * NLLM_OK, or an error with its message set. scratch/scap: caller-owned buffer. */
nllm_status tok_wordpiece_word(const nllm_tokenizer *tok, const char *word, size_t len,
                               char **scratch, size_t *scap, int (*push)(void *, int32_t),
                               void *user);
/* GGUF "bert" vocabularies spell word-initial tokens with a leading U+2581 and continuations
 * bare; these convert one token text between that and the tokenizer.json form ("##" prefix).
 * Return the length written to out (cap bytes; texts are at most 65536 + 16 bytes). */
size_t tok_wordpiece_from_phantom(const char *t, size_t n, int type, char *out);
size_t tok_wordpiece_to_phantom(const nllm_tokenizer *tok, int32_t id, char *out);

/* ---- building (tok_vocab.c) */
nllm_tokenizer *tok_alloc(const char *name, int32_t n_vocab);
/* Appends bytes to the string arena; returns the offset or UINT32_MAX on OOM / overflow. */
uint32_t tok_store(nllm_tokenizer *tok, const char *s, size_t len);
nllm_status tok_set_token(nllm_tokenizer *tok, int32_t id, const char *text, size_t len,
                          float score, int type);
/* Temporary text -> id map for resolving merges at load. */
nllm_status tok_text_map_build(const nllm_tokenizer *tok, tok_strmap *m);
int32_t tok_map_find(const nllm_tokenizer *tok, const tok_strmap *m, const char *s, size_t len);
void tok_map_free(tok_strmap *m);
nllm_status tok_merges_alloc(nllm_tokenizer *tok, size_t n_merges);
/* Records merge (a, b) with rank; ignored when a+b is not a token or the pair is known. */
void tok_merge_add(nllm_tokenizer *tok, const tok_strmap *text_map, int32_t a, int32_t b,
                   int32_t rank);
nllm_status tok_add_pre_regex(nllm_tokenizer *tok, const char *pattern, int behavior, int invert);
nllm_status tok_add_norm(nllm_tokenizer *tok, int kind, const char *from, size_t from_len,
                         const char *to, size_t to_len);
/* Builds pieces, the runtime map, the trie, byte tables and the end-of-generation set. */
nllm_status tok_finalize(nllm_tokenizer *tok);
nllm_token tok_find_text(const nllm_tokenizer *tok, const char *s);

static inline const char *tok_text(const nllm_tokenizer *tok, int32_t id) {
  return tok->strings + tok->tokens[id].text_off;
}
static inline const char *tok_piece(const nllm_tokenizer *tok, int32_t id) {
  return tok->strings + tok->tokens[id].piece_off;
}
uint64_t tok_hash(const char *s, size_t len);

/* GPT-2 bytes_to_unicode: the code point standing for byte b, and the inverse (-1 if none). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);
/* Decodes one UTF-8 code point of s[0..len); returns its length (1 for an invalid byte, *cp =
 * 0xFFFD... callers that care check validity separately). */
int tok_utf8_decode(const char *s, size_t len, uint32_t *cp);
int tok_utf8_encode(uint32_t cp, char *out);
/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one. */
int tok_utf8_valid_len(const char *s, size_t len);

#endif
