"""Finding and loading libnativellm, and checking it speaks the ABI these bindings know.

Search order (the first that exists wins; NATIVELLM_LIB is never silently skipped):

1. ``$NATIVELLM_LIB``: a path to the shared library file, or to a folder holding it.
2. Next to this package: ``nativellm/libnativellm.so.1`` (a wheel built from a tree where
   ``make`` had run carries a copy there).
3. The repository's build folder, relative to the package: ``<repo>/build/`` when the package
   is used from a source checkout (``python/nativellm`` -> ``../../build``).
4. The system loader: ``ctypes.util.find_library("nativellm")`` (``make install`` puts the
   library in ``$PREFIX/lib``; run ``ldconfig`` or set ``LD_LIBRARY_PATH``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import List, Optional

from . import _ffi

_PKG_DIR = Path(__file__).resolve().parent

if sys.platform == "darwin":
    _NAMES = [f"libnativellm.{_ffi.ABI_VERSION}.dylib", "libnativellm.dylib"]
elif sys.platform == "win32":
    _NAMES = ["nativellm.dll", "libnativellm.dll"]
else:
    # The soname carries the ABI, so prefer it over the unversioned development link.
    _NAMES = [f"libnativellm.so.{_ffi.ABI_VERSION}", "libnativellm.so"]


def _in_folder(folder: Path) -> Optional[Path]:
    for name in _NAMES:
        p = folder / name
        if p.is_file():
            return p
    return None


def candidates() -> List[str]:
    """Every place the library would be looked for, in order (for error messages and docs)."""
    out = []
    env = os.environ.get("NATIVELLM_LIB")
    if env:
        out.append(f"$NATIVELLM_LIB={env}")
    out.append(str(_PKG_DIR))
    out.append(str(_PKG_DIR.parent.parent / "build"))
    out.append("the system loader (ctypes.util.find_library('nativellm'))")
    return out


def find_library() -> str:
    """Path (or loader name) of the library to load. Raises ImportError if there is none."""
    env = os.environ.get("NATIVELLM_LIB")
    if env:
        p = Path(env)
        if p.is_dir():
            found = _in_folder(p)
            if found is None:
                raise ImportError(
                    f"nativellm: NATIVELLM_LIB={env} is a folder without {' or '.join(_NAMES)}"
                )
            return str(found)
        if not p.is_file():
            raise ImportError(f"nativellm: NATIVELLM_LIB={env}: no such file")
        return str(p)
    for folder in (_PKG_DIR, _PKG_DIR.parent.parent / "build"):
        found = _in_folder(folder)
        if found is not None:
            return str(found)
    name = ctypes.util.find_library("nativellm")
    if name:
        return name
    raise ImportError(
        "nativellm: cannot find the native library (libnativellm). Looked in: "
        + "; ".join(candidates())
        + ". Build it with `make` in the repository, or set NATIVELLM_LIB to its path."
    )


def load(path: Optional[str] = None) -> ctypes.CDLL:
    """Load the library, declare every function, and check its ABI version."""
    path = path or find_library()
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"nativellm: cannot load {path}: {e}") from e
    try:
        lib.nllm_abi_version.restype = ctypes.c_int32
        lib.nllm_abi_version.argtypes = []
        abi = lib.nllm_abi_version()
    except AttributeError as e:
        raise ImportError(f"nativellm: {path} is not libnativellm (no nllm_abi_version)") from e
    if abi != _ffi.ABI_VERSION:
        raise ImportError(
            f"nativellm: {path} implements ABI version {abi}, but these Python bindings were "
            f"written for ABI version {_ffi.ABI_VERSION}; install matching versions"
        )
    missing = _ffi.bind(lib)
    essential = {"nllm_version", "nllm_last_error", "nllm_status_name", "nllm_model_load"}
    if essential & set(missing):
        raise ImportError(f"nativellm: {path} lacks {', '.join(sorted(essential & set(missing)))}")
    for name in missing:
        setattr(lib, name, _missing_stub(name, path))
    lib._nativellm_path = path  # type: ignore[attr-defined]
    lib._nativellm_missing = missing  # type: ignore[attr-defined]
    return lib


class _MissingFunction:
    """Stands in for a function the loaded library does not export (an older library of the
    same ABI): calling it raises NotImplementedError naming the function and the library."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path

    def __call__(self, *args: object) -> object:
        raise NotImplementedError(
            f"nativellm: {self.path} does not export {self.name} (a library older than the "
            "Python bindings); rebuild or upgrade the library"
        )


def _missing_stub(name: str, path: str) -> _MissingFunction:
    return _MissingFunction(name, path)


lib = load()
path: str = lib._nativellm_path  # type: ignore[attr-defined]
# Header functions the loaded library lacks (empty for a library built from the same header).
missing: List[str] = lib._nativellm_missing  # type: ignore[attr-defined]
