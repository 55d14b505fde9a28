"""LoraAdapter: a LoRA adapter loaded for a Model (nllm_lora_adapter_load), applied by the
Contexts it is attached to (Context.set_adapters) without changing the model."""

from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple, Union

from . import _ffi as ffi
from ._handle import _Handle
from ._lib import lib as _C
from .errors import _check, _invalid
from .library import _type_id, type_name

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model

# What set_adapters / generate(adapters=...) accept: adapters (scale 1) or (adapter, scale) pairs.
AdapterSpec = Union["LoraAdapter", Tuple["LoraAdapter", float]]


class LoraAdapter(_Handle):
    """A PEFT folder (adapter_config.json + adapter_model.safetensors) or a GGUF LoRA adapter,
    checked against ``model``. ``weight_type`` ("F32", "F16", "BF16"; None: F16 next to
    quantized base matrices, else F32) is what F32 adapter weights are kept in. Contexts it is attached to keep it alive by themselves, so
    closing it (or the garbage collector) never breaks a context that still applies it; the
    model must stay open while it is used (Model.close closes it)."""

    _kind = "LoRA adapter"

    def __init__(
        self,
        model: "Model",
        path: Union[str, "os.PathLike[str]"],
        weight_type: Union[int, str, None] = None,
    ) -> None:
        self._h: Optional[Any] = None
        self.model = model
        self.path = str(path)
        p = ffi.nllm_lora_adapter_params()
        _check(_C.nllm_lora_adapter_params_init_sized(ctypes.byref(p), ctypes.sizeof(p)))
        p.weight_type = _type_id(weight_type)
        h = ffi.lora_adapter_p()
        with model._use() as mh:
            _check(
                _C.nllm_lora_adapter_load_params(
                    mh, os.fsencode(path), ctypes.byref(p), ctypes.byref(h)
                )
            )
        self._h = h
        model._children.add(self)

    def close(self) -> None:
        """Release this handle. Idempotent; contexts using the adapter keep it."""
        self._close_when_idle()

    def _free(self) -> None:
        _C.nllm_lora_adapter_free(self._h)

    def __repr__(self) -> str:
        if self._h is None:
            return f"<nativellm.LoraAdapter {self.path!r} closed>"
        return f"<nativellm.LoraAdapter {self.name!r} rank={self.rank} alpha={self.alpha}>"

    @property
    def name(self) -> str:
        """general.name of a GGUF adapter, else the file or folder name."""
        return (_C.nllm_lora_adapter_name(self.handle) or b"").decode("utf-8", "replace")

    @property
    def rank(self) -> int:
        """The largest rank of its matrices."""
        return int(_C.nllm_lora_adapter_rank(self.handle))

    @property
    def alpha(self) -> float:
        return float(_C.nllm_lora_adapter_alpha(self.handle))

    @property
    def weight_type(self) -> Optional[str]:
        """The type its weights are kept in ("F32", "F16", "BF16"); None when they differ."""
        t = int(_C.nllm_lora_adapter_weight_type(self.handle))
        return None if t == ffi.NLLM_TYPE_NONE else type_name(t)

    @property
    def n_matrices(self) -> int:
        """Weight matrices it adapts."""
        return int(_C.nllm_lora_adapter_n_matrices(self.handle))


def _adapter_array(specs: Iterable[AdapterSpec]) -> Tuple[Any, Any, int, List["LoraAdapter"]]:
    """(adapters, scales, n, the LoraAdapter objects) as nllm_context_set_lora takes them."""
    adapters: List[LoraAdapter] = []
    scales: List[float] = []
    for spec in specs:
        if isinstance(spec, LoraAdapter):
            a, s = spec, 1.0
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], LoraAdapter):
            a, s = spec[0], spec[1]
        else:
            raise _invalid(
                f"an adapter is a LoraAdapter or a (LoraAdapter, scale) pair, not {spec!r}"
            )
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise _invalid(f"adapter scale must be a number, not {s!r}")
        adapters.append(a)
        scales.append(float(s))
    n = len(adapters)
    arr = (ffi.lora_adapter_p * max(n, 1))(*[a.handle for a in adapters])
    sc = (ctypes.c_float * max(n, 1))(*scales)
    return arr, sc, n, adapters
