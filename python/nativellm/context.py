"""Context: the sequences on a Model (KV cache, positions, logits), saved states, and generation
on it."""

from __future__ import annotations

import array
import ctypes
import os
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _ffi as ffi
from ._handle import _c_int, _c_ints, _Handle, _set_int_fields, _to_bytes
from ._lib import lib as _C
from .errors import _check, _invalid
from .generation import (
    Completion,
    Emit,
    GenerateOptions,
    _CancelState,
    reject_unexpected,
    run_generate,
    stream_pieces,
    takes_generate_options,
)
from .library import _type_id
from .lora import AdapterSpec, _adapter_array
from .sampler import Sampler

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model

try:  # NumPy is optional: logits come back as numpy.ndarray when it is installed.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

# The keywords of Context() that Model.generate and friends route to the context (seed goes to
# the sampler there, cancel is a generate option).
CONTEXT_KEYWORDS = (
    "n_ctx",
    "n_threads",
    "n_batch",
    "kv_type",
    "kv_type_v",
    "all_logits",
    "adapters",
    "bf16_activations",
)


class Context(_Handle):
    """Sequences on a Model: KV cache, positions, logits. One thread at a time.

    Keyword parameters mirror nllm_context_params: ``n_ctx`` (0 = the model's default; with
    several sequences, the total of their tokens), ``n_threads`` (0 = all cores), ``n_batch``
    (0 = 512), ``kv_type`` / ``kv_type_v`` (K and V cache types: "F16", "F32", "BF16", "Q8_0",
    "Q4_0" or an id; V defaults to K's), ``all_logits`` (keep every position's logits of each
    decode), ``n_seq_max`` (sequences 0..n-1 in one context, see decode_batch), ``seed`` (for
    samplers made with the default seed) ``cancel`` (a threading.Event: once set, decode and
    generate stop with AbortedError / a clean stop), ``adapters`` (LoRA adapters to apply, as
    for set_adapters) and ``bf16_activations`` (True: BF16 weights multiply activations
    rounded to BF16, as llama.cpp does, results move ~1e-2; False: the F32 activations, exact
    products; None, the default: rounded where the CPU has AVX512_BF16, which runs such prompts
    ~1.7x faster, exact elsewhere). The one-sequence calls (decode, pos,
    rewind, generate) work on sequence 0.
    """

    _kind = "context"

    def __init__(
        self,
        model: "Model",
        *,
        n_ctx: int = 0,
        n_threads: int = 0,
        n_batch: int = 0,
        kv_type: Union[int, str, None] = None,
        kv_type_v: Union[int, str, None] = None,
        all_logits: bool = False,
        n_seq_max: int = 1,
        seed: Optional[int] = None,
        cancel: Optional[threading.Event] = None,
        adapters: Optional[Sequence[AdapterSpec]] = None,
        bf16_activations: Optional[bool] = None,
    ) -> None:
        self._h: Optional[Any] = None
        self.model = model  # keeps the model alive for as long as the context
        self._busy = threading.Lock()
        self._cancel = _CancelState(cancel)
        state = self._cancel

        def should_abort(_ud: Any) -> int:
            return 1 if state.requested() else 0

        self._abort_cb = ffi.nllm_abort_fn(should_abort)
        p = ffi.nllm_context_params()
        _check(_C.nllm_context_params_init_sized(ctypes.byref(p), ctypes.sizeof(p)))
        _set_int_fields(p, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch)
        if kv_type is not None:
            p.kv_type = _type_id(kv_type)
        if kv_type_v is not None:
            p.kv_type_v = _type_id(kv_type_v)
        _set_int_fields(p, n_seq_max=n_seq_max)
        p.all_logits = 1 if all_logits else 0
        if bf16_activations is not None:
            p.bf16_activations = (
                ffi.NLLM_BF16_ACT_ROUND if bf16_activations else ffi.NLLM_BF16_ACT_EXACT
            )
        if seed is not None:
            _set_int_fields(p, seed=seed)
        p.abort_callback = self._abort_cb
        h = ffi.context_p()
        _check(_C.nllm_context_create(model.handle, ctypes.byref(p), ctypes.byref(h)))
        self._h = h
        self.n_vocab = model.n_vocab
        model._children.add(self)
        if adapters:
            try:
                self.set_adapters(adapters)
            except BaseException:
                self.close()
                raise

    def set_adapters(self, adapters: Sequence[AdapterSpec]) -> None:
        """Replace the LoRA adapters this context applies: LoraAdapter objects (scale 1) or
        (adapter, scale) pairs; scale 0 switches one off, [] removes all. Takes effect from the
        next decode; the cache already computed is kept (reset() to recompute a prompt)."""
        arr, scales, n, objs = _adapter_array(adapters)
        for a in objs:
            if a.model is not self.model:
                raise _invalid(f"adapter {a.path!r} was loaded for another model")
        h = self._enter()
        try:
            _check(_C.nllm_context_set_lora(h, arr if n else None, scales if n else None, n))
        finally:
            self._leave()

    def set_seq_adapters(self, seq: int, adapters: Optional[Sequence[AdapterSpec]]) -> None:
        """nllm_seq_set_lora: sequence seq's own adapters ([] = the plain base), or None to
        use the context's set again."""
        if adapters is None:
            arr, scales, n = None, None, -1
        else:
            arr, scales, n, objs = _adapter_array(adapters)
            for a in objs:
                if a.model is not self.model:
                    raise _invalid(f"adapter {a.path!r} was loaded for another model")
            if not n:
                arr, scales = None, None
        h = self._enter()
        try:
            _check(_C.nllm_seq_set_lora(h, _c_int("seq", seq), arr, scales, n))
        finally:
            self._leave()

    @property
    def n_adapters(self) -> int:
        """LoRA adapters attached now."""
        return int(_C.nllm_context_n_lora(self.handle))

    # -- lifetime

    def close(self) -> None:
        """Free the context. Idempotent. A call running on another thread is stopped and
        waited for; from inside a callback of this context's own call (on_token), the context
        is freed when that call returns."""
        if self._h is not None:
            self._cancel.flag = True  # a running generate stops at its next token
            self._close_when_idle()

    def _free(self) -> None:
        _C.nllm_context_free(self._h)

    def _enter(self) -> Any:
        """Holds the model and this context for one call (see _Handle._use) and claims the
        context for this thread; pair with _leave()."""
        model_use = self.model._use()
        model_use.__enter__()
        use = self._use()
        try:
            h = use.__enter__()
        except BaseException:
            model_use.__exit__(None, None, None)
            raise
        if not self._busy.acquire(blocking=False):
            use.__exit__(None, None, None)
            model_use.__exit__(None, None, None)
            raise _invalid("context is in use by another thread (use one Context per thread)")
        return h

    def _leave(self) -> None:
        self._busy.release()
        self._use().__exit__(None, None, None)  # frees the context if closed meanwhile
        self.model._use().__exit__(None, None, None)

    # -- state

    @property
    def pos(self) -> int:
        """Number of tokens in the cache."""
        return int(_C.nllm_context_pos(self.handle))

    @property
    def n_ctx(self) -> int:
        """Maximum number of positions."""
        return int(_C.nllm_context_n_ctx(self.handle))

    def decode(self, tokens: Sequence[int]) -> None:
        """Evaluate tokens at the current position and advance. ContextFullError if they do not
        fit (nothing evaluated); on any error the position is unchanged."""
        h = self._enter()
        try:
            ids = _c_ints("tokens", tokens)
            _check(_C.nllm_decode(h, ids, _c_int("len(tokens)", len(tokens))))
        finally:
            self._leave()

    def logits(self, i: Optional[int] = None) -> Any:
        """A copy of the logits of the last decoded token (or of token i of the last decode,
        which needs all_logits=True for any but the last): numpy.ndarray (float32) when NumPy is
        installed, else array.array('f'). Both support len(), indexing and memoryview()."""
        h = self.handle
        ptr = _C.nllm_get_logits(h) if i is None else _C.nllm_get_logits_ith(h, _c_int("i", i))
        if not ptr:
            what = "no logits yet: decode something first"
            if i is not None:
                what = f"no logits for token {i} of the last decode (all_logits=True keeps them)"
            raise _invalid(what)
        return self._copy_logits(ptr)

    def _copy_logits(self, ptr: Any) -> Any:
        n = self.n_vocab
        raw = ctypes.string_at(ptr, n * 4)  # copy: the pointer dies at the next decode
        if _np is not None:
            return _np.frombuffer(raw, dtype=_np.float32).copy()
        out = array.array("f")
        out.frombytes(raw)
        return out

    def rewind(self, pos: int) -> None:
        """Keep the first pos tokens of the cache (0 <= pos <= self.pos)."""
        h = self._enter()
        try:
            _check(_C.nllm_context_rewind(h, _c_int("pos", pos)))
        finally:
            self._leave()

    def reset(self) -> None:
        """Empty the cache and the timings."""
        h = self._enter()
        try:
            _C.nllm_context_reset(h)
        finally:
            self._leave()

    # -- many sequences

    @property
    def n_seq_max(self) -> int:
        """Sequences this context holds (ids 0 .. n_seq_max - 1)."""
        return int(_C.nllm_context_n_seq_max(self.handle))

    def decode_batch(
        self,
        tokens: Sequence[int],
        seq_ids: Optional[Sequence[int]] = None,
        pos: Optional[Sequence[int]] = None,
        logits: Optional[Sequence[bool]] = None,
    ) -> None:
        """nllm_decode_batch: row i is tokens[i] of sequence seq_ids[i] (None: all sequence 0)
        at position pos[i] (None: each sequence continues after its last position). logits
        (None: the last row of each sequence) says which rows keep their logits: read them with
        logits(i) or logits_seq(seq). Any mix of prompt chunks and single tokens; all or
        nothing (ContextFullError when the pool lacks cells, every sequence unchanged)."""
        n = len(tokens)
        for name, arr in (("seq_ids", seq_ids), ("pos", pos), ("logits", logits)):
            if arr is not None and len(arr) != n:
                raise _invalid(f"decode_batch: {name} has {len(arr)} entries, tokens {n}")
        b = ffi.nllm_batch()
        _check(_C.nllm_batch_init_sized(ctypes.byref(b), ctypes.sizeof(b)))
        b.n_tokens = _c_int("len(tokens)", n)
        keep = [_c_ints("tokens", tokens)]  # the arrays live until the call returns
        b.tokens = keep[0]
        if seq_ids is not None:
            keep.append(_c_ints("seq_ids", seq_ids))
            b.seq_id = keep[-1]
        if pos is not None:
            keep.append(_c_ints("pos", pos))
            b.pos = keep[-1]
        if logits is not None:
            keep.append(_c_ints("logits", [1 if x else 0 for x in logits]))
            b.logits = keep[-1]
        h = self._enter()
        try:
            _check(_C.nllm_decode_batch(h, ctypes.byref(b)))
        finally:
            self._leave()

    def logits_seq(self, seq: int) -> Any:
        """A copy of the logits of sequence seq's last row with logits in the last decode (as
        logits() returns them)."""
        ptr = _C.nllm_get_logits_seq(self.handle, _c_int("seq", seq))
        if not ptr:
            raise _invalid(f"no logits for sequence {seq} in the last decode")
        return self._copy_logits(ptr)

    def _seq_call(self, fn: Any, *args: int) -> None:
        h = self._enter()
        try:
            _check(fn(h, *(_c_int("argument", a) for a in args)))
        finally:
            self._leave()

    def seq_remove(self, seq: int, p0: int = 0, p1: int = -1) -> None:
        """Drop positions [p0, p1) of seq (p1 = -1: to the end; seq = -1: every sequence)."""
        self._seq_call(_C.nllm_seq_remove, seq, p0, p1)

    def seq_copy(self, src: int, dst: int, p0: int = 0, p1: int = -1) -> None:
        """dst shares src's cells in [p0, p1) (a common prefix: nothing recomputed or copied)."""
        self._seq_call(_C.nllm_seq_copy, src, dst, p0, p1)

    def seq_keep(self, seq: int) -> None:
        """Drop every sequence but seq."""
        self._seq_call(_C.nllm_seq_keep, seq)

    def seq_shift(self, seq: int, p0: int, p1: int, delta: int) -> None:
        """Move seq's positions [p0, p1) by delta, re-rotating their keys (context shift)."""
        self._seq_call(_C.nllm_seq_shift, seq, p0, p1, delta)

    def seq_pos_min(self, seq: int) -> int:
        """Smallest position of seq, -1 when empty."""
        return int(_C.nllm_seq_pos_min(self.handle, _c_int("seq", seq)))

    def seq_pos_max(self, seq: int) -> int:
        """Largest position of seq, -1 when empty."""
        return int(_C.nllm_seq_pos_max(self.handle, _c_int("seq", seq)))

    def seq_n_tokens(self, seq: int) -> int:
        """Cells seq holds."""
        return int(_C.nllm_seq_n_tokens(self.handle, _c_int("seq", seq)))

    @property
    def kv_cells(self) -> Tuple[int, int]:
        """(used, total) KV cells of the pool; a shared cell counts once."""
        used, total = ctypes.c_int32(), ctypes.c_int32()
        _check(_C.nllm_context_kv_cells(self.handle, ctypes.byref(used), ctypes.byref(total)))
        return used.value, total.value

    # -- saved state

    def save_state(
        self, path: Union[str, "os.PathLike[str]", None] = None, seq: Optional[int] = None
    ) -> Optional[bytes]:
        """Save the whole context (seq None) or one sequence: to path (written atomically) or,
        without a path, as the returned bytes. The state records the model's identity and the
        KV types; see load_state."""
        which = ffi.NLLM_SEQ_ALL if seq is None else _c_int("seq", seq)
        h = self._enter()
        try:
            if path is not None:
                _check(_C.nllm_state_save_file(h, which, os.fsencode(path)))
                return None
            size = ctypes.c_uint64()
            _check(_C.nllm_state_size(h, which, ctypes.byref(size)))
            buf = ctypes.create_string_buffer(max(size.value, 1))
            _check(_C.nllm_state_save(h, which, buf, size.value, ctypes.byref(size)))
            return buf.raw[: size.value]
        finally:
            self._leave()

    def load_state(
        self, source: Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"],
        seq: Optional[int] = None,
    ) -> None:
        """Restore a state from bytes or a file: a whole context's (seq None; replaces every
        sequence) or a sequence's into sequence seq (any id; the others stay). Afterwards
        logits() / logits_seq() give the saved logits. Another model or KV types:
        InvalidArgumentError; damaged: FormatError; no room: ContextFullError. The context is
        unchanged on any error."""
        which = ffi.NLLM_SEQ_ALL if seq is None else _c_int("seq", seq)
        h = self._enter()
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                data = bytes(source)
                _check(_C.nllm_state_load(h, which, data, len(data)))
            else:
                _check(_C.nllm_state_load_file(h, which, os.fsencode(source)))
        finally:
            self._leave()

    @property
    def timings(self) -> Dict[str, float]:
        """Totals since creation or the last reset: n_prompt_tokens, n_gen_tokens, prompt_ms,
        gen_ms, and the derived prompt/gen tokens per second."""
        t = ffi.nllm_timings()
        t.struct_size = ctypes.sizeof(t)
        _check(_C.nllm_context_timings(self.handle, ctypes.byref(t)))
        return {
            "n_prompt_tokens": t.n_prompt_tokens,
            "n_gen_tokens": t.n_gen_tokens,
            "prompt_ms": t.prompt_ms,
            "gen_ms": t.gen_ms,
            "prompt_tokens_per_s": 1000.0 * t.n_prompt_tokens / t.prompt_ms if t.prompt_ms else 0.0,
            "gen_tokens_per_s": 1000.0 * t.n_gen_tokens / t.gen_ms if t.gen_ms else 0.0,
        }

    # -- generation

    @takes_generate_options(more_keywords=False)
    def generate(
        self, prompt: Union[str, bytes], sampler: Optional[Sampler] = None, **kw: Any
    ) -> Completion:
        """nllm_generate: decode prompt after what the context already holds (so chat turns
        reuse the cache), then sample up to max_tokens. Returns the generated text (a str with
        .finish_reason and .n_tokens, see Completion). sampler defaults to a greedy one.
        Keywords: see GenerateOptions."""
        opts = GenerateOptions.take(kw)
        reject_unexpected(kw)
        return self._generate(prompt, sampler, opts)

    @takes_generate_options(more_keywords=False)
    def stream(
        self, prompt: Union[str, bytes], sampler: Optional[Sampler] = None, **kw: Any
    ) -> Iterator[str]:
        """generate() as a stream of non-empty text pieces. The same nllm_generate call runs on a
        helper thread and hands each piece over as it is produced."""
        opts = GenerateOptions.take(kw)
        reject_unexpected(kw)
        return self._stream(prompt, sampler, opts)

    def _generate(
        self, prompt: Union[str, bytes], sampler: Optional[Sampler], opts: GenerateOptions
    ) -> Completion:
        pieces: List[bytes] = []

        def emit(tok: int, piece: bytes) -> bool:
            pieces.append(piece)
            return opts.notify(tok, piece)

        n, reason = self._run(prompt, sampler, opts, emit)
        return Completion(b"".join(pieces).decode("utf-8", "replace"), reason, n)

    def _stream(
        self, prompt: Union[str, bytes], sampler: Optional[Sampler], opts: GenerateOptions
    ) -> Iterator[str]:
        return stream_pieces(
            lambda emit: self._run(prompt, sampler, opts, emit), opts, self._cancel
        )

    def _run(
        self,
        prompt: Union[str, bytes],
        sampler: Optional[Sampler],
        opts: GenerateOptions,
        emit: Emit,
    ) -> Tuple[int, Optional[str]]:
        """One nllm_generate call with this context held; emit sees every token (the caller
        has already wrapped opts.on_token into it). Returns the number of generated tokens and
        the finish reason."""
        data = _to_bytes(prompt)
        h = self._enter()
        own_sampler = sampler is None
        try:
            if sampler is None:
                sampler = Sampler(self.model, temperature=0.0)
            with sampler._use() as sh:  # sampler.close() elsewhere waits for this call
                return run_generate(h, sh, data, opts, self._cancel, emit)
        finally:
            self._leave()
            if own_sampler and sampler is not None:
                sampler.close()
