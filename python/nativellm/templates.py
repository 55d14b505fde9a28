"""Chat templates rendered by the library's Jinja interpreter, and tool calls parsed out of a
model's reply (docs/templates.md). Model.apply_chat_template is the usual entry point."""

from __future__ import annotations

import ctypes
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _ffi as ffi
from ._lib import lib as _C
from .errors import InternalError, _check, _invalid

MessageLike = Union[Mapping[str, Any], Sequence[Any]]


def _messages_json(messages: Iterable[MessageLike]) -> bytes:
    out: List[Any] = []
    for m in messages:
        if isinstance(m, Mapping):
            out.append(dict(m))
        else:
            role, content = m
            out.append({"role": role, "content": content})
    return json.dumps(out, ensure_ascii=False).encode("utf-8")


def _render(
    model_handle: Any,
    template: Optional[str],
    messages: Iterable[MessageLike],
    tools: Optional[Sequence[Mapping[str, Any]]],
    add_generation_prompt: bool,
    variables: Dict[str, Any],
    now: Optional[int],
) -> str:
    p = ffi.nllm_chat_template_params()
    _check(_C.nllm_chat_template_params_init_sized(ctypes.byref(p), ctypes.sizeof(p)))
    # keep the bytes alive while the call reads them
    keep = [
        _messages_json(messages),
        None if tools is None else json.dumps(list(tools), ensure_ascii=False).encode("utf-8"),
        json.dumps(variables, ensure_ascii=False).encode("utf-8") if variables else None,
        None if template is None else template.encode("utf-8"),
    ]
    p.messages_json, p.tools_json, p.vars_json, p.template_text = keep
    p.add_generation_prompt = int(bool(add_generation_prompt))
    if now is not None:
        if now <= 0:
            raise _invalid(f"now must be a positive unix time, got {now}")
        p.now = int(now)
    n = ctypes.c_int32(0)
    status = _C.nllm_chat_template_render(model_handle, ctypes.byref(p), None, 0, ctypes.byref(n))
    if status != ffi.NLLM_ERR_BUFFER_TOO_SMALL:
        _check(status)
        raise InternalError("chat template rendered without room for its NUL")
    # the second call renders again; strftime_now may move on, so retry once if it grew
    for _ in range(2):
        cap = n.value + 1
        buf = ctypes.create_string_buffer(cap)
        status = _C.nllm_chat_template_render(
            model_handle, ctypes.byref(p), buf, cap, ctypes.byref(n)
        )
        if status == ffi.NLLM_ERR_BUFFER_TOO_SMALL:
            continue
        _check(status)
        return buf.raw[: n.value].decode("utf-8", "replace")
    raise InternalError("chat template output kept growing")


def apply_chat_template(
    template: str,
    messages: Iterable[MessageLike],
    tools: Optional[Sequence[Mapping[str, Any]]] = None,
    add_generation_prompt: bool = False,
    now: Optional[int] = None,
    **kwargs: Any,
) -> str:
    """Render messages with a Jinja chat template text, as transformers'
    apply_chat_template(..., tokenize=False) does. Extra keyword arguments become template
    variables (bos_token, eos_token, enable_thinking, documents, ...). now: the unix time
    strftime_now formats (UTC); default the local time now."""
    return _render(None, template, messages, tools, add_generation_prompt, kwargs, now)


def parse_tool_calls(text: str, format: Optional[str] = None) -> Dict[str, Any]:
    """Split a model's reply into {"content": str or None, "tool_calls": [...]} in OpenAI's
    shape (each call: id, type "function", function {name, arguments as JSON text}). format:
    None/"auto", "hermes", "llama3" or "mistral"."""
    raw = text.encode("utf-8")
    fmt = None if format is None else format.encode("utf-8")
    n = ctypes.c_int32(0)
    cap = len(raw) * 2 + 256
    for _ in range(2):
        buf = ctypes.create_string_buffer(cap)
        status = _C.nllm_tool_calls_parse(raw, fmt, buf, cap, ctypes.byref(n))
        if status == ffi.NLLM_ERR_BUFFER_TOO_SMALL:
            cap = n.value + 1
            continue
        _check(status)
        result: Dict[str, Any] = json.loads(buf.raw[: n.value].decode("utf-8"))
        return result
    raise InternalError("tool-call parse output kept growing")
