#!/usr/bin/env python3
"""Write the golden GPT fixtures for the C++ tests (see tools/reference/README.md).

usage: python3 tools/reference/make_fixtures.py [--out DIR] [--only NAME ...]
       (default: every fixture, into tests/fixtures)
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from pathlib import Path

import torch
from safetensors.torch import load, save

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from model import GPT, Config, param_names  # noqa: E402

B, T = 2, 16
MAX_BYTES = 1 << 20

TINY = dict(
    vocab_size=96, vocab_multiple=128, n_layer=2, d_model=64, d_head=32, mlp_ratio=4,
    seq_len=16, norm_eps=1e-6, norm_gains=False, attn_scale=0.12, rope_base=1024.0,
    softcap=15.0,
)
FIXTURES = [
    ("gpt_tiny", Config(**TINY), 1234),
    ("gpt_tiny_gains",
     Config(**{**TINY, "softcap": 0.0, "norm_gains": True, "attn_scale": "1/sqrt(d_head)"}),
     5678),
    # The gated MLP: d_mlp = 192 = 8/3 * 64 rounded up to a multiple of 64 (the parameter-matched
    # width), so the file stays the size of the others; gains on, so the mlp_norm gain's gradient
    # sums both branches.
    ("gpt_tiny_swiglu",
     Config(**{**TINY, "mlp": "swiglu", "d_mlp": 192, "norm_gains": True}),
     9012),
]


def fixture_weights(cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every weight nonzero (so every gradient is informative), rounded to bf16."""
    d, dm = cfg.d_model, cfg.mlp_width
    Vp = cfg.vocab_padded

    def uni(shape, fan_in):
        bound = math.sqrt(3) * 0.5 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound

    def normal(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    w = {}
    for name in param_names(cfg):
        if name == "embed.weight":
            w[name] = normal((Vp, d))
        elif name == "head.weight":
            w[name] = normal((Vp, d)) * 5 / math.sqrt(d)
        elif name.endswith("norm.weight"):
            w[name] = 1 + 0.2 * normal((d,))
        elif name.endswith(("attn.wq", "attn.wk", "attn.wv", "attn.wo")):
            w[name] = uni((d, d), d)
        elif name.endswith(("mlp.w1", "mlp.w3")):
            w[name] = uni((dm, d), d)
        elif name.endswith("mlp.w2"):
            w[name] = uni((d, dm), dm)
        else:
            raise AssertionError(name)
    return {k: v.to(torch.bfloat16) for k, v in w.items()}


def save_deterministic(tensors: dict, metadata: dict, path: Path):
    """safetensors.torch.save, with the JSON header re-serialized with sorted keys.

    safetensors writes __metadata__ in hash-map order, which changes from run to run;
    a canonical header keeps regenerated fixtures byte-identical. Offsets are unchanged.
    """
    blob = save(tensors, metadata=metadata)
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"))
    header = header.encode() + b" " * (-len(header) % 8)  # keep the data 8-byte aligned
    out = struct.pack("<Q", len(header)) + header + blob[8 + n :]
    check = load(out)
    assert check.keys() == tensors.keys()
    assert all(torch.equal(check[k], v) for k, v in tensors.items())
    path.write_bytes(out)


def build(cfg: Config, seed: int):
    gen = torch.Generator().manual_seed(seed)
    weights = fixture_weights(cfg, gen)
    idx = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
    model = GPT(cfg, dtype=torch.float64)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(weights[name].to(torch.float64))
    return model, weights, idx, targets


def finite_difference_check(model: GPT, idx, targets, gen: torch.Generator, n=6, h=1e-4):
    """Central differences in float64 vs autograd on a few entries of a few parameters.

    h = 1e-4 balances truncation (O(h^2)) against float64 round-off in the loss (~1e-15/h).
    """
    model.zero_grad()
    _, loss = model(idx, targets)
    loss.backward()
    params = dict(model.named_parameters())
    names = ["blocks.0.attn.wq", "blocks.1.mlp.w2", "head.weight", "embed.weight"]
    names += [n for n in params if n.endswith("mlp.w3")][:1]
    names += [n for n in params if n.endswith("norm.weight")][:1]
    worst = 0.0
    for name in names:
        p = params[name]
        g = p.grad.reshape(-1)
        # the largest-|grad| entry plus random ones among the entries with a gradient
        live = torch.nonzero(g).reshape(-1)
        pick = live[torch.randperm(live.numel(), generator=gen)[: n - 1]]
        pick = torch.cat([g.abs().argmax().reshape(1), pick])
        errs, abs_errs = [], []
        with torch.no_grad():
            flat = p.view(-1)
            for i in pick.tolist():
                old = flat[i].item()
                flat[i] = old + h
                lp = model(idx, targets)[1].item()
                flat[i] = old - h
                lm = model(idx, targets)[1].item()
                flat[i] = old
                fd, ag = (lp - lm) / (2 * h), g[i].item()
                errs.append(abs(fd - ag) / max(abs(fd), abs(ag), 1e-12))
                abs_errs.append(abs(fd - ag))
        print(f"    fd check {name:<26} max rel err {max(errs):.2e}, max abs err "
              f"{max(abs_errs):.2e} over {len(errs)} entries")
        worst = max(worst, max(errs))
    model.zero_grad()
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures")
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=[f[0] for f in FIXTURES],
                    help="write only these fixtures (e.g. gpt_tiny_swiglu)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    for fname, cfg, seed in FIXTURES:
        if args.only and fname not in args.only:
            continue
        toml_text = cfg.to_toml()
        assert Config.from_toml(toml_text) == cfg, "TOML round trip"
        model, weights, idx, targets = build(cfg, seed)
        V = cfg.vocab_size

        model.zero_grad()
        logits, loss = model(idx, targets)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        assert torch.all(grads["head.weight"][V:] == 0)
        assert all(torch.isfinite(g).all() for g in grads.values())

        tensors = {
            "idx": idx.to(torch.int32).contiguous(),
            "targets": targets.to(torch.int32).contiguous(),
        }
        for n in param_names(cfg):
            tensors[f"param.{n}"] = weights[n].contiguous()
        tensors["logits"] = logits.detach().to(torch.float32).contiguous()
        tensors["loss"] = loss.detach().reshape(1).to(torch.float64)
        for n in param_names(cfg):
            tensors[f"grad.{n}"] = grads[n].to(torch.float32).contiguous()
        metadata = {
            "config": toml_text,
            "B": str(B),
            "T": str(T),
            "generator": "tools/reference/make_fixtures.py",
            "torch": torch.__version__,
        }
        path = args.out / f"{fname}.safetensors"
        save_deterministic(tensors, metadata, path)
        size = path.stat().st_size
        print(f"{path}: {size} bytes, loss {loss.item():.17g}")
        print("    config: " + toml_text.strip().replace("\n", "; "))
        assert size < MAX_BYTES, f"{path} is {size} bytes (limit {MAX_BYTES})"

        worst = finite_difference_check(model, idx, targets, torch.Generator().manual_seed(seed + 1))
        print(f"    fd check overall max rel err {worst:.2e}")
        assert worst < 1e-5, "finite differences disagree with autograd"


if __name__ == "__main__":
    main()
