"""Writing models as GGUF files: convert() and quantize() (nllm_convert / nllm_quantize)."""

from __future__ import annotations

import ctypes
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _ffi as ffi
from ._lib import lib as _C
from ._handle import Progress, _call_with_progress
from .errors import _check, _invalid

PathLike = Union[str, "os.PathLike[str]"]


def _run(
    fn: Any,
    src: PathLike,
    dst: PathLike,
    type: Union[int, str, None],
    n_threads: int,
    progress: Optional[Progress],
    lora: Sequence[Union[PathLike, Tuple[PathLike, float]]] = (),
) -> Dict[str, Any]:
    p = ffi.nllm_convert_params()
    _check(_C.nllm_convert_params_init_sized(ctypes.byref(p), ctypes.sizeof(p)))
    p.n_threads = n_threads
    paths: List[bytes] = []
    scales: List[float] = []
    for spec in lora:
        path, scale = spec if isinstance(spec, tuple) else (spec, 1.0)
        paths.append(os.fsencode(path))
        scales.append(float(scale))
    if paths:
        keep = ((ctypes.c_char_p * len(paths))(*paths), (ctypes.c_float * len(scales))(*scales))
        p.lora_paths = ctypes.cast(keep[0], ctypes.POINTER(ctypes.c_char_p))
        p.lora_scales = ctypes.cast(keep[1], ctypes.POINTER(ctypes.c_float))
        p.n_lora = len(paths)
    name = None
    if isinstance(type, str):
        name = type.encode()
        p.type_name = name
    elif isinstance(type, int) and not isinstance(type, bool):
        p.type = type
    elif type is not None:
        raise _invalid(f"type must be a name, an NLLM_TYPE_* id or None, not {type!r}")
    stats = ffi.nllm_convert_stats()
    stats.struct_size = ctypes.sizeof(stats)
    _call_with_progress(
        p,
        progress,
        lambda: fn(os.fsencode(src), os.fsencode(dst), ctypes.byref(p), ctypes.byref(stats)),
    )
    return {
        "n_tensors": stats.n_tensors,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "seconds": stats.seconds,
    }


def convert(
    src: PathLike,
    dst: PathLike,
    type: Union[int, str, None] = None,
    *,
    n_threads: int = 0,
    progress: Optional[Progress] = None,
    lora: Sequence[Union[PathLike, Tuple[PathLike, float]]] = (),
) -> Dict[str, Any]:
    """Write the model at src (GGUF file or Hugging Face folder) as a GGUF file at dst that
    llama.cpp-class engines load. ``type``: a weight type or mixed preset by name, any case
    ("Q8_0", "q4_k_m"), an NLLM_TYPE_* id, or None to keep each tensor's type. ``progress``
    gets the fraction done; returning True cancels with AbortedError (nothing is written at
    dst). The destination folder is checked before any work. Returns n_tensors, bytes_in,
    bytes_out and seconds. ``lora``: LoRA adapters (paths, or (path, scale) pairs) merged into
    the written weights."""
    return _run(_C.nllm_convert, src, dst, type, n_threads, progress, lora)


def quantize(
    src: PathLike,
    dst: PathLike,
    type: Union[int, str],
    *,
    n_threads: int = 0,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """convert() with a required target type (InvalidArgumentError listing the names if it is
    missing or unknown)."""
    return _run(_C.nllm_quantize, src, dst, type, n_threads, progress)
