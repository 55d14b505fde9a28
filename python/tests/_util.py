"""Paths and helpers shared by the tests (run from anywhere; paths are from this file)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

PY_DIR = Path(__file__).resolve().parent.parent
REPO = PY_DIR.parent
HEADER = REPO / "include" / "nativellm.h"
MODEL = REPO / "models" / "stories260K.gguf"
TESTDATA = Path(os.environ.get("NLLM_TESTDATA", REPO.parent / "shared" / "testdata"))
GOLDEN_GREEDY = TESTDATA / "golden" / "logits" / "stories260K-F32.greedy250.ids.txt"

if str(PY_DIR) not in sys.path:
    sys.path.insert(0, str(PY_DIR))


def load_ffi():
    """nativellm/_ffi.py loaded on its own, so the declarations can be checked without the
    native library (importing the package would load it)."""
    spec = importlib.util.spec_from_file_location(
        "nativellm_ffi_standalone", PY_DIR / "nativellm" / "_ffi.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_golden_ids(path: Path):
    """(prompt_ids, gen_ids) from a golden ids/logits file."""
    prompt, gen = [], []
    for line in path.read_text().splitlines():
        if line.startswith("prompt_ids:"):
            prompt = [int(t) for t in line.split()[1:]]
        elif line.startswith("gen_ids:"):
            gen = [int(t) for t in line.split()[1:]]
    return prompt, gen
