"""nativellm.convert / quantize / parse_type: the public conversion ABI from Python."""

from __future__ import annotations

import os
import tempfile
import unittest

import nativellm
from nativellm import ffi

from ._util import MODEL


class TestTypeNames(unittest.TestCase):
    def test_parse_any_case_and_presets(self):
        self.assertEqual(nativellm.parse_type("q8_0"), (ffi.NLLM_TYPE_Q8_0, False))
        self.assertEqual(nativellm.parse_type("Q4_K_M"), (ffi.NLLM_TYPE_Q4_K, True))
        names = nativellm.type_names()
        self.assertIn("Q4_K_M", names)
        for n in names:
            self.assertEqual(nativellm.parse_type(n.lower()), nativellm.parse_type(n))

    def test_unknown_name_lists_valid_ones(self):
        with self.assertRaises(nativellm.InvalidArgumentError) as cm:
            nativellm.parse_type("q9_9")
        self.assertIn("Q4_K_M", cm.exception.message)
        self.assertIn("q9_9", cm.exception.message)

    def test_single_type_places_refuse_presets(self):
        with self.assertRaises(nativellm.InvalidArgumentError) as cm:
            nativellm.Model(MODEL, quantize_type="q4_k_m")
        self.assertIn("preset", cm.exception.message)
        with nativellm.Model(MODEL, quantize_type="q8_0", n_threads=1) as m:
            types = {t["type_name"] for t in m.tensors()}
            self.assertIn("Q8_0", types)


class TestConvert(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "out.gguf")

    def tearDown(self):
        self.tmp.cleanup()

    def test_quantize_with_progress_and_stats(self):
        seen = []
        stats = nativellm.quantize(MODEL, self.out, "q8_0", n_threads=1, progress=seen.append)
        self.assertEqual(seen[-1], 1.0)
        self.assertEqual(seen, sorted(seen))
        self.assertEqual(stats["bytes_out"], os.path.getsize(self.out))
        self.assertGreater(stats["bytes_in"], stats["bytes_out"])
        self.assertGreater(stats["n_tensors"], 10)
        with nativellm.Model(self.out, n_threads=1) as m:
            self.assertTrue(m.generate("Once upon a time", max_tokens=4, temperature=0))

    def test_convert_keeps_types_and_takes_ids(self):
        nativellm.convert(MODEL, self.out)
        with nativellm.Model(MODEL, vocab_only=True) as a, nativellm.Model(self.out, vocab_only=True) as b:
            self.assertEqual(a.tokenize("Once upon a time"), b.tokenize("Once upon a time"))
        nativellm.convert(MODEL, self.out, ffi.NLLM_TYPE_F16)

    def test_cancel_and_errors(self):
        with self.assertRaises(nativellm.AbortedError):
            nativellm.quantize(MODEL, self.out, "Q8_0", progress=lambda p: True)
        self.assertFalse(os.path.exists(self.out))

        def boom(_p):
            raise RuntimeError("from the callback")

        with self.assertRaises(RuntimeError):
            nativellm.quantize(MODEL, self.out, "Q8_0", progress=boom)
        with self.assertRaises(nativellm.InvalidArgumentError):
            nativellm.quantize(MODEL, self.out, "Q9")
        bad = os.path.join(self.tmp.name, "no", "such", "x.gguf")
        with self.assertRaises(nativellm.FileError) as cm:
            nativellm.quantize(MODEL, bad, "Q8_0")
        self.assertIn(bad, cm.exception.message)
        with self.assertRaises(nativellm.FileError):
            nativellm.convert("/nonexistent/model.gguf", self.out)


if __name__ == "__main__":
    unittest.main()
