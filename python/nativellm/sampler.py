"""Sampler: choosing the next token from logits."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, Optional, Sequence

from . import _ffi as ffi
from ._handle import _Handle
from ._lib import lib as _C
from .errors import _check

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context
    from .model import Model

try:  # NumPy is optional: sample_logits takes a float32 ndarray without copying it.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

# The keywords of Sampler(); Model.generate and friends route these to the sampler.
SAMPLER_KEYWORDS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "seed",
)


class Sampler(_Handle):
    """Sampling state: temperature (0 = greedy), top_k, top_p, min_p, repeat_penalty,
    repeat_last_n and seed; parameters left as None keep the library's defaults
    (nllm_sampler_params_init). seed None means the context's seed. One thread at a time."""

    _kind = "sampler"

    def __init__(
        self,
        model: "Model",
        *,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        repeat_last_n: Optional[int] = None,
        seed: Optional[int] = None,
    ) -> None:
        self._h: Optional[Any] = None
        self.model = model
        p = ffi.nllm_sampler_params()
        _C.nllm_sampler_params_init(ctypes.byref(p))
        given = dict(zip(SAMPLER_KEYWORDS, (temperature, top_k, top_p, min_p, repeat_penalty,
                                            repeat_last_n, seed)))
        for k, v in given.items():
            if v is not None:
                setattr(p, k, v)
        self.params = {k: getattr(p, k) for k in SAMPLER_KEYWORDS}
        h = ffi.sampler_p()
        _check(_C.nllm_sampler_create(model.handle, ctypes.byref(p), ctypes.byref(h)))
        self._h = h
        model._children.add(self)

    def close(self) -> None:
        """Free the sampler. Idempotent."""
        if self._h is not None:
            _C.nllm_sampler_free(self._h)
            self._h = None

    def sample(self, ctx: "Context") -> int:
        """Choose a token from the context's last logits (does not accept it)."""
        out = ffi.nllm_token()
        _check(_C.nllm_sampler_sample(self.handle, ctx.handle, ctypes.byref(out)))
        return out.value

    def sample_logits(self, logits: Sequence[float]) -> int:
        """Choose a token from a caller's logits (n_vocab floats)."""
        n = len(logits)
        if _np is not None and isinstance(logits, _np.ndarray):
            arr = _np.ascontiguousarray(logits, dtype=_np.float32)
            ptr = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        else:
            buf = (ctypes.c_float * n)(*logits)
            ptr = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
        out = ffi.nllm_token()
        _check(_C.nllm_sampler_sample_logits(self.handle, ptr, n, ctypes.byref(out)))
        return out.value

    def accept(self, token: int) -> None:
        """Record a token (prompt or generated) for the repetition penalty."""
        _C.nllm_sampler_accept(self.handle, token)

    def reset(self, seed: Optional[int] = None) -> None:
        """Forget accepted tokens and reseed (None keeps the current seed)."""
        _C.nllm_sampler_reset(self.handle, ffi.NLLM_SEED_DEFAULT if seed is None else seed)
