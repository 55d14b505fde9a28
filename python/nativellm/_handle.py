"""Plumbing shared by the handle classes: C handle lifetime, text and growing buffers."""

from __future__ import annotations

import ctypes
import operator
import threading
from typing import Any, Callable, List, Optional, Sequence, Union

from . import _ffi as ffi
from ._lib import lib as _C
from .errors import InternalError, _check, _error, _invalid


def _to_bytes(text: Union[str, bytes]) -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8")
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


_INT_RANGES = {
    ctypes.c_int32: (-(2**31), 2**31 - 1),
    ctypes.c_uint32: (0, 2**32 - 1),
    ctypes.c_int64: (-(2**63), 2**63 - 1),
    ctypes.c_uint64: (0, 2**64 - 1),
}


def _c_int(name: str, value: Any, ctype: Any = ctypes.c_int32) -> int:
    """value as a Python int that fits ctype, or TypeError/OverflowError: ctypes would wrap it
    silently (token 2**40 becomes token 0)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
    lo, hi = _INT_RANGES[ctype]
    if not lo <= v <= hi:
        raise OverflowError(f"{name} = {v} is outside the range of {ctype.__name__} [{lo}, {hi}]")
    return v


def _c_ints(name: str, values: Sequence[Any], ctype: Any = ctypes.c_int32) -> Any:
    """A ctypes array of checked integers (see _c_int)."""
    return (ctype * len(values))(*(_c_int(f"{name}[{i}]", v, ctype) for i, v in enumerate(values)))


def _set_int_fields(struct: Any, **values: Any) -> None:
    """Sets integer fields of a params struct, each range-checked against its C type."""
    types = dict(struct._fields_)
    for k, v in values.items():
        setattr(struct, k, _c_int(k, v, types[k]))


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


class _Uses:
    """Calls in flight on one handle, by thread. close() from another thread waits until they
    have returned (freeing under a running call is a use-after-free in the library); close()
    from inside one of them (a callback of that call, on the same thread) cannot wait for it,
    so it is recorded and done when the call returns."""

    __slots__ = ("cond", "threads", "close_pending")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.threads: dict = {}
        self.close_pending = False

    def mine(self) -> bool:
        return threading.get_ident() in self.threads


class _Handle:
    """Lifetime plumbing shared by Model, Context and Sampler: a C handle in ``_h`` freed by
    ``close()`` (idempotent), context-manager use, and freeing at garbage collection. Calls
    that pass the handle to the library hold it with ``_use()``; ``close()`` waits for them
    (see _Uses)."""

    _h: Any = None
    _kind = "object"

    @property
    def _uses(self) -> _Uses:
        u = self.__dict__.get("_uses_")
        if u is None:
            u = self.__dict__.setdefault("_uses_", _Uses())
        return u

    def _use(self) -> "_Held":
        """with self._use() as h: ... -- the handle, kept valid until the block ends."""
        return _Held(self)

    def _free(self) -> None:  # overridden: free the C handle
        raise NotImplementedError

    def _close_when_idle(self) -> bool:
        """The common part of close(): True when the handle was freed now, False when there
        is nothing to free or the free was deferred to the end of this thread's call."""
        u = self._uses
        with u.cond:
            if self._h is None:
                return False
            if u.mine():
                u.close_pending = True
                return False
            u.close_pending = True  # no new calls start
            while u.threads:
                u.cond.wait()
            if self._h is None:
                return False
            self._free()
            self._h = None
            return True

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


class _Held:
    __slots__ = ("obj",)

    def __init__(self, obj: _Handle) -> None:
        self.obj = obj

    def __enter__(self) -> Any:
        o = self.obj
        u = o._uses
        with u.cond:
            if o._h is None or (u.close_pending and not u.mine()):
                raise _invalid(f"{o._kind} is closed")
            me = threading.get_ident()
            u.threads[me] = u.threads.get(me, 0) + 1
            return o._h

    def __exit__(self, *exc: Any) -> None:
        o = self.obj
        u = o._uses
        free_now = False
        with u.cond:
            me = threading.get_ident()
            left = u.threads[me] - 1
            if left:
                u.threads[me] = left
            else:
                del u.threads[me]
            if not u.threads:
                u.cond.notify_all()
                free_now = u.close_pending and o._h is not None
        if free_now:
            o.close()


Progress = Callable[[float], Optional[bool]]


def _call_with_progress(params: Any, progress: Optional[Progress], call: Callable[[], int]) -> None:
    """Runs call() (a library call taking params, returning its status) with params.progress
    calling progress(value) -> truthy to cancel. An exception progress raises stops the call
    (the callback returns non-zero) and is re-raised once the library has returned, before the
    status's own error."""
    raised: List[BaseException] = []

    def on_progress(value: float, _ud: Any) -> int:
        try:
            return 1 if progress(value) else 0  # type: ignore[misc]
        except BaseException as e:
            raised.append(e)
            return 1

    cb = ffi.nllm_progress_fn(on_progress) if progress is not None else None
    if cb is not None:
        params.progress = cb  # cb stays referenced here until call() has returned
    status = call()
    err = _error(status) if status != ffi.NLLM_OK else None
    if raised:
        raise raised[0]
    if err is not None:
        raise err
