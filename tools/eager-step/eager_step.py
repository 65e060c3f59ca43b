#!/usr/bin/env python3
"""Median training-step time of PyTorch eager on a converted fixture: the counterpart of `mtp bench train`.

The input is a fixture as OUR tool converts it to the training layout in float32
(`mtp convert fixtures/X OUT --to native --dtype f32`). The main model is transformers' own class for the family,
loaded from that directory (attention "eager"); the MTP depth is assembled here from the equations in
src/Model/README.md (the fusion enorm / hnorm / eh_proj, a decoder block of transformers' own layer class, the final
norm, the shared head) with the depth's tensors from the same checkpoint. One step does what the project's
`Trainer.Step` does: a batch of packed documents, forward of the main model and the depth, main CE + 0.1 * MTP CE,
backward, global-norm clip to 1.0, AdamW (decay on matrices only), and the timing covers all of it.

Usage: python3 eager_step.py CONVERTED_DIR [--dtype f32|bf16] [--steps 10] [--untimed 2] [--batch 2] [--seq-len 64] [--threads 1]
                              [--experts IMPL]
Prints one JSON object per line.
"""
import argparse
import json
import math
import os
import random
import statistics
import time

import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open

# model_type -> transformers causal-LM class. DeepSeek-V4 is left out: its main tensors need renaming
# (fixtures/generate/make_references.py) and its depth streams have no transformers counterpart.
CLASSES = {
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "deepseek_v32": "DeepseekV32ForCausalLM",
    "glm4_moe": "Glm4MoeForCausalLM",
    "qwen3_5_moe": "Qwen3_5MoeForCausalLM",
    "qwen3_next": "Qwen3NextForCausalLM",
}
QWEN = ("qwen3_5_moe", "qwen3_next")
MTP_SCALE, CLIP, LR, BETAS, EPS, WD = 0.1, 1.0, 1e-3, (0.9, 0.95), 1e-8, 0.01


def blas_library():
    """The BLAS shared object this process mapped (torch's BLAS_INFO=generic resolves libblas.so.3 at load)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line}
    return sorted(os.path.realpath(p) for p in libs if p.startswith("/"))


def load_model(path, dtype, experts):
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    model_type = config["model_type"]
    if model_type not in CLASSES:
        raise SystemExit(f"eager_step: {path}: model_type {model_type} has no transformers class here")
    overrides = {}
    if model_type == "deepseek_v32":  # transformers sizes the experts from num_experts (see make_references.py)
        overrides["num_experts"] = config["n_routed_experts"]
    if experts:
        overrides["experts_implementation"] = experts
    cls = getattr(transformers, CLASSES[model_type])
    model = cls.from_pretrained(path, dtype=dtype, attn_implementation="eager", **overrides)
    return model, model_type


class Depth(torch.nn.Module):
    """One MTP depth: h = block(eh_proj(cat(enorm(emb), hnorm(prev)))), logits = head(final_layernorm(h))."""

    def __init__(self, model, model_type, tensors, dtype):
        super().__init__()
        cfg = model.config.get_text_config()
        norm_cls = type(model.model.norm)
        hidden = cfg.hidden_size
        self.enorm = norm_cls(hidden, eps=cfg.rms_norm_eps)
        self.hnorm = norm_cls(hidden, eps=cfg.rms_norm_eps)
        self.final_layernorm = norm_cls(hidden, eps=cfg.rms_norm_eps)
        self.eh_proj = torch.nn.Linear(2 * hidden, hidden, bias=False)
        # The block is a full-attention (MoE where the model has MoE) layer: the model's last such layer's index.
        if model_type in QWEN:
            index = max(i for i, t in enumerate(cfg.layer_types) if t == "full_attention")
        else:
            index = cfg.num_hidden_layers - 1
        self.block = type(model.model.layers[index])(cfg, index)
        self.carries_normed = model_type in QWEN  # Qwen's next depth reads the normed state (src/Model/README.md)
        prefix = "mtp.layers.0."
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        fusion = {k: own.pop(k) for k in list(own) if k.split(".")[0] in ("enorm", "hnorm", "final_layernorm", "eh_proj")}
        for k in [k for k in own if k.split(".")[0] in ("embed_tokens", "shared_head")]:
            raise SystemExit(f"eager_step: mtp.layers.0.{k}: per-depth embedding / head copies are not modelled here")
        self.load_state_dict({**fusion, **{"block." + k: v for k, v in own.items()}}, strict=True)
        self.to(dtype)


def packed_batch(rng, vocab, batch, seq):
    """The project's synthetic stream (SyntheticTokenSource): documents of 8..seq tokens packed into rows,
    x[t+1] = (5 x[t] + 3) mod V with probability 0.9. Returns ids [B,S], per-document positions [B,S], document ids."""
    ids, pos, doc = [], [], []
    d = 0
    for _ in range(batch):
        left = seq
        while left > 0:
            n = min(left, 8 + rng.randrange(max(1, seq - 7)))
            x = rng.randrange(vocab)
            for t in range(n):
                ids.append(x)
                pos.append(t)
                doc.append(d)
                x = (5 * x + 3) % vocab if rng.random() < 0.9 else rng.randrange(vocab)
            d += 1
            left -= n
    shape = (batch, seq)
    return (torch.tensor(ids).view(shape), torch.tensor(pos).view(shape), torch.tensor(doc).view(shape))


def roll(x, doc, k, fill):
    """Each document of x [B,S] shifted left by k inside itself; positions past its end take fill."""
    b, s = x.shape
    flat, docs = x.reshape(-1), doc.reshape(-1)
    src = torch.arange(b * s) + k
    keep = src < b * s
    keep[keep.clone()] &= docs[src[keep]] == docs[keep]
    out = torch.full_like(flat, fill)
    out[keep] = flat[src[keep]]
    return out.view(b, s)


def step(model, model_type, depth, opt, rng, vocab, batch, seq, dtype, step_index, total_steps):
    ids, pos, doc = packed_batch(rng, vocab, batch, seq)
    labels = roll(ids, doc, 1, -100)
    same = (doc.unsqueeze(2) == doc.unsqueeze(1)) & torch.ones(seq, seq, dtype=torch.bool).tril()
    mask = torch.zeros(same.shape, dtype=dtype).masked_fill(~same, torch.finfo(dtype).min).unsqueeze(1)
    inner = model.model
    cfg = model.config.get_text_config()
    kinds = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
    rope_pos = pos[None].expand(3, batch, seq) if model_type == "qwen3_5_moe" else pos

    def run_layer(layer, h, kind):
        return layer(h, attention_mask=None if kind == "linear_attention" else mask, position_embeddings=pe, position_ids=pos)

    h = inner.embed_tokens(ids)
    pe = inner.rotary_emb(h, rope_pos)
    for layer, kind in zip(inner.layers[: cfg.num_hidden_layers], kinds):
        h = run_layer(layer, h, kind)
    h = inner.norm(h)
    main = F.cross_entropy(model.lm_head(h).float().reshape(-1, vocab), labels.reshape(-1), ignore_index=-100)
    fused = depth.eh_proj(torch.cat([depth.enorm(inner.embed_tokens(roll(ids, doc, 1, 0))), depth.hnorm(h)], -1))
    block = run_layer(depth.block, fused, "full_attention")
    logits = model.lm_head(depth.final_layernorm(block))
    mtp = F.cross_entropy(logits.float().reshape(-1, vocab), roll(labels, doc, 1, -100).reshape(-1), ignore_index=-100)
    total = main + MTP_SCALE * mtp
    total.backward()
    params = [p for g in opt.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, CLIP)
    # The project's schedule: cosine from LR to 0.1 * LR over total_steps (no warmup).
    lr = 0.1 * LR + 0.9 * LR * 0.5 * (1 + math.cos(math.pi * step_index / total_steps))
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--untimed", type=int, default=2, help="untimed steps first (run.sh gives 50, about what the project's JIT warm-up takes)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--experts", default=None, help="transformers' experts_implementation (default: its own default)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    model, model_type = load_model(a.checkpoint, dtype, a.experts)
    with safe_open(os.path.join(a.checkpoint, "model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith("mtp.layers.0.")}
    if any(k.startswith("mtp.layers.1.") for k in tensors):
        raise SystemExit(f"eager_step: {a.checkpoint}: more than one MTP depth is not modelled here")
    depth = Depth(model, model_type, tensors, dtype)
    model.train()
    depth.train()
    named = list(model.named_parameters()) + [("mtp." + n, p) for n, p in depth.named_parameters()]
    opt = torch.optim.AdamW([{"params": [p for _, p in named if p.dim() >= 2], "weight_decay": WD},
                             {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    vocab = model.config.get_text_config().vocab_size
    rng = random.Random(0)
    total_steps = a.steps + a.untimed
    times = []
    for i in range(total_steps):
        t0 = time.perf_counter()
        step(model, model_type, depth, opt, rng, vocab, a.batch, a.seq_len, dtype, i, total_steps)
        if i >= a.untimed:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({
        "checkpoint": a.checkpoint, "model_type": model_type, "class": type(model).__name__, "dtype": a.dtype,
        "median_step_ms": round(median * 1000, 3), "min_step_ms": round(min(times) * 1000, 3),
        "tokens_per_s": round(a.batch * a.seq_len / median, 1), "batch": a.batch, "seq_len": a.seq_len,
        "threads": torch.get_num_threads(), "steps": a.steps, "untimed_steps": a.untimed,
        "experts_implementation": model.config._experts_implementation, "attn_implementation": "eager",
        "torch": torch.__version__, "transformers": transformers.__version__, "blas": blas_library(),
    }))


if __name__ == "__main__":
    main()
