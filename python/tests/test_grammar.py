"""Constrained output from Python: generate(grammar=..., json_schema=...) returns text that
parses, json_schema_to_grammar, errors with the library's message."""

from __future__ import annotations

import json
import re
import unittest

from ._util import MODEL

import nativellm

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 99},
        "pet": {"enum": ["cat", "dog"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


class TestGrammar(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(MODEL, n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_json_schema_outputs_parse(self):
        for seed in range(6):
            text = self.model.generate("Once upon a time", json_schema=SCHEMA, max_tokens=300,
                                       temperature=[0.0, 0.8, 1.3][seed % 3], seed=seed)
            doc = json.loads(text)
            self.assertIsInstance(doc["name"], str)
            self.assertLessEqual(len(doc["name"]), 8)
            self.assertTrue(0 <= doc["age"] <= 99, text)
            self.assertLessEqual(set(doc), {"name", "age", "pet"})
            if "pet" in doc:
                self.assertIn(doc["pet"], ("cat", "dog"))

    def test_schema_as_text_and_any_json(self):
        text = self.model.generate("Hi", json_schema='{"type": "array", "items": {"type": '
                                   '"boolean"}, "minItems": 1, "maxItems": 4}',
                                   max_tokens=200, seed=1)
        doc = json.loads(text)
        self.assertTrue(1 <= len(doc) <= 4 and all(isinstance(b, bool) for b in doc), text)
        text = self.model.generate("Hi", json_schema={}, max_tokens=400, temperature=0.0)
        json.loads(text)

    def test_gbnf_grammar(self):
        g = 'list ::= item ("," item){1,3}\nitem ::= [a-z]{1,5}\n'
        text = self.model.generate("The", grammar=g, grammar_root="list", max_tokens=100, seed=4)
        self.assertRegex(text, r"^[a-z]{1,5}(,[a-z]{1,5}){1,3}$")

    def test_sampler_grammar_complete_and_length(self):
        with self.model.context(n_ctx=512) as ctx, self.model.sampler(
                json_schema=SCHEMA, seed=2) as smp:
            r = ctx.generate("Once", smp, max_tokens=2)
            self.assertEqual(r.finish_reason, "length")
            self.assertFalse(smp.grammar_complete)
            text = ctx.generate("Once", smp, max_tokens=300)
            self.assertTrue(smp.grammar_complete)
            json.loads(text)

    def test_json_schema_to_grammar_and_errors(self):
        g = nativellm.json_schema_to_grammar({"type": "boolean"})
        self.assertTrue(g.startswith("root ::= "), g)
        with self.assertRaises(nativellm.InvalidArgumentError) as cm:
            nativellm.json_schema_to_grammar({"type": "string", "pattern": "(?=x)"})
        self.assertIn("/pattern", str(cm.exception))
        with self.assertRaises(nativellm.InvalidArgumentError) as cm:
            self.model.generate("x", grammar="root ::= (", max_tokens=5)
        self.assertTrue(re.search(r"line 1, column \d+", str(cm.exception)), str(cm.exception))
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.generate("x", grammar="root ::= \"a\"", json_schema={}, max_tokens=5)


if __name__ == "__main__":
    unittest.main()
