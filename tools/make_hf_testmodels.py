#!/usr/bin/env python3
"""Writes tiny Hugging Face-style model folders with reference logits for the architectures the
shared test data does not cover: Gemma, Gemma 2, Phi-3 and Mistral (sliding window).

    python3 tools/make_hf_testmodels.py [OUT_DIR]        (default tests/data/hf)

Pure Python 3 standard library (no NumPy): the shapes are tiny so plain loops are fast enough.

Each folder holds what a Hub download holds (config.json as the real model class writes it,
generation_config.json, model.safetensors with random BF16 weights from a seeded PRNG,
tokenizer.json, tokenizer_config.json) and golden.logits.txt in the format of
../shared/testdata/README.md: 12 prompt ids, N_GEN greedy steps (argmax, lowest id on ties) with
every generated token fed back, logits of ALL positions.

The logits come from a float64 forward pass written below from the HF modeling equations,
evaluated on the stored BF16 weights decoded exactly. HF's own runtime dtype effects (BF16
activations, float32 inv_freq) are deliberately not reproduced: this is the exact answer for
these weights. In particular Gemma multiplies the embeddings by sqrt(hidden_size) cast to the
activation dtype (in BF16 sqrt(48) = 6.928... becomes 6.9375); here, as in llama.cpp and in a
float32 HF run, the factor is sqrt(hidden_size) itself.

For every model the script also prints how far the golden moves when one architectural feature
is switched off (softcapping, sliding window, the (1 + w) norm, ...): that is the size of the
error the test would see if the engine forgot it. tests/data/hf/README.md records the numbers.
"""

import json
import math
import operator
import os
import random
import struct
import sys

N_PROMPT = 12
N_GEN = 6
MIN_GAP = 0.1

# ----------------------------------------------------------------------------- bf16


def bf16_bits(x):
    """float -> bf16 bits, round to nearest even (from the float32 value, as torch does)."""
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def bf16_value(b):
    return struct.unpack("<f", struct.pack("<I", b << 16))[0]


class Tensor:
    """A BF16 tensor: shape, bits (row-major) and the exact float values of those bits."""

    def __init__(self, shape, values):
        self.shape = shape
        self.bits = [bf16_bits(v) for v in values]
        self.vals = [bf16_value(b) for b in self.bits]

    def rows(self):
        cols = self.shape[-1]
        return [self.vals[i:i + cols] for i in range(0, len(self.vals), cols)]


def write_safetensors(path, tensors):
    names = sorted(tensors)
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for n in names:
        size = 2 * len(tensors[n].bits)
        header[n] = {"dtype": "BF16", "shape": tensors[n].shape, "data_offsets": [off, off + size]}
        off += size
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for n in names:
            f.write(struct.pack("<%dH" % len(tensors[n].bits), *tensors[n].bits))


# ----------------------------------------------------------------------------- tokenizer


def bytes_to_unicode():
    """GPT-2's byte -> printable character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


CORPUS = ("the cat sat on the mat. the dog ran to the cat. a bird sang in the tree and the "
          "cat looked at the bird. then the dog sat on the mat with the cat. ") * 3


def make_tokenizer(specials, n_merges):
    """A tiny byte-level BPE: specials at ids 0.., the 256 byte symbols, then n_merges merges
    learned from CORPUS. Returns (tokenizer.json dict, vocab dict)."""
    b2u = bytes_to_unicode()
    vocab = {}
    for s in specials:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    words = {}
    for i, w in enumerate(CORPUS.split(" ")):
        if not w:
            continue
        w = (" " if i else "") + w
        key = tuple(b2u[b] for b in w.encode())
        words[key] = words.get(key, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best[0] + " " + best[1])
        vocab[best[0] + best[1]] = len(vocab)
        nw = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + c
        words = nw
    added = [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for s in specials]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": merges},
    }
    return tok, vocab


def byte_ids(vocab, text):
    b2u = bytes_to_unicode()
    return [vocab[b2u[b]] for b in text.encode()]


# ----------------------------------------------------------------------------- math


def dot(a, b):
    return sum(map(operator.mul, a, b))


def matvec(w_rows, x):
    return [dot(r, x) for r in w_rows]


def rmsnorm(x, w, eps, plus_one):
    s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    if plus_one:
        return [v * s * (1.0 + g) for v, g in zip(x, w)]
    return [v * s * g for v, g in zip(x, w)]


def silu(x):
    return x / (1.0 + math.exp(-x)) if x > -700 else 0.0


def gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def rope(vec, n_heads, head_dim, n_rot, pos, theta):
    """HF rotate_half on the first n_rot dims of each head (partial rotary leaves the rest)."""
    half = n_rot // 2
    out = vec[:]
    for h in range(n_heads):
        o = h * head_dim
        for i in range(half):
            ang = pos * theta ** (-2.0 * i / n_rot)
            c, s = math.cos(ang), math.sin(ang)
            a, b = vec[o + i], vec[o + i + half]
            out[o + i] = a * c - b * s
            out[o + i + half] = b * c + a * s
    return out


def softmax(x):
    m = max(x)
    e = [math.exp(v - m) for v in x]
    s = sum(e)
    return [v / s for v in e]


def softcap(x, cap):
    return cap * math.tanh(x / cap)


# ----------------------------------------------------------------------------- models


def layer_sliding(spec, il):
    """Which layers use the sliding window: Gemma 2 layers 0, 2, 4, ... (HF layer_types:
    'sliding_attention' if (i + 1) % 2 else 'full_attention'); Mistral and Phi-3 every layer."""
    if spec.get("sliding_window") is None:
        return False
    return il % 2 == 0 if spec["kind"] == "gemma2" else True


class Reference:
    """The HF forward pass in float64, one token at a time with a K/V cache (causal, so the
    same as evaluating the prompt as one batch). `off` names features to switch off, for the
    sensitivity report."""

    def __init__(self, spec, W, off=()):
        self.s, self.W, self.off = spec, W, set(off)
        self.k = [[] for _ in range(spec["layers"])]
        self.v = [[] for _ in range(spec["layers"])]
        self.pos = 0

    def step(self, tok):
        s, W, off = self.s, self.W, self.off
        kind = s["kind"]
        gemma = kind in ("gemma", "gemma2")
        plus1 = gemma and "plus_one" not in off
        hd, nh, nkv = s["head_dim"], s["heads"], s["kv_heads"]
        n_rot = int(hd * s.get("partial_rotary_factor", 1.0))
        if "partial_rotary" in off:
            n_rot = hd
        qd, kvd, rep = nh * hd, nkv * hd, nh // nkv
        eps = s["rms_norm_eps"]
        x = W["model.embed_tokens.weight"][tok][:]
        if gemma and "embed_scale" not in off:
            x = [v * math.sqrt(s["hidden"]) for v in x]
        scale = 1.0 / math.sqrt(hd)
        if kind == "gemma2" and "qpas" not in off:
            scale = s["query_pre_attn_scalar"] ** -0.5
        pos = self.pos
        for il in range(s["layers"]):
            p = "model.layers.%d." % il
            xn = rmsnorm(x, W[p + "input_layernorm.weight"], eps, plus1)
            if kind == "phi3":
                qkv = matvec(W[p + "self_attn.qkv_proj.weight"], xn)
                q, k, v = qkv[:qd], qkv[qd:qd + kvd], qkv[qd + kvd:]
            else:
                q = matvec(W[p + "self_attn.q_proj.weight"], xn)
                k = matvec(W[p + "self_attn.k_proj.weight"], xn)
                v = matvec(W[p + "self_attn.v_proj.weight"], xn)
            if "rope" not in off:
                q = rope(q, nh, hd, n_rot, pos, s["rope_theta"])
                k = rope(k, nkv, hd, n_rot, pos, s["rope_theta"])
            self.k[il].append(k)
            self.v[il].append(v)
            first = 0
            sliding = layer_sliding(s, il)
            if "odd_sliding" in off and kind == "gemma2":
                sliding = il % 2 == 1
            if sliding and "window" not in off:
                first = max(0, pos + 1 - s["sliding_window"])
            att = [0.0] * qd
            for h in range(nh):
                kh = h // rep
                qh = q[h * hd:(h + 1) * hd]
                sc = []
                for j in range(first, pos + 1):
                    a = dot(qh, self.k[il][j][kh * hd:(kh + 1) * hd]) * scale
                    if s.get("attn_logit_softcapping") and "attn_softcap" not in off:
                        a = softcap(a, s["attn_logit_softcapping"])
                    sc.append(a)
                pr = softmax(sc)
                for j, pj in zip(range(first, pos + 1), pr):
                    vj = self.v[il][j]
                    for i in range(hd):
                        att[h * hd + i] += pj * vj[kh * hd + i]
            o = matvec(W[p + "self_attn.o_proj.weight"], att)
            if kind == "gemma2" and "post_norms" not in off:
                o = rmsnorm(o, W[p + "post_attention_layernorm.weight"], eps, plus1)
            x = [a + b for a, b in zip(x, o)]
            nname = "pre_feedforward_layernorm" if kind == "gemma2" else "post_attention_layernorm"
            xn = rmsnorm(x, W[p + nname + ".weight"], eps, plus1)
            ff = s["ffn"]
            if kind == "phi3":
                gu = matvec(W[p + "mlp.gate_up_proj.weight"], xn)
                g, u = gu[:ff], gu[ff:]
            else:
                g = matvec(W[p + "mlp.gate_proj.weight"], xn)
                u = matvec(W[p + "mlp.up_proj.weight"], xn)
            act = gelu_tanh if gemma and "gelu" not in off else silu
            hmid = [act(a) * b for a, b in zip(g, u)]
            d = matvec(W[p + "mlp.down_proj.weight"], hmid)
            if kind == "gemma2" and "post_norms" not in off:
                d = rmsnorm(d, W[p + "post_feedforward_layernorm.weight"], eps, plus1)
            x = [a + b for a, b in zip(x, d)]
        xn = rmsnorm(x, W["model.norm.weight"], eps, plus1)
        out = W.get("lm_head.weight", W["model.embed_tokens.weight"])
        logits = matvec(out, xn)
        if s.get("final_logit_softcapping") and "final_softcap" not in off:
            logits = [softcap(v, s["final_logit_softcapping"]) for v in logits]
        self.pos += 1
        return logits


def argmax(x):
    b = 0
    for i in range(1, len(x)):
        if x[i] > x[b]:
            b = i
    return b


def run_reference(spec, W, prompt, off=(), forced=None):
    """All-position logits: the prompt, then greedy steps (or the forced ids) fed back."""
    ref = Reference(spec, W, off)
    rows = [ref.step(t) for t in prompt]
    gen, gaps = [], []
    for j in range(N_GEN):
        last = rows[-1]
        t = argmax(last)
        srt = sorted(last, reverse=True)
        gaps.append(srt[0] - srt[1])
        gen.append(t)
        rows.append(ref.step(forced[j] if forced else t))
    return rows, gen, gaps


def make_weights(spec, seed):
    rng = random.Random(seed)
    h, hd, nh, nkv, ff, V = (spec["hidden"], spec["head_dim"], spec["heads"], spec["kv_heads"],
                             spec["ffn"], spec["vocab"])
    kind = spec["kind"]
    gemma = kind in ("gemma", "gemma2")
    T = {}

    def mat(name, rows, cols, std):
        T[name] = Tensor([rows, cols], [rng.gauss(0.0, std) for _ in range(rows * cols)])

    def norm(name, n):
        # Gemma stores w with (1 + w) applied: the same effective spread as 1 + 0.2 N(0,1)
        T[name] = Tensor([n], [(0.0 if gemma else 1.0) + 0.2 * rng.gauss(0, 1) for _ in range(n)])

    mat("model.embed_tokens.weight", V, h, spec["embed_std"])
    qd, kvd = nh * hd, nkv * hd
    for il in range(spec["layers"]):
        p = "model.layers.%d." % il
        norm(p + "input_layernorm.weight", h)
        qs = spec.get("qk_gain", 1.5)
        if kind == "phi3":
            rows = []
            for n_rows, std in ((qd, qs / math.sqrt(h)), (kvd, qs / math.sqrt(h)),
                                (kvd, 1 / math.sqrt(h))):
                rows += [rng.gauss(0, std) for _ in range(n_rows * h)]
            T[p + "self_attn.qkv_proj.weight"] = Tensor([qd + 2 * kvd, h], rows)
        else:
            mat(p + "self_attn.q_proj.weight", qd, h, qs / math.sqrt(h))
            mat(p + "self_attn.k_proj.weight", kvd, h, qs / math.sqrt(h))
            mat(p + "self_attn.v_proj.weight", kvd, h, 1 / math.sqrt(h))
        mat(p + "self_attn.o_proj.weight", h, qd, spec["out_gain"] / math.sqrt(qd))
        norm(p + "post_attention_layernorm.weight", h)
        if kind == "gemma2":
            norm(p + "pre_feedforward_layernorm.weight", h)
            norm(p + "post_feedforward_layernorm.weight", h)
        if kind == "phi3":
            mat(p + "mlp.gate_up_proj.weight", 2 * ff, h, 1 / math.sqrt(h))
        else:
            mat(p + "mlp.gate_proj.weight", ff, h, 1 / math.sqrt(h))
            mat(p + "mlp.up_proj.weight", ff, h, 1 / math.sqrt(h))
        mat(p + "mlp.down_proj.weight", h, ff, spec["out_gain"] / math.sqrt(ff))
    norm("model.norm.weight", h)
    if not spec["tied"]:
        mat("lm_head.weight", V, h, spec["head_std"])
    return T


# Each spec: the tiny shape, the config.json (as the real model class writes it, with tiny
# numbers), the tokenizer's special tokens, the prompt text and the first seed to try.
SPECS = [
    {
        "name": "tiny-gemma", "kind": "gemma", "seed": 5002,
        "hidden": 32, "layers": 2, "heads": 4, "kv_heads": 1, "head_dim": 16, "ffn": 96,
        "vocab": 320, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tied": True,
        "embed_std": 0.4, "out_gain": 4.0,
        "specials": ["<pad>", "<eos>", "<bos>", "<unk>"], "bos": 2, "eos": 1, "pad": 0,
        "add_bos": True, "text": "The cat sat",
        "config": {
            "architectures": ["GemmaForCausalLM"], "attention_bias": False,
            "attention_dropout": 0.0, "bos_token_id": 2, "eos_token_id": 1, "head_dim": 16,
            "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 32,
            "initializer_range": 0.02, "intermediate_size": 96, "max_position_embeddings": 8192,
            "model_type": "gemma", "num_attention_heads": 4, "num_hidden_layers": 2,
            "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06,
            "rope_scaling": None, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
            "transformers_version": "4.38.0.dev0", "use_cache": True, "vocab_size": 320},
        "sensitivity": ["embed_scale", "plus_one", "gelu"],
    },
    {
        "name": "tiny-gemma2", "kind": "gemma2", "seed": 6160,
        "hidden": 48, "layers": 3, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn": 128,
        "vocab": 320, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tied": True,
        "embed_std": 0.15, "out_gain": 1.0, "qk_gain": 2.0,
        "query_pre_attn_scalar": 12, "attn_logit_softcapping": 4.0,
        "final_logit_softcapping": 3.0, "sliding_window": 4,
        "specials": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        "bos": 2, "eos": 1, "pad": 0,
        "add_bos": True, "text": "A dog ran",
        "config": {
            "architectures": ["Gemma2ForCausalLM"], "attention_bias": False,
            "attention_dropout": 0.0, "attn_logit_softcapping": 4.0, "bos_token_id": 2,
            "cache_implementation": "hybrid", "eos_token_id": [1, 5],
            "final_logit_softcapping": 3.0, "head_dim": 16, "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 48,
            "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 8192,
            "model_type": "gemma2", "num_attention_heads": 4, "num_hidden_layers": 3,
            "num_key_value_heads": 2, "pad_token_id": 0, "query_pre_attn_scalar": 12,
            "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4,
            "torch_dtype": "float32", "transformers_version": "4.42.4", "use_cache": True,
            "vocab_size": 320},
        "sensitivity": ["attn_softcap", "final_softcap", "qpas", "window", "odd_sliding",
                        "post_norms", "plus_one", "embed_scale"],
    },
    {
        "name": "tiny-phi3", "kind": "phi3", "seed": 7003,
        "hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn": 128,
        "vocab": 320, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tied": True,
        "partial_rotary_factor": 0.75, "embed_std": 1.0, "out_gain": 3.0,
        "sliding_window": 262144,
        "specials": ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"],
        "bos": 0, "eos": 0, "pad": 0, "add_bos": False, "text": "the bird sang",
        "config": {
            "architectures": ["Phi3ForCausalLM"], "attention_bias": False,
            "attention_dropout": 0.0, "bos_token_id": 0, "embd_pdrop": 0.0, "eos_token_id": 0,
            "full_attn_mod": 1, "hidden_act": "silu", "hidden_size": 64,
            "initializer_range": 0.02, "intermediate_size": 128, "interpolate_factor": 1,
            "lm_head_bias": False, "max_position_embeddings": 4096, "mlp_bias": False,
            "model_type": "phi3", "num_attention_heads": 4, "num_hidden_layers": 2,
            "num_key_value_heads": 2, "original_max_position_embeddings": 4096,
            "pad_token_id": 0, "partial_rotary_factor": 0.75, "resid_pdrop": 0.0,
            "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0,
            "sliding_window": 262144, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
            "transformers_version": "4.45.0", "use_cache": True, "vocab_size": 320},
        "sensitivity": ["rope", "partial_rotary"],
    },
    {
        "name": "tiny-mistral", "kind": "mistral", "seed": 8001,
        "hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn": 160,
        "vocab": 320, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tied": False,
        "embed_std": 1.0, "head_std": 5.0 / 8.0, "out_gain": 1.0, "qk_gain": 4.0,
        "sliding_window": 5,
        "specials": ["<unk>", "<s>", "</s>"], "bos": 1, "eos": 2, "pad": None,
        "add_bos": True, "text": "the mat",
        "config": {
            "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
            "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
            "intermediate_size": 160, "max_position_embeddings": 32768,
            "model_type": "mistral", "num_attention_heads": 4, "num_hidden_layers": 2,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
            "sliding_window": 5, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
            "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 320},
        "sensitivity": ["window"],
    },
]


def rel_rms(a, ref):
    d = sum((x - y) ** 2 for x, y in zip(a, ref))
    r = sum(y * y for y in ref)
    return math.sqrt(d / r)


def build(spec, out_root):
    tok, vocab = make_tokenizer(spec["specials"], 300 - 256 - len(spec["specials"]))
    n_tok = len(vocab)
    assert n_tok <= spec["vocab"]
    text_ids = byte_ids(vocab, spec["text"])
    prompt = ([spec["bos"]] if spec["add_bos"] else []) + text_ids
    # pad the prompt to N_PROMPT with the space-prefixed merged tokens after the byte range
    filler = list(range(len(spec["specials"]) + 256, n_tok))
    prompt = (prompt + filler)[:N_PROMPT]
    assert len(prompt) == N_PROMPT
    first_ordinary = len(spec["specials"])
    seed = spec["seed"]
    while True:
        T = make_weights(spec, seed)
        W = {n: (t.rows() if len(t.shape) == 2 else t.vals) for n, t in T.items()}
        rows, gen, gaps = run_reference(spec, W, prompt)
        ok = (min(gaps) >= MIN_GAP and len(set(gen)) >= 3 and
              all(first_ordinary <= g < n_tok for g in gen))
        print("%s seed %d: gen %s, min gap %.3f%s" % (spec["name"], seed, gen, min(gaps),
              "" if ok else " (rejected)"))
        if ok:
            break
        seed += 1
    d = os.path.join(out_root, spec["name"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(spec["config"], f, indent=2)
        f.write("\n")
    gen_cfg = {"_from_model_config": True, "bos_token_id": spec["bos"],
               "eos_token_id": spec["config"]["eos_token_id"],
               "transformers_version": spec["config"]["transformers_version"]}
    if spec["pad"] is not None:
        gen_cfg["pad_token_id"] = spec["pad"]
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(gen_cfg, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(d, "model.safetensors"), T)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    sp = spec["specials"]
    tcfg = {"add_bos_token": spec["add_bos"], "add_eos_token": False,
            "bos_token": sp[spec["bos"]], "eos_token": sp[spec["eos"]],
            "clean_up_tokenization_spaces": False, "model_max_length": 8192,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "added_tokens_decoder": {str(vocab[s]): {"content": s, "lstrip": False,
                                                     "normalized": False, "rstrip": False,
                                                     "single_word": False, "special": True}
                                     for s in sp}}
    if spec["pad"] is not None:
        tcfg["pad_token"] = sp[spec["pad"]]
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(d, "golden.logits.txt"), "w") as f:
        f.write("# %s: float64 reference of the HF %s equations on the stored BF16 weights\n"
                % (spec["name"], spec["config"]["architectures"][0]))
        f.write("# written by tools/make_hf_testmodels.py (seed %d); min top1-top2 gap %.4f\n"
                % (seed, min(gaps)))
        f.write("prompt_ids: %s\n" % " ".join(map(str, prompt)))
        f.write("gen_ids: %s\n" % " ".join(map(str, gen)))
        f.write("n_vocab: %d\n" % spec["vocab"])
        f.write("n_pos: %d\n" % len(rows))
        for r in rows:
            f.write(" ".join("%.9g" % v for v in r) + "\n")
    # sensitivity: the golden vs the same weights with one feature switched off (teacher forced)
    sens = []
    for feat in spec["sensitivity"]:
        alt, _, _ = run_reference(spec, W, prompt, off=(feat,), forced=gen)
        sens.append((feat, max(rel_rms(a, r) for a, r in zip(alt, rows))))
    print("%s: seed %d, gen %s, min gap %.3f; without each feature, max rel RMS: %s" % (
        spec["name"], seed, gen, min(gaps), ", ".join("%s %.3g" % s for s in sens)))
    return seed, gen, min(gaps), sens


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data", "hf")
    only = sys.argv[2:]
    for spec in SPECS:
        if only and spec["name"] not in only:
            continue
        build(spec, out)


if __name__ == "__main__":
    main()
