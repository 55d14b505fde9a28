"""The package's public surface: what __init__ re-exports, and the one generate keyword set."""

from __future__ import annotations

import dataclasses
import inspect
import unittest

import nativellm
from nativellm import context, errors, generation, library, model, sampler

from ._util import MODEL


class TestExports(unittest.TestCase):
    def test_all_names_exist_and_come_from_their_modules(self):
        for name in nativellm.__all__:
            self.assertTrue(hasattr(nativellm, name), name)
        self.assertIs(nativellm.Model, model.Model)
        self.assertIs(nativellm.Context, context.Context)
        self.assertIs(nativellm.Sampler, sampler.Sampler)
        self.assertIs(nativellm.FormatError, errors.FormatError)
        self.assertIs(nativellm.version, library.version)
        for status, cls in nativellm.ERRORS.items():
            self.assertTrue(issubclass(cls, nativellm.Error))
            self.assertEqual(nativellm.status_name(status), cls("x", status).status_name)


class TestGenerateKeywords(unittest.TestCase):
    ENTRY_POINTS = (
        nativellm.Model.generate,
        nativellm.Model.stream,
        nativellm.Context.generate,
        nativellm.Context.stream,
    )

    def test_every_entry_point_shows_the_one_keyword_set(self):
        names = [f.name for f in dataclasses.fields(generation.GenerateOptions)]
        self.assertIn("max_tokens", names)
        for fn in self.ENTRY_POINTS:
            params = inspect.signature(fn).parameters
            for n in names:
                self.assertIn(n, params, f"{fn.__qualname__} lacks {n}")
                self.assertIs(params[n].kind, inspect.Parameter.KEYWORD_ONLY)

    def test_unknown_keyword_is_a_type_error_at_call_time(self):
        with nativellm.Model(MODEL, n_threads=1) as m, m.context(n_threads=1) as ctx:
            with self.assertRaises(TypeError):
                m.stream("x", bogus=1)  # not deferred to the first next()
            with self.assertRaises(TypeError):
                ctx.generate("x", temperature=0.0)  # a sampler keyword: pass a Sampler

    def test_stream_takes_on_token_like_generate(self):
        with nativellm.Model(MODEL, n_threads=1) as m:
            seen = []
            text = "".join(m.stream("Once", max_tokens=6, temperature=0.0, n_threads=1,
                                    on_token=lambda t, p: seen.append(t)))
            self.assertEqual(len(seen), 6)
            self.assertEqual(text, b"".join(m.token_to_piece(t) for t in seen).decode())
            self.assertEqual(text, m.generate("Once", max_tokens=6, temperature=0.0, n_threads=1))


if __name__ == "__main__":
    unittest.main()
