/* nllm template: renders a conversation with a chat template and prints exactly the text the
 * model would see, for checking a template by hand against transformers' apply_chat_template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nllm.h"

static int usage(FILE *f) {
  fputs(
      "usage: nllm template (-m MODEL | --template-file F) --messages FILE.json\n"
      "                     [--tools FILE.json] [--add-generation-prompt] [--var NAME=JSON ...]\n"
      "                     [--now UNIX_SECONDS]\n\n"
      "Prints the rendered text exactly (no newline added). bos_token and eos_token come from\n"
      "the model (a GGUF, a Hugging Face folder, a tokenizer folder or tokenizer.json) when -m\n"
      "is given, else from --var. With both -m and --template-file, the file's template is\n"
      "rendered with the model's special tokens. --now fixes what strftime_now formats (UTC).\n",
      f);
  return f == stdout ? 0 : 1;
}

static char *read_text(const char *what, const char *path) {
  size_t n = 0;
  char *t = cli_read_file(path, &n);
  if (!t) {
    cli_error("%s: cannot read '%s'", what, path);
    return NULL;
  }
  if (strlen(t) != n) {
    free(t);
    cli_error("%s: '%s' contains a NUL byte", what, path);
    return NULL;
  }
  return t;
}

/* Appends "name": value to the JSON object text being built in *obj. */
static int add_var(char **obj, size_t *len, const char *spec) {
  const char *eq = strchr(spec, '=');
  if (!eq || eq == spec) return cli_error("--var wants NAME=JSON, got '%s'", spec), 0;
  for (const char *p = spec; p < eq; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_'))
      return cli_error("--var: '%.*s' is not a variable name", (int)(eq - spec), spec), 0;
  size_t need = *len + (size_t)(eq - spec) + strlen(eq + 1) + 8;
  char *q = realloc(*obj, need);
  if (!q) return cli_error("out of memory"), 0;
  *obj = q;
  *len += (size_t)snprintf(q + *len, need - *len, "%s\"%.*s\":%s", *len > 1 ? "," : "",
                           (int)(eq - spec), spec, eq + 1);
  return 1;
}

int cmd_template(int argc, char **argv) {
  const char *model = NULL, *tfile = NULL, *mfile = NULL, *toolfile = NULL;
  int add_gen = 0;
  long long now = 0;
  char *vars = malloc(3); /* "{" now, "}" and the NUL at the end */
  size_t vlen = 1;
  if (!vars) return cli_error("out of memory");
  strcpy(vars, "{");
  int rc = 1;
  char *tmpl = NULL, *msgs = NULL, *tools = NULL, *out = NULL;
  nllm_model *m = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes = 1;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      free(vars);
      return usage(stdout);
    } else if (!strcmp(a, "--add-generation-prompt")) {
      add_gen = 1;
      takes = 0;
    } else if (!v) {
      cli_error("option %s needs a value (nllm template --help)", a);
      goto done;
    } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
      model = v;
    else if (!strcmp(a, "--template-file"))
      tfile = v;
    else if (!strcmp(a, "--messages"))
      mfile = v;
    else if (!strcmp(a, "--tools"))
      toolfile = v;
    else if (!strcmp(a, "--var")) {
      if (!add_var(&vars, &vlen, v)) goto done;
    } else if (!strcmp(a, "--now")) {
      if (!cli_int("--now", v, 1, 253402300799LL, &now)) goto done;
    } else {
      cli_error("unknown option '%s' (nllm template --help)", a);
      goto done;
    }
    i += takes;
  }
  if (!model && !tfile) {
    cli_error("template needs -m MODEL or --template-file F");
    goto done;
  }
  if (!mfile) {
    cli_error("template needs --messages FILE.json");
    goto done;
  }
  strcat(vars, "}");
  if (tfile && !(tmpl = read_text("--template-file", tfile))) goto done;
  if (!(msgs = read_text("--messages", mfile))) goto done;
  if (toolfile && !(tools = read_text("--tools", toolfile))) goto done;
  if (model) {
    cli_opts o;
    memset(&o, 0, sizeof o);
    o.model = model;
    /* a tokenizer folder without config.json: load its tokenizer.json */
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/config.json", model);
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode) && stat(path, &sb) != 0) {
      snprintf(path, sizeof path, "%s/tokenizer.json", model);
      o.model = path;
    }
    if (!(m = cli_load_model(&o, 1, 0))) goto done;
  }
  nllm_chat_template_params p;
  nllm_chat_template_params_init(&p);
  p.template_text = tmpl;
  p.messages_json = msgs;
  p.tools_json = tools;
  p.vars_json = vars;
  p.add_generation_prompt = add_gen;
  p.now = now;
  int32_t n = 0;
  nllm_status st = nllm_chat_template_render(m, &p, NULL, 0, &n);
  if (st == NLLM_ERR_BUFFER_TOO_SMALL) {
    out = malloc((size_t)n + 1);
    st = out ? nllm_chat_template_render(m, &p, out, n + 1, &n) : NLLM_ERR_NOMEM;
  }
  if (st != NLLM_OK) {
    cli_status_error(st, "template");
    goto done;
  }
  if (n && fwrite(out, 1, (size_t)n, stdout) != (size_t)n) {
    cli_error("write failed");
    goto done;
  }
  rc = fflush(stdout) ? 1 : 0;
done:
  free(vars);
  free(tmpl);
  free(msgs);
  free(tools);
  free(out);
  nllm_model_free(m);
  return rc;
}
