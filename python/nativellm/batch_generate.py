"""Model.generate_batch: several prompts decoded together in one many-sequence Context.

One loop does what a server's scheduler does (docs/api.md "Many sequences"): each prompt gets a
sequence id and its own Sampler; every step decodes one batch holding the new prompts' tokens
and one token of every running sequence, so each weight is read once per step for all of them.
At most n_parallel prompts run at once; the rest wait for a free sequence."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from . import _ffi as ffi
from ._lib import lib as _C
from .context import Context
from .errors import _check, _invalid
from .generation import Completion, GenerateOptions
from .sampler import Sampler

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model


class _Slot:
    """One prompt being generated."""

    def __init__(self, index: int, seq: int, prompt: List[int], sampler: Sampler) -> None:
        self.index = index
        self.seq = seq
        self.prompt = prompt  # decoded in the next step, then emptied
        self.sampler = sampler
        self.text = bytearray()
        self.n = 0
        self.last = -1
        self.reason: Optional[str] = None


def generate_batch(
    model: "Model",
    prompts: Sequence[Union[str, bytes]],
    opts: GenerateOptions,
    skw: Dict[str, Any],
    ckw: Dict[str, Any],
    n_parallel: int,
) -> List[Completion]:
    if opts.on_token is not None or opts.cancel is not None:
        raise TypeError("generate_batch does not take on_token or cancel")
    if n_parallel < 1:
        raise _invalid(f"generate_batch: n_parallel must be >= 1 (got {n_parallel})")
    max_tokens = 256 if opts.max_tokens is None else int(opts.max_tokens)
    ids = [model.tokenize(p, add_bos=opts.add_bos, special=opts.special) for p in prompts]
    for i, t in enumerate(ids):
        if not t:
            raise _invalid(f"generate_batch: prompt {i} has no tokens")
    if not ids:
        return []
    n_seq = min(n_parallel, len(ids))
    if not ckw.get("n_ctx"):
        # room for the n_seq longest requests at once
        longest = sorted((len(t) + max_tokens for t in ids), reverse=True)[:n_seq]
        ckw = dict(ckw, n_ctx=sum(longest))
    stops = [s.encode() for s in (opts.stop or []) if s]
    out: List[Optional[Completion]] = [None] * len(ids)
    queue = list(range(len(ids)))
    free = list(range(n_seq - 1, -1, -1))
    running: List[_Slot] = []
    nv = model.n_vocab
    tok = ffi.nllm_token()
    with Context(model, n_seq_max=n_seq, **ckw) as ctx:
        try:
            while queue or running:
                while queue and free:
                    i = queue.pop(0)
                    slot = _Slot(i, free.pop(), ids[i], Sampler(model, **skw))
                    for t in slot.prompt:
                        slot.sampler.accept(t)
                    running.append(slot)
                tokens: List[int] = []
                seqs: List[int] = []
                for slot in running:
                    rows = slot.prompt if slot.prompt else [slot.last]
                    tokens.extend(rows)
                    seqs.extend([slot.seq] * len(rows))
                    slot.prompt = []
                ctx.decode_batch(tokens, seqs)
                done: List[_Slot] = []
                h = ctx.handle
                for slot in running:
                    if slot.n >= max_tokens:
                        slot.reason = "length"
                        done.append(slot)
                        continue
                    ptr = _C.nllm_get_logits_seq(h, slot.seq)
                    with slot.sampler._use() as sh:
                        _check(_C.nllm_sampler_sample_logits(sh, ptr, nv, ctypes.byref(tok)))
                    t = tok.value
                    slot.sampler.accept(t)
                    if opts.stop_at_eog and model.is_eog(t):
                        slot.reason = "eog"
                        done.append(slot)
                        continue
                    slot.n += 1
                    slot.last = t
                    slot.text += model.token_to_piece(t)
                    hit = [slot.text.find(s) for s in stops]
                    hit = [k for k in hit if k >= 0]
                    if hit:
                        del slot.text[min(hit):]
                        slot.reason = "stop"
                        done.append(slot)
                    elif slot.n >= max_tokens:
                        slot.reason = "length"
                        done.append(slot)
                for slot in done:
                    running.remove(slot)
                    ctx.seq_remove(slot.seq)
                    free.append(slot.seq)
                    slot.sampler.close()
                    out[slot.index] = Completion(
                        slot.text.decode("utf-8", "replace"), slot.reason, slot.n
                    )
        finally:
            for slot in running:
                slot.sampler.close()
    return [c if c is not None else Completion("", None, 0) for c in out]
