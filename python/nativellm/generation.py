"""Generation: the one keyword set of every generate/stream call and the nllm_generate loop.

Model.generate, Model.stream, Model.chat, Model.chat_stream, Context.generate and
Context.stream all take the keywords of GenerateOptions; a keyword added there reaches all of
them.
"""

from __future__ import annotations

import ctypes
import dataclasses
import inspect
import queue
import signal
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

from . import _ffi as ffi
from ._lib import lib as _C
from ._handle import _set_int_fields
from .errors import _check, _error

TokenCallback = Callable[[int, str], Optional[bool]]
Emit = Callable[[int, bytes], bool]  # (token, piece bytes) -> True to stop


@dataclasses.dataclass(frozen=True)
class GenerateOptions:
    """Keywords of every generate/stream call.

    ``max_tokens`` defaults to the library's (256); ``stop_at_eog`` stops at end-of-generation
    tokens; ``add_bos`` prepends BOS if the model wants one; ``special`` parses control-token
    text in the prompt as control tokens. ``stop``: strings that end generation when the text
    contains one (matched across tokens; the stop string is not returned or streamed).
    ``on_token(token, piece)`` sees every generated token; returning True stops. Setting
    ``cancel`` (a threading.Event) stops generation and returns the text so far; Ctrl-C stops
    it cleanly and then raises KeyboardInterrupt.
    """

    max_tokens: Optional[int] = None
    stop_at_eog: bool = True
    add_bos: bool = True
    special: bool = False
    stop: Optional[Sequence[str]] = None
    on_token: Optional[TokenCallback] = None
    cancel: Optional[threading.Event] = None

    @classmethod
    def take(cls, kw: Dict[str, Any]) -> "GenerateOptions":
        """Remove this set's keywords from kw and return them as options."""
        return cls(**{f.name: kw.pop(f.name) for f in dataclasses.fields(cls) if f.name in kw})

    def notify(self, token: int, piece: bytes) -> bool:
        """Call on_token; True means stop."""
        if self.on_token is None:
            return False
        return bool(self.on_token(token, piece.decode("utf-8", "replace")))


FINISH_REASONS = {
    ffi.NLLM_FINISH_EOG: "eog",
    ffi.NLLM_FINISH_LENGTH: "length",
    ffi.NLLM_FINISH_STOP: "stop",
    ffi.NLLM_FINISH_ABORTED: "aborted",
}


class Completion(str):
    """The text generate() returns: a str, plus why generation ended and how long it was.

    ``finish_reason`` is "stop" (a stop string matched), "length" (max_tokens reached, or the
    context is full), "eog" (an end-of-generation token) or "aborted" (on_token returned True,
    or cancel was set). ``n_tokens`` counts the generated tokens."""

    finish_reason: Optional[str]
    n_tokens: int

    def __new__(cls, text: str, finish_reason: Optional[str], n_tokens: int) -> "Completion":
        self = super().__new__(cls, text)
        self.finish_reason = finish_reason
        self.n_tokens = n_tokens
        return self


def reject_unexpected(kw: Dict[str, Any]) -> None:
    if kw:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kw))}")


F = TypeVar("F", bound=Callable[..., Any])


def takes_generate_options(more_keywords: bool) -> Callable[[F], F]:
    """Show GenerateOptions' fields as keyword-only parameters in the decorated function's
    signature (help(), IDEs), so that they are written once. more_keywords: the function takes
    other keywords too (its **kw stays in the signature)."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        var_kw = [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
        for f in dataclasses.fields(GenerateOptions):
            params.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
                )
            )
        fn.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=params + (var_kw if more_keywords else [])
        )
        return fn

    return wrap


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


def run_generate(
    h: Any, sampler_h: Any, data: bytes, opts: GenerateOptions, state: _CancelState, emit: Emit
) -> Tuple[int, Optional[str]]:
    """One nllm_generate call on a context the caller holds; emit(token, piece_bytes) returns
    True to stop. Returns the number of generated tokens and the finish reason. A context that
    fills during generation ends it like max_tokens (reason "length"), as the text so far has
    been emitted; a prompt that does not fit raises ContextFullError."""
    old_event = state.event
    if opts.cancel is not None:
        state.event = opts.cancel
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
    _check(_C.nllm_generate_params_init_sized(ctypes.byref(gp), ctypes.sizeof(gp)))
    if opts.max_tokens is not None:
        _set_int_fields(gp, max_tokens=opts.max_tokens)
    gp.add_bos = int(opts.add_bos)
    gp.parse_special = int(opts.special)
    gp.stop_at_eog = int(opts.stop_at_eog)
    gp.on_token = cb
    stops = [x.encode() if isinstance(x, str) else bytes(x) for x in (opts.stop or ())]
    if isinstance(opts.stop, (str, bytes)):
        stops = [opts.stop.encode() if isinstance(opts.stop, str) else opts.stop]
    stop_arr = (ctypes.c_char_p * max(len(stops), 1))(*stops)
    if stops:
        gp.stop = ctypes.cast(stop_arr, ctypes.POINTER(ctypes.c_char_p))
        gp.n_stop = len(stops)
    finish = ctypes.c_int32(ffi.NLLM_FINISH_NONE)
    gp.finish_reason = ctypes.pointer(finish)
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
            h, sampler_h, data, len(data), ctypes.byref(gp), ctypes.byref(n_gen)
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
    if err is not None and err.status == ffi.NLLM_ERR_CONTEXT_FULL:
        if finish.value != ffi.NLLM_FINISH_NONE:
            err = None
    if err is not None and not (cancelled and err.status == ffi.NLLM_ERR_ABORTED):
        raise err
    reason = FINISH_REASONS.get(finish.value)
    if cancelled:
        reason = "aborted"
    return n_gen.value, reason


def stream_pieces(
    produce: Callable[[Emit], Any], opts: GenerateOptions, state: _CancelState
) -> Iterator[str]:
    """Run produce(emit) (a generate call) on a helper thread and yield each non-empty piece
    as it is produced. Leaving the loop early stops the generation through state."""
    q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    done = object()

    def emit(tok: int, piece: bytes) -> bool:
        q.put(piece)
        return opts.notify(tok, piece)

    def work() -> None:
        try:
            produce(emit)
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
            state.flag = True
        worker.join()
        state.flag = False
