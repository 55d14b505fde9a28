#!/usr/bin/env python3
"""Seeds for fuzz_tokjson: a real tokenizer.json cut down to a few dozen tokens, keeping every
other section (normalizer, pre-tokenizer, post-processor, decoder, added tokens) as it is, so
the fuzzer starts from each real family's structure at a size it can mutate quickly.
Usage: shrink_tokenizer_json.py IN_TOKENIZER_JSON OUT_FILE [N_TOKENS]"""
import json
import sys

src, dst = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 80
t = json.load(open(src, encoding="utf-8"))
model = t["model"]
vocab = model.get("vocab", {})
keep = sorted(vocab.items(), key=lambda kv: kv[1])[:n]
ids = {tok: i for i, (tok, _) in enumerate(keep)}
model["vocab"] = ids
merges = []
for m in model.get("merges", []):
    a, b = m.split(" ", 1) if isinstance(m, str) else m
    if a in ids and b in ids and a + b in ids:
        merges.append(m)
model["merges"] = merges[:40]
base = len(ids)
t["added_tokens"] = t.get("added_tokens", [])[:8]
for a in t["added_tokens"]:
    if a["content"] in ids:
        a["id"] = ids[a["content"]]
    else:
        a["id"] = base
        base += 1
pp = t.get("post_processor")
if isinstance(pp, dict) and "special_tokens" in pp:
    for name, st in pp["special_tokens"].items():
        st["ids"] = [ids.get(name, 0) for _ in st.get("ids", [])]
json.dump(t, open(dst, "w", encoding="utf-8"), ensure_ascii=False, separators=(",", ":"))
