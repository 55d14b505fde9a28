"""Sampler: choosing the next token from logits."""

from __future__ import annotations

import ctypes
import json
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from . import _ffi as ffi
from ._handle import _c_int, _Handle, _set_int_fields
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
    "grammar",
    "grammar_root",
    "json_schema",
)
_NUMERIC = SAMPLER_KEYWORDS[:7]


def _text(v: Union[str, bytes]) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)


def json_schema_to_grammar(schema: Union[str, dict, bool]) -> str:
    """The GBNF grammar a JSON Schema (text, or a dict) becomes (docs/grammar.md).
    Raises InvalidArgumentError naming the schema location for what it cannot translate."""
    text = _text(schema if isinstance(schema, (str, bytes)) else json.dumps(schema))
    n = ctypes.c_int32(0)
    st = _C.nllm_json_schema_to_grammar(text, None, 0, ctypes.byref(n))
    if st != ffi.NLLM_ERR_BUFFER_TOO_SMALL:
        _check(st)
    buf = ctypes.create_string_buffer(n.value + 1)
    _check(_C.nllm_json_schema_to_grammar(text, buf, n.value + 1, ctypes.byref(n)))
    return buf.value.decode()


class Sampler(_Handle):
    """Sampling state: temperature (0 = greedy), top_k, top_p, min_p, repeat_penalty,
    repeat_last_n and seed; parameters left as None keep the library's defaults
    (nllm_sampler_params_init). seed None means the context's seed. One thread at a time.

    Constrained output (docs/grammar.md): ``grammar`` (GBNF text, start rule ``grammar_root``,
    default "root") or ``json_schema`` (a JSON Schema as text or a dict; ``{}`` = any JSON
    value) makes every generated text match; ``grammar_complete`` tells whether the output so
    far is complete (False after max_tokens cut it short)."""

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
        grammar: Optional[Union[str, bytes]] = None,
        grammar_root: Optional[Union[str, bytes]] = None,
        json_schema: Optional[Union[str, bytes, dict, bool]] = None,
    ) -> None:
        self._h: Optional[Any] = None
        self.model = model
        p = ffi.nllm_sampler_params()
        _check(_C.nllm_sampler_params_init_sized(ctypes.byref(p), ctypes.sizeof(p)))
        given = dict(zip(_NUMERIC, (temperature, top_k, top_p, min_p, repeat_penalty,
                                    repeat_last_n, seed)))
        types = dict(p._fields_)
        for k, v in given.items():
            if v is not None:
                if types[k] is ctypes.c_float:
                    setattr(p, k, v)
                else:
                    _set_int_fields(p, **{k: v})
        self.params = {k: getattr(p, k) for k in _NUMERIC}
        # The library copies the strings in nllm_sampler_create; these keep them alive until then.
        if json_schema is not None and not isinstance(json_schema, (str, bytes)):
            json_schema = json.dumps(json_schema)
        strings = {k: _text(v) for k, v in (("grammar", grammar), ("grammar_root", grammar_root),
                                             ("json_schema", json_schema)) if v is not None}
        for k, v in strings.items():
            setattr(p, k, v)
            self.params[k] = v.decode(errors="replace")
        h = ffi.sampler_p()
        _check(_C.nllm_sampler_create(model.handle, ctypes.byref(p), ctypes.byref(h)))
        self._h = h
        model._children.add(self)

    def close(self) -> None:
        """Free the sampler. Idempotent. A call using it on another thread (a generate) is
        waited for; from inside a callback of such a call, it is freed when the call returns."""
        self._close_when_idle()

    def _free(self) -> None:
        _C.nllm_sampler_free(self._h)

    def sample(self, ctx: "Context") -> int:
        """Choose a token from the context's last logits (does not accept it)."""
        out = ffi.nllm_token()
        with self._use() as h:
            ch = ctx._enter()
            try:
                _check(_C.nllm_sampler_sample(h, ch, ctypes.byref(out)))
            finally:
                ctx._leave()
        return out.value

    def sample_logits(self, logits: Sequence[float]) -> int:
        """Choose a token from a caller's logits (n_vocab floats)."""
        n = _c_int("len(logits)", len(logits))
        if _np is not None and isinstance(logits, _np.ndarray):
            arr = _np.ascontiguousarray(logits, dtype=_np.float32)
            ptr = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        else:
            buf = (ctypes.c_float * n)(*logits)
            ptr = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
        out = ffi.nllm_token()
        with self._use() as h:
            _check(_C.nllm_sampler_sample_logits(h, ptr, n, ctypes.byref(out)))
        return out.value

    def accept(self, token: int) -> None:
        """Record a token (prompt or generated) for the repetition penalty. With a grammar, the
        token the sampler last returned also advances it."""
        token = _c_int("token", token)
        with self._use() as h:
            _C.nllm_sampler_accept(h, token)

    @property
    def grammar_complete(self) -> bool:
        """True when the sampler has a grammar and the output since it started is complete."""
        with self._use() as h:
            return bool(_C.nllm_sampler_grammar_complete(h))

    def reset(self, seed: Optional[int] = None) -> None:
        """Forget accepted tokens and reseed (None keeps the current seed)."""
        s = ffi.NLLM_SEED_DEFAULT if seed is None else _c_int("seed", seed, ctypes.c_uint64)
        with self._use() as h:
            _C.nllm_sampler_reset(h, s)
