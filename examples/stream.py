#!/usr/bin/env python3
"""Stream a story from a model, piece by piece, as it is generated.

    python3 examples/stream.py                      # the bundled model, default sampling
    python3 examples/stream.py -p "Lily saw" --temp 0 -n 100

Ctrl-C stops the generation cleanly.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
try:
    import nativellm
except ModuleNotFoundError:  # not installed: use the package from this checkout
    sys.path.insert(0, str(REPO / "python"))
    import nativellm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=str(REPO / "models" / "stories260K.gguf"))
    ap.add_argument("-p", "--prompt", default="Once upon a time")
    ap.add_argument("-n", "--max-tokens", type=int, default=200)
    ap.add_argument("--temp", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    with nativellm.Model(args.model) as model:
        print(args.prompt, end="", flush=True)
        try:
            for piece in model.stream(args.prompt, max_tokens=args.max_tokens,
                                      temperature=args.temp, seed=args.seed):
                print(piece, end="", flush=True)
        except KeyboardInterrupt:
            print("\n[stopped]", file=sys.stderr)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
