"""Model loading, getters, tokenizer and the low-level Context/Sampler API on the bundled model."""

from __future__ import annotations

import ctypes
import unittest

from ._util import MODEL, GOLDEN_GREEDY, TESTDATA, read_golden_ids

import nativellm
from nativellm import ffi
from nativellm._lib import lib as _C

PROMPT = "Once upon a time"
GREEDY = dict(temperature=0.0, repeat_penalty=1.0)


class ModelTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(MODEL, n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()


class TestLibrary(unittest.TestCase):
    def test_versions(self):
        self.assertEqual(nativellm.abi_version(), ffi.ABI_VERSION)
        self.assertEqual(nativellm.version(), ffi.NLLM_VERSION_STRING)
        self.assertIsInstance(nativellm.system_info(), str)
        self.assertEqual(nativellm.status_name(ffi.NLLM_ERR_IO), "NLLM_ERR_IO")
        self.assertEqual(nativellm.type_name(ffi.NLLM_TYPE_Q8_0), "Q8_0")

    def test_log_callback_roundtrip(self):
        lines = []
        nativellm.set_log_callback(lambda level, msg: lines.append((level, msg)))
        try:
            with self.assertRaises(nativellm.Error):
                nativellm.Model("/nonexistent/model.gguf")
        finally:
            nativellm.set_log_callback(None)


class TestModel(ModelTestCase):
    def test_info(self):
        info = self.model.info
        self.assertEqual(info["arch"], "llama")
        self.assertEqual(info["n_vocab"], 512)
        self.assertEqual(info["n_embd"], 64)
        self.assertEqual(info["n_layer"], 5)
        self.assertGreater(info["n_params"], 200_000)
        self.assertEqual(info["tokens"]["bos"], 1)
        self.assertEqual(info["tokens"]["eos"], 2)

    def test_metadata_and_tensors(self):
        self.assertEqual(self.model.meta_str("general.architecture"), "llama")
        self.assertEqual(self.model.meta_int("llama.embedding_length"), 64)
        self.assertGreater(self.model.meta_float("llama.attention.layer_norm_rms_epsilon"), 0)
        with self.assertRaises(nativellm.NotFoundError):
            self.model.meta_str("no.such.key")
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.meta_str("llama.embedding_length")
        meta = self.model.metadata
        self.assertIn("general.architecture", meta)
        tensors = {t["name"]: t for t in self.model.tensors()}
        self.assertEqual(tensors["token_embd.weight"]["shape"], (64, 512))
        self.assertEqual(tensors["token_embd.weight"]["type_name"], "F32")

    def test_tokenize_matches_golden_prompt(self):
        prompt_ids, _ = read_golden_ids(GOLDEN_GREEDY) if GOLDEN_GREEDY.is_file() else (
            [1, 403, 407, 261, 378], None)
        self.assertEqual(self.model.tokenize(PROMPT), prompt_ids)
        self.assertEqual(self.model.tokenize(PROMPT, add_bos=False), prompt_ids[1:])
        self.assertEqual(self.model.tokenize(PROMPT.encode()), prompt_ids)
        self.assertEqual(self.model.tokenize(""), [1])

    def test_detokenize_and_pieces(self):
        ids = self.model.tokenize(PROMPT, add_bos=False)
        self.assertEqual(self.model.detokenize(ids), PROMPT)
        joined = b"".join(self.model.token_to_piece(t) for t in ids).decode()
        self.assertEqual(joined.strip(), PROMPT)
        long_text = "Once upon a time " * 200
        self.assertEqual(self.model.detokenize(self.model.tokenize(long_text, add_bos=False)),
                         long_text.strip() if long_text.startswith(" ") else long_text)

    def test_is_eog(self):
        self.assertTrue(self.model.is_eog(2))
        self.assertFalse(self.model.is_eog(403))


class TestContext(ModelTestCase):
    def test_decode_logits_sample_matches_generate(self):
        # A Python loop over decode/sample/accept gives the same greedy tokens as nllm_generate.
        ids = self.model.tokenize(PROMPT)
        want = []
        self.model.generate(PROMPT, max_tokens=20, on_token=lambda t, p: want.append(t),
                            n_threads=1, **GREEDY)
        with self.model.context(n_threads=1, n_ctx=64) as ctx, self.model.sampler(**GREEDY) as smp:
            ctx.decode(ids)
            self.assertEqual(ctx.pos, len(ids))
            got = []
            for _ in range(20):
                logits = ctx.logits()
                self.assertEqual(len(logits), 512)
                tok = smp.sample(ctx)
                best = max(range(len(logits)), key=lambda i: (logits[i], -i))
                self.assertEqual(tok, best)
                self.assertEqual(smp.sample_logits(logits), tok)
                smp.accept(tok)
                got.append(tok)
                ctx.decode([tok])
        self.assertEqual(got, want)

    def test_rewind_and_continue_equals_fresh(self):
        ids = self.model.tokenize(PROMPT)
        with self.model.context(n_threads=1, n_ctx=64) as ctx:
            ctx.decode(ids)
            fresh = list(ctx.logits())
            ctx.decode([400, 401, 402])
            ctx.rewind(len(ids) - 1)
            self.assertEqual(ctx.pos, len(ids) - 1)
            ctx.decode(ids[-1:])
            again = list(ctx.logits())
            for a, b in zip(fresh, again):
                self.assertAlmostEqual(a, b, delta=1e-4 * max(1.0, abs(a)))
            ctx.reset()
            self.assertEqual(ctx.pos, 0)

    def test_all_logits(self):
        ids = self.model.tokenize(PROMPT)
        with self.model.context(n_threads=1, n_ctx=32, all_logits=True) as ctx:
            ctx.decode(ids)
            rows = [list(ctx.logits(i)) for i in range(len(ids))]
            self.assertEqual(rows[-1], list(ctx.logits()))
        with self.model.context(n_threads=1, n_ctx=32) as ctx:
            ctx.decode(ids[:2])
            first2 = list(ctx.logits())
        for a, b in zip(rows[1], first2):
            self.assertAlmostEqual(a, b, delta=1e-4 * max(1.0, abs(a)))

    def test_no_repack_same_logits(self):
        # Q4_0 weights are kept packed by default; no_repack keeps the file's layout: same logits
        path = TESTDATA / "golden" / "models" / "tiny-a-Q4_0.gguf"
        if not path.exists():
            self.skipTest(f"{path} not found")
        rows = []
        for no_repack in (False, True):
            with nativellm.Model(path, n_threads=1, no_repack=no_repack) as m:
                with m.context(n_threads=1, n_ctx=32, all_logits=True) as ctx:
                    ctx.decode([1, 40, 41, 42, 43])
                    rows.append([list(ctx.logits(i)) for i in range(5)])
        self.assertEqual(rows[0], rows[1])

    def test_bf16_activations_reaches_the_context(self):
        # The field is passed (a bad value comes back as the library's error) and it leaves a
        # model without BF16 weights (this F32 one) exactly as it was.
        ids = self.model.tokenize(PROMPT)
        with self.model.context(n_threads=1, n_ctx=32) as ctx:
            ctx.decode(ids)
            exact = list(ctx.logits())
        with self.model.context(n_threads=1, n_ctx=32, bf16_activations=True) as ctx:
            ctx.decode(ids)
            self.assertEqual(list(ctx.logits()), exact)
        p = ffi.nllm_context_params()
        _C.nllm_context_params_init_sized(ctypes.byref(p), ctypes.sizeof(p))
        self.assertEqual(p.bf16_activations, ffi.NLLM_BF16_ACT_AUTO)
        p.bf16_activations = 2
        h = ffi.context_p()
        st = _C.nllm_context_create(self.model.handle, ctypes.byref(p), ctypes.byref(h))
        self.assertEqual(st, ffi.NLLM_ERR_INVALID_ARG)
        self.assertIn(b"bf16_activations", _C.nllm_last_error())

    def test_timings(self):
        with self.model.context(n_threads=1, n_ctx=64) as ctx:
            ctx.generate(PROMPT, self.model.sampler(**GREEDY), max_tokens=8)
            t = ctx.timings
            self.assertEqual(t["n_prompt_tokens"], 5)
            self.assertGreaterEqual(t["n_gen_tokens"], 7)
            self.assertEqual(ctx.pos, 5 + 8)

    def test_close_is_idempotent_and_closes_children(self):
        m = nativellm.Model(MODEL)
        ctx = m.context(n_ctx=16)
        smp = m.sampler()
        m.close()
        m.close()
        with self.assertRaises(nativellm.InvalidArgumentError):
            ctx.decode([1])
        with self.assertRaises(nativellm.InvalidArgumentError):
            smp.accept(1)
        with self.assertRaises(nativellm.InvalidArgumentError):
            m.tokenize("x")


if __name__ == "__main__":
    unittest.main()
