#!/usr/bin/python3
"""Writes the expected renderings that tests/test_template.c compares byte for byte.

Each real chat template (tests/data/templates/*.jinja, and the templates inside
../shared/testdata's tokenizer folders and GGUF files) is rendered over each conversation of
tests/data/templates/conversations.json, with and without the generation prompt, by Python's
jinja2 set up the way Hugging Face transformers sets it up for apply_chat_template:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols
extension, transformers' tojson filter (json.dumps, ensure_ascii off) and its raise_exception and
strftime_now globals; variables messages, tools (None when absent), documents (None),
add_generation_prompt, the tokenizer's special tokens and extra keyword arguments.
strftime_now formats the fixed instant NOW (UTC) so that the output does not depend on the day.

Run with Debian's python3-jinja2:  /usr/bin/python3 tools/gen_template_expected.py
Outputs: tests/data/templates/expected/manifest.json and one .txt per rendering that succeeds.
"""
import json
import os
import struct
import sys
from datetime import datetime, timezone

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "templates")
OUT = os.path.join(DATA, "expected")
TESTDATA = os.environ.get("NLLM_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
NOW = 1721952000  # 2024-07-26T00:00:00Z

# special tokens as each model's tokenizer_config.json names them (None: not defined there)
LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
QWEN = {"eos_token": "<|im_end|>"}
MISTRAL = {"bos_token": "<s>", "eos_token": "</s>"}
SPECIALS = {
    "meta-llama-Llama-3.1-8B-Instruct": LLAMA3,
    "meta-llama-Llama-3.2-3B-Instruct": LLAMA3,
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": {"bos_token": "<|begin_of_text|>",
                                                     "eos_token": "<|im_end|>"},
    "Qwen-Qwen2.5-7B-Instruct": QWEN,
    "Qwen-Qwen3-0.6B": QWEN,
    "Qwen-QwQ-32B": QWEN,
    "mistralai-Mistral-Nemo-Instruct-2407": MISTRAL,
    "Mistral-Small-3.2-24B-Instruct-2506": MISTRAL,
    "unsloth-mistral-Devstral-Small-2507": MISTRAL,
    "google-gemma-2-2b-it": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "microsoft-Phi-3.5-mini-instruct": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": {
        "bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
        "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"},
    "ibm-granite-granite-3.3-2B-Instruct": {"bos_token": "<|end_of_text|>",
                                            "eos_token": "<|end_of_text|>"},
    "google-gemma-3-1b-it": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "microsoft-phi-4": {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"},
    "microsoft-Phi-4-mini-instruct": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    "HuggingFaceTB-SmolLM2-1.7B-Instruct": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "mistralai-Mistral-7B-Instruct-v0.3": MISTRAL,
    "mistralai-Mistral-Large-Instruct-2411": MISTRAL,
    "testdata-llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
    "testdata-qwen2.5": QWEN,
    "testdata-phi3-gguf": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
}


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(NOW, timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def gguf_string(path, key):
    """The string value of one metadata key of a GGUF file (v2/v3, little-endian)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        raise ValueError(path + ": not GGUF")
    off = 8
    n_kv = struct.unpack_from("<Q", data, off + 8)[0]
    off += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def read_str(o):
        n = struct.unpack_from("<Q", data, o)[0]
        return data[o + 8:o + 8 + n].decode("utf-8"), o + 8 + n

    def skip(t, o):
        if t == 8:
            return read_str(o)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, o)
            o += 12
            for _ in range(n):
                o = skip(et, o)
            return o
        return o + sizes[t]

    for _ in range(n_kv):
        k, off = read_str(off)
        t = struct.unpack_from("<I", data, off)[0]
        off += 4
        if k == key and t == 8:
            return read_str(off)[0]
        off = skip(t, off)
    return None


def templates():
    """(name, source for the C test, template text)"""
    out = []
    for fn in sorted(os.listdir(DATA)):
        if fn.endswith(".jinja"):
            with open(os.path.join(DATA, fn), encoding="utf-8") as f:
                out.append((fn[:-6], "file:" + fn, f.read()))
    for name, rel in (("testdata-llama3", "tokenizers/hf/llama3/tokenizer_config.json"),
                      ("testdata-qwen2.5", "tokenizers/hf/qwen2.5/tokenizer_config.json")):
        p = os.path.join(TESTDATA, rel)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                out.append((name, "testdata-json:" + rel, json.load(f)["chat_template"]))
    p = os.path.join(TESTDATA, "vocab/ggml-vocab-phi-3.gguf")
    if os.path.exists(p):
        out.append(("testdata-phi3-gguf", "testdata-gguf:vocab/ggml-vocab-phi-3.gguf",
                    gguf_string(p, "tokenizer.chat_template")))
    return out


def main():
    with open(os.path.join(DATA, "conversations.json"), encoding="utf-8") as f:
        convs = json.load(f)
    os.makedirs(OUT, exist_ok=True)
    for fn in os.listdir(OUT):
        os.remove(os.path.join(OUT, fn))
    env = environment()
    cases = []
    for name, source, text in templates():
        tmpl = env.from_string(text)
        for cname, conv in convs.items():
            for agp in (False, True):
                kwargs = dict(SPECIALS.get(name, {}))
                kwargs.update(conv.get("vars", {}))
                case = {"template": source, "conversation": cname,
                        "add_generation_prompt": agp, "vars": kwargs}
                try:
                    rendered = tmpl.render(messages=conv["messages"], tools=conv.get("tools"),
                                           documents=None, add_generation_prompt=agp, **kwargs)
                    out = "%s__%s__%d.txt" % (name, cname, agp)
                    with open(os.path.join(OUT, out), "w", encoding="utf-8", newline="") as f:
                        f.write(rendered)
                    case["expected"] = out
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)  # raise_exception: the C side must name it too
                except Exception as e:  # a type error inside the template
                    case["error"] = ""
                    case["python_error"] = "%s: %s" % (type(e).__name__, e)
                cases.append(case)
    # small templates, one Jinja feature each, rendered with their own variables
    with open(os.path.join(DATA, "features.json"), encoding="utf-8") as f:
        features = json.load(f)
    for feat in features:
        try:
            feat["expected_text"] = env.from_string(feat["template"]).render(**feat["vars"])
        except jinja2.exceptions.TemplateError as e:
            feat["error"] = str(e)
        except Exception as e:
            feat["error"] = ""
            feat["python_error"] = "%s: %s" % (type(e).__name__, e)
        del feat["template"], feat["vars"]
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"now": NOW, "jinja2": jinja2.__version__, "cases": cases,
                   "features": features}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("%d cases, %d errors" % (len(cases), sum("error" in c for c in cases)), file=sys.stderr)


if __name__ == "__main__":
    main()
