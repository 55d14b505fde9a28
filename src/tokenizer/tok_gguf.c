/* Tokenizer from the tokenizer.ggml.* keys of a model source (GGUF). "llama" is SentencePiece-
 * style BPE on scores with <0xNN> byte fallback; "gpt2" is byte-level BPE on merge ranks with a
 * pre-tokenizer chosen by tokenizer.ggml.pre. */
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_REGEX                                                                         \
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
  "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_REGEX                                                                          \
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
  "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Pre-tokenizers named by tokenizer.ggml.pre: a sequence of regexes, each splitting the pieces
 * the previous one left into matches and the text between them (the reference tokenizers'
 * "Isolated" split). The lists are those of the models' own tokenizer definitions. */
typedef struct pre_def {
  const char *names; /* '|'-separated */
  const char *regex[6];
  int ignore_merges, add_bos;
} pre_def;

static const pre_def pre_defs[] = {
    {"default|", {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_REGEX, "\\p{N}+", "[0-9][0-9][0-9]"}, 0, 0},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|roberta-bpe|gpt-neox|olmo|mpt|jais", {GPT2_REGEX}, 0, 0},
    {"llama-bpe|llama3|llama-v3|dbrx|smaug-bpe|falcon3", {LLAMA3_REGEX}, 1, 1},
    {"qwen2|stablelm2|deepseek-r1-qwen", {QWEN2_REGEX}, 0, 0},
    /* cased letters (Lu/Ll/Lt) by code point: several of them are canonical singletons that
     * text tools silently normalize, so they are written as escapes */
    {"deepseek-llm",
     {"[\r\n]",
      "\\s?["
      "\\x{41}-\\x{5A}\\x{61}-\\x{7A}\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}"
      "\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}"
      "\\x{370}-\\x{373}\\x{376}-\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"
      "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"
      "\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
      "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}"
      "\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
      "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}"
      "\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
      "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
      "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
      "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"
      "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
      "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}-\\x{2184}\\x{2C00}-\\x{2C7B}"
      "\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}-\\x{2CF3}\\x{A640}-\\x{A66D}"
      "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}"
      "\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}"
      "\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
      "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
      "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
      "]+",
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+"},
     0,
     0},
    {"deepseek-coder",
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
      "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"},
     0,
     0},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_REGEX, "[0-9][0-9][0-9]"}, 0, 0},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", {"\\p{N}", GPT2_REGEX}, 0, 0},
};

static const pre_def *find_pre(const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < sizeof pre_defs / sizeof *pre_defs; i++) {
    const char *p = pre_defs[i].names;
    while (*p) {
      const char *bar = strchr(p, '|');
      size_t l = bar ? (size_t)(bar - p) : strlen(p);
      if (l == n && memcmp(p, name, n) == 0) return &pre_defs[i];
      if (!bar) break;
      p = bar + 1;
    }
    if (n == 0 && pre_defs[i].names[0] == 'd') return &pre_defs[i];
  }
  return NULL;
}

static nllm_status get_array(const nllm_source *src, const char *key, uint32_t elem_type,
                             int optional, const nllm_value **out) {
  const nllm_value *v = nllm_source_get(src, key);
  *out = NULL;
  if (!v) {
    if (optional) return NLLM_OK;
    return nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' is missing", src->path, key);
  }
  if (v->type != NLLM_V_ARRAY)
    return nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' has type %s, expected an array",
                    src->path, key, nllm_value_type_name(v->type));
  int ok = elem_type == NLLM_V_STRING ? v->v.arr.elem_type == NLLM_V_STRING
           : elem_type == NLLM_V_F32
               ? (v->v.arr.elem_type == NLLM_V_F32 || v->v.arr.elem_type == NLLM_V_F64)
               : nllm_value_type_size(v->v.arr.elem_type) > 0 && v->v.arr.elem_type != NLLM_V_F32 &&
                     v->v.arr.elem_type != NLLM_V_F64;
  if (!ok)
    return nllm_err(NLLM_ERR_FORMAT, "%s: metadata key '%s' is an array of %s, expected %s",
                    src->path, key, nllm_value_type_name(v->v.arr.elem_type),
                    elem_type == NLLM_V_STRING ? "strings"
                    : elem_type == NLLM_V_F32  ? "floats"
                                               : "integers");
  *out = v;
  return NLLM_OK;
}

static int get_flag(const nllm_source *src, const char *key, int def) {
  int64_t v;
  return nllm_source_get_int(src, key, &v) == NLLM_OK ? v != 0 : def;
}

static nllm_status get_id(nllm_tokenizer *tok, const nllm_source *src, const char *key, int32_t def,
                          nllm_token *out) {
  int64_t v;
  nllm_status st = nllm_source_get_int(src, key, &v);
  if (st == NLLM_ERR_NOT_FOUND) {
    nllm_clear_error();
    *out = def < tok->n_vocab ? def : -1;
    return NLLM_OK;
  }
  if (st) return st;
  /* -1 written as u32 means "none". Other out-of-range ids occur in real files; other engines
   * ignore them with a warning, so a file they load loads here too. */
  if (v == -1 || v == 0xFFFFFFFFll) {
    *out = -1;
    return NLLM_OK;
  }
  if (v < 0 || v >= tok->n_vocab) {
    nllm_log(NLLM_LOG_WARN, "%s: %s = %lld is outside the vocabulary of %d tokens; ignored",
             src->path, key, (long long)v, tok->n_vocab);
    *out = def < tok->n_vocab ? def : -1;
    return NLLM_OK;
  }
  *out = (nllm_token)v;
  return NLLM_OK;
}

nllm_status nllm_tokenizer_from_source(const nllm_source *src, nllm_tokenizer **out) {
  if (!src || !out) return nllm_err(NLLM_ERR_INVALID_ARG, "tokenizer_from_source: NULL argument");
  *out = NULL;
  const char *path = src->path ? src->path : "model";
  const char *model;
  nllm_status st = nllm_source_get_str(src, "tokenizer.ggml.model", &model);
  if (st) return st;
  int kind;
  if (strcmp(model, "llama") == 0)
    kind = MODEL_SPM;
  else if (strcmp(model, "gpt2") == 0)
    kind = MODEL_BPE;
  else if (strcmp(model, "bert") == 0)
    kind = MODEL_WORDPIECE;
  else
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: tokenizer.ggml.model '%s' is not supported "
                    "(supported: llama, gpt2, bert)",
                    path, model);

  const nllm_value *tokens, *scores, *types, *merges;
  if ((st = get_array(src, "tokenizer.ggml.tokens", NLLM_V_STRING, 0, &tokens)) ||
      (st = get_array(src, "tokenizer.ggml.scores", NLLM_V_F32, 1, &scores)) ||
      (st = get_array(src, "tokenizer.ggml.token_type", NLLM_V_I32, 1, &types)) ||
      (st = get_array(src, "tokenizer.ggml.merges", NLLM_V_STRING, 1, &merges)))
    return st;
  uint64_t n = tokens->v.arr.n;
  if (n == 0 || n > INT32_MAX / 2)
    return nllm_err(NLLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", path,
                    (unsigned long long)n);
  if (scores && scores->v.arr.n != n)
    return nllm_err(NLLM_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries, tokens %llu",
                    path, (unsigned long long)scores->v.arr.n, (unsigned long long)n);
  if (types && types->v.arr.n != n)
    return nllm_err(NLLM_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries, tokens %llu",
                    path, (unsigned long long)types->v.arr.n, (unsigned long long)n);

  const pre_def *pre = NULL;
  if (kind == MODEL_BPE) {
    const char *pname = "default";
    if (nllm_source_get(src, "tokenizer.ggml.pre") &&
        (st = nllm_source_get_str(src, "tokenizer.ggml.pre", &pname)))
      return st;
    pre = find_pre(pname);
    if (!pre)
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: tokenizer.ggml.pre '%s' is not a known pre-tokenizer", path, pname);
    if (!merges)
      return nllm_err(NLLM_ERR_FORMAT, "%s: gpt2 tokenizer without tokenizer.ggml.merges", path);
  }

  nllm_tokenizer *tok = tok_alloc(path, (int32_t)n);
  if (!tok)
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory for %llu tokens", path,
                    (unsigned long long)n);
  tok->model = kind;
  tok->byte_level = kind == MODEL_BPE;
  tok->byte_fallback = kind == MODEL_SPM;
  char *wp_text = NULL; /* bert: one token back in the "##" form */
  if (kind == MODEL_WORDPIECE && !(wp_text = nllm_malloc(65536 + 16)))
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  for (uint64_t i = 0; i < n && !st; i++) {
    const nllm_str *s = nllm_value_arr_str(tokens, i);
    int type = types ? (int)nllm_value_arr_int(types, i) : TT_NORMAL;
    if (type < TT_UNDEFINED || type > TT_BYTE) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: token %llu has token_type %d (valid 0..6)", path,
                    (unsigned long long)i, type);
      break;
    }
    if (wp_text && s->len > 65536) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: token %llu is %llu bytes long (limit 65536)", path,
                    (unsigned long long)i, (unsigned long long)s->len);
      break;
    }
    if (wp_text)
      st = tok_set_token(tok, (int32_t)i, wp_text,
                         tok_wordpiece_from_phantom(s->s, s->len, type, wp_text), 0.0f, type);
    else
      st = tok_set_token(tok, (int32_t)i, s->s, s->len,
                         scores ? (float)nllm_value_arr_float(scores, i) : 0.0f, type);
  }
  free(wp_text);
  if (!st && kind == MODEL_WORDPIECE) {
    /* what llama.cpp's WordPiece tokenizer always does: BERT uncased's normalization, and
     * [CLS] text [SEP] around a sequence */
    st = tok_add_norm(tok, NORM_BERT, NULL, 0, NULL, 0);
    if (!st) {
      tok->norms[tok->n_norms - 1].flags =
          BERT_CLEAN | BERT_CHINESE | BERT_STRIP_ACCENTS | BERT_LOWERCASE;
      memset(&tok->pres[tok->n_pres], 0, sizeof tok->pres[0]);
      tok->pres[tok->n_pres++].kind = PRE_BERT;
      tok->strip_leading_space = 1;
    }
  }

  if (!st && kind == MODEL_SPM) {
    if (get_flag(src, "tokenizer.ggml.add_space_prefix", 1)) {
      /* a space before the text, then every space as U+2581 */
      st = tok_add_norm(tok, NORM_REPLACE, " ", 1, "\xe2\x96\x81", 3);
      if (!st) st = tok_add_norm(tok, NORM_PREPEND, NULL, 0, "\xe2\x96\x81", 3);
      tok->strip_leading_space = 1;
    } else {
      st = tok_add_norm(tok, NORM_REPLACE, " ", 1, "\xe2\x96\x81", 3);
    }
  }
  if (!st && kind == MODEL_BPE) {
    tok->ignore_merges = pre->ignore_merges;
    for (int k = 0; k < 6 && pre->regex[k] && !st; k++)
      st = tok_add_pre_regex(tok, pre->regex[k], SPLIT_ISOLATED, 0);
    tok_strmap tm = {0};
    if (!st) st = tok_text_map_build(tok, &tm);
    if (!st) st = tok_merges_alloc(tok, merges->v.arr.n);
    for (uint64_t i = 0; i < merges->v.arr.n && !st; i++) {
      const nllm_str *m = nllm_value_arr_str(merges, i);
      const char *sp = memchr(m->s, ' ', m->len);
      if (!sp) {
        st = nllm_err(NLLM_ERR_FORMAT,
                      "%s: merge %llu ('%.40s') has no space separating its two parts", path,
                      (unsigned long long)i, m->s);
        break;
      }
      size_t la = (size_t)(sp - m->s);
      int32_t a = tok_map_find(tok, &tm, m->s, la);
      int32_t b = tok_map_find(tok, &tm, sp + 1, m->len - la - 1);
      tok_merge_add(tok, &tm, a, b, (int32_t)i);
    }
    tok_map_free(&tm);
  }

  static const struct {
    const char *key;
    int which, spm_default;
  } id_keys[] = {
      {"tokenizer.ggml.bos_token_id", NLLM_TOKEN_BOS, 1},
      {"tokenizer.ggml.eos_token_id", NLLM_TOKEN_EOS, 2},
      {"tokenizer.ggml.unknown_token_id", NLLM_TOKEN_UNK, 0},
      {"tokenizer.ggml.padding_token_id", NLLM_TOKEN_PAD, -1},
      {"tokenizer.ggml.eot_token_id", NLLM_TOKEN_EOT, -1},
  };
  for (size_t k = 0; k < sizeof id_keys / sizeof *id_keys && !st; k++)
    st = get_id(tok, src, id_keys[k].key, kind == MODEL_SPM ? id_keys[k].spm_default : -1,
                &tok->special[id_keys[k].which]);
  if (!st && kind == MODEL_WORDPIECE) {
    /* BERT's ids: by key, else by name, else llama.cpp's defaults; the separator closes a
     * sequence as EOS does elsewhere */
    static const struct {
      const char *key, *text;
      int32_t def;
    } bert_keys[] = {{"tokenizer.ggml.bos_token_id", "[CLS]", 101},
                     {"tokenizer.ggml.unknown_token_id", "[UNK]", 100},
                     {"tokenizer.ggml.seperator_token_id", "[SEP]", 102},
                     {"tokenizer.ggml.padding_token_id", "[PAD]", 0},
                     {"tokenizer.ggml.mask_token_id", "[MASK]", 103}};
    nllm_token ids[5];
    for (int k = 0; k < 5 && !st; k++) {
      nllm_token by_name = tok_find_text(tok, bert_keys[k].text);
      st = get_id(tok, src, bert_keys[k].key, by_name >= 0 ? by_name : bert_keys[k].def, &ids[k]);
    }
    if (!st) {
      tok->special[NLLM_TOKEN_BOS] = ids[0];
      tok->special[NLLM_TOKEN_UNK] = ids[1];
      tok->special[NLLM_TOKEN_EOS] = tok->sep_id = ids[2];
      tok->special[NLLM_TOKEN_PAD] = ids[3];
      tok->mask_id = ids[4];
    }
  }
  if (!st) {
    tok->add_bos =
        get_flag(src, "tokenizer.ggml.add_bos_token", kind == MODEL_SPM || (pre && pre->add_bos));
    tok->add_eos = get_flag(src, "tokenizer.ggml.add_eos_token", 0);
    if (kind == MODEL_WORDPIECE) /* llama.cpp adds both whatever the flags say */
      tok->add_bos = tok->add_eos = 1;
    const char *tmpl;
    if (nllm_source_get(src, "tokenizer.chat_template") &&
        nllm_source_get_str(src, "tokenizer.chat_template", &tmpl) == NLLM_OK) {
      tok->chat_template = nllm_strdup(tmpl);
      if (!tok->chat_template) st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
    }
    nllm_clear_error();
  }
  if (!st) st = tok_finalize(tok);
  if (st) {
    nllm_tokenizer_free(tok);
    return st;
  }
  /* the eom token of Llama 3.1 ends a turn too */
  int64_t eom;
  if (nllm_source_get_int(src, "tokenizer.ggml.eom_token_id", &eom) == NLLM_OK && eom >= 0 &&
      eom < tok->n_vocab)
    tok->eog[eom] = 1;
  nllm_clear_error();
  *out = tok;
  return NLLM_OK;
}
