#!/usr/bin/env python3
"""libnativellm as a service inside a Python application (not vector embeddings).

An application keeps one Model for its lifetime (it is shared by all threads), routes the
library's log lines into Python's logging, and gives each job its own Context, which it can
keep for follow-up requests (the KV cache is reused) and read timings from.

    python3 examples/app_service.py [-m MODEL] [-n TOKENS]
"""

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parent.parent
try:
    import nativellm
except ModuleNotFoundError:  # not installed: use the package from this checkout
    sys.path.insert(0, str(REPO / "python"))
    import nativellm

log = logging.getLogger("storyteller")


class StoryTeller:
    """A tiny service object around one model: tell() streams a story; cancel() stops it from
    any thread."""

    def __init__(self, path: str, n_ctx: int = 512) -> None:
        levels = {nativellm.LOG_ERROR: logging.ERROR, nativellm.LOG_WARN: logging.WARNING,
                  nativellm.LOG_INFO: logging.INFO, nativellm.LOG_DEBUG: logging.DEBUG}
        nativellm.set_log_callback(lambda level, msg: log.log(levels.get(level, 10), msg))
        t0 = time.perf_counter()
        self.model = nativellm.Model(path)
        self.load_ms = 1000 * (time.perf_counter() - t0)
        self.ctx = self.model.context(n_ctx=n_ctx)
        self._cancel = threading.Event()

    def tell(self, prompt: str, max_tokens: int, seed: Optional[int] = 42) -> Iterator[str]:
        self._cancel.clear()
        self.ctx.reset()
        with self.model.sampler(temperature=0.8, seed=seed) as sampler:
            yield from self.ctx.stream(prompt, sampler, max_tokens=max_tokens,
                                       cancel=self._cancel)

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.model.close()  # also frees self.ctx
        nativellm.set_log_callback(None)


def main() -> int:
    ap = argparse.ArgumentParser(description="Embed nativellm: load, stream, print timings")
    ap.add_argument("-m", "--model", default=str(REPO / "models" / "stories260K.gguf"))
    ap.add_argument("-p", "--prompt", default="Once upon a time")
    ap.add_argument("-n", "--max-tokens", type=int, default=128)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")

    print(f"nativellm {nativellm.version()} (ABI {nativellm.abi_version()}) from "
          f"{nativellm.library_path}")
    print(f"CPU: {nativellm.system_info()}")
    teller = StoryTeller(args.model)
    try:
        info = teller.model.info
        print(f"model: {info['arch']} {info['n_params']:,} parameters, {info['n_layer']} layers, "
              f"vocab {info['n_vocab']}, loaded in {teller.load_ms:.1f} ms\n")
        print(args.prompt, end="", flush=True)
        for piece in teller.tell(args.prompt, args.max_tokens):
            print(piece, end="", flush=True)
        t = teller.ctx.timings
        print(f"\n\nprompt: {t['n_prompt_tokens']} tokens in {t['prompt_ms']:.2f} ms "
              f"({t['prompt_tokens_per_s']:.1f} tokens/s)")
        print(f"generation: {t['n_gen_tokens']} tokens in {t['gen_ms']:.2f} ms "
              f"({t['gen_tokens_per_s']:.1f} tokens/s)")
    except KeyboardInterrupt:
        print("\n[stopped]", file=sys.stderr)
    finally:
        teller.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
