"""Every failure surfaces as the nativellm.Error subclass of its status, with the message."""

from __future__ import annotations

import os
import tempfile
import unittest

from ._util import MODEL

import nativellm
from nativellm import ffi


class TestErrorClasses(unittest.TestCase):
    def test_one_class_per_status(self):
        statuses = [v for k, v in vars(ffi).items() if k.startswith("NLLM_ERR_")]
        self.assertEqual(sorted(nativellm.ERRORS), sorted(statuses))
        self.assertEqual(len(set(nativellm.ERRORS.values())), len(statuses))
        for status, cls in nativellm.ERRORS.items():
            self.assertTrue(issubclass(cls, nativellm.Error))
            e = cls("msg", status)
            self.assertEqual(e.status, status)
            self.assertEqual(e.status_name, nativellm.status_name(status))
            self.assertEqual(str(e), "msg")


class TestLoadErrors(unittest.TestCase):
    def test_missing_file_is_a_file_error_naming_the_path(self):
        path = "/nonexistent/dir/model-xyz.gguf"
        with self.assertRaises(nativellm.FileError) as cm:
            nativellm.Model(path)
        self.assertEqual(cm.exception.status, ffi.NLLM_ERR_IO)
        self.assertIn("model-xyz.gguf", str(cm.exception))

    def test_garbage_file_is_a_format_error(self):
        with tempfile.NamedTemporaryFile(suffix=".gguf", delete=False) as f:
            f.write(b"NOTAGGUF" + b"\0" * 64)
        try:
            with self.assertRaises((nativellm.FormatError, nativellm.UnsupportedError)) as cm:
                nativellm.Model(f.name)
            self.assertIn(os.path.basename(f.name), str(cm.exception))
        finally:
            os.unlink(f.name)

    def _progress_supported(self):
        calls = []
        nativellm.Model(MODEL, progress=calls.append).close()
        if not calls:
            self.skipTest("the library never calls nllm_model_params.progress")
        self.assertLessEqual(max(calls), 1.0)
        self.assertGreaterEqual(min(calls), 0.0)

    def test_progress_cancel_aborts_load(self):
        self._progress_supported()
        with self.assertRaises(nativellm.AbortedError):
            nativellm.Model(MODEL, progress=lambda p: True)

    def test_progress_exception_propagates(self):
        self._progress_supported()

        def boom(p):
            raise RuntimeError("progress failed")

        with self.assertRaisesRegex(RuntimeError, "progress failed"):
            nativellm.Model(MODEL, progress=boom)

    def test_unknown_keyword(self):
        with nativellm.Model(MODEL) as m:
            with self.assertRaises(TypeError):
                m.generate("x", temprature=0)


class TestParamErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = nativellm.Model(MODEL, n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_bad_sampler_params(self):
        with self.assertRaises(nativellm.InvalidArgumentError) as cm:
            self.model.sampler(temperature=-1.0)
        self.assertIn("temperature", cm.exception.message)
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.sampler(repeat_penalty=0.0)

    def test_bad_context_params(self):
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.context(n_threads=1, n_ctx=-4)

    def test_bad_generate_params(self):
        with self.assertRaises(nativellm.InvalidArgumentError):
            self.model.generate("Once", max_tokens=-1)

    def test_context_full(self):
        with self.model.context(n_threads=1, n_ctx=8) as ctx:
            ids = self.model.tokenize("Once upon a time there was")
            ctx.decode(ids[:6])
            with self.assertRaises(nativellm.ContextFullError) as cm:
                ctx.decode([400, 401, 402])
            self.assertTrue(cm.exception.message)
            self.assertEqual(ctx.pos, 6)  # nothing evaluated
        # generation that fills the context returns the text so far (finish "length"); a prompt
        # that cannot fit raises
        text = self.model.generate("Once upon a time", max_tokens=100, n_ctx=16,
                                   stop_at_eog=False, temperature=0)
        self.assertEqual(text.finish_reason, "length")
        with self.assertRaises(nativellm.ContextFullError):
            self.model.generate("Once upon a time", n_ctx=4, temperature=0)

    def test_bad_tokens_and_positions(self):
        with self.model.context(n_threads=1, n_ctx=16) as ctx:
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.decode([100000])
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.rewind(3)  # beyond the current position 0
            with self.assertRaises(nativellm.InvalidArgumentError):
                ctx.logits()  # nothing decoded yet

    def test_error_message_is_read_on_the_failing_thread(self):
        import threading

        msgs = {}

        def fail(name, fn):
            try:
                fn()
            except nativellm.Error as e:
                msgs[name] = e.message

        t = threading.Thread(target=fail, args=("io", lambda: nativellm.Model("/no/such/a.gguf")))
        t.start()
        fail("arg", lambda: self.model.sampler(temperature=-2.0))
        t.join()
        self.assertIn("a.gguf", msgs["io"])
        self.assertIn("temperature", msgs["arg"])


if __name__ == "__main__":
    unittest.main()
