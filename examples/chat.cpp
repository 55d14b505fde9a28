// A minimal chat loop in C++17 over the C API: each line of stdin is a user turn; the reply is
// streamed to stdout. The conversation is re-rendered with the model's chat template every turn
// and only the new part is decoded: the context keeps the earlier turns in its KV cache.
//
//   chat [MODEL]          interactive when stdin is a terminal (prompts with "> ")
//   echo "Hi" | chat      one reply per input line, no prompt, then exit
//
// Models without a chat template (like the bundled stories260K) fall back to plain
// continuation: each line is a prompt that the model continues.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nativellm.h"

namespace {

// Owning handles: the deleters are the library's *_free calls (all accept NULL).
struct ModelFree {
  void operator()(nllm_model *m) const { nllm_model_free(m); }
};
struct ContextFree {
  void operator()(nllm_context *c) const { nllm_context_free(c); }
};
struct SamplerFree {
  void operator()(nllm_sampler *s) const { nllm_sampler_free(s); }
};
using Model = std::unique_ptr<nllm_model, ModelFree>;
using Context = std::unique_ptr<nllm_context, ContextFree>;
using Sampler = std::unique_ptr<nllm_sampler, SamplerFree>;

void check(nllm_status st, const char *what) {
  if (st != NLLM_OK)
    throw std::runtime_error(std::string(what) + ": " + nllm_status_name(st) + ": " +
                             nllm_last_error());
}

// Renders the conversation into out; false when the model has no template the library knows.
bool format_chat(const nllm_model *model,
                 const std::vector<std::pair<std::string, std::string>> &turns, std::string &out) {
  std::vector<nllm_chat_message> msgs;
  for (const auto &t : turns) msgs.push_back({t.first.c_str(), t.second.c_str()});
  std::vector<char> buf(4096);
  int32_t n = 0;
  nllm_status st = nllm_chat_format(model, msgs.data(), (int32_t)msgs.size(), 1, buf.data(),
                                    (int32_t)buf.size(), &n);
  if (st == NLLM_ERR_BUFFER_TOO_SMALL) {
    buf.resize((size_t)n + 1);
    st = nllm_chat_format(model, msgs.data(), (int32_t)msgs.size(), 1, buf.data(),
                          (int32_t)buf.size(), &n);
  }
  if (st == NLLM_ERR_UNSUPPORTED || st == NLLM_ERR_NOT_FOUND) return false;
  check(st, "nllm_chat_format");
  out.assign(buf.data(), (size_t)n);
  return true;
}

// Templates that write the BOS text themselves must not get a second BOS from the tokenizer.
bool starts_with_bos(const nllm_model *model, const std::string &text) {
  nllm_token bos = nllm_model_token(model, NLLM_TOKEN_BOS);
  char piece[64];
  int32_t n = 0;
  if (bos < 0 || nllm_token_to_piece(model, bos, 1, piece, (int32_t)sizeof piece, &n) || n == 0)
    return false;
  return text.compare(0, (size_t)n, piece, (size_t)n) == 0;
}

int32_t on_token(nllm_token, const char *piece, int32_t n, void *user_data) {
  auto *reply = static_cast<std::string *>(user_data);
  reply->append(piece, (size_t)n);
  std::fwrite(piece, 1, (size_t)n, stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char **argv) try {
  const char *path = argc > 1 ? argv[1] : "models/stories260K.gguf";
  const bool interactive = isatty(STDIN_FILENO);

  nllm_model *raw_model = nullptr;
  check(nllm_model_load(path, nullptr, &raw_model), path);
  Model model(raw_model);

  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 2048;
  nllm_context *raw_ctx = nullptr;
  check(nllm_context_create(model.get(), &cp, &raw_ctx), "nllm_context_create");
  Context ctx(raw_ctx);

  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.temperature = interactive ? 0.7f : 0.0f;  // piped runs are reproducible
  sp.repeat_penalty = interactive ? sp.repeat_penalty : 1.0f;
  nllm_sampler *raw_smp = nullptr;
  check(nllm_sampler_create(model.get(), &sp, &raw_smp), "nllm_sampler_create");
  Sampler smp(raw_smp);

  std::vector<std::pair<std::string, std::string>> turns;
  std::string rendered;  // the conversation text already in the context
  std::string line;
  for (;;) {
    if (interactive) std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;

    turns.emplace_back("user", line);
    std::string full, prompt;
    nllm_generate_params gp;
    nllm_generate_params_init(&gp);
    gp.max_tokens = 128;
    if (format_chat(model.get(), turns, full)) {
      if (full.compare(0, rendered.size(), rendered) != 0) {
        // The template re-rendered history differently (it may trim replies): decode it anew.
        nllm_context_reset(ctx.get());
        rendered.clear();
      }
      prompt = full.substr(rendered.size());  // usually only the new turn is decoded
      gp.parse_special = 1;                   // the template's markers are control tokens
      gp.add_bos = !starts_with_bos(model.get(), full);
    } else {
      // No chat template: each line is a fresh prompt that the model continues.
      nllm_context_reset(ctx.get());
      prompt = line;
      turns.clear();
      full.clear();
    }
    std::string reply;
    gp.on_token = on_token;
    gp.user_data = &reply;
    nllm_status st =
        nllm_generate(ctx.get(), smp.get(), prompt.c_str(), (int32_t)prompt.size(), &gp, nullptr);
    std::cout << "\n";
    if (st == NLLM_ERR_CONTEXT_FULL) {
      std::cerr << "chat: context full, starting a new conversation\n";
      nllm_context_reset(ctx.get());
      turns.clear();
      rendered.clear();
      continue;
    }
    check(st, "nllm_generate");
    turns.emplace_back("assistant", reply);
    // What the context holds now: the prompt plus the reply. A template would add its own
    // end-of-turn marker when re-rendering, which is decoded with the next turn.
    rendered = full.empty() ? std::string() : full + reply;
  }
  return 0;
} catch (const std::exception &e) {
  std::cerr << "chat: error: " << e.what() << "\n";
  return 1;
}
