"""One shared Model, one Context per thread: results equal the serial run."""

from __future__ import annotations

import threading
import unittest

from ._util import MODEL

import nativellm

PROMPTS = ["Once upon a time", "Lily and Ben", "The little dog", "One day, a bird"]


class TestThreadPerContext(unittest.TestCase):
    def test_threads_equal_serial(self):
        with nativellm.Model(MODEL) as model:
            jobs = [
                (p, dict(temperature=0.0, repeat_penalty=1.0)) if i % 2 == 0
                else (p, dict(temperature=0.8, seed=7 + i))
                for i, p in enumerate(PROMPTS)
            ]

            def run(prompt, kw):
                return model.generate(prompt, max_tokens=60, n_threads=1, n_ctx=128, **kw)

            serial = [run(p, kw) for p, kw in jobs]
            results = [None] * len(jobs)
            errors = []
            barrier = threading.Barrier(len(jobs))

            def worker(i):
                try:
                    barrier.wait()
                    for _ in range(2):
                        out = run(*jobs[i])
                        if results[i] is not None and results[i] != out:
                            raise AssertionError("a thread's two runs differ")
                        results[i] = out
                except BaseException as e:  # reported by the main thread
                    errors.append(e)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(results, serial)
            self.assertEqual(len(set(serial)), len(serial))

    def test_a_busy_context_refuses_a_second_thread(self):
        with nativellm.Model(MODEL) as model, model.context(n_ctx=512) as ctx:
            started = threading.Event()
            release = threading.Event()
            seen = []

            def on_token(tok, piece):
                started.set()
                release.wait(5)
                return True

            t = threading.Thread(target=lambda: ctx.generate(
                "Once", model.sampler(temperature=0), max_tokens=5, on_token=on_token))
            t.start()
            self.assertTrue(started.wait(5))
            try:
                ctx.decode([400])
            except nativellm.InvalidArgumentError as e:
                seen.append(e)
            release.set()
            t.join()
            self.assertEqual(len(seen), 1)
            self.assertIn("another thread", seen[0].message)


if __name__ == "__main__":
    unittest.main()
