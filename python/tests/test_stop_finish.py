"""Stop strings, finish reasons, a context that fills, chat_template=, and error classes that
are also the matching built-in exceptions."""

from __future__ import annotations

import unittest

from ._util import MODEL

import nativellm

PROMPT = "Once upon a time"
GREEDY = dict(temperature=0.0, repeat_penalty=1.0, n_threads=1)


class TestStopAndFinish(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(MODEL, n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_stop_string_ends_the_text_before_it(self):
        full = self.model.generate(PROMPT, max_tokens=40, **GREEDY)
        self.assertEqual(full.finish_reason, "length")
        self.assertEqual(full.n_tokens, 40)
        # a stop string spanning pieces: the end of one word, a space, the start of the next
        at = full.index("girl")
        stop = full[at + 2 : at + 7]
        cut = self.model.generate(PROMPT, max_tokens=40, stop=[stop, "no such text"], **GREEDY)
        self.assertEqual(cut.finish_reason, "stop")
        self.assertEqual(cut, full[: full.index(stop)])
        self.assertNotIn(stop, cut)
        streamed = "".join(self.model.stream(PROMPT, max_tokens=40, stop=[stop], **GREEDY))
        self.assertEqual(streamed, cut)

    def test_full_context_returns_the_text_with_length(self):
        # llama-cpp-python's behaviour: the text so far, finish reason "length"
        text = self.model.generate(PROMPT, max_tokens=100, n_ctx=20, **GREEDY)
        self.assertEqual(text.finish_reason, "length")
        self.assertEqual(text.n_tokens, 20 - 5 + 1)
        self.assertTrue(text.startswith(", there was a little girl"), text)
        with self.assertRaises(nativellm.ContextFullError):
            self.model.generate(PROMPT + ", there was a little girl", n_ctx=4, **GREEDY)

    def test_aborted(self):
        text = self.model.generate(PROMPT, max_tokens=40, on_token=lambda t, p: True, **GREEDY)
        self.assertEqual(text.finish_reason, "aborted")
        self.assertEqual(text.n_tokens, 1)
        self.assertIsInstance(text, str)

    def test_chat_template_keyword(self):
        msgs = [{"role": "user", "content": "hi"}]
        text = self.model.chat_format(msgs, chat_template="chatml")
        self.assertEqual(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        reply = self.model.chat(msgs, chat_template="chatml", max_tokens=4, **GREEDY)
        self.assertIn(reply.finish_reason, ("length", "eog"))
        with self.assertRaises(nativellm.Error):
            self.model.chat_format(msgs, chat_template="zephyr")


class TestBuiltinErrors(unittest.TestCase):
    def test_error_classes_are_builtin_exceptions_too(self):
        with self.assertRaises(FileNotFoundError) as cm:
            nativellm.Model("/nonexistent/nativellm-test.gguf")
        self.assertIsInstance(cm.exception, nativellm.FileError)
        self.assertIsInstance(cm.exception, OSError)
        self.assertTrue(issubclass(nativellm.InvalidArgumentError, ValueError))
        self.assertTrue(issubclass(nativellm.NoMemoryError, MemoryError))
        self.assertIn("MissingFileError", nativellm.__all__)
        self.assertIn("Completion", nativellm.__all__)


if __name__ == "__main__":
    unittest.main()
