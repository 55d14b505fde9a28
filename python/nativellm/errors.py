"""The exception hierarchy: one class per nllm_status, raised with the library's own message."""

from __future__ import annotations

from typing import Dict, Type

from . import _ffi as ffi
from ._lib import lib as _C


def status_name(status: int) -> str:
    """Name of a status code ("NLLM_ERR_FORMAT")."""
    raw = _C.nllm_status_name(status)
    return raw.decode() if raw else f"status {status}"


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


class FileError(Error, OSError):
    """NLLM_ERR_IO: file unreadable, or mmap failed. The message names the path. Also an
    OSError, so ``except OSError`` catches it."""


class MissingFileError(FileError, FileNotFoundError):
    """NLLM_ERR_IO for a path that does not exist: also a FileNotFoundError."""


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
    cls = ERRORS.get(status, Error)
    if status == ffi.NLLM_ERR_IO and "no such file or directory" in msg.lower():
        cls = MissingFileError
    return cls(msg or status_name(status), status)


def _check(status: int) -> None:
    if status != ffi.NLLM_OK:
        raise _error(status)


def _invalid(message: str) -> InvalidArgumentError:
    """An InvalidArgumentError raised by the bindings themselves (no library call failed)."""
    return InvalidArgumentError(message, ffi.NLLM_ERR_INVALID_ARG)
