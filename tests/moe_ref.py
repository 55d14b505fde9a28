#!/usr/bin/python3
"""Tiny Qwen2-MoE and OLMoE Hugging Face folders with float64 reference logits.

usage: moe_ref.py OUTDIR   (writes OUTDIR/tiny-qwen2-moe and OUTDIR/tiny-olmoe)

Each folder has config.json, model.safetensors (F32, random weights from a fixed seed), a
minimal tokenizer.json and golden.logits.txt in ../shared/testdata/hf/README.md's format: the
prompt, then greedy steps each fed back, every position's logits. The reference is written from
the models' public definitions (transformers' Qwen2MoeForCausalLM and OlmoeForCausalLM), not
from the engine:
  - RMSNorm x / sqrt(mean(x^2) + eps) * w; RoPE by rotate_half (dimension i with i + hd/2);
    grouped-query causal softmax attention scaled by 1/sqrt(head_dim); untied lm_head.
  - Qwen2-MoE: q/k/v projections with biases; a sparse layer's router softmax over the experts,
    the top k (renormalized only when norm_topk_prob), each a SiLU-gated MLP, plus the shared
    expert's SiLU-gated MLP times sigmoid(shared_expert_gate . x); layers in mlp_only_layers
    (or off decoder_sparse_step) are a dense MLP of intermediate_size.
  - OLMoE: q and k each RMS-normed over their whole projection (all heads at once, weights of
    num_heads*head_dim and num_kv_heads*head_dim) before RoPE; every layer sparse, the expert
    width is intermediate_size.
A seed is kept only when every greedy choice and every router's k-th versus (k+1)-th choice is
clear by a margin, so a float32 engine must reproduce the same choices.
"""
import json
import os
import struct
import sys

import numpy as np

PROMPT = [3, 17, 42, 5, 9, 60, 33, 21, 8, 50]
N_GEN = 6


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(x, pos, theta):
    """x [T, H, hd], HF rotate_half."""
    hd = x.shape[-1]
    inv = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
    half = hd // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def mlp(h, g, u, d):
    return (silu(h @ g.T) * (h @ u.T)) @ d.T


class Margins:
    def __init__(self):
        self.router = np.inf


def moe(h, W, pre, cfg, margins):
    ne, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    logits = h @ W[pre + "gate.weight"].T
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        order = np.argsort(-p[t], kind="stable")
        top = order[:k]
        if k < ne:
            margins.router = min(margins.router, logits[t, order[k - 1]] - logits[t, order[k]])
        w = p[t, top]
        if cfg.get("norm_topk_prob", False):
            w = w / w.sum()
        for j, e in enumerate(top):
            ep = "%sexperts.%d." % (pre, e)
            out[t] += w[j] * mlp(h[t:t + 1], W[ep + "gate_proj.weight"], W[ep + "up_proj.weight"],
                                 W[ep + "down_proj.weight"])[0]
    if pre + "shared_expert.gate_proj.weight" in W:
        sp = pre + "shared_expert."
        sh = mlp(h, W[sp + "gate_proj.weight"], W[sp + "up_proj.weight"], W[sp + "down_proj.weight"])
        gate = 1.0 / (1.0 + np.exp(-(h @ W[pre + "shared_expert_gate.weight"].T)))
        out += gate * sh
    return out


def sparse_layer(cfg, il):
    if cfg["kind"] == "olmoe":
        return True
    return il not in cfg.get("mlp_only_layers", []) and (il + 1) % cfg.get("decoder_sparse_step",
                                                                            1) == 0


def forward(cfg, W, ids, margins):
    """Logits of every position of ids [T] (float64)."""
    T = len(ids)
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg["hidden_size"] // nh
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][ids]
    pos = np.arange(T)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for il in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % il
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = h @ W[p + "self_attn.q_proj.weight"].T
        k = h @ W[p + "self_attn.k_proj.weight"].T
        v = h @ W[p + "self_attn.v_proj.weight"].T
        if p + "self_attn.q_proj.bias" in W:
            q = q + W[p + "self_attn.q_proj.bias"]
            k = k + W[p + "self_attn.k_proj.bias"]
            v = v + W[p + "self_attn.v_proj.bias"]
        if p + "self_attn.q_norm.weight" in W:
            q = rmsnorm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, W[p + "self_attn.k_norm.weight"], eps)
        q = rope(q.reshape(T, nh, hd), pos, theta)
        k = rope(k.reshape(T, nkv, hd), pos, theta)
        v = v.reshape(T, nkv, hd)
        rep = nh // nkv
        att = np.zeros((T, nh, hd))
        for hh in range(nh):
            s = q[:, hh, :] @ k[:, hh // rep, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            att[:, hh, :] = s @ v[:, hh // rep, :]
        x = x + att.reshape(T, nh * hd) @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        if sparse_layer(cfg, il):
            x = x + moe(h, W, p + "mlp.", cfg, margins)
        else:
            x = x + mlp(h, W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"],
                        W[p + "mlp.down_proj.weight"])
    x = rmsnorm(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T


def make_weights(cfg, rng):
    d, V = cfg["hidden_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // nh
    W = {}

    def mat(name, rows, cols, scale=None):
        s = scale if scale is not None else 1.0 / np.sqrt(cols)
        W[name] = (rng.standard_normal((rows, cols)) * s).astype(np.float32)

    def vec(name, n, base=1.0, spread=0.1):
        W[name] = (base + spread * rng.standard_normal(n)).astype(np.float32)

    mat("model.embed_tokens.weight", V, d, 1.0)
    for il in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % il
        vec(p + "input_layernorm.weight", d)
        vec(p + "post_attention_layernorm.weight", d)
        mat(p + "self_attn.q_proj.weight", nh * hd, d)
        mat(p + "self_attn.k_proj.weight", nkv * hd, d)
        mat(p + "self_attn.v_proj.weight", nkv * hd, d)
        mat(p + "self_attn.o_proj.weight", d, nh * hd)
        if cfg["kind"] == "qwen2moe":
            vec(p + "self_attn.q_proj.bias", nh * hd, 0.0, 0.2)
            vec(p + "self_attn.k_proj.bias", nkv * hd, 0.0, 0.2)
            vec(p + "self_attn.v_proj.bias", nkv * hd, 0.0, 0.2)
        else:
            vec(p + "self_attn.q_norm.weight", nh * hd)
            vec(p + "self_attn.k_norm.weight", nkv * hd)
        m = p + "mlp."
        if sparse_layer(cfg, il):
            ne = cfg["num_experts"]
            ff = cfg["intermediate_size"] if cfg["kind"] == "olmoe" else cfg["moe_intermediate_size"]
            mat(m + "gate.weight", ne, d, 2.0 / np.sqrt(d))
            for e in range(ne):
                ep = "%sexperts.%d." % (m, e)
                mat(ep + "gate_proj.weight", ff, d)
                mat(ep + "up_proj.weight", ff, d)
                mat(ep + "down_proj.weight", d, ff)
            if cfg["kind"] == "qwen2moe":
                sf = cfg["shared_expert_intermediate_size"]
                mat(m + "shared_expert.gate_proj.weight", sf, d)
                mat(m + "shared_expert.up_proj.weight", sf, d)
                mat(m + "shared_expert.down_proj.weight", d, sf)
                mat(m + "shared_expert_gate.weight", 1, d)
        else:
            ff = cfg["intermediate_size"]
            mat(m + "gate_proj.weight", ff, d)
            mat(m + "up_proj.weight", ff, d)
            mat(m + "down_proj.weight", d, ff)
    vec("model.norm.weight", d)
    mat("lm_head.weight", V, d)
    return W


def write_safetensors(path, W):
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(W):
        b = np.ascontiguousarray(W[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(W[name].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_tokenizer(path, V):
    vocab = {chr(0x4E00 + i): i for i in range(V)}  # one CJK character per id, no merges
    tok = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
           "post_processor": None, "decoder": None,
           "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    with open(path, "w") as f:
        json.dump(tok, f, ensure_ascii=False)


def build(outdir, name, cfg):
    kind = cfg.pop("kind")
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        cfg["kind"] = kind
        W = make_weights(cfg, rng)
        W64 = {n: w.astype(np.float64) for n, w in W.items()}
        margins = Margins()
        ids = list(PROMPT)
        rows = None
        gap = np.inf
        for step in range(N_GEN + 1):
            rows = forward(cfg, W64, ids, margins)
            if step == N_GEN:
                break
            last = np.sort(rows[-1])
            gap = min(gap, last[-1] - last[-2])
            ids.append(int(np.argmax(rows[-1])))
        if gap > 0.05 and margins.router > 1e-3:
            break
    else:
        raise SystemExit("no seed with clear choices")
    del cfg["kind"]
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(d, "model.safetensors"), W)
    write_tokenizer(os.path.join(d, "tokenizer.json"), cfg["vocab_size"])
    with open(os.path.join(d, "golden.logits.txt"), "w") as f:
        f.write("# %s: float64 reference (tests/moe_ref.py), seed %d, smallest greedy gap %.3g, "
                "smallest router k-th gap %.3g\n" % (name, seed, gap, margins.router))
        f.write("prompt_ids: %s\n" % " ".join(map(str, PROMPT)))
        f.write("gen_ids: %s\n" % " ".join(map(str, ids[len(PROMPT):])))
        f.write("n_vocab: %d\n" % cfg["vocab_size"])
        f.write("n_pos: %d\n" % rows.shape[0])
        for r in rows:
            f.write(" ".join("%.9g" % v for v in r) + "\n")
    print("%s: seed %d, greedy gap %.3g, router gap %.3g" % (name, seed, gap, margins.router))


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    base = {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "max_position_embeddings": 64, "tie_word_embeddings": False, "hidden_act": "silu",
            "num_experts_per_tok": 2}
    qwen = dict(base, kind="qwen2moe", architectures=["Qwen2MoeForCausalLM"], num_hidden_layers=3,
                num_experts=6, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                intermediate_size=40, decoder_sparse_step=1, mlp_only_layers=[1],
                norm_topk_prob=False, use_sliding_window=False)
    olmoe = dict(base, kind="olmoe", architectures=["OlmoeForCausalLM"], num_hidden_layers=2,
                 num_experts=8, intermediate_size=16, norm_topk_prob=True, clip_qkv=None,
                 attention_bias=False)
    build(out, "tiny-qwen2-moe", qwen)
    build(out, "tiny-olmoe", olmoe)


if __name__ == "__main__":
    main()
