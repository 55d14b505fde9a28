"""Plumbing shared by the handle classes: C handle lifetime, text and growing buffers."""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Union

from . import _ffi as ffi
from ._lib import lib as _C
from .errors import InternalError, _check, _invalid


def _to_bytes(text: Union[str, bytes]) -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8")
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def _grow_call(fn: Callable[[Any, int, Any], int], cap: int) -> bytes:
    """Call fn(buf, cap, &n) and retry once with the size the library asked for."""
    n = ctypes.c_int32(0)
    for _ in range(2):
        buf = ctypes.create_string_buffer(max(cap, 1))
        status = fn(buf, cap, ctypes.byref(n))
        if status == ffi.NLLM_ERR_BUFFER_TOO_SMALL and n.value > cap:
            cap = n.value + 1  # room for the NUL where the call writes one
            continue
        _check(status)
        return buf.raw[: n.value]
    raise InternalError(f"buffer still too small after growing to {cap} bytes")


class _Handle:
    """Lifetime plumbing shared by Model, Context and Sampler: a C handle in ``_h`` freed by
    ``close()`` (idempotent), context-manager use, and freeing at garbage collection."""

    _h: Any = None
    _kind = "object"

    def close(self) -> None:  # overridden
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # At interpreter exit module globals may already be None.
        if getattr(self, "_h", None) is not None and _C is not None:
            try:
                self.close()
            except Exception:
                pass

    @property
    def handle(self) -> Any:
        """The raw C handle (for calling ffi functions directly)."""
        if self._h is None:
            raise _invalid(f"{self._kind} is closed")
        return self._h
