"""Many sequences per context and saved states through the Python layer: decode_batch equals
single-sequence decoding, generate_batch equals generate per prompt, save/load round trips and
refuses damaged or foreign states."""

from __future__ import annotations

import os
import tempfile
import unittest

from ._util import MODEL, TESTDATA

import nativellm

PROMPTS = ["Once upon a time", "The cat sat", "Lily had a red ball", "One day, Tom went"]
GREEDY = dict(temperature=0.0, repeat_penalty=1.0, n_threads=1)


def as_list(logits):
    return [float(x) for x in logits]


class SequencesTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(MODEL, n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def ctx(self, **kw):
        kw.setdefault("n_threads", 1)
        kw.setdefault("kv_type", "F32")
        return nativellm.Context(self.model, **kw)


class TestDecodeBatch(SequencesTestCase):
    def test_rows_match_single_sequence(self):
        ids = [self.model.tokenize(p) for p in PROMPTS[:3]]
        with self.ctx(n_seq_max=3, n_ctx=128) as ctx:
            self.assertEqual(ctx.n_seq_max, 3)
            tokens = [t for row in ids for t in row]
            seqs = [s for s, row in enumerate(ids) for _ in row]
            ctx.decode_batch(tokens, seqs)
            for s, row in enumerate(ids):
                self.assertEqual(ctx.seq_pos_max(s), len(row) - 1)
                with self.ctx(n_ctx=64) as one:
                    one.decode(row)
                    want = as_list(one.logits())
                got = as_list(ctx.logits_seq(s))
                err = max(abs(a - b) for a, b in zip(got, want))
                self.assertLess(err, 1e-4, f"sequence {s}")
            used, total = ctx.kv_cells
            self.assertEqual((used, total), (len(tokens), 128))
            ctx.seq_copy(0, 2)  # 2 now shares 0's cells
            self.assertEqual(ctx.seq_n_tokens(2), len(ids[0]))
            self.assertEqual(ctx.kv_cells[0], len(ids[0]) + len(ids[1]))
            ctx.seq_keep(1)
            self.assertEqual(ctx.seq_pos_max(0), -1)
            self.assertEqual(ctx.seq_pos_min(1), 0)
            ctx.seq_remove(1, 2)
            self.assertEqual(ctx.seq_pos_max(1), 1)
            ctx.seq_shift(1, 0, -1, 5)
            self.assertEqual(ctx.seq_pos_min(1), 5)

    def test_errors(self):
        with self.ctx(n_seq_max=2, n_ctx=8) as ctx:
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.decode_batch([1, 2], [0, 5])
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.decode_batch([1, 2], [0])
            with self.assertRaises(nativellm.ContextFullError):
                ctx.decode_batch(list(range(1, 10)), [0] * 9)
            self.assertEqual(ctx.kv_cells[0], 0)
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.logits_seq(1)
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.seq_remove(7)


class TestGenerateBatch(SequencesTestCase):
    def test_greedy_equals_generate(self):
        # n_parallel 2 < 4 prompts: the last two start as the first finish
        got = self.model.generate_batch(PROMPTS, max_tokens=24, n_parallel=2, **GREEDY)
        self.assertEqual(len(got), len(PROMPTS))
        for p, g in zip(PROMPTS, got):
            want = self.model.generate(p, max_tokens=24, **GREEDY)
            self.assertEqual(str(g), str(want), p)
            self.assertEqual(g.n_tokens, want.n_tokens)
            self.assertEqual(g.finish_reason, want.finish_reason)

    def test_stop_and_options(self):
        got = self.model.generate_batch(PROMPTS[:2], max_tokens=40, stop=["."], **GREEDY)
        for p, g in zip(PROMPTS[:2], got):
            want = self.model.generate(p, max_tokens=40, stop=["."], **GREEDY)
            self.assertEqual(str(g), str(want))
            self.assertEqual(g.finish_reason, "stop")
        self.assertEqual(self.model.generate_batch([]), [])
        with self.assertRaises(TypeError):
            self.model.generate_batch(PROMPTS, on_token=lambda t, p: None)
        with self.assertRaises(TypeError):
            self.model.generate_batch(PROMPTS, bogus=1)
        sampled = self.model.generate_batch(PROMPTS[:2], max_tokens=8, temperature=0.8, seed=3)
        again = self.model.generate_batch(PROMPTS[:2], max_tokens=8, temperature=0.8, seed=3)
        self.assertEqual([str(s) for s in sampled], [str(s) for s in again])


class TestState(SequencesTestCase):
    def test_round_trip_bytes_and_file(self):
        ids = self.model.tokenize(PROMPTS[0])
        with self.ctx(n_seq_max=2, n_ctx=64, kv_type="F16") as ctx:
            ctx.decode_batch(ids, [0] * len(ids))
            state = ctx.save_state()
            self.assertTrue(state.startswith(b"NLLMKVST"))
            ctx.decode([5])
            want = as_list(ctx.logits())
            ctx.decode([9, 10])
            ctx.load_state(state)
            self.assertEqual(ctx.pos, len(ids))
            ctx.decode([5])
            self.assertEqual(as_list(ctx.logits()), want)
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "ctx.state")
                ctx.load_state(state)
                ctx.save_state(path, seq=0)
                # a sequence's state into sequence 1 of another context
                with self.ctx(n_seq_max=2, n_ctx=32, kv_type="F16") as other:
                    other.load_state(path, seq=1)
                    self.assertEqual(other.seq_pos_max(1), len(ids) - 1)
                    other.decode_batch([5], [1])
                    self.assertEqual(as_list(other.logits_seq(1)), want)
                with self.assertRaises(nativellm.MissingFileError):
                    ctx.load_state(os.path.join(d, "missing"))

    def test_refusals_leave_context_unchanged(self):
        ids = self.model.tokenize(PROMPTS[1])
        with self.ctx(n_ctx=64) as ctx:
            ctx.decode(ids)
            state = ctx.save_state()
            ctx.decode([3, 4])
            before = (ctx.pos, ctx.kv_cells)
            for bad, err in (
                (state[:-1], nativellm.FormatError),
                (state[:40], nativellm.FormatError),
                (b"", nativellm.FormatError),
                (state[:100] + bytes([state[100] ^ 1]) + state[101:], nativellm.FormatError),
            ):
                with self.assertRaises(err):
                    ctx.load_state(bad)
                self.assertEqual((ctx.pos, ctx.kv_cells), before)
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.load_state(state, seq=0)  # a whole state into a sequence id
        with self.ctx(n_ctx=64, kv_type="F16") as f16:
            with self.assertRaises(nativellm.InvalidArgumentError):
                f16.load_state(state)  # saved with an F32 cache
        other = TESTDATA / "golden" / "models" / "tiny-a-F16.gguf"
        if other.is_file():
            with nativellm.Model(other, n_threads=1) as m2, m2.context(
                n_ctx=64, kv_type="F32", n_threads=1
            ) as c2:
                with self.assertRaises(nativellm.InvalidArgumentError):
                    c2.load_state(state)


if __name__ == "__main__":
    unittest.main()
