"""Library-level functions: versions, CPU features, weight-type names, logging."""

from __future__ import annotations

import ctypes
from typing import Any, Callable, List, Optional, Tuple, Union

from . import _ffi as ffi
from ._lib import lib as _C
from .errors import _check, _invalid


def version() -> str:
    """Version string of the loaded library ("0.1.0")."""
    return _C.nllm_version().decode()


def abi_version() -> int:
    """NLLM_ABI_VERSION of the loaded library (checked against the bindings at import)."""
    return int(_C.nllm_abi_version())


def system_info() -> str:
    """CPU features the library uses ("AVX2=1 FMA=1 F16C=1 NEON=0 ...")."""
    return _C.nllm_system_info().decode()


def type_name(type_id: int) -> Optional[str]:
    """Name of a weight type id ("Q4_K"), or None if unknown."""
    raw = _C.nllm_type_name(type_id)
    return raw.decode() if raw else None


def parse_type(name: str) -> Tuple[int, bool]:
    """The library's one parser of weight-type names, any case: a type ("q8_0") or a mixed
    preset ("Q4_K_M"). Returns (type id, is_preset); a preset gives its base type.
    InvalidArgumentError listing every valid name otherwise."""
    t = ctypes.c_int32()
    preset = ctypes.c_int32()
    _check(_C.nllm_type_parse(name.encode(), ctypes.byref(t), ctypes.byref(preset)))
    return t.value, bool(preset.value)


def type_names() -> List[str]:
    """Every name parse_type accepts ("F32", ..., "Q4_K_M", ...)."""
    return _C.nllm_type_names().decode().split()


def _type_id(t: Union[int, str, None]) -> int:
    """One type where a single type is needed (quantize-on-load, KV cache)."""
    if t is None:
        return ffi.NLLM_TYPE_NONE
    if isinstance(t, int):
        return t
    value, preset = parse_type(t)
    if preset:
        raise _invalid(
            f"{t!r} is a mixed preset, for quantize(); give one type here, such as {type_name(value)}"
        )
    return value


_log_keepalive: Optional[Any] = None


def set_log_callback(fn: Optional[Callable[[int, str], None]]) -> None:
    """Route library log lines to fn(level, message); None restores the default (warnings and
    errors to stderr). Process-wide; do not change it while other threads use the library."""
    global _log_keepalive
    if fn is None:
        _C.nllm_set_log_callback(ffi.nllm_log_fn(), None)
        _log_keepalive = None
        return

    def sink(level: int, msg: bytes, _ud: Any) -> None:
        try:
            fn(level, msg.decode("utf-8", "replace") if msg else "")
        except Exception:  # a raising log sink must not unwind through C frames
            pass

    cb = ffi.nllm_log_fn(sink)
    _C.nllm_set_log_callback(cb, None)
    _log_keepalive = cb  # the C side keeps only the pointer


def set_log_level(level: int) -> None:
    """Log threshold: NLLM_LOG_ERROR, NLLM_LOG_WARN, NLLM_LOG_INFO or NLLM_LOG_DEBUG."""
    _C.nllm_set_log_level(level)


LOG_ERROR = ffi.NLLM_LOG_ERROR
LOG_WARN = ffi.NLLM_LOG_WARN
LOG_INFO = ffi.NLLM_LOG_INFO
LOG_DEBUG = ffi.NLLM_LOG_DEBUG
