"""Model.apply_chat_template, apply_chat_template and parse_tool_calls against the expected
renderings of tests/data/templates (made by Python's jinja2, tools/gen_template_expected.py)."""

from __future__ import annotations

import json
import unittest
from pathlib import Path

from ._util import TESTDATA

import nativellm

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "templates"
CONVS = json.loads((DATA / "conversations.json").read_text(encoding="utf-8"))
MANIFEST = json.loads((DATA / "expected" / "manifest.json").read_text(encoding="utf-8"))
NOW = MANIFEST["now"]


def expected(template: str, conv: str, agp: bool) -> str:
    stem = template[: -len(".jinja")]
    return (DATA / "expected" / f"{stem}__{conv}__{int(agp)}.txt").read_text(encoding="utf-8")


class TestApplyChatTemplate(unittest.TestCase):
    def test_template_text_with_tools(self):
        conv = CONVS["tools"]
        name = "Qwen-Qwen3-0.6B.jinja"
        text = nativellm.apply_chat_template(
            (DATA / name).read_text(encoding="utf-8"),
            conv["messages"],
            tools=conv["tools"],
            add_generation_prompt=True,
            eos_token="<|im_end|>",
        )
        self.assertEqual(text, expected(name, "tools", True))

    def test_extra_variables_and_now(self):
        conv = CONVS["thinking"]
        name = "Qwen-Qwen3-0.6B.jinja"
        text = nativellm.apply_chat_template(
            (DATA / name).read_text(encoding="utf-8"),
            conv["messages"],
            add_generation_prompt=True,
            enable_thinking=False,
            eos_token="<|im_end|>",
        )
        self.assertEqual(text, expected(name, "thinking", True))
        llama = (DATA / "meta-llama-Llama-3.2-3B-Instruct.jinja").read_text(encoding="utf-8")
        text = nativellm.apply_chat_template(
            llama, CONVS["basic"]["messages"], now=NOW, bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
        )
        self.assertEqual(text, expected("meta-llama-Llama-3.2-3B-Instruct.jinja", "basic", False))

    def test_model_template_and_tokens(self):
        path = TESTDATA / "tokenizers" / "hf" / "llama3" / "tokenizer.json"
        if not path.is_file():
            self.skipTest(f"SKIP: {path} absent")
        with nativellm.Model(path, vocab_only=True) as model:
            text = model.apply_chat_template(
                [("system", "S"), {"role": "user", "content": "U"}], add_generation_prompt=True
            )
            self.assertEqual(
                text,
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
            )
            ids = model.tokenize(text, add_bos=False, special=True)
            self.assertEqual(ids[0], model.bos)
            self.assertEqual(sum(1 for t in ids if t == model.bos), 1)

    def test_errors(self):
        with self.assertRaises(nativellm.InvalidArgumentError) as cm:
            nativellm.apply_chat_template("{{ raise_exception('no system role') }}", [])
        self.assertIn("no system role", str(cm.exception))
        with self.assertRaises(nativellm.FormatError) as cm:
            nativellm.apply_chat_template("{% if x %}", [])
        self.assertIn("line 1", str(cm.exception))
        with self.assertRaises(nativellm.AbortedError):
            nativellm.apply_chat_template("{% for i in range(10**8) %}x{% endfor %}", [])


class TestParseToolCalls(unittest.TestCase):
    def test_formats(self):
        r = nativellm.parse_tool_calls(
            'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            "</tool_call>"
        )
        self.assertEqual(r["content"], "Checking.")
        (call,) = r["tool_calls"]
        self.assertEqual(call["type"], "function")
        self.assertEqual(len(call["id"]), 9)
        self.assertEqual(call["function"]["name"], "get_weather")
        self.assertEqual(json.loads(call["function"]["arguments"]), {"city": "Paris"})
        r = nativellm.parse_tool_calls('{"name": "f", "parameters": {"x": 1}}', format="llama3")
        self.assertEqual(r["tool_calls"][0]["function"]["name"], "f")
        r = nativellm.parse_tool_calls('[TOOL_CALLS]f[ARGS]{"x": 1}')
        self.assertEqual(json.loads(r["tool_calls"][0]["function"]["arguments"]), {"x": 1})
        self.assertEqual(nativellm.parse_tool_calls("plain"), {"content": "plain", "tool_calls": []})
        with self.assertRaises(nativellm.InvalidArgumentError):
            nativellm.parse_tool_calls("x", format="nope")


if __name__ == "__main__":
    unittest.main()
