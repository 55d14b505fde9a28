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

Modules: ``errors`` (the exception per status), ``library`` (versions, type names, logging),
``model`` (Model), ``context`` (Context), ``sampler`` (Sampler), ``generation`` (the keywords
every generate/stream call takes, GenerateOptions), ``conversion`` (convert, quantize); this
package re-exports their public names.

Threads: a Model may be shared by any number of threads; each Context and Sampler is used by one
thread at a time (a second thread using a busy Context gets InvalidArgumentError). Native calls
release the GIL, so contexts on different threads run in parallel.
"""

from __future__ import annotations

from . import _ffi as ffi
from . import _lib as _loader
from .context import Context
from .conversion import convert, quantize
from .errors import (
    ERRORS,
    AbortedError,
    BackendError,
    BufferTooSmallError,
    BusyError,
    ContextFullError,
    Error,
    FileError,
    FormatError,
    InternalError,
    BusyError,
    InvalidArgumentError,
    MissingFileError,
    NoMemoryError,
    NotFoundError,
    UnsupportedError,
    status_name,
)
from .generation import Completion, GenerateOptions, TokenCallback
from .library import (
    LOG_DEBUG,
    LOG_ERROR,
    LOG_INFO,
    LOG_WARN,
    abi_version,
    parse_type,
    set_log_callback,
    set_log_level,
    system_info,
    type_name,
    type_names,
    version,
)
from .lora import LoraAdapter
from .model import Message, Model
from .sampler import Sampler, json_schema_to_grammar
from .templates import apply_chat_template, parse_tool_calls

library_path: str = _loader.path

__version__ = "0.1.0"

__all__ = [
    "Model",
    "Context",
    "LoraAdapter",
    "Sampler",
    "apply_chat_template",
    "parse_tool_calls",
    "json_schema_to_grammar",
    "GenerateOptions",
    "Completion",
    "TokenCallback",
    "Message",
    "Error",
    "InvalidArgumentError",
    "FileError",
    "MissingFileError",
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
    "type_names",
    "parse_type",
    "convert",
    "quantize",
    "set_log_callback",
    "set_log_level",
    "library_path",
    "ffi",
    "LOG_ERROR",
    "LOG_WARN",
    "LOG_INFO",
    "LOG_DEBUG",
]
