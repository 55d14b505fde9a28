"""Closing handles while calls run (from another thread, or from inside a callback of the call)
and integers that do not fit the C types: issue 24's findings in the binding."""

from __future__ import annotations

import ctypes
import threading
import unittest

from ._util import MODEL

import nativellm


def run_in_thread(fn, timeout=60.0):
    """fn() on a helper thread; fails the test (instead of hanging the suite) on a deadlock."""
    out = {}

    def work():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed back to the test
            out["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"deadlock: the call did not return within {timeout} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


class TestCloseDuringACall(unittest.TestCase):
    def _generate_paused(self, model, ctx, sampler, close):
        """ctx.generate with on_token pausing at the first token until close() (run on another
        thread) has had time to act; returns (closer thread, whether close() returned while the
        call was still paused)."""
        started, proceed = threading.Event(), threading.Event()

        def on_token(tok, piece):
            if not started.is_set():
                started.set()
                proceed.wait(10)

        result = {}

        def gen():
            result["text"] = ctx.generate(
                "Once upon a time", sampler, max_tokens=8, stop_at_eog=False, on_token=on_token
            )

        g = threading.Thread(target=gen, daemon=True)
        g.start()
        self.assertTrue(started.wait(30))
        closer = threading.Thread(target=close, daemon=True)
        closer.start()
        closer.join(0.5)
        returned_early = not closer.is_alive()
        proceed.set()
        g.join(60)
        closer.join(60)
        self.assertFalse(g.is_alive())
        self.assertFalse(closer.is_alive())
        return result, returned_early

    def test_sampler_close_waits_for_the_generate_using_it(self):
        # It used to free the sampler under the running nllm_sampler_pick (use after free).
        with nativellm.Model(MODEL) as model:
            ctx = model.context(n_ctx=64)
            sampler = nativellm.Sampler(model, temperature=0.0)
            result, early = self._generate_paused(model, ctx, sampler, sampler.close)
            self.assertFalse(early, "Sampler.close() returned while a generate was using it")
            self.assertIn("text", result)  # the generate finished normally
            self.assertIsNone(sampler._h)
            with self.assertRaises(nativellm.InvalidArgumentError):
                sampler.sample(ctx)

    def test_model_close_waits_and_closes_children_in_order(self):
        model = nativellm.Model(MODEL)
        ctx = model.context(n_ctx=64)
        sampler = nativellm.Sampler(model, temperature=0.0)
        result, early = self._generate_paused(model, ctx, sampler, model.close)
        self.assertFalse(early, "Model.close() returned while a generate was running")
        self.assertIsNone(ctx._h)
        self.assertIsNone(sampler._h)
        self.assertIsNone(model._h)

    def test_context_close_inside_on_token_is_deferred(self):
        # It deadlocked on the binding's non-reentrant lock.
        with nativellm.Model(MODEL) as model:
            ctx = model.context(n_ctx=64)
            seen = []

            def on_token(tok, piece):
                seen.append(tok)
                if len(seen) == 2:
                    ctx.close()

            text = run_in_thread(
                lambda: ctx.generate(
                    "Once upon a time", max_tokens=20, stop_at_eog=False, on_token=on_token
                )
            )
            self.assertIsInstance(text, str)
            self.assertLessEqual(len(seen), 3)  # the close also stops the generation
            self.assertIsNone(ctx._h)
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.decode([1])

    def test_model_close_inside_on_token_is_deferred(self):
        model = nativellm.Model(MODEL)
        ctx = model.context(n_ctx=64)
        sampler = nativellm.Sampler(model, temperature=0.0)

        def on_token(tok, piece):
            model.close()

        run_in_thread(
            lambda: ctx.generate("Once", sampler, max_tokens=5, stop_at_eog=False,
                                 on_token=on_token)
        )
        self.assertIsNone(ctx._h)
        self.assertIsNone(sampler._h)
        self.assertIsNone(model._h)


class TestIntegerRanges(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(MODEL)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_token_ids_that_do_not_fit_int32(self):
        # decode([2**40]) used to decode token 0: ctypes wraps silently.
        with self.model.context(n_ctx=32) as ctx:
            for bad in (2**40, 2**31, -(2**31) - 1):
                with self.assertRaises(OverflowError):
                    ctx.decode([1, bad])
            self.assertEqual(ctx.pos, 0)  # nothing was decoded
            with self.assertRaises(TypeError):
                ctx.decode([1.0])
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.decode([2**31 - 1])  # fits, but outside the vocabulary: the library says so
            ctx.decode([1, 2])
            with self.assertRaises(OverflowError):
                ctx.rewind(2**32 + 1)
            self.assertEqual(ctx.pos, 2)
            with self.assertRaises(OverflowError):
                ctx.logits(2**32)
        for call in (
            lambda: self.model.detokenize([2**40]),
            lambda: self.model.token_to_piece(2**32 + 5),
            lambda: self.model.is_eog(2**40),
            lambda: self.model.token(2**40),
        ):
            with self.assertRaises(OverflowError):
                call()

    def test_params_that_do_not_fit(self):
        with self.assertRaises(OverflowError):
            self.model.context(n_ctx=2**32 + 64)
        with self.assertRaises(OverflowError):
            self.model.context(n_threads=-(2**40))
        with self.assertRaises(OverflowError):
            nativellm.Sampler(self.model, top_k=2**40)
        with self.assertRaises(OverflowError):
            nativellm.Sampler(self.model, seed=-1)
        with self.assertRaises(OverflowError):
            nativellm.Sampler(self.model, seed=2**64)
        with self.assertRaises(OverflowError):
            nativellm.Model(MODEL, n_ctx_default=2**32)
        with nativellm.Sampler(self.model) as s:
            with self.assertRaises(OverflowError):
                s.accept(2**40)
            with self.assertRaises(OverflowError):
                s.reset(seed=2**70)
        with self.model.context(n_ctx=32) as ctx:
            with self.assertRaises(OverflowError):
                ctx.generate("Once", max_tokens=2**40)
        # the largest values that fit still reach the library, which range-checks them
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.context(n_ctx=2**31 - 1)
        self.assertEqual(ctypes.sizeof(nativellm._ffi.nllm_token), 4)


if __name__ == "__main__":
    unittest.main()
