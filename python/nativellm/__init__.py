"""nativellm: Python bindings (ctypes, no compiled extension) for libnativellm.

Quick start::

    import nativellm
    with nativellm.Model("models/stories260K.gguf") as model:
        print(model.generate("Once upon a time", max_tokens=64, temperature=0))
        for piece in model.stream("Once upon a time", max_tokens=64):
            print(piece, end="", flush=True)

The library is found as described in ``nativellm._lib`` (``$NATIVELLM_LIB``, next to the
package, the repository's ``build/`` folder, then the system loader); importing this package
raises ImportError if it is missing or speaks another ABI version.

Threads: a Model may be shared by any number of threads; each Context and Sampler is used by one
thread at a time (a second thread using a busy Context gets InvalidArgumentError). Native calls
release the GIL, so contexts on different threads run in parallel.
"""

from __future__ import annotations

import array
import ctypes
import os
import queue
import signal
import threading
import weakref
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

from . import _ffi as ffi
from . import _lib as _loader

_C = _loader.lib  # the loaded CDLL, every function declared by _ffi
library_path: str = _loader.path

__version__ = "0.1.0"

try:  # NumPy is optional: logits come back as numpy.ndarray when it is installed.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

TokenCallback = Callable[[int, str], Optional[bool]]
Message = Union[Mapping[str, str], Tuple[str, str]]

# ---------------------------------------------------------------- errors


class Error(Exception):
    """A failing libnativellm call. ``status`` is the nllm_status code (negative),
    ``status_name`` its name ("NLLM_ERR_IO") and ``message`` the library's own message, read
    from nllm_last_error() on the same thread right after the failing call."""

    status: int
    status_name: str
    message: str

    def __init__(self, message: str, status: int = ffi.NLLM_ERR_INTERNAL) -> None:
        super().__init__(message)
        self.status = status
        self.status_name = status_name(status)
        self.message = message


class InvalidArgumentError(Error, ValueError):
    """NLLM_ERR_INVALID_ARG: NULL pointer, out-of-range parameter, bad struct_size, or a handle
    that is closed or busy on another thread."""


class FileError(Error):
    """NLLM_ERR_IO: file missing, unreadable, or mmap failed. The message names the path."""


class FormatError(Error):
    """NLLM_ERR_FORMAT: malformed or malicious model/tokenizer file."""


class UnsupportedError(Error):
    """NLLM_ERR_UNSUPPORTED: a valid file using a feature or type this build lacks."""


class NoMemoryError(Error, MemoryError):
    """NLLM_ERR_NOMEM: an allocation failed."""


class ContextFullError(Error):
    """NLLM_ERR_CONTEXT_FULL: decode would exceed the context length (nothing was evaluated)."""


class AbortedError(Error):
    """NLLM_ERR_ABORTED: an abort or progress callback asked to stop."""


class BufferTooSmallError(Error):
    """NLLM_ERR_BUFFER_TOO_SMALL: the bindings grow buffers themselves, so seeing this is a bug."""


class NotFoundError(Error, LookupError):
    """NLLM_ERR_NOT_FOUND: metadata key or token absent."""


class BackendError(Error):
    """NLLM_ERR_BACKEND: GPU / backend failure."""


class InternalError(Error):
    """NLLM_ERR_INTERNAL: a bug in the library; please report it with the message."""


class BusyError(Error):
    """NLLM_ERR_BUSY: the context is already inside another call (another thread)."""


ERRORS: Dict[int, Type[Error]] = {
    ffi.NLLM_ERR_INVALID_ARG: InvalidArgumentError,
    ffi.NLLM_ERR_IO: FileError,
    ffi.NLLM_ERR_FORMAT: FormatError,
    ffi.NLLM_ERR_UNSUPPORTED: UnsupportedError,
    ffi.NLLM_ERR_NOMEM: NoMemoryError,
    ffi.NLLM_ERR_CONTEXT_FULL: ContextFullError,
    ffi.NLLM_ERR_ABORTED: AbortedError,
    ffi.NLLM_ERR_BUFFER_TOO_SMALL: BufferTooSmallError,
    ffi.NLLM_ERR_NOT_FOUND: NotFoundError,
    ffi.NLLM_ERR_BACKEND: BackendError,
    ffi.NLLM_ERR_INTERNAL: InternalError,
    ffi.NLLM_ERR_BUSY: BusyError,
}


def _error(status: int) -> Error:
    # Must run right after the failing call on the same thread: the message is thread-local
    # and replaced by the next failing call.
    raw = _C.nllm_last_error()
    msg = raw.decode("utf-8", "replace") if raw else ""
    return ERRORS.get(status, Error)(msg or status_name(status), status)


def _check(status: int) -> None:
    if status != ffi.NLLM_OK:
        raise _error(status)


# ---------------------------------------------------------------- library-level functions


def version() -> str:
    """Version string of the loaded library ("0.1.0")."""
    return _C.nllm_version().decode()


def abi_version() -> int:
    """NLLM_ABI_VERSION of the loaded library (checked against the bindings at import)."""
    return int(_C.nllm_abi_version())


def system_info() -> str:
    """CPU features the library uses ("AVX2=1 FMA=1 F16C=1 NEON=0 ...")."""
    return _C.nllm_system_info().decode()


def status_name(status: int) -> str:
    """Name of a status code ("NLLM_ERR_FORMAT")."""
    raw = _C.nllm_status_name(status)
    return raw.decode() if raw else f"status {status}"


def type_name(type_id: int) -> Optional[str]:
    """Name of a weight type id ("Q4_K"), or None if unknown."""
    raw = _C.nllm_type_name(type_id)
    return raw.decode() if raw else None


def _type_id(t: Union[int, str, None]) -> int:
    if t is None:
        return ffi.NLLM_TYPE_NONE
    if isinstance(t, int):
        return t
    value = getattr(ffi, "NLLM_TYPE_" + t.upper(), None)
    if value is None:
        raise InvalidArgumentError(f"unknown weight type name {t!r}", ffi.NLLM_ERR_INVALID_ARG)
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

# ---------------------------------------------------------------- helpers


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


class _CancelState:
    """Shared by a Context's abort callback and its generate calls; holds no reference to the
    Context, so the C callback does not keep the Context alive."""

    __slots__ = ("flag", "event")

    def __init__(self, event: Optional[threading.Event]) -> None:
        self.flag = False
        self.event = event

    def requested(self) -> bool:
        return self.flag or (self.event is not None and self.event.is_set())


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_SAMPLER_KEYS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "seed",
)
_CONTEXT_KEYS = ("n_ctx", "n_threads", "n_batch", "kv_type", "all_logits")


def _split_kwargs(kw: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    s = {k: kw.pop(k) for k in _SAMPLER_KEYS if k in kw}
    c = {k: kw.pop(k) for k in _CONTEXT_KEYS if k in kw}
    if kw:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kw))}")
    return s, c


# ---------------------------------------------------------------- model


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
        if getattr(self, "_h", None) is not None and _C is not None:
            try:
                self.close()
            except Exception:
                pass

    @property
    def handle(self) -> Any:
        """The raw C handle (for calling ffi functions directly)."""
        if self._h is None:
            raise InvalidArgumentError(f"{self._kind} is closed", ffi.NLLM_ERR_INVALID_ARG)
        return self._h


class Model(_Handle):
    """A loaded model (GGUF file or Hugging Face folder). Immutable and shareable by threads.

    Keyword parameters mirror nllm_model_params: ``n_threads`` (0 = all cores), ``use_mmap``
    (default False: weights read into memory, faster decode; True maps the file), ``n_ctx_default`` (0 = min(training context, 4096)), ``n_gpu_layers``,
    ``vocab_only``, ``quantize_type`` ("Q8_0", an NLLM_TYPE_* id, or None) and ``progress``
    (a callable taking a float in [0, 1]; returning True cancels the load with AbortedError).

    Use it as a context manager or call close(); closing also closes the Contexts and Samplers
    made from it.
    """

    _kind = "model"

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        n_threads: int = 0,
        use_mmap: bool = False,
        n_ctx_default: int = 0,
        n_gpu_layers: int = 0,
        vocab_only: bool = False,
        quantize_type: Union[int, str, None] = None,
        progress: Optional[Callable[[float], Optional[bool]]] = None,
    ) -> None:
        self._h: Optional[Any] = None
        self._children: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.path = str(path)
        p = ffi.nllm_model_params()
        _C.nllm_model_params_init(ctypes.byref(p))
        p.n_threads = n_threads
        p.use_mmap = 1 if use_mmap else 0
        p.n_ctx_default = n_ctx_default
        p.n_gpu_layers = n_gpu_layers
        p.vocab_only = 1 if vocab_only else 0
        p.quantize_type = _type_id(quantize_type)
        raised: List[BaseException] = []
        if progress is not None:

            def on_progress(value: float, _ud: Any) -> int:
                try:
                    return 1 if progress(value) else 0
                except BaseException as e:  # stop the load, re-raise after it returns
                    raised.append(e)
                    return 1

            cb = ffi.nllm_progress_fn(on_progress)
            p.progress = cb
        h = ffi.model_p()
        status = _C.nllm_model_load(self.path.encode(), ctypes.byref(p), ctypes.byref(h))
        err = _error(status) if status != ffi.NLLM_OK else None
        if raised:
            raise raised[0]
        if err is not None:
            raise err
        self._h = h

    # -- lifetime

    def close(self) -> None:
        """Free the model and every Context/Sampler made from it. Idempotent."""
        for child in list(self._children):
            child.close()
        if self._h is not None:
            _C.nllm_model_free(self._h)
            self._h = None

    def __repr__(self) -> str:
        if self._h is None:
            return f"<nativellm.Model {self.path!r} closed>"
        return f"<nativellm.Model {self.path!r} arch={self.arch} n_params={self.n_params}>"

    # -- getters

    @property
    def arch(self) -> str:
        return _C.nllm_model_arch(self.handle).decode()

    @property
    def name(self) -> str:
        return (_C.nllm_model_name(self.handle) or b"").decode("utf-8", "replace")

    @property
    def n_params(self) -> int:
        return int(_C.nllm_model_n_params(self.handle))

    @property
    def n_vocab(self) -> int:
        return int(_C.nllm_model_n_vocab(self.handle))

    @property
    def n_ctx_train(self) -> int:
        return int(_C.nllm_model_n_ctx_train(self.handle))

    def token(self, which: int) -> Optional[int]:
        """Special token id (NLLM_TOKEN_BOS, ...) or None if the model has none."""
        t = int(_C.nllm_model_token(self.handle, which))
        return None if t < 0 else t

    @property
    def bos(self) -> Optional[int]:
        return self.token(ffi.NLLM_TOKEN_BOS)

    @property
    def eos(self) -> Optional[int]:
        return self.token(ffi.NLLM_TOKEN_EOS)

    def is_eog(self, token: int) -> bool:
        """True if generation stops at this token (EOS, EOT, <|im_end|>, ...)."""
        return bool(_C.nllm_model_token_is_eog(self.handle, token))

    @property
    def info(self) -> Dict[str, Any]:
        """Architecture, sizes and special tokens as a dict."""
        h = self.handle
        specials = {
            "bos": ffi.NLLM_TOKEN_BOS,
            "eos": ffi.NLLM_TOKEN_EOS,
            "eot": ffi.NLLM_TOKEN_EOT,
            "unk": ffi.NLLM_TOKEN_UNK,
            "pad": ffi.NLLM_TOKEN_PAD,
            "newline": ffi.NLLM_TOKEN_NEWLINE,
        }
        return {
            "path": self.path,
            "arch": self.arch,
            "name": self.name,
            "n_params": self.n_params,
            "size_bytes": int(_C.nllm_model_size_bytes(h)),
            "n_vocab": self.n_vocab,
            "n_ctx_train": self.n_ctx_train,
            "n_embd": int(_C.nllm_model_n_embd(h)),
            "n_layer": int(_C.nllm_model_n_layer(h)),
            "tokens": {k: self.token(v) for k, v in specials.items()},
        }

    def meta_str(self, key: str) -> str:
        """String metadata value. NotFoundError if absent, InvalidArgumentError if not a string."""
        out = ctypes.c_char_p()
        _check(_C.nllm_model_meta_str(self.handle, key.encode(), ctypes.byref(out)))
        return (out.value or b"").decode("utf-8", "replace")

    def meta_int(self, key: str) -> int:
        """Integer (or bool) metadata value."""
        out = ctypes.c_int64()
        _check(_C.nllm_model_meta_int(self.handle, key.encode(), ctypes.byref(out)))
        return out.value

    def meta_float(self, key: str) -> float:
        """Float (or integer) metadata value."""
        out = ctypes.c_double()
        _check(_C.nllm_model_meta_float(self.handle, key.encode(), ctypes.byref(out)))
        return out.value

    @property
    def metadata(self) -> Dict[str, str]:
        """Every metadata key with its value rendered as text (arrays summarized)."""
        h = self.handle
        out: Dict[str, str] = {}
        for i in range(int(_C.nllm_model_meta_count(h))):
            key = (_C.nllm_model_meta_key(h, i) or b"").decode("utf-8", "replace")
            text = _grow_call(
                lambda buf, cap, n, i=i: _C.nllm_model_meta_value_text(h, i, buf, cap, n), 256
            )
            out[key] = text.decode("utf-8", "replace")
        return out

    def tensors(self) -> List[Dict[str, Any]]:
        """The tensor table: name, type id, type name and shape (ne[0] = row length)."""
        h = self.handle
        out = []
        name = ctypes.c_char_p()
        ttype = ctypes.c_int32()
        ndims = ctypes.c_int32()
        ne = (ctypes.c_int64 * 4)()
        for i in range(int(_C.nllm_model_tensor_count(h))):
            _check(
                _C.nllm_model_tensor_info(
                    h, i, ctypes.byref(name), ctypes.byref(ttype), ctypes.byref(ndims), ne
                )
            )
            out.append(
                {
                    "name": (name.value or b"").decode(),
                    "type": ttype.value,
                    "type_name": type_name(ttype.value),
                    "shape": tuple(ne[d] for d in range(ndims.value)),
                }
            )
        return out

    # -- tokenizer

    def tokenize(
        self, text: Union[str, bytes], add_bos: bool = True, special: bool = False
    ) -> List[int]:
        """Token ids of text. add_bos: prepend BOS if the model wants one. special: text such as
        "<|im_start|>" becomes its control token instead of plain text."""
        data = _to_bytes(text)
        h = self.handle
        cap = len(data) + 8
        n = ctypes.c_int32(0)
        for _ in range(2):
            buf = (ffi.nllm_token * cap)()
            status = _C.nllm_tokenize(
                h, data, len(data), int(add_bos), int(special), buf, cap, ctypes.byref(n)
            )
            if status == ffi.NLLM_ERR_BUFFER_TOO_SMALL and n.value > cap:
                cap = n.value
                continue
            _check(status)
            return list(buf[: n.value])
        raise InternalError("tokenize: buffer still too small after growing")

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes one token stands for. Bytes, not str: a byte-fallback token can be part of
        a multi-byte character. Control tokens give their text only if special."""
        h = self.handle
        return _grow_call(
            lambda buf, cap, n: _C.nllm_token_to_piece(h, token, int(special), buf, cap, n), 32
        )

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        """Text of a token sequence (the model's leading-space rule applies to the first)."""
        h = self.handle
        ids = (ffi.nllm_token * len(tokens))(*tokens)
        raw = _grow_call(
            lambda buf, cap, n: _C.nllm_detokenize(
                h, ids, len(tokens), int(special), buf, cap, n
            ),
            8 * len(tokens) + 16,
        )
        return raw.decode("utf-8", "replace")

    # -- chat templates

    def chat_format(self, messages: Iterable[Message], add_assistant: bool = True) -> str:
        """Render messages ({"role": ..., "content": ...} or (role, content)) with the model's
        chat template. UnsupportedError if the model's template is unknown to the library."""
        items: List[Tuple[bytes, bytes]] = []
        for m in messages:
            if isinstance(m, Mapping):
                role, content = m["role"], m["content"]
            else:
                role, content = m
            items.append((_to_bytes(role), _to_bytes(content)))
        arr = (ffi.nllm_chat_message * max(len(items), 1))()
        for i, (role_b, content_b) in enumerate(items):
            arr[i].role = role_b
            arr[i].content = content_b
        h = self.handle
        size = sum(len(r) + len(c) for r, c in items) + 256
        raw = _grow_call(
            lambda buf, cap, n: _C.nllm_chat_format(
                h, arr, len(items), int(add_assistant), buf, cap, n
            ),
            size,
        )
        return raw.decode("utf-8", "replace")

    # -- factories and convenience generation

    def context(self, **params: Any) -> "Context":
        """A new Context on this model (see Context for the parameters)."""
        return Context(self, **params)

    def sampler(self, **params: Any) -> "Sampler":
        """A new Sampler for this model (see Sampler for the parameters)."""
        return Sampler(self, **params)

    def generate(
        self,
        prompt: Union[str, bytes],
        *,
        max_tokens: Optional[int] = None,
        stop_at_eog: bool = True,
        add_bos: bool = True,
        special: bool = False,
        on_token: Optional[TokenCallback] = None,
        cancel: Optional[threading.Event] = None,
        **kw: Any,
    ) -> str:
        """Generate a continuation of prompt in a fresh Context and return its text.

        Sampling keywords (temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
        seed) default to the library's (nllm_sampler_params_init); ``temperature=0`` is greedy.
        Context keywords: n_ctx, n_threads, n_batch, kv_type. ``max_tokens`` defaults to the
        library's (256). ``on_token(token, piece)`` sees every generated token; returning True
        stops. Setting ``cancel`` (a threading.Event) stops generation and returns the text so
        far; Ctrl-C stops it cleanly and then raises KeyboardInterrupt.
        """
        skw, ckw = _split_kwargs(dict(kw))
        with Context(self, **ckw) as ctx, Sampler(self, **skw) as smp:
            return ctx.generate(
                prompt,
                smp,
                max_tokens=max_tokens,
                stop_at_eog=stop_at_eog,
                add_bos=add_bos,
                special=special,
                on_token=on_token,
                cancel=cancel,
            )

    def stream(
        self,
        prompt: Union[str, bytes],
        *,
        max_tokens: Optional[int] = None,
        stop_at_eog: bool = True,
        add_bos: bool = True,
        special: bool = False,
        cancel: Optional[threading.Event] = None,
        **kw: Any,
    ) -> Iterator[str]:
        """Like generate(), but yields the text pieces as they are produced. The pieces joined
        equal generate()'s result for the same arguments. Leaving the loop early (break, an
        exception, Ctrl-C) stops the generation and frees its Context."""
        skw, ckw = _split_kwargs(dict(kw))
        ctx = Context(self, **ckw)
        smp = Sampler(self, **skw)
        try:
            yield from ctx.stream(
                prompt,
                smp,
                max_tokens=max_tokens,
                stop_at_eog=stop_at_eog,
                add_bos=add_bos,
                special=special,
                cancel=cancel,
            )
        finally:
            smp.close()
            ctx.close()

    def _chat_prompt(self, messages: Iterable[Message], kw: Dict[str, Any]) -> str:
        prompt = self.chat_format(messages, add_assistant=True)
        if "add_bos" not in kw:
            # Templates that write the BOS text themselves must not get a second BOS.
            bos = self.bos
            bos_text = self.token_to_piece(bos, special=True) if bos is not None else b""
            kw["add_bos"] = not (bos_text and prompt.encode().startswith(bos_text))
        kw.setdefault("special", True)
        return prompt

    def chat(self, messages: Iterable[Message], **kw: Any) -> str:
        """Format messages with the model's chat template and generate the assistant's reply.
        Keywords as for generate(); control tokens in the template are parsed as such."""
        prompt = self._chat_prompt(messages, kw)
        return self.generate(prompt, **kw)

    def chat_stream(self, messages: Iterable[Message], **kw: Any) -> Iterator[str]:
        """chat() as a stream of text pieces."""
        prompt = self._chat_prompt(messages, kw)
        return self.stream(prompt, **kw)


# ---------------------------------------------------------------- context


class Context(_Handle):
    """One sequence on a Model: KV cache, position, logits. One thread at a time.

    Keyword parameters mirror nllm_context_params: ``n_ctx`` (0 = the model's default),
    ``n_threads`` (0 = all cores), ``n_batch`` (0 = 512), ``kv_type`` ("F16", "F32" or an id),
    ``all_logits`` (keep every position's logits of each decode), ``seed`` (for samplers made
    with the default seed) and ``cancel`` (a threading.Event: once set, decode and generate
    stop with AbortedError / a clean stop).
    """

    _kind = "context"

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 0,
        n_threads: int = 0,
        n_batch: int = 0,
        kv_type: Union[int, str, None] = None,
        all_logits: bool = False,
        seed: Optional[int] = None,
        cancel: Optional[threading.Event] = None,
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
        _C.nllm_context_params_init(ctypes.byref(p))
        p.n_ctx = n_ctx
        p.n_threads = n_threads
        p.n_batch = n_batch
        if kv_type is not None:
            p.kv_type = _type_id(kv_type)
        p.all_logits = 1 if all_logits else 0
        if seed is not None:
            p.seed = seed
        p.abort_callback = self._abort_cb
        h = ffi.context_p()
        _check(_C.nllm_context_create(model.handle, ctypes.byref(p), ctypes.byref(h)))
        self._h = h
        self.n_vocab = model.n_vocab
        model._children.add(self)

    # -- lifetime

    def close(self) -> None:
        """Free the context. Idempotent."""
        if self._h is not None:
            self._cancel.flag = True  # a generate running on another thread stops first
            with self._busy:
                if self._h is not None:
                    _C.nllm_context_free(self._h)
                    self._h = None

    def _enter(self) -> Any:
        h = self.handle
        if not self._busy.acquire(blocking=False):
            raise InvalidArgumentError(
                "context is in use by another thread (use one Context per thread)",
                ffi.NLLM_ERR_INVALID_ARG,
            )
        return h

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
            ids = (ffi.nllm_token * len(tokens))(*tokens)
            _check(_C.nllm_decode(h, ids, len(tokens)))
        finally:
            self._busy.release()

    def logits(self, i: Optional[int] = None) -> Any:
        """A copy of the logits of the last decoded token (or of token i of the last decode,
        which needs all_logits=True for any but the last): numpy.ndarray (float32) when NumPy is
        installed, else array.array('f'). Both support len(), indexing and memoryview()."""
        h = self.handle
        ptr = _C.nllm_get_logits(h) if i is None else _C.nllm_get_logits_ith(h, i)
        if not ptr:
            what = "no logits yet: decode something first"
            if i is not None:
                what = f"no logits for token {i} of the last decode (all_logits=True keeps them)"
            raise InvalidArgumentError(what, ffi.NLLM_ERR_INVALID_ARG)
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
            _check(_C.nllm_context_rewind(h, pos))
        finally:
            self._busy.release()

    def reset(self) -> None:
        """Empty the cache and the timings."""
        h = self._enter()
        try:
            _C.nllm_context_reset(h)
        finally:
            self._busy.release()

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

    def generate(
        self,
        prompt: Union[str, bytes],
        sampler: Optional["Sampler"] = None,
        *,
        max_tokens: Optional[int] = None,
        stop_at_eog: bool = True,
        add_bos: bool = True,
        special: bool = False,
        on_token: Optional[TokenCallback] = None,
        cancel: Optional[threading.Event] = None,
    ) -> str:
        """nllm_generate: decode prompt after what the context already holds (so chat turns
        reuse the cache), then sample up to max_tokens. Returns the generated text. sampler
        defaults to a greedy one. See Model.generate for on_token and cancel."""
        pieces: List[bytes] = []

        def emit(tok: int, piece: bytes) -> bool:
            pieces.append(piece)
            if on_token is not None:
                return bool(on_token(tok, piece.decode("utf-8", "replace")))
            return False

        self._run(prompt, sampler, max_tokens, stop_at_eog, add_bos, special, cancel, emit)
        return b"".join(pieces).decode("utf-8", "replace")

    def stream(
        self,
        prompt: Union[str, bytes],
        sampler: Optional["Sampler"] = None,
        *,
        max_tokens: Optional[int] = None,
        stop_at_eog: bool = True,
        add_bos: bool = True,
        special: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Iterator[str]:
        """generate() as a stream of non-empty text pieces. The same nllm_generate call runs on a
        helper thread and hands each piece over as it is produced."""
        q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        done = object()

        def emit(_tok: int, piece: bytes) -> bool:
            q.put(piece)
            return False

        def work() -> None:
            try:
                self._run(prompt, sampler, max_tokens, stop_at_eog, add_bos, special, cancel, emit)
                q.put(done)
            except BaseException as e:  # handed to the consumer, raised there
                q.put(_Raised(e))

        worker = threading.Thread(target=work, name="nativellm-stream", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    # A timeout keeps the wait interruptible by Ctrl-C on every platform.
                    item = q.get(timeout=0.25)
                except queue.Empty:
                    continue
                if item is done:
                    break
                if isinstance(item, _Raised):
                    raise item.exc
                if item:
                    yield item.decode("utf-8", "replace")
        finally:
            if worker.is_alive():
                self._cancel.flag = True
            worker.join()
            self._cancel.flag = False

    def _run(
        self,
        prompt: Union[str, bytes],
        sampler: Optional["Sampler"],
        max_tokens: Optional[int],
        stop_at_eog: bool,
        add_bos: bool,
        special: bool,
        cancel: Optional[threading.Event],
        emit: Callable[[int, bytes], bool],
    ) -> int:
        """One nllm_generate call; emit(token, piece_bytes) returns True to stop. Returns the
        number of generated tokens."""
        data = _to_bytes(prompt)
        h = self._enter()
        own_sampler = sampler is None
        try:
            if sampler is None:
                sampler = Sampler(self.model, temperature=0.0)
            return self._run_locked(
                h, data, sampler, max_tokens, stop_at_eog, add_bos, special, cancel, emit
            )
        finally:
            self._busy.release()
            if own_sampler and sampler is not None:
                sampler.close()

    def _run_locked(
        self,
        h: Any,
        data: bytes,
        sampler: "Sampler",
        max_tokens: Optional[int],
        stop_at_eog: bool,
        add_bos: bool,
        special: bool,
        cancel: Optional[threading.Event],
        emit: Callable[[int, bytes], bool],
    ) -> int:
        state = self._cancel
        old_event = state.event
        if cancel is not None:
            state.event = cancel
        raised: List[BaseException] = []

        def on_token(tok: int, piece: Any, n: int, _ud: Any) -> int:
            if state.requested():
                return 1
            try:
                return 1 if emit(tok, ctypes.string_at(piece, n) if n > 0 else b"") else 0
            except BaseException as e:  # must not unwind through C; re-raised below
                raised.append(e)
                return 1

        cb = ffi.nllm_token_fn(on_token)
        gp = ffi.nllm_generate_params()
        _C.nllm_generate_params_init(ctypes.byref(gp))
        if max_tokens is not None:
            gp.max_tokens = max_tokens
        gp.add_bos = int(add_bos)
        gp.parse_special = int(special)
        gp.stop_at_eog = int(stop_at_eog)
        gp.on_token = cb
        n_gen = ctypes.c_int32(0)

        # Ctrl-C during a native call would otherwise surface inside a ctypes callback, where
        # it is printed and lost. Our handler only flags the stop; KeyboardInterrupt is raised
        # once the library has returned and the context is consistent again.
        interrupted = [False]
        old_handler: Any = None
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):

            def on_sigint(_signum: int, _frame: Any) -> None:
                interrupted[0] = True
                state.flag = True

            old_handler = signal.signal(signal.SIGINT, on_sigint)
        try:
            status = _C.nllm_generate(
                h, sampler.handle, data, len(data), ctypes.byref(gp), ctypes.byref(n_gen)
            )
            err = _error(status) if status != ffi.NLLM_OK else None
            cancelled = state.requested()
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            state.flag = False
            state.event = old_event
        if raised:
            raise raised[0]
        if interrupted[0]:
            raise KeyboardInterrupt
        if err is not None and not (cancelled and err.status == ffi.NLLM_ERR_ABORTED):
            raise err
        return n_gen.value


# ---------------------------------------------------------------- sampler


class Sampler(_Handle):
    """Sampling state: temperature (0 = greedy), top_k, top_p, min_p, repeat_penalty,
    repeat_last_n and seed; parameters left as None keep the library's defaults
    (nllm_sampler_params_init). seed None means the context's seed. One thread at a time."""

    _kind = "sampler"

    def __init__(
        self,
        model: Model,
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
        given = {
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "min_p": min_p,
            "repeat_penalty": repeat_penalty,
            "repeat_last_n": repeat_last_n,
            "seed": seed,
        }
        for k, v in given.items():
            if v is not None:
                setattr(p, k, v)
        self.params = {k: getattr(p, k) for k in given}
        h = ffi.sampler_p()
        _check(_C.nllm_sampler_create(model.handle, ctypes.byref(p), ctypes.byref(h)))
        self._h = h
        model._children.add(self)

    def close(self) -> None:
        """Free the sampler. Idempotent."""
        if self._h is not None:
            _C.nllm_sampler_free(self._h)
            self._h = None

    def sample(self, ctx: Context) -> int:
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


__all__ = [
    "Model",
    "Context",
    "Sampler",
    "Error",
    "InvalidArgumentError",
    "FileError",
    "FormatError",
    "UnsupportedError",
    "NoMemoryError",
    "ContextFullError",
    "AbortedError",
    "BufferTooSmallError",
    "NotFoundError",
    "BackendError",
    "InternalError",
    "BusyError",
    "ERRORS",
    "version",
    "abi_version",
    "system_info",
    "status_name",
    "type_name",
    "set_log_callback",
    "set_log_level",
    "library_path",
    "ffi",
    "LOG_ERROR",
    "LOG_WARN",
    "LOG_INFO",
    "LOG_DEBUG",
]
