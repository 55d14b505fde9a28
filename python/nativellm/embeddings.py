"""Model.embed: embedding vectors of many texts, batch_size texts per decode call."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

from . import _ffi as ffi
from ._handle import _c_int, _c_ints
from ._lib import lib as _C
from .errors import _check, _invalid

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model

try:  # NumPy is optional: vectors come back as numpy.ndarray when it is installed.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

POOLINGS = {"none": ffi.NLLM_POOLING_NONE, "mean": ffi.NLLM_POOLING_MEAN,
            "cls": ffi.NLLM_POOLING_CLS, "last": ffi.NLLM_POOLING_LAST}

Text = Union[str, bytes, Sequence[int]]


def _pooling_id(pooling: Union[str, int, None]) -> int:
    if pooling is None:
        return ffi.NLLM_POOLING_MODEL
    if isinstance(pooling, str):
        if pooling.lower() not in POOLINGS:
            raise _invalid(f"pooling {pooling!r} is not one of none, mean, cls, last")
        return POOLINGS[pooling.lower()]
    return _c_int("pooling", pooling)


def _vector(ptr: Any, n: int, rows: int = 1) -> Any:
    raw = ctypes.string_at(ptr, 4 * n * rows)  # copy: the pointer dies at the next decode
    if _np is not None:
        v = _np.frombuffer(raw, dtype=_np.float32).copy()
        return v.reshape(rows, n) if rows > 1 else v
    floats = list(memoryview(raw).cast("f"))
    return [floats[i * n:(i + 1) * n] for i in range(rows)] if rows > 1 else floats


def embed(
    model: "Model",
    texts: Union[Text, Sequence[Text]],
    *,
    pooling: Union[str, int, None] = None,
    normalize: Optional[bool] = True,
    batch_size: int = 32,
    n_threads: int = 0,
    add_bos: bool = True,
    special: bool = False,
    bf16_activations: Optional[bool] = None,
) -> Any:
    """Embedding vectors of texts (str or bytes, tokenized with add_bos / special) or of token
    id lists: a list with one float32 vector (numpy.ndarray, or a list of floats without NumPy)
    per text; with pooling="none" one (tokens x n_embd) matrix per text. A single text (not in
    a list) gives its vector alone. pooling: None (the model's), "mean", "cls", "last" or
    "none"; normalize: True (L2), False (raw) or None (the model's choice); batch_size: texts
    per decode call; bf16_activations: as for Context (None: rounded to BF16 for BF16 weights
    where the CPU has AVX512_BF16)."""
    single = isinstance(texts, (str, bytes)) or (
        isinstance(texts, Sequence) and len(texts) > 0 and isinstance(texts[0], int))
    items = [texts] if single else list(texts)
    if not items:
        return []
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise _invalid(f"batch_size must be a positive integer (got {batch_size!r})")
    pool = _pooling_id(pooling)
    ids: List[List[int]] = []
    for i, t in enumerate(items):
        toks = (model.tokenize(t, add_bos=add_bos, special=special)
                if isinstance(t, (str, bytes)) else [int(x) for x in t])
        if not toks:
            raise _invalid(f"text {i} has no tokens")
        ids.append(toks)
    batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    rows = max(sum(len(t) for t in b) for b in batches)
    p = ffi.nllm_context_params()
    _check(_C.nllm_context_params_init_sized(ctypes.byref(p), ctypes.sizeof(p)))
    p.embeddings = ffi.NLLM_EMBEDDINGS_ONLY
    p.pooling = pool
    p.normalize = -1 if normalize is None else int(bool(normalize))
    p.n_ctx = p.n_batch = _c_int("tokens of a batch", rows)
    p.n_seq_max = min(batch_size, len(ids), ffi.NLLM_SEQ_MAX)
    if batch_size > ffi.NLLM_SEQ_MAX:
        batches = [ids[i:i + ffi.NLLM_SEQ_MAX] for i in range(0, len(ids), ffi.NLLM_SEQ_MAX)]
    p.n_threads = _c_int("n_threads", n_threads)
    p.kv_type = ffi.NLLM_TYPE_F32  # the cache holds one batch only: exact and small
    if bf16_activations is not None:
        p.bf16_activations = (
            ffi.NLLM_BF16_ACT_ROUND if bf16_activations else ffi.NLLM_BF16_ACT_EXACT
        )
    out: List[Any] = []
    with model._use() as mh:
        ctx = ffi.context_p()
        _check(_C.nllm_context_create(mh, ctypes.byref(p), ctypes.byref(ctx)))
        try:
            d = int(_C.nllm_model_n_embd(mh))
            per_token = _C.nllm_context_pooling(ctx) == ffi.NLLM_POOLING_NONE
            for b in batches:
                flat = [t for seq in b for t in seq]
                seq_ids = [s for s, seq in enumerate(b) for _ in seq]
                batch = ffi.nllm_batch()
                _check(_C.nllm_batch_init_sized(ctypes.byref(batch), ctypes.sizeof(batch)))
                batch.n_tokens = len(flat)
                tok_arr, seq_arr = _c_ints("tokens", flat), _c_ints("seq_id", seq_ids)
                batch.tokens = tok_arr
                batch.seq_id = seq_arr
                _check(_C.nllm_seq_remove(ctx, ffi.NLLM_SEQ_ALL, -1, -1))
                _check(_C.nllm_decode_batch(ctx, ctypes.byref(batch)))
                ptr = ctypes.POINTER(ctypes.c_float)()
                row = 0
                for s, seq in enumerate(b):
                    if per_token:
                        _check(_C.nllm_get_embeddings_ith(ctx, row, ctypes.byref(ptr)))
                        out.append(_vector(ptr, d, len(seq)))  # rows are consecutive
                    else:
                        _check(_C.nllm_get_embeddings_seq(ctx, s, ctypes.byref(ptr)))
                        out.append(_vector(ptr, d))
                    row += len(seq)
        finally:
            _C.nllm_context_free(ctx)
    return out[0] if single else out

