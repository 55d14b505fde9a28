"""Generation through the Python layer: golden greedy output, streaming, sampling, stopping."""

from __future__ import annotations

import threading
import unittest

from ._util import GOLDEN_GREEDY, MODEL, TESTDATA, read_golden_ids

import nativellm

PROMPT = "Once upon a time"
SAMPLE_GREEDY = dict(temperature=0.0, repeat_penalty=1.0)
GREEDY = dict(SAMPLE_GREEDY, n_threads=1)  # single-threaded: the test machine is shared


class GenerateTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(MODEL, n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()


class TestGolden(GenerateTestCase):
    def test_greedy_250_equals_golden(self):
        if not GOLDEN_GREEDY.is_file():
            self.skipTest(f"SKIP: {GOLDEN_GREEDY} absent")
        prompt_ids, gen_ids = read_golden_ids(GOLDEN_GREEDY)
        self.assertEqual(self.model.tokenize(PROMPT), prompt_ids)
        got = []
        text = self.model.generate(PROMPT, max_tokens=len(gen_ids),
                                   on_token=lambda t, p: got.append(t), **GREEDY)
        self.assertEqual(got, gen_ids)
        want = b"".join(self.model.token_to_piece(t) for t in gen_ids).decode()
        self.assertEqual(text, want)
        self.assertTrue(text.startswith(", there was a little girl named Lily"), text[:60])


class TestStreaming(GenerateTestCase):
    def test_stream_equals_generate_greedy(self):
        text = self.model.generate(PROMPT, max_tokens=120, **GREEDY)
        pieces = list(self.model.stream(PROMPT, max_tokens=120, **GREEDY))
        self.assertGreater(len(pieces), 50)
        self.assertTrue(all(pieces))
        self.assertEqual("".join(pieces), text)

    def test_stream_equals_generate_sampled(self):
        kw = dict(temperature=0.9, top_k=40, top_p=0.9, min_p=0.02, repeat_penalty=1.1, seed=1234,
                  n_threads=1)
        text = self.model.generate(PROMPT, max_tokens=100, **kw)
        self.assertEqual("".join(self.model.stream(PROMPT, max_tokens=100, **kw)), text)
        self.assertEqual(self.model.generate(PROMPT, max_tokens=100, **kw), text)
        other = self.model.generate(PROMPT, max_tokens=100, **dict(kw, seed=99))
        self.assertNotEqual(other, text)

    def test_breaking_out_of_a_stream_stops_it(self):
        stream = self.model.stream(PROMPT, max_tokens=200, **GREEDY)
        first = [next(stream) for _ in range(3)]
        stream.close()
        self.assertEqual(len(first), 3)
        self.assertTrue(self.model.generate(PROMPT, max_tokens=20, **GREEDY).startswith(
            "".join(first)))

    def test_exception_in_consumer_frees_the_context(self):
        with self.assertRaises(RuntimeError):
            for i, _ in enumerate(self.model.stream(PROMPT, max_tokens=200, **GREEDY)):
                if i == 2:
                    raise RuntimeError("consumer gave up")


class TestStopping(GenerateTestCase):
    def test_on_token_true_stops(self):
        seen = []

        def on_token(tok, piece):
            seen.append(tok)
            return len(seen) == 5

        self.model.generate(PROMPT, max_tokens=100, on_token=on_token, **GREEDY)
        self.assertEqual(len(seen), 5)

    def test_exception_in_on_token_propagates(self):
        def on_token(tok, piece):
            raise ValueError("from callback")

        with self.assertRaisesRegex(ValueError, "from callback"):
            self.model.generate(PROMPT, max_tokens=10, on_token=on_token, **GREEDY)

    def test_cancel_event_stops_and_returns_text_so_far(self):
        cancel = threading.Event()
        seen = []

        def on_token(tok, piece):
            seen.append(tok)
            if len(seen) == 7:
                cancel.set()

        text = self.model.generate(PROMPT, max_tokens=200, cancel=cancel, on_token=on_token,
                                   **GREEDY)
        self.assertEqual(len(seen), 7)
        full = self.model.generate(PROMPT, max_tokens=7, **GREEDY)
        self.assertEqual(text, full)

    def test_cancel_from_another_thread_stops_a_stream(self):
        cancel = threading.Event()
        pieces = []
        for piece in self.model.stream(PROMPT, max_tokens=100000, n_ctx=4096, cancel=cancel,
                                       stop_at_eog=False, **GREEDY):
            pieces.append(piece)
            if len(pieces) == 10:
                threading.Timer(0.01, cancel.set).start()
        self.assertGreaterEqual(len(pieces), 10)
        self.assertLess(len(pieces), 4000)

    def test_keyboard_interrupt_stops_cleanly(self):
        # A SIGINT arriving while the library generates: the generation stops, the context is
        # left consistent, and KeyboardInterrupt reaches the caller.
        import os
        import signal

        if threading.current_thread() is not threading.main_thread():
            self.skipTest("signals are delivered to the main thread only")
        # A shell starts background jobs with SIGINT ignored, and Python then keeps SIG_IGN:
        # give this test Python's usual handler whatever the parent did, and put it back after.
        inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.addCleanup(signal.signal, signal.SIGINT, inherited)
        seen = []

        def on_token(tok, piece):
            seen.append(tok)
            if len(seen) == 3:
                os.kill(os.getpid(), signal.SIGINT)

        with self.model.context(n_threads=1, n_ctx=512) as ctx:
            with self.assertRaises(KeyboardInterrupt):
                ctx.generate(PROMPT, self.model.sampler(**SAMPLE_GREEDY), max_tokens=200,
                             on_token=on_token)
            self.assertLess(len(seen), 10)
            pos = ctx.pos
            self.assertGreater(pos, 5)
            ctx.decode([400])  # still usable
            self.assertEqual(ctx.pos, pos + 1)
        self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)

    def test_context_continues_across_calls(self):
        # Two generate calls on one context equal one longer call (the cache is reused).
        with self.model.context(n_threads=1, n_ctx=256) as ctx:
            smp = self.model.sampler(**SAMPLE_GREEDY)
            a = ctx.generate(PROMPT, smp, max_tokens=10)
            pos = ctx.pos
            b = ctx.generate(" and", smp, max_tokens=10)
            self.assertGreater(ctx.pos, pos)
        with self.model.context(n_threads=1, n_ctx=256) as ctx:
            ids = []
            ctx.generate(PROMPT, self.model.sampler(**SAMPLE_GREEDY), max_tokens=10,
                         on_token=lambda t, p: ids.append(t))
        self.assertEqual(a, "".join(self.model.token_to_piece(t).decode() for t in ids))
        self.assertIsInstance(b, str)

    def test_stop_at_eog(self):
        text = self.model.generate(PROMPT, max_tokens=300, n_ctx=512, **GREEDY)
        longer = self.model.generate(PROMPT, max_tokens=300, n_ctx=512, stop_at_eog=False,
                                     **GREEDY)
        self.assertTrue(longer.startswith(text))


class TestChat(unittest.TestCase):
    def setUp(self):
        if "nllm_chat_format" in nativellm._loader.missing:
            self.skipTest("the loaded library does not export nllm_chat_format")

    def test_chat_without_template(self):
        with nativellm.Model(MODEL) as model:
            try:
                out = model.chat([{"role": "user", "content": "Hi"}], max_tokens=8, **GREEDY)
            except nativellm.UnsupportedError as e:
                self.assertTrue(e.message)
            else:
                self.assertIsInstance(out, str)

    def test_chat_format_phi3(self):
        path = TESTDATA / "vocab" / "ggml-vocab-phi-3.gguf"
        if not path.is_file():
            self.skipTest(f"SKIP: {path} absent")
        with nativellm.Model(path, vocab_only=True) as model:
            text = model.chat_format([("system", "Be brief."), {"role": "user", "content": "Hi"}])
            self.assertIn("<|user|>", text)
            self.assertIn("Hi", text)
            self.assertTrue(text.rstrip().endswith("<|assistant|>"), text)
            # this template writes the assistant header after every user turn, whatever
            # add_generation_prompt says (as transformers renders it)
            plain = model.chat_format([("user", "Hi")], add_assistant=False)
            self.assertEqual(plain, "<|user|>\nHi<|end|>\n<|assistant|>\n")
            ids = model.tokenize(text, add_bos=False, special=True)
            self.assertLess(len(ids), len(model.tokenize(text, add_bos=False, special=False)))

    def test_chat_generates_on_an_hf_model(self):
        path = TESTDATA / "hf" / "tiny-qwen2"
        if not path.is_dir():
            self.skipTest(f"SKIP: {path} absent")
        with nativellm.Model(path) as model:
            messages = [{"role": "user", "content": "Hello"}]
            out = model.chat(messages, max_tokens=6, **GREEDY)
            self.assertIsInstance(out, str)
            self.assertEqual("".join(model.chat_stream(messages, max_tokens=6, **GREEDY)), out)


if __name__ == "__main__":
    unittest.main()
