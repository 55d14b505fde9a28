"""Model: a loaded model, its metadata, tokenizer and chat template, and one-call generation."""

from __future__ import annotations

import ctypes
import os
import weakref
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _ffi as ffi
from ._handle import (
    Progress,
    _c_int,
    _c_ints,
    _call_with_progress,
    _grow_call,
    _Handle,
    _set_int_fields,
    _to_bytes,
)
from ._lib import lib as _C
from .batch_generate import generate_batch
from .context import CONTEXT_KEYWORDS, Context
from .embeddings import embed as _embed
from .errors import InternalError, _check
from .generation import Completion, GenerateOptions, takes_generate_options
from .library import _type_id, type_name
from .lora import LoraAdapter
from .sampler import SAMPLER_KEYWORDS, Sampler
from .templates import _render as _render_template

Message = Union[Mapping[str, str], Tuple[str, str]]


def _split_keywords(kw: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The sampler's and the context's keywords of a one-call generation; anything else is a
    TypeError."""
    s = {k: kw.pop(k) for k in SAMPLER_KEYWORDS if k in kw}
    c = {k: kw.pop(k) for k in CONTEXT_KEYWORDS if k in kw}
    if kw:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kw))}")
    return s, c


class Model(_Handle):
    """A loaded model (GGUF file or Hugging Face folder). Immutable and shareable by threads.

    Keyword parameters mirror nllm_model_params: ``n_threads`` (0 = all cores), ``use_mmap``
    (default False: weights read into memory, faster decode; True maps the file), ``n_ctx_default`` (0 = min(training context, 4096)), ``n_gpu_layers``,
    ``vocab_only``, ``quantize_type`` ("Q8_0", an NLLM_TYPE_* id, or None), ``no_repack``
    (default False: Q4_0/Q8_0 matmul weights are repacked once at load for the interleaved
    kernels, the same results; True keeps the file's layout) and ``progress``
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
        progress: Optional[Progress] = None,
        no_repack: bool = False,
    ) -> None:
        self._h: Optional[Any] = None
        self._children: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.path = str(path)
        p = ffi.nllm_model_params()
        _check(_C.nllm_model_params_init_sized(ctypes.byref(p), ctypes.sizeof(p)))
        _set_int_fields(
            p, n_threads=n_threads, n_ctx_default=n_ctx_default, n_gpu_layers=n_gpu_layers
        )
        p.use_mmap = 1 if use_mmap else 0
        p.vocab_only = 1 if vocab_only else 0
        p.quantize_type = _type_id(quantize_type)
        p.no_repack = 1 if no_repack else 0
        h = ffi.model_p()
        path = self.path.encode()
        _call_with_progress(
            p, progress, lambda: _C.nllm_model_load(path, ctypes.byref(p), ctypes.byref(h))
        )
        self._h = h

    # -- lifetime

    def close(self) -> None:
        """Free the model and every Context/Sampler made from it. Idempotent. Contexts go first
        (each stops and waits for a call running on another thread), then samplers, then the
        model. Called from inside a callback of a running call (on_token), whatever that call
        uses is freed when it returns."""
        children = list(self._children)
        for child in sorted(children, key=lambda c: not isinstance(c, Context)):
            child.close()
        self._close_when_idle()

    def _free(self) -> None:
        _C.nllm_model_free(self._h)

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
        t = int(_C.nllm_model_token(self.handle, _c_int("which", which)))
        return None if t < 0 else t

    @property
    def bos(self) -> Optional[int]:
        return self.token(ffi.NLLM_TOKEN_BOS)

    @property
    def eos(self) -> Optional[int]:
        return self.token(ffi.NLLM_TOKEN_EOS)

    def is_eog(self, token: int) -> bool:
        """True if generation stops at this token (EOS, EOT, <|im_end|>, ...)."""
        return bool(_C.nllm_model_token_is_eog(self.handle, _c_int("token", token)))

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
        text_len = _c_int("len(text)", len(data))
        cap = len(data) + 8
        n = ctypes.c_int32(0)
        for _ in range(2):
            buf = (ffi.nllm_token * cap)()
            with self._use() as h:
                status = _C.nllm_tokenize(
                    h, data, text_len, int(add_bos), int(special), buf, cap, ctypes.byref(n)
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
        token = _c_int("token", token)
        with self._use() as h:
            return _grow_call(
                lambda buf, cap, n: _C.nllm_token_to_piece(h, token, int(special), buf, cap, n), 32
            )

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        """Text of a token sequence (the model's leading-space rule applies to the first)."""
        ids = _c_ints("tokens", tokens)
        n_tokens = _c_int("len(tokens)", len(tokens))
        with self._use() as h:
            raw = _grow_call(
                lambda buf, cap, n: _C.nllm_detokenize(h, ids, n_tokens, int(special), buf, cap, n),
                8 * len(tokens) + 16,
            )
        return raw.decode("utf-8", "replace")

    # -- chat templates

    def chat_format(
        self,
        messages: Iterable[Message],
        add_assistant: bool = True,
        chat_template: Optional[str] = None,
    ) -> str:
        """Render messages ({"role": ..., "content": ...} or (role, content)) with the model's
        chat template, or with chat_template (Jinja template text or a family name such as
        "chatml" or "llama3", nllm_chat_apply_template) instead. UnsupportedError if the
        template is unknown to the library."""
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
        if chat_template is not None:
            tmpl = _to_bytes(chat_template)
            raw = _grow_call(
                lambda buf, cap, n: _C.nllm_chat_apply_template(
                    tmpl, arr, len(items), int(add_assistant), buf, cap, n
                ),
                size,
            )
            return raw.decode("utf-8", "replace")
        raw = _grow_call(
            lambda buf, cap, n: _C.nllm_chat_format(
                h, arr, len(items), int(add_assistant), buf, cap, n
            ),
            size,
        )
        return raw.decode("utf-8", "replace")

    def apply_chat_template(
        self,
        messages: Iterable[Any],
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        add_generation_prompt: bool = False,
        template: Optional[str] = None,
        now: Optional[int] = None,
        **kwargs: Any,
    ) -> str:
        """Render a conversation with the model's chat template (or template) exactly as
        transformers' apply_chat_template(..., tokenize=False) does: messages may carry
        tool_calls and tool results, tools is OpenAI's list of functions, extra keyword
        arguments become template variables (enable_thinking=False, documents=[...]).
        bos_token/eos_token are the model's. The text includes any BOS the template writes:
        tokenize it with add_bos=False, special=True."""
        return _render_template(
            self.handle, template, messages, tools, add_generation_prompt, kwargs, now
        )

    # -- factories and convenience generation

    def load_adapter(
        self, path: Union[str, "os.PathLike[str]"], weight_type: Union[int, str, None] = None
    ) -> "LoraAdapter":
        """Load a LoRA adapter (PEFT folder or GGUF file) for this model; attach it with
        Context.set_adapters or generate(..., adapters=[(adapter, scale)]). weight_type: what
        F32 adapter weights are kept in ("F32", "F16", "BF16"; None: F16 next to quantized base
        matrices, else F32)."""
        return LoraAdapter(self, path, weight_type)

    def context(self, **params: Any) -> Context:
        """A new Context on this model (see Context for the parameters)."""
        return Context(self, **params)

    def sampler(self, **params: Any) -> Sampler:
        """A new Sampler for this model (see Sampler for the parameters)."""
        return Sampler(self, **params)

    # -- embeddings

    @property
    def is_encoder(self) -> bool:
        """True for an encoder (BERT): embeddings only, no generation."""
        with self._use() as h:
            return bool(_C.nllm_model_is_encoder(h))

    @property
    def pooling(self) -> str:
        """The model's default pooling: "none", "mean", "cls" or "last"."""
        with self._use() as h:
            return ("none", "mean", "cls", "last")[_C.nllm_model_pooling(h)]

    def embed(self, texts: Any, **kw: Any) -> Any:
        """Embedding vectors of texts (see nativellm.embeddings.embed): pooling=None (the
        model's) / "mean" / "cls" / "last" / "none", normalize=True, batch_size=32 texts per
        decode call. A list of float32 vectors (numpy arrays when NumPy is installed), or one
        vector for a single text."""
        return _embed(self, texts, **kw)

    @takes_generate_options(more_keywords=True)
    def generate(self, prompt: Union[str, bytes], **kw: Any) -> Completion:
        """Generate a continuation of prompt in a fresh Context and return its text (a str
        with .finish_reason and .n_tokens, see Completion).

        Generation keywords: see GenerateOptions. Sampling keywords (temperature, top_k, top_p,
        min_p, repeat_penalty, repeat_last_n, seed) default to the library's
        (nllm_sampler_params_init); ``temperature=0`` is greedy. Context keywords: n_ctx,
        n_threads, n_batch, kv_type, adapters (LoRA adapters: [(adapter, scale), ...]).
        """
        opts = GenerateOptions.take(kw)
        skw, ckw = _split_keywords(kw)
        with Context(self, **ckw) as ctx, Sampler(self, **skw) as smp:
            return ctx._generate(prompt, smp, opts)

    @takes_generate_options(more_keywords=True)
    def generate_batch(
        self, prompts: Sequence[Union[str, bytes]], *, n_parallel: int = 16, **kw: Any
    ) -> List[Completion]:
        """Generate a continuation of every prompt, decoded together in one Context of up to
        n_parallel sequences (the rest start as others finish); one Completion per prompt, in
        order. Keywords as for generate() (every prompt gets its own Sampler of the sampling
        keywords; on_token and cancel are not taken). n_ctx defaults to the room the
        n_parallel longest requests need at once. Greedy results are those of generate() for
        each prompt alone."""
        opts = GenerateOptions.take(kw)
        skw, ckw = _split_keywords(kw)
        return generate_batch(self, prompts, opts, skw, ckw, n_parallel)

    @takes_generate_options(more_keywords=True)
    def stream(self, prompt: Union[str, bytes], **kw: Any) -> Iterator[str]:
        """Like generate(), but yields the text pieces as they are produced. The pieces joined
        equal generate()'s result for the same arguments. Leaving the loop early (break, an
        exception, Ctrl-C) stops the generation and frees its Context."""
        opts = GenerateOptions.take(kw)
        skw, ckw = _split_keywords(kw)
        return self._stream(prompt, opts, skw, ckw)

    def _stream(
        self,
        prompt: Union[str, bytes],
        opts: GenerateOptions,
        skw: Dict[str, Any],
        ckw: Dict[str, Any],
    ) -> Iterator[str]:
        # A generator: the Context is made at the first next() and freed when the loop ends.
        ctx = Context(self, **ckw)
        smp = Sampler(self, **skw)
        try:
            yield from ctx._stream(prompt, smp, opts)
        finally:
            smp.close()
            ctx.close()

    def _chat_prompt(self, messages: Iterable[Message], kw: Dict[str, Any]) -> str:
        prompt = self.chat_format(
            messages, add_assistant=True, chat_template=kw.pop("chat_template", None)
        )
        if "add_bos" not in kw:
            # Templates that write the BOS text themselves must not get a second BOS.
            bos = self.bos
            bos_text = self.token_to_piece(bos, special=True) if bos is not None else b""
            kw["add_bos"] = not (bos_text and prompt.encode().startswith(bos_text))
        kw.setdefault("special", True)
        return prompt

    def chat(self, messages: Iterable[Message], **kw: Any) -> Completion:
        """Format messages with the model's chat template (or ``chat_template=``: Jinja text or
        a family name, see chat_format) and generate the assistant's reply. Keywords as for
        generate(); control tokens in the template are parsed as such."""
        prompt = self._chat_prompt(messages, kw)
        return self.generate(prompt, **kw)

    def chat_stream(self, messages: Iterable[Message], **kw: Any) -> Iterator[str]:
        """chat() as a stream of text pieces."""
        prompt = self._chat_prompt(messages, kw)
        return self.stream(prompt, **kw)
