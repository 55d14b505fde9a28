"""LoRA adapters from Python: Model.load_adapter, Context.set_adapters, generate(adapters=...),
convert(lora=...), against the shared tiny-llama goldens (../shared/testdata/lora)."""

from __future__ import annotations

import os
import tempfile
import unittest

from ._util import MODEL, TESTDATA, read_golden_ids

import nativellm

BASE = TESTDATA / "hf" / "tiny-llama"
LORA = TESTDATA / "lora"


def argmax(row) -> int:
    best = 0
    for i in range(1, len(row)):
        if row[i] > row[best]:
            best = i
    return best


class LoraTest(unittest.TestCase):
    def setUp(self) -> None:
        if not (BASE / "config.json").exists() or not (LORA / "tiny-llama-lora-a").exists():
            self.skipTest(f"SKIP: {BASE} or {LORA} absent")
        self.model = nativellm.Model(BASE)
        self.addCleanup(self.model.close)

    def greedy(self, ctx: nativellm.Context, prompt, n: int):
        """n greedy ids after prompt, every one fed back."""
        ctx.reset()
        ctx.decode(prompt)
        out = []
        for _ in range(n):
            out.append(argmax(ctx.logits()))
            ctx.decode([out[-1]])
        return out

    def test_goldens_greedy(self) -> None:
        a = self.model.load_adapter(LORA / "tiny-llama-lora-a")
        b = self.model.load_adapter(LORA / "tiny-llama-lora-b.gguf")
        self.assertEqual((a.rank, a.alpha, a.n_matrices), (8, 16.0, 14))
        self.assertEqual((b.rank, b.alpha, b.n_matrices), (4, 4.0, 4))
        ctx = self.model.context(n_ctx=64, kv_type="F32")
        for golden, spec in (
            ("golden.lora-a.s1.0.logits.txt", [a]),
            ("golden.lora-a.s0.5.logits.txt", [(a, 0.5)]),
            ("golden.lora-a+b.s1.0.logits.txt", [(a, 1.0), (b, 1.0)]),
            ("golden.lora-b.s1.0.logits.txt", [(b, 1)]),
        ):
            prompt, gen = read_golden_ids(LORA / golden)
            ctx.set_adapters(spec)
            self.assertEqual(ctx.n_adapters, len(spec))
            self.assertEqual(self.greedy(ctx, prompt, len(gen)), gen, golden)
        ctx.set_adapters([])
        self.assertEqual(ctx.n_adapters, 0)
        prompt, gen = read_golden_ids(BASE / "golden.logits.txt")
        self.assertEqual(self.greedy(ctx, prompt, len(gen)), gen)
        # the context keeps what it applies: closing the handle does not break it
        ctx.set_adapters([a])
        a.close()
        prompt, gen = read_golden_ids(LORA / "golden.lora-a.s1.0.logits.txt")
        self.assertEqual(self.greedy(ctx, prompt, len(gen)), gen)
        ctx.close()

    def test_sequence_sets(self) -> None:
        a = self.model.load_adapter(LORA / "tiny-llama-lora-a")
        b = self.model.load_adapter(LORA / "tiny-llama-lora-b")
        with self.model.context(n_ctx=64, kv_type="F32", adapters=[b]) as ctx:
            for golden, seq_set in (
                (LORA / "golden.lora-a.s1.0.logits.txt", [a]),  # the sequence's own set wins
                (BASE / "golden.logits.txt", []),  # an empty own set: the base
                (LORA / "golden.lora-b.s1.0.logits.txt", None),  # back to the context's
            ):
                ctx.set_seq_adapters(0, seq_set)
                prompt, gen = read_golden_ids(golden)
                self.assertEqual(self.greedy(ctx, prompt, len(gen)), gen, golden)
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.set_seq_adapters(1, [a])  # a one-sequence context

    def test_generate_with_adapters(self) -> None:
        a = self.model.load_adapter(LORA / "tiny-llama-lora-a")
        kw = dict(max_tokens=8, temperature=0)
        with_a = self.model.generate("Once upon a time", adapters=[(a, 1.0)], **kw)
        plain = self.model.generate("Once upon a time", **kw)
        self.assertNotEqual(str(with_a), str(plain))
        with self.model.context(adapters=[a]) as ctx:
            self.assertEqual(str(ctx.generate("Once upon a time", max_tokens=8)), str(with_a))
        off = self.model.generate("Once upon a time", adapters=[(a, 0.0)], **kw)
        self.assertEqual(str(off), str(plain))

    def test_weight_type(self) -> None:
        """An F32 adapter kept as F16 or BF16 keeps the golden's greedy ids; the default next to
        this float base keeps F32; a non-float type is refused."""
        prompt, gen = read_golden_ids(LORA / "golden.lora-a.s1.0.logits.txt")
        self.assertEqual(self.model.load_adapter(LORA / "tiny-llama-lora-a").weight_type, "F32")
        with self.model.context(n_ctx=64, kv_type="F32") as ctx:
            for wt in ("F16", "bf16", nativellm.library.parse_type("F32")[0]):
                a = self.model.load_adapter(LORA / "tiny-llama-lora-a", weight_type=wt)
                self.assertEqual(a.weight_type, wt.upper() if isinstance(wt, str) else "F32")
                ctx.set_adapters([a])
                self.assertEqual(self.greedy(ctx, prompt, len(gen)), gen, wt)
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.load_adapter(LORA / "tiny-llama-lora-a", weight_type="Q8_0")

    def test_bad_adapters(self) -> None:
        with self.assertRaises(nativellm.FileError):
            self.model.load_adapter("/nonexistent/adapter")
        with self.assertRaises(nativellm.FileError):
            self.model.load_adapter(BASE)  # a model folder: no adapter files
        with self.assertRaises(nativellm.FormatError):
            self.model.load_adapter(MODEL)  # a GGUF model, not an adapter
        ctx = self.model.context()
        with self.assertRaises(nativellm.InvalidArgumentError):
            ctx.set_adapters(["not an adapter"])  # type: ignore[list-item]
        other = nativellm.Model(BASE)
        self.addCleanup(other.close)
        foreign = other.load_adapter(LORA / "tiny-llama-lora-b")
        with self.assertRaises(nativellm.InvalidArgumentError):
            ctx.set_adapters([foreign])

    def test_convert_merged(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "merged.gguf")
            nativellm.convert(
                BASE, out, "F32", lora=[LORA / "tiny-llama-lora-a", (LORA / "tiny-llama-lora-b.gguf", 1.0)]
            )
            with nativellm.Model(out) as m, m.context(n_ctx=64, kv_type="F32") as ctx:
                prompt, gen = read_golden_ids(LORA / "golden.lora-a+b.s1.0.logits.txt")
                self.assertEqual(self.greedy(ctx, prompt, len(gen)), gen)


if __name__ == "__main__":
    unittest.main()
