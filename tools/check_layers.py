#!/usr/bin/env python3
"""Checks that the code's own #include lines keep the layering of docs/architecture.md: each
folder may include its own headers and those of the layers below it, nothing above.

    python3 tools/check_layers.py      (from the repository root; exit status 1 on a violation)

A quoted include is resolved as the compiler does: next to the including file, then in src/,
kernels/ and include/ (the -I order of the Makefile). The layer of a header is the folder it
lies in.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCH = [ROOT / "src", ROOT / "kernels", ROOT / "include"]

CORE = {"public", "core"}
FORMATS = CORE | {"formats"}
KERNELS = FORMATS | {"kernels"}
# Text languages the tokenizer and sampler interpret (Jinja chat templates, GBNF grammars): they
# need only core.
GRAMMAR = CORE | {"grammar"}
TEMPLATE = CORE | {"template"}
TOKENIZER = FORMATS | TEMPLATE | {"tokenizer"}
MODEL = KERNELS | TOKENIZER | {"model"}
ENGINE = MODEL | GRAMMAR | {"engine"}
CONVERT = MODEL | {"convert"}

# folder -> layers its files may include
ALLOWED = {
    "src/core": CORE,
    "src/formats": FORMATS,
    "src/grammar": GRAMMAR,
    "src/template": TEMPLATE,
    "src/tokenizer": TOKENIZER,
    "kernels": KERNELS,
    "src/model": MODEL,
    "src/engine": ENGINE,
    "src/convert": CONVERT,
    # The CLI is a client of the public ABI: nativellm.h and its own files only.
    "tools/nllm": {"public", "tools/nllm"},
    "tools/serve": {"public", "tools/nllm", "tools/serve"},
}

# Includes allowed upwards, each with its reason (none today: the GGUF type facts moved down
# into src/formats/ggml_types.h).
EXCEPTIONS: set[tuple[str, str]] = set()

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(header: Path) -> str:
    rel = header.relative_to(ROOT).as_posix()
    if rel.startswith("include/"):
        return "public"
    if rel.startswith("kernels/"):
        return "kernels"
    if rel.startswith("tools/nllm/"):
        return "tools/nllm"
    if rel.startswith("tools/serve/"):
        return "tools/serve"
    parts = rel.split("/")
    return parts[1] if parts[0] == "src" and len(parts) > 2 else "api"


def resolve(src: Path, name: str) -> Path | None:
    for folder in [src.parent] + SEARCH:
        p = folder / name
        if p.is_file():
            return p.resolve()
    return None


def main() -> int:
    bad = []
    for folder, allowed in ALLOWED.items():
        for src in sorted((ROOT / folder).rglob("*")):
            if src.suffix not in (".c", ".h", ".cu", ".cuh"):
                continue
            rel = src.relative_to(ROOT).as_posix()
            for name in INCLUDE.findall(src.read_text(errors="replace")):
                header = resolve(src, name)
                if header is None or (rel, name) in EXCEPTIONS:
                    continue  # a system header written in quotes, or a listed exception
                layer = layer_of(header)
                if layer not in allowed:
                    bad.append(f"{rel}: includes \"{name}\" ({layer}), above {folder}")
    for line in bad:
        print(f"check_layers: {line}")
    print(f"check_layers: {'FAILED, ' + str(len(bad)) + ' upward include(s)' if bad else 'ok'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
