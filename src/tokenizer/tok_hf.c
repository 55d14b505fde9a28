/* Tokenizer from a Hugging Face tokenizer.json (+ tokenizer_config.json beside it): model BPE
 * (byte-level or with byte fallback) or WordPiece, normalizers, pre-tokenizers, added tokens,
 * post-processor and decoder, mapped onto the same object the GGUF loader builds; or from a
 * BERT vocab.txt where a folder has no tokenizer.json. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/json.h"
#include "formats/hf.h"
#include "tokenizer/tok_internal.h"

static const char *jstr(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
  return def;
}

static const char *jtype(const cJSON *o) {
  const char *t = jstr(o, "type");
  return t ? t : "";
}

/* A token named in tokenizer_config.json: "text" or {"content": "text", ...}. */
static const char *config_token(const cJSON *cfg, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (cJSON_IsString(v)) return v->valuestring;
  if (cJSON_IsObject(v)) return jstr(v, "content");
  return NULL;
}

static cJSON *parse_json_file(const char *path, nllm_status *st) {
  nllm_file_map map;
  *st = nllm_file_map_open_max(path, 0, NLLM_HF_MAX_TOKENIZER_JSON, "a tokenizer JSON file", &map);
  if (*st) return NULL;
  cJSON *j = nllm_json_parse((const char *)map.data, (size_t)map.size, path, st);
  nllm_file_map_close(&map);
  return j;
}

/* PCRE2 pattern matching a literal string. */
static char *literal_regex(const char *s) {
  size_t n = strlen(s);
  char *r = nllm_malloc(n * 2 + 1);
  if (!r) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strchr("\\^$.[]|()?*+{}-/", s[i])) r[k++] = '\\';
    r[k++] = s[i];
  }
  r[k] = 0;
  return r;
}

static nllm_status add_normalizer(nllm_tokenizer *tok, const cJSON *n) {
  if (!n || cJSON_IsNull(n)) return NLLM_OK;
  const char *t = jtype(n);
  if (!strcmp(t, "Sequence")) {
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) {
      nllm_status st = add_normalizer(tok, it);
      if (st) return st;
    }
    return NLLM_OK;
  }
  if (!strcmp(t, "NFC")) return tok_add_norm(tok, NORM_NFC, NULL, 0, NULL, 0);
  if (!strcmp(t, "NFKC")) return tok_add_norm(tok, NORM_NFKC, NULL, 0, NULL, 0);
  if (!strcmp(t, "Lowercase")) return tok_add_norm(tok, NORM_LOWERCASE, NULL, 0, NULL, 0);
  if (!strcmp(t, "NFD")) return tok_add_norm(tok, NORM_NFD, NULL, 0, NULL, 0);
  if (!strcmp(t, "StripAccents")) return tok_add_norm(tok, NORM_STRIP_ACCENTS, NULL, 0, NULL, 0);
  if (!strcmp(t, "BertNormalizer")) {
    int lower = jbool(n, "lowercase", 1);
    /* strip_accents null (or absent) follows lowercase */
    int strip = jbool(n, "strip_accents", lower);
    unsigned flags = (jbool(n, "clean_text", 1) ? BERT_CLEAN : 0u) |
                     (jbool(n, "handle_chinese_chars", 1) ? BERT_CHINESE : 0u) |
                     (strip ? BERT_STRIP_ACCENTS : 0u) | (lower ? BERT_LOWERCASE : 0u);
    nllm_status st = tok_add_norm(tok, NORM_BERT, NULL, 0, NULL, 0);
    if (!st) tok->norms[tok->n_norms - 1].flags = flags;
    return st;
  }
  if (!strcmp(t, "Prepend")) {
    const char *p = jstr(n, "prepend");
    if (!p) return nllm_err(NLLM_ERR_FORMAT, "%s: Prepend normalizer without 'prepend'", tok->name);
    return tok_add_norm(tok, NORM_PREPEND, NULL, 0, p, strlen(p));
  }
  if (!strcmp(t, "Replace")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
    const char *from = jstr(pat, "String"), *to = jstr(n, "content");
    if (!from || !to)
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: Replace normalizer supports only a String pattern "
                      "with a content",
                      tok->name);
    return tok_add_norm(tok, NORM_REPLACE, from, strlen(from), to, strlen(to));
  }
  return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: normalizer type '%s' is not supported", tok->name, t);
}

static int split_behavior(const char *b) {
  if (!b || !strcmp(b, "Isolated")) return SPLIT_ISOLATED;
  if (!strcmp(b, "Removed")) return SPLIT_REMOVED;
  if (!strcmp(b, "MergedWithPrevious")) return SPLIT_MERGE_PREV;
  if (!strcmp(b, "MergedWithNext")) return SPLIT_MERGE_NEXT;
  if (!strcmp(b, "Contiguous")) return SPLIT_CONTIGUOUS;
  return -1;
}

static nllm_status add_pre(nllm_tokenizer *tok, const cJSON *p) {
  if (!p || cJSON_IsNull(p)) return NLLM_OK;
  const char *t = jtype(p);
  if (!strcmp(t, "Sequence")) {
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) {
      nllm_status st = add_pre(tok, it);
      if (st) return st;
    }
    return NLLM_OK;
  }
  if (!strcmp(t, "Split")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
    int b = split_behavior(jstr(p, "behavior"));
    if (b < 0)
      return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: Split behavior '%s' is not supported", tok->name,
                      jstr(p, "behavior"));
    if (re) return tok_add_pre_regex(tok, re, b, jbool(p, "invert", 0));
    if (lit) {
      char *r = literal_regex(lit);
      if (!r) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
      nllm_status st = tok_add_pre_regex(tok, r, b, jbool(p, "invert", 0));
      free(r);
      return st;
    }
    return nllm_err(NLLM_ERR_FORMAT, "%s: Split pre-tokenizer without a Regex or String pattern",
                    tok->name);
  }
  if (!strcmp(t, "ByteLevel")) {
    tok->byte_level = 1;
    nllm_status st = NLLM_OK;
    if (jbool(p, "add_prefix_space", 0)) {
      if (tok->n_pres >= TOK_MAX_PRE)
        return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: too many pre-tokenizers", tok->name);
      memset(&tok->pres[tok->n_pres], 0, sizeof tok->pres[0]);
      tok->pres[tok->n_pres++].kind = PRE_ADD_PREFIX_SPACE;
    }
    if (jbool(p, "use_regex", 1))
      st = tok_add_pre_regex(tok, HF_BYTELEVEL_REGEX, SPLIT_ISOLATED, 0);
    return st;
  }
  if (!strcmp(t, "Digits"))
    return tok_add_pre_regex(tok, jbool(p, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+",
                             SPLIT_ISOLATED, 0);
  if (!strcmp(t, "BertPreTokenizer")) {
    if (tok->n_pres >= TOK_MAX_PRE)
      return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: too many pre-tokenizers", tok->name);
    memset(&tok->pres[tok->n_pres], 0, sizeof tok->pres[0]);
    tok->pres[tok->n_pres++].kind = PRE_BERT;
    return NLLM_OK;
  }
  if (!strcmp(t, "WhitespaceSplit")) return tok_add_pre_regex(tok, "\\s+", SPLIT_REMOVED, 0);
  if (!strcmp(t, "Whitespace")) return tok_add_pre_regex(tok, "\\w+|[^\\w\\s]+", SPLIT_REMOVED, 1);
  if (!strcmp(t, "Metaspace")) {
    if (tok->n_pres >= TOK_MAX_PRE)
      return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: too many pre-tokenizers", tok->name);
    tok_pre *m = &tok->pres[tok->n_pres];
    memset(m, 0, sizeof *m);
    m->kind = PRE_METASPACE;
    const char *r = jstr(p, "replacement");
    if (!r) r = "\xe2\x96\x81";
    size_t rl = strlen(r);
    if (rl == 0 || rl > 4)
      return nllm_err(NLLM_ERR_FORMAT, "%s: Metaspace replacement of %zu bytes", tok->name, rl);
    memcpy(m->repl, r, rl);
    m->repl_len = (int)rl;
    const char *scheme = jstr(p, "prepend_scheme");
    if (scheme) {
      m->prepend_scheme = !strcmp(scheme, "first")   ? PREPEND_FIRST
                          : !strcmp(scheme, "never") ? PREPEND_NEVER
                                                     : PREPEND_ALWAYS;
    } else {
      m->prepend_scheme = jbool(p, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
    }
    m->split = jbool(p, "split", 1);
    tok->n_pres++;
    if (m->prepend_scheme != PREPEND_NEVER) tok->strip_leading_space = 1;
    return NLLM_OK;
  }
  return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: pre-tokenizer type '%s' is not supported", tok->name,
                  t);
}

/* Decoders change nothing we compute per token except the leading-space rule. */
static void scan_decoder(nllm_tokenizer *tok, const cJSON *d) {
  if (!d || cJSON_IsNull(d)) return;
  const char *t = jtype(d);
  if (!strcmp(t, "Sequence")) {
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders")) scan_decoder(tok, it);
  } else if (!strcmp(t, "Strip")) {
    const char *c = jstr(d, "content");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
    if (c && !strcmp(c, " ") && cJSON_IsNumber(start) && start->valueint >= 1)
      tok->strip_leading_space = 1;
  } else if (!strcmp(t, "Metaspace")) {
    const char *scheme = jstr(d, "prepend_scheme");
    if (scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", 1))
      tok->strip_leading_space = 1;
  }
}

static int32_t lookup(const nllm_tokenizer *tok, const tok_strmap *tm, const char *text) {
  return text ? tok_map_find(tok, tm, text, strlen(text)) : -1;
}

/* The id a TemplateProcessing item refers to: {"SpecialToken": {"id": "<s>"}} -> its ids[0]. */
static int32_t template_special(const nllm_tokenizer *tok, const tok_strmap *tm, const cJSON *pp,
                                const cJSON *item) {
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
  if (!sp) return -1;
  const char *name = jstr(sp, "id");
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
  const cJSON *ent = name ? cJSON_GetObjectItemCaseSensitive(map, name) : NULL;
  const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ent, "ids");
  if (cJSON_IsArray(ids) && cJSON_GetArraySize(ids) >= 1 &&
      cJSON_IsNumber(cJSON_GetArrayItem(ids, 0))) {
    int v = cJSON_GetArrayItem(ids, 0)->valueint;
    return v >= 0 && v < tok->n_vocab ? v : -1;
  }
  return lookup(tok, tm, name);
}

static nllm_status load_hf(nllm_tokenizer **out, const char *path, const cJSON *root,
                           const cJSON *cfg) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const char *mtype = jstr(model, "type");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (!model) return nllm_err(NLLM_ERR_FORMAT, "%s: no 'model' object", path);
  int wordpiece = mtype && !strcmp(mtype, "WordPiece");
  if (!mtype || (strcmp(mtype, "BPE") != 0 && !wordpiece))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: model type '%s' is not supported (supported: BPE, WordPiece)", path,
                    mtype ? mtype : "(none)");
  if (!cJSON_IsObject(vocab))
    return nllm_err(NLLM_ERR_FORMAT, "%s: model.vocab is not an object", path);
  const char *cont = jstr(model, "continuing_subword_prefix"),
             *eow = jstr(model, "end_of_word_suffix");
  int64_t wp_max_chars = 100;
  if (wordpiece) {
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
    if (mc && !cJSON_IsNull(mc)) {
      if (!cJSON_IsNumber(mc) || mc->valuedouble < 1 || mc->valuedouble > 1e6)
        return nllm_err(NLLM_ERR_FORMAT,
                        "%s: WordPiece max_input_chars_per_word must be a number in 1..1000000",
                        path);
      wp_max_chars = (int64_t)mc->valuedouble;
    }
    if (!cont) cont = "##";
    if (strlen(cont) >= TOK_WP_PREFIX_MAX)
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: WordPiece continuing_subword_prefix of %zu bytes (at most %d)", path,
                      strlen(cont), TOK_WP_PREFIX_MAX - 1);
  } else if ((cont && *cont) || (eow && *eow))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: BPE with continuing_subword_prefix/end_of_word_suffix is not supported",
                    path);

  int64_t max_id = -1;
  const cJSON *it;
  cJSON_ArrayForEach(it, vocab) {
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > INT32_MAX / 2)
      return nllm_err(NLLM_ERR_FORMAT, "%s: vocab entry '%.40s' has no valid id", path, it->string);
    if ((int64_t)it->valuedouble > max_id) max_id = (int64_t)it->valuedouble;
  }
  cJSON_ArrayForEach(it, added) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
    if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX / 2 ||
        !jstr(it, "content"))
      return nllm_err(NLLM_ERR_FORMAT, "%s: added_tokens entry without a valid id and content",
                      path);
    if ((int64_t)id->valuedouble > max_id) max_id = (int64_t)id->valuedouble;
  }
  if (max_id < 0) return nllm_err(NLLM_ERR_FORMAT, "%s: empty vocabulary", path);
  /* The token table is sized by the largest id, so a few bytes of JSON naming id 10^9 would
   * cost gigabytes. Real files are dense (a few reserved holes at most). */
  int64_t n_entries =
      cJSON_GetArraySize(vocab) + (cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0);
  if (max_id >= 2 * n_entries + 1024)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: largest token id %lld is far beyond the %lld tokens "
                    "defined (the id space may have at most %lld entries)",
                    path, (long long)max_id, (long long)n_entries,
                    (long long)(2 * n_entries + 1024));

  nllm_tokenizer *tok = tok_alloc(path, (int32_t)(max_id + 1));
  if (!tok) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  *out = tok;
  nllm_status st = NLLM_OK;
  tok->model = wordpiece ? MODEL_WORDPIECE : MODEL_BPE;
  if (wordpiece) {
    tok->wp_max_chars = (int32_t)wp_max_chars;
    tok->wp_prefix_len = (uint32_t)strlen(cont);
    memcpy(tok->wp_prefix, cont, tok->wp_prefix_len + 1);
    tok->strip_leading_space = 1;
  }
  tok->byte_fallback = jbool(model, "byte_fallback", 0);
  tok->ignore_merges = jbool(model, "ignore_merges", 0);
  tok->fuse_unk = jbool(model, "fuse_unk", 0);
  for (int32_t i = 0; i < tok->n_vocab; i++) tok->tokens[i].type = TT_UNUSED;
  cJSON_ArrayForEach(it, vocab) {
    if ((st = tok_set_token(tok, (int32_t)it->valuedouble, it->string, strlen(it->string), 0.0f,
                            TT_NORMAL)))
      return st;
  }
  cJSON_ArrayForEach(it, added) {
    const char *c = jstr(it, "content");
    int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
    if ((st = tok_set_token(tok, id, c, strlen(c), 0.0f,
                            jbool(it, "special", 0) ? TT_CONTROL : TT_USER)))
      return st;
    tok->tokens[id].flags = (uint8_t)((jbool(it, "lstrip", 0) ? TF_LSTRIP : 0) |
                                      (jbool(it, "rstrip", 0) ? TF_RSTRIP : 0));
  }

  if ((st = add_normalizer(tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"))) ||
      (st = add_pre(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"))))
    return st;
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
  if (dec && !strcmp(jtype(dec), "ByteLevel")) tok->byte_level = 1;
  scan_decoder(tok, dec);

  tok_strmap tm = {0};
  if ((st = tok_text_map_build(tok, &tm))) return st;
  int n_merges = cJSON_GetArraySize(merges);
  if ((st = tok_merges_alloc(tok, (size_t)(n_merges > 0 ? n_merges : 1)))) goto done;
  int rank = 0;
  cJSON_ArrayForEach(it, merges) {
    int32_t a = -1, b = -1;
    if (cJSON_IsString(it)) {
      const char *s = it->valuestring, *sp = strchr(s, ' ');
      if (!sp) {
        st = nllm_err(NLLM_ERR_FORMAT, "%s: merge %d ('%.40s') is not 'a b'", path, rank, s);
        goto done;
      }
      a = tok_map_find(tok, &tm, s, (size_t)(sp - s));
      b = tok_map_find(tok, &tm, sp + 1, strlen(sp + 1));
    } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
               cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
      a = lookup(tok, &tm, cJSON_GetArrayItem(it, 0)->valuestring);
      b = lookup(tok, &tm, cJSON_GetArrayItem(it, 1)->valuestring);
    } else {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: merge %d is neither 'a b' nor [a, b]", path, rank);
      goto done;
    }
    tok_merge_add(tok, &tm, a, b, rank++);
  }

  /* special ids: tokenizer_config.json names them; the post-processor template says which are
   * added around a sequence */
  const char *unk = jstr(model, "unk_token");
  if (!unk) unk = config_token(cfg, "unk_token");
  tok->special[NLLM_TOKEN_UNK] = lookup(tok, &tm, unk);
  if (tok->special[NLLM_TOKEN_UNK] >= 0 &&
      tok->tokens[tok->special[NLLM_TOKEN_UNK]].type == TT_NORMAL)
    tok->tokens[tok->special[NLLM_TOKEN_UNK]].type = TT_UNKNOWN;
  const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
  tok->special[NLLM_TOKEN_BOS] = lookup(tok, &tm, bos);
  tok->special[NLLM_TOKEN_EOS] = lookup(tok, &tm, eos);
  tok->special[NLLM_TOKEN_PAD] = lookup(tok, &tm, config_token(cfg, "pad_token"));
  static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>",
                                          "<|EOT|>"};
  for (size_t k = 0; k < sizeof eot_names / sizeof *eot_names && tok->special[NLLM_TOKEN_EOT] < 0;
       k++) {
    int32_t id = lookup(tok, &tm, eot_names[k]);
    if (id >= 0 && tok->tokens[id].type == TT_CONTROL) tok->special[NLLM_TOKEN_EOT] = id;
  }

  const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
  int tmpl_bos = 0, tmpl_eos = 0;
  if (pp && !strcmp(jtype(pp), "TemplateProcessing")) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    int n = cJSON_GetArraySize(single);
    if (n > 0) {
      int32_t first = template_special(tok, &tm, pp, cJSON_GetArrayItem(single, 0));
      int32_t last = n > 1 ? template_special(tok, &tm, pp, cJSON_GetArrayItem(single, n - 1)) : -1;
      if (first >= 0) {
        tmpl_bos = 1;
        if (tok->special[NLLM_TOKEN_BOS] < 0) tok->special[NLLM_TOKEN_BOS] = first;
      }
      if (last >= 0) {
        tmpl_eos = 1;
        if (tok->special[NLLM_TOKEN_EOS] < 0) tok->special[NLLM_TOKEN_EOS] = last;
      }
    }
  } else if (pp && !strcmp(jtype(pp), "BertProcessing")) {
    /* {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}: the older spelling of the same template */
    const cJSON *cls = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "cls"), 1);
    const cJSON *sep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "sep"), 1);
    if (cJSON_IsNumber(cls) && cls->valuedouble >= 0 && cls->valuedouble < tok->n_vocab) {
      tmpl_bos = 1;
      if (tok->special[NLLM_TOKEN_BOS] < 0) tok->special[NLLM_TOKEN_BOS] = cls->valueint;
    }
    if (cJSON_IsNumber(sep) && sep->valuedouble >= 0 && sep->valuedouble < tok->n_vocab) {
      tmpl_eos = 1;
      if (tok->special[NLLM_TOKEN_EOS] < 0) tok->special[NLLM_TOKEN_EOS] = sep->valueint;
    }
  }
  tok->sep_id = lookup(tok, &tm, config_token(cfg, "sep_token"));
  tok->mask_id = lookup(tok, &tm, config_token(cfg, "mask_token"));
  if (wordpiece && tok->sep_id < 0 && tmpl_eos) tok->sep_id = tok->special[NLLM_TOKEN_EOS];
  const cJSON *abos = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
  if (cJSON_IsBool(abos))
    tok->add_bos = cJSON_IsTrue(abos);
  else if (tmpl_bos)
    tok->add_bos = 1;
  else /* Llama 3 style: a distinct BOS is named but no template says so */
    tok->add_bos = bos && (!eos || strcmp(bos, eos) != 0) && tok->special[NLLM_TOKEN_BOS] >= 0;
  const cJSON *aeos = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
  tok->add_eos = cJSON_IsBool(aeos) ? cJSON_IsTrue(aeos) : tmpl_eos;

  const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
  const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
  if (cJSON_IsArray(ct)) { /* [{"name": "default", "template": ...}, ...] */
    const cJSON *e;
    cJSON_ArrayForEach(e, ct) {
      const char *name = jstr(e, "name");
      if (!tmpl || (name && !strcmp(name, "default"))) tmpl = jstr(e, "template");
    }
  }
  if (tmpl && !(tok->chat_template = nllm_strdup(tmpl))) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  st = tok_finalize(tok);
done:
  tok_map_free(&tm);
  return st;
}

/* A BERT folder without tokenizer.json: vocab.txt (one token a line, the line number its id)
 * and tokenizer_config.json's BertTokenizer options, built as the reference library converts
 * them (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] text [SEP]). */
static nllm_status load_vocab_txt(nllm_tokenizer **out, const char *path, const cJSON *cfg) {
  nllm_file_map map;
  nllm_status st =
      nllm_file_map_open_max(path, 0, NLLM_HF_MAX_TOKENIZER_JSON, "a vocabulary file", &map);
  if (st) return st;
  const char *data = (const char *)map.data;
  size_t size = (size_t)map.size;
  int64_t n = 0;
  for (size_t i = 0; i < size; i++) n += data[i] == '\n';
  if (size && data[size - 1] != '\n') n++;
  if (n == 0 || n > INT32_MAX / 2) {
    nllm_file_map_close(&map);
    return nllm_err(NLLM_ERR_FORMAT, "%s: %lld tokens (expected one token a line)", path,
                    (long long)n);
  }
  nllm_tokenizer *tok = tok_alloc(path, (int32_t)n);
  if (!tok) {
    nllm_file_map_close(&map);
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  }
  *out = tok;
  int32_t id = 0;
  for (size_t i = 0; i < size && !st; id++) {
    const char *nl = memchr(data + i, '\n', size - i);
    size_t e = nl ? (size_t)(nl - data) : size, l = e - i;
    if (l && data[i + l - 1] == '\r') l--;
    st = tok_set_token(tok, id, data + i, l, 0.0f, TT_NORMAL);
    i = e + 1;
  }
  nllm_file_map_close(&map);
  if (st) return st;
  tok->model = MODEL_WORDPIECE;
  tok->strip_leading_space = 1;

  const cJSON *lc = cJSON_GetObjectItemCaseSensitive(cfg, "do_lower_case");
  int lower = cJSON_IsBool(lc) ? cJSON_IsTrue(lc) : 1;
  unsigned flags = BERT_CLEAN | (jbool(cfg, "tokenize_chinese_chars", 1) ? BERT_CHINESE : 0u) |
                   (jbool(cfg, "strip_accents", lower) ? BERT_STRIP_ACCENTS : 0u) |
                   (lower ? BERT_LOWERCASE : 0u);
  if ((st = tok_add_norm(tok, NORM_BERT, NULL, 0, NULL, 0))) return st;
  tok->norms[tok->n_norms - 1].flags = flags;
  memset(&tok->pres[0], 0, sizeof tok->pres[0]);
  tok->pres[tok->n_pres++].kind = PRE_BERT;

  /* the named specials are control tokens: matched literally, never produced from text */
  static const char *const keys[5] = {"cls_token", "sep_token", "unk_token", "pad_token",
                                      "mask_token"};
  static const char *const defaults[5] = {"[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"};
  nllm_token ids[5];
  for (int k = 0; k < 5; k++) {
    const char *name = config_token(cfg, keys[k]);
    ids[k] = tok_find_text(tok, name ? name : defaults[k]);
    if (ids[k] >= 0) tok->tokens[ids[k]].type = TT_CONTROL;
  }
  tok->special[NLLM_TOKEN_BOS] = ids[0];
  tok->special[NLLM_TOKEN_EOS] = tok->sep_id = ids[1];
  tok->special[NLLM_TOKEN_UNK] = ids[2];
  tok->special[NLLM_TOKEN_PAD] = ids[3];
  tok->mask_id = ids[4];
  tok->add_bos = tok->add_eos = 1;
  return tok_finalize(tok);
}

nllm_status nllm_tokenizer_from_hf(const char *path, nllm_tokenizer **out) {
  if (!path || !out) return nllm_err(NLLM_ERR_INVALID_ARG, "tokenizer_from_hf: NULL argument");
  *out = NULL;
  nllm_status st;
  const char *slash = strrchr(path, '/');
  size_t dl = slash ? (size_t)(slash - path + 1) : 0;
  char *cpath = nllm_malloc(dl + 32), *vpath = nllm_malloc(dl + 32);
  if (!cpath || !vpath) {
    free(cpath);
    free(vpath);
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  }
  memcpy(cpath, path, dl);
  strcpy(cpath + dl, "tokenizer_config.json");
  memcpy(vpath, path, dl);
  strcpy(vpath + dl, "vocab.txt");
  /* older BERT folders have only vocab.txt (access, not fopen: opening a FIFO planted under
   * one of these names would block) */
  int use_vocab_txt =
      access(path, F_OK) != 0 && !strcmp(path + dl, "tokenizer.json") && access(vpath, F_OK) == 0;
  cJSON *root = use_vocab_txt ? NULL : parse_json_file(path, &st);
  if (!use_vocab_txt && !root) {
    free(cpath);
    free(vpath);
    return st;
  }
  /* tokenizer_config.json beside it is optional */
  cJSON *cfg = NULL;
  if (access(cpath, F_OK) == 0) {
    cfg = parse_json_file(cpath, &st);
    if (!cfg) {
      free(cpath);
      free(vpath);
      cJSON_Delete(root);
      return st;
    }
  }
  free(cpath);
  nllm_tokenizer *tok = NULL;
  st = use_vocab_txt ? load_vocab_txt(&tok, vpath, cfg) : load_hf(&tok, path, root, cfg);
  free(vpath);
  cJSON_Delete(root);
  cJSON_Delete(cfg);
  if (st) {
    nllm_tokenizer_free(tok);
    return st;
  }
  *out = tok;
  return NLLM_OK;
}
