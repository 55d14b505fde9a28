"""Model.embed against the float64 references of ../shared/testdata/embed (tiny-qwen3 and the
tiny-bert encoder), batches against texts one by one, and its argument errors."""

from __future__ import annotations

import json
import math
import unittest
from pathlib import Path

from ._util import TESTDATA

import nativellm

QWEN = TESTDATA / "hf" / "tiny-qwen3"
QWEN_REF = TESTDATA / "embed" / "tiny-qwen3.embeddings.txt"
BERT = TESTDATA / "embed" / "tiny-bert"
BERT_REF = TESTDATA / "embed" / "tiny-bert.embeddings.txt"


def load_ref(path: Path):
    lines = path.read_text().splitlines()
    ids, vec = {}, {}
    for i, line in enumerate(lines):
        if line.startswith("ids "):
            k, rest = line[4:].split(":", 1)
            ids[int(k)] = [int(t) for t in rest.split()]
        elif line.startswith("seq "):
            vec[line] = [float(x) for x in lines[i + 1].split()]
    return ids, vec


def rel_err(a, b):
    num = sum((float(x) - y) ** 2 for x, y in zip(a, b))
    return math.sqrt(num / sum(y * y for y in b))


@unittest.skipUnless(QWEN.exists() and QWEN_REF.exists(), f"{QWEN} not found (NLLM_TESTDATA)")
class TestDecoderEmbed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(str(QWEN), n_threads=1)
        cls.ids, cls.vec = load_ref(QWEN_REF)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_text_and_ids_match_reference(self):
        self.assertEqual(self.model.pooling, "last")
        self.assertFalse(self.model.is_encoder)
        v = self.model.embed("Paris", bf16_activations=False)
        self.assertEqual(len(v), 32)
        self.assertLess(rel_err(v, self.vec["seq 0 pooling last normalize 1"]), 1e-5)
        out = self.model.embed([self.ids[s] for s in range(5)], pooling="mean", normalize=False,
                               batch_size=2, bf16_activations=False)
        self.assertEqual(len(out), 5)
        for s in range(5):
            self.assertLess(rel_err(out[s], self.vec[f"seq {s} pooling mean normalize 0"]), 1e-5)

    def test_batch_equals_one_by_one(self):
        texts = ["Paris", "The capital of China is Beijing.", "What is the capital of China?"]
        together = self.model.embed(texts, batch_size=8, bf16_activations=False)
        for t, v in zip(texts, together):
            self.assertLess(rel_err(self.model.embed(t, bf16_activations=False), v), 1e-5)

    def test_per_token(self):
        m = self.model.embed(self.ids[4], pooling="none", normalize=True, bf16_activations=False)
        self.assertEqual(len(m), len(self.ids[4]))
        for t in range(3):
            self.assertLess(rel_err(m[t], self.vec[f"seq 4 pooling none normalize 1 token {t}"]),
                            1e-5)

    def test_bad_arguments(self):
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.embed("x", pooling="max")
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.embed("x", batch_size=0)
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.embed([[1, 2], [10**9]])
        self.assertEqual(self.model.embed([]), [])


@unittest.skipUnless(BERT.exists() and BERT_REF.exists(), f"{BERT} not found (NLLM_TESTDATA)")
class TestEncoderEmbed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(str(BERT), n_threads=1)
        cls.ids, cls.vec = load_ref(BERT_REF)
        cls.texts = {}
        for line in BERT_REF.read_text().splitlines():
            if line.startswith("text "):
                k, rest = line[5:].split(":", 1)
                cls.texts[int(k)] = json.loads(rest)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_texts_through_wordpiece(self):
        # exact activations (the references are float64 on the stored BF16 weights), then rounded
        # to BF16 (the default on CPUs with AVX512_BF16)
        texts = [self.texts[s] for s in range(8)]
        out = self.model.embed(texts, bf16_activations=False)
        rounded = self.model.embed(texts, bf16_activations=True)
        for s in range(8):
            self.assertEqual(self.model.tokenize(self.texts[s]), self.ids[s])
            want = self.vec[f"seq {s} pooling cls normalize 1"]
            self.assertLess(rel_err(out[s], want), 1e-5)
            self.assertLess(rel_err(rounded[s], want), 1e-2)

    def test_cls_default_and_mean(self):
        self.assertTrue(self.model.is_encoder)
        self.assertEqual(self.model.pooling, "cls")
        seqs = [self.ids[s] for s in range(8)]
        for pooling in ("cls", "mean"):
            out = self.model.embed(seqs, pooling=pooling, batch_size=3, bf16_activations=False)
            for s in range(8):
                e = rel_err(out[s], self.vec[f"seq {s} pooling {pooling} normalize 1"])
                self.assertLess(e, 1e-5, f"{pooling} seq {s}")

    def test_generation_refused(self):
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.context()


if __name__ == "__main__":
    unittest.main()
