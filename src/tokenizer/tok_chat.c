/* The nllm_chat_format contract on top of the Jinja interpreter: a template text is rendered by
 * src/template/ (with the tokenizer's bos/eos text); the family table below renders the eight
 * family names ("chatml", "llama3", ...) and is the fallback for a template text only when the
 * interpreter cannot parse it or meets a construct outside its subset. tests/test_template.c
 * checks that the table gives the interpreter's output on the real templates of its families.
 * The rendered text leaves out the leading BOS: callers tokenize it with add_bos = 1 and
 * parse_special = 1, which puts BOS back exactly once. */
#include <stdlib.h>

#include "template/template.h"
#include "tokenizer/tok_internal.h"

typedef enum {
  CHAT_UNKNOWN,
  CHAT_CHATML,
  CHAT_LLAMA3,
  CHAT_LLAMA2,
  CHAT_MISTRAL,
  CHAT_GEMMA,
  CHAT_PHI3,
  CHAT_DEEPSEEK,  /* DeepSeek LLM chat: "User: ...\n\nAssistant: ..." */
  CHAT_DEEPSEEK3, /* DeepSeek V3 / R1: <｜User｜> <｜Assistant｜> */
} chat_family;

static const struct {
  const char *name;
  chat_family fam;
} family_names[] = {
    {"chatml", CHAT_CHATML}, {"qwen", CHAT_CHATML},       {"llama3", CHAT_LLAMA3},
    {"llama2", CHAT_LLAMA2}, {"mistral", CHAT_MISTRAL},   {"gemma", CHAT_GEMMA},
    {"phi3", CHAT_PHI3},     {"deepseek", CHAT_DEEPSEEK}, {"deepseek3", CHAT_DEEPSEEK3},
};

/* Recognizes a family from distinctive literals of its template (or from a family name). */
static chat_family detect(const char *t) {
  for (size_t i = 0; i < sizeof family_names / sizeof *family_names; i++)
    if (strcmp(t, family_names[i].name) == 0) return family_names[i].fam;
  if (strstr(t, "<|im_start|>")) return CHAT_CHATML;
  if (strstr(t, "<|start_header_id|>")) return CHAT_LLAMA3;
  if (strstr(t, "<start_of_turn>")) return CHAT_GEMMA;
  if (strstr(t, "<|user|>") && strstr(t, "<|end|>")) return CHAT_PHI3;
  if (strstr(t, "<\xef\xbd\x9cUser\xef\xbd\x9c>")) return CHAT_DEEPSEEK3;
  if (strstr(t, "User: ") && strstr(t, "Assistant:")) return CHAT_DEEPSEEK;
  if (strstr(t, "[INST]") && strstr(t, "<<SYS>>")) return CHAT_LLAMA2;
  if (strstr(t, "[INST]")) return CHAT_MISTRAL;
  return CHAT_UNKNOWN;
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap * 2 : 256;
    while (c < b->n + n + 1) c *= 2;
    char *q = nllm_realloc(b->p, c);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = c;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void puts_(sbuf *b, const char *s) {
  put(b, s, strlen(s));
}

static int ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Jinja's trim / Python's strip. */
static void put_trimmed(sbuf *b, const char *s) {
  size_t n = strlen(s), i = 0;
  while (i < n && ws(s[i])) i++;
  while (n > i && ws(s[n - 1])) n--;
  put(b, s + i, n - i);
}

static int is_role(const nllm_chat_message *m, const char *r) {
  return strcmp(m->role, r) == 0;
}

#define QWEN_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

static void render(chat_family fam, const char *tmpl, const nllm_chat_message *m, int32_t n,
                   int add_assistant, sbuf *b) {
  int32_t i = 0;
  const char *sys = NULL;
  switch (fam) {
    case CHAT_CHATML:
      /* Qwen2.5's template supplies its own system prompt when the conversation has none */
      if (strstr(tmpl, QWEN_DEFAULT_SYSTEM) && (n == 0 || !is_role(&m[0], "system")))
        puts_(b, "<|im_start|>system\n" QWEN_DEFAULT_SYSTEM "<|im_end|>\n");
      for (; i < n; i++) {
        puts_(b, "<|im_start|>");
        puts_(b, m[i].role);
        puts_(b, "\n");
        puts_(b, m[i].content);
        puts_(b, "<|im_end|>\n");
      }
      if (add_assistant) puts_(b, "<|im_start|>assistant\n");
      break;
    case CHAT_LLAMA3:
      for (; i < n; i++) {
        puts_(b, "<|start_header_id|>");
        puts_(b, m[i].role);
        puts_(b, "<|end_header_id|>\n\n");
        put_trimmed(b, m[i].content);
        puts_(b, "<|eot_id|>");
      }
      if (add_assistant) puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;
    case CHAT_LLAMA2:
    case CHAT_MISTRAL: {
      /* the system prompt goes into the first user turn: Llama 2 wraps it in <<SYS>>, Mistral
       * puts it before the text */
      if (n > 0 && is_role(&m[0], "system")) sys = m[i++].content;
      int first = 1;
      for (; i < n; i++) {
        if (is_role(&m[i], "user")) {
          if (!first && fam == CHAT_LLAMA2) puts_(b, "<s>");
          puts_(b, "[INST] ");
          if (first && sys) {
            if (fam == CHAT_LLAMA2) {
              puts_(b, "<<SYS>>\n");
              put_trimmed(b, sys);
              puts_(b, "\n<</SYS>>\n\n");
            } else {
              put_trimmed(b, sys);
              puts_(b, "\n\n");
            }
          }
          put_trimmed(b, m[i].content);
          puts_(b, " [/INST]");
          first = 0;
        } else {
          if (fam == CHAT_LLAMA2) puts_(b, " ");
          put_trimmed(b, m[i].content);
          puts_(b, fam == CHAT_LLAMA2 ? " </s>" : "</s>");
        }
      }
      break;
    }
    case CHAT_GEMMA:
      /* no system role: it leads the first user turn */
      if (n > 0 && is_role(&m[0], "system")) sys = m[i++].content;
      for (; i < n; i++) {
        puts_(b, "<start_of_turn>");
        puts_(b, is_role(&m[i], "assistant") ? "model" : m[i].role);
        puts_(b, "\n");
        if (sys && is_role(&m[i], "user")) {
          put_trimmed(b, sys);
          puts_(b, "\n\n");
          sys = NULL;
        }
        put_trimmed(b, m[i].content);
        puts_(b, "<end_of_turn>\n");
      }
      if (add_assistant) puts_(b, "<start_of_turn>model\n");
      break;
    case CHAT_PHI3:
      for (; i < n; i++) {
        puts_(b, "<|");
        puts_(b, m[i].role);
        puts_(b, "|>\n");
        puts_(b, m[i].content);
        puts_(b, "<|end|>\n");
      }
      if (add_assistant) puts_(b, "<|assistant|>\n");
      break;
    case CHAT_DEEPSEEK:
      for (; i < n; i++) {
        if (is_role(&m[i], "system")) {
          puts_(b, m[i].content);
          puts_(b, "\n\n");
        } else if (is_role(&m[i], "user")) {
          puts_(b, "User: ");
          puts_(b, m[i].content);
          puts_(b, "\n\n");
        } else {
          puts_(b, "Assistant: ");
          puts_(b, m[i].content);
          puts_(b,
                "<\xef\xbd\x9c"
                "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
        }
      }
      if (add_assistant) puts_(b, "Assistant:");
      break;
    case CHAT_DEEPSEEK3:
      for (; i < n; i++) {
        if (is_role(&m[i], "system")) {
          puts_(b, m[i].content);
        } else if (is_role(&m[i], "user")) {
          puts_(b, "<\xef\xbd\x9cUser\xef\xbd\x9c>");
          puts_(b, m[i].content);
        } else {
          puts_(b,
                "<\xef\xbd\x9c"
                "Assistant\xef\xbd\x9c>");
          puts_(b, m[i].content);
          puts_(b,
                "<\xef\xbd\x9c"
                "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
        }
      }
      if (add_assistant)
        puts_(b,
              "<\xef\xbd\x9c"
              "Assistant\xef\xbd\x9c>");
      break;
    default: break;
  }
}

/* The family table's rendering; UNSUPPORTED for a template it does not recognize. */
static nllm_status format_family(const char *tmpl, const nllm_chat_message *messages, int32_t n,
                                 int add_assistant, sbuf *b) {
  chat_family fam = detect(tmpl);
  if (fam == CHAT_UNKNOWN)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "chat_format: unrecognized chat template (starts '%.60s')", tmpl);
  for (int32_t i = 0; i < n; i++) {
    if (fam != CHAT_CHATML && fam != CHAT_LLAMA3 && fam != CHAT_PHI3 &&
        !is_role(&messages[i], "system") && !is_role(&messages[i], "user") &&
        !is_role(&messages[i], "assistant"))
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "chat_format: message %d has role '%s' (this template knows "
                      "system, user, assistant)",
                      i, messages[i].role);
  }
  render(fam, tmpl, messages, n, add_assistant, b);
  if (b->oom) return nllm_err(NLLM_ERR_NOMEM, "chat_format: out of memory");
  return NLLM_OK;
}

static int is_family_name(const char *t) {
  for (size_t i = 0; i < sizeof family_names / sizeof *family_names; i++)
    if (strcmp(t, family_names[i].name) == 0) return 1;
  return 0;
}

/* Renders with the interpreter, else (template outside the subset) with the family table. */
static nllm_status format_any(const char *tmpl, const char *bos, const char *eos,
                              const nllm_chat_message *messages, int32_t n, int add_assistant,
                              sbuf *b) {
  if (is_family_name(tmpl)) return format_family(tmpl, messages, n, add_assistant, b);
  /* text without a tag would render the same for every conversation: a mistyped family name */
  if (!strstr(tmpl, "{{") && !strstr(tmpl, "{%"))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "chat_format: '%.60s' is neither a chat template (it has no {{ or {%%) nor "
                    "a family name (chatml, llama2, llama3, mistral, gemma, phi3, deepseek, "
                    "deepseek3)",
                    tmpl);
  nllm_tmpl_input in = {.msgs = messages,
                        .n_msgs = n,
                        /* without a tokenizer both are empty: templates concatenate them */
                        .bos_token = bos ? bos : "",
                        .eos_token = eos ? eos : "",
                        .add_generation_prompt = add_assistant};
  char *text = NULL;
  size_t len = 0;
  nllm_status st = nllm_template_render(tmpl, &in, &text, &len);
  if (st == NLLM_ERR_FORMAT || st == NLLM_ERR_UNSUPPORTED) {
    if (detect(tmpl) != CHAT_UNKNOWN) return format_family(tmpl, messages, n, add_assistant, b);
    return st;
  }
  if (st != NLLM_OK) return st;
  size_t skip = 0;
  if (bos && *bos && strncmp(text, bos, strlen(bos)) == 0) skip = strlen(bos);
  put(b, text + skip, len - skip);
  free(text);
  if (b->oom) return nllm_err(NLLM_ERR_NOMEM, "chat_format: out of memory");
  return NLLM_OK;
}

static nllm_status format_out(const char *tmpl, const char *bos, const char *eos,
                              const nllm_chat_message *messages, int32_t n, int add_assistant,
                              char *buf, int32_t cap, int32_t *n_out) {
  if (!n_out || n < 0 || (n > 0 && !messages) || cap < 0 || (cap > 0 && !buf))
    return nllm_err(NLLM_ERR_INVALID_ARG, "chat_format: NULL argument or negative count");
  if (!tmpl) return nllm_err(NLLM_ERR_UNSUPPORTED, "chat_format: the model has no chat template");
  for (int32_t i = 0; i < n; i++)
    if (!messages[i].role || !messages[i].content)
      return nllm_err(NLLM_ERR_INVALID_ARG, "chat_format: message %d has a NULL role or content",
                      i);
  sbuf b = {0};
  nllm_status st = format_any(tmpl, bos, eos, messages, n, add_assistant, &b);
  if (st != NLLM_OK) {
    free(b.p);
    return st;
  }
  if (b.n > INT32_MAX - 1) {
    free(b.p);
    return nllm_err(NLLM_ERR_INVALID_ARG, "chat_format: %zu bytes exceed an int32 count", b.n);
  }
  *n_out = (int32_t)b.n;
  if (b.n + 1 > (size_t)cap)
    st = nllm_err(NLLM_ERR_BUFFER_TOO_SMALL, "chat_format: %zu bytes and a NUL, capacity %d", b.n,
                  cap);
  else {
    if (b.n) memcpy(buf, b.p, b.n);
    buf[b.n] = 0;
  }
  free(b.p);
  return st;
}

nllm_status nllm_chat_format_template(const char *tmpl, const nllm_chat_message *messages,
                                      int32_t n, int add_assistant, char *buf, int32_t cap,
                                      int32_t *n_out) {
  return format_out(tmpl, NULL, NULL, messages, n, add_assistant, buf, cap, n_out);
}

const char *nllm_tokenizer_special_text(const nllm_tokenizer *tok, int which, char *buf,
                                        size_t cap) {
  if (!tok || which < 0 || which > NLLM_TOKEN_PAD || cap == 0) return NULL;
  nllm_token id = tok->special[which];
  if (id < 0) return NULL;
  int32_t n = 0;
  if (nllm_tok_token_to_piece(tok, id, 1, buf, (int32_t)(cap - 1), &n) != NLLM_OK) return NULL;
  buf[n] = 0;
  return buf;
}

nllm_status nllm_tokenizer_chat_format(const nllm_tokenizer *tok, const nllm_chat_message *messages,
                                       int32_t n, int add_assistant, char *buf, int32_t cap,
                                       int32_t *n_out) {
  if (!tok) return nllm_err(NLLM_ERR_INVALID_ARG, "chat_format: NULL tokenizer");
  if (!tok->chat_template)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: no chat template (tokenizer.chat_template)",
                    tok->name);
  char bos[256], eos[256];
  return format_out(tok->chat_template,
                    nllm_tokenizer_special_text(tok, NLLM_TOKEN_BOS, bos, sizeof bos),
                    nllm_tokenizer_special_text(tok, NLLM_TOKEN_EOS, eos, sizeof eos), messages, n,
                    add_assistant, buf, cap, n_out);
}
