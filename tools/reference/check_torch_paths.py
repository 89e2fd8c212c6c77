#!/usr/bin/env python3
"""Checks that the speed paths of the PyTorch baseline (train_torch.py --device cuda) compute
what the oracle paths compute, on a small random config:

1. model.py attention="sdpa" (F.scaled_dot_product_attention, is_causal, scale=attn_scale)
   against the explicit masked softmax: same loss to 1e-5 and same gradients, float32 and
   float64, with and without norm gains / softcap, also with cache_rope().
2. train_torch.StackedMuon with a float32 Newton-Schulz against optim_ref.Muon (float32,
   one matrix at a time): same parameters after a few steps (EMA-Nesterov and classic).
3. optim_ref.newton_schulz_bf16 (one matrix and a stack) against the float32 newton_schulz:
   close, at bfloat16 accuracy.

    python3 tools/reference/check_torch_paths.py              # CPU
    python3 tools/reference/check_torch_paths.py --device cuda # the same on the GPU, plus the
                                                              # bf16-autocast SDPA loss
Exits 1 on the first failed check.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import GPT, Config  # noqa: E402
from optim_ref import Muon, newton_schulz, newton_schulz_bf16  # noqa: E402
from train_torch import StackedMuon  # noqa: E402

FAILED = []


def check(name: str, err: float, tol: float):
    ok = err <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name:58s} {err:.2e} (tol {tol:.0e})")
    if not ok:
        FAILED.append(name)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def small_cfg(**kw) -> Config:
    base = dict(vocab_size=96, vocab_multiple=128, n_layer=2, d_model=64, d_head=32,
                mlp_ratio=4, seq_len=16)
    base.update(kw)
    return Config(**base)


def random_weights(model: GPT, gen: torch.Generator):
    """Nonzero everywhere (the training init zeroes wo, w2 and head), so every path matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                std = 1.0 if name == "embed.weight" else 0.5 / p.shape[-1] ** 0.5
                p.copy_(std * torch.randn(p.shape, generator=gen, dtype=torch.float64))


def check_sdpa(device: torch.device):
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        for kw in ({}, {"norm_gains": True, "softcap": 0.0, "attn_scale": "1/sqrt(d_head)"}):
            cfg = small_cfg(**kw)
            models = {}
            for attention in ("explicit", "sdpa"):
                gen = torch.Generator().manual_seed(7)
                m = GPT(cfg, dtype=dtype, attention=attention)
                random_weights(m, gen)
                if attention == "sdpa":
                    m.cache_rope(cfg.seq_len)
                models[attention] = m.to(device)
            gen = torch.Generator().manual_seed(11)
            idx = torch.randint(0, cfg.vocab_size, (3, cfg.seq_len), generator=gen).to(device)
            tgt = torch.randint(0, cfg.vocab_size, (3, cfg.seq_len), generator=gen).to(device)
            out = {}
            for attention, m in models.items():
                _, loss = m(idx, tgt)
                loss.backward()
                out[attention] = (loss.detach(), {n: p.grad for n, p in m.named_parameters()})
            (le, ge), (ls, gs) = out["explicit"], out["sdpa"]
            what = f"{str(dtype).removeprefix('torch.')}{' gains/no softcap' if kw else ''}"
            check(f"sdpa vs explicit loss, {what} (abs)", abs(le - ls).item(), tol)
            check(f"sdpa vs explicit grads, {what} (max rel)",
                  max(rel(gs[n], ge[n]) for n in ge), tol * 10)
            # a shorter sequence than the cached tables
            _, l_short_e = models["explicit"](idx[:, :9], tgt[:, :9])
            _, l_short_s = models["sdpa"](idx[:, :9], tgt[:, :9])
            check(f"sdpa (cached rope) vs explicit loss, T=9, {what}",
                  abs(l_short_e - l_short_s).item(), tol)


def check_bf16_autocast(device: torch.device):
    cfg = small_cfg(vocab_size=500, n_layer=2, d_model=256, d_head=64, seq_len=128)
    gen = torch.Generator().manual_seed(3)
    ref = GPT(cfg, dtype=torch.float32)
    random_weights(ref, gen)
    fast = GPT(cfg, dtype=torch.float32, attention="sdpa")
    fast.load_state_dict(ref.state_dict())
    fast.cache_rope(cfg.seq_len)
    ref, fast = ref.to(device), fast.to(device)
    idx = torch.randint(0, cfg.vocab_size, (4, cfg.seq_len), device=device)
    tgt = torch.randint(0, cfg.vocab_size, (4, cfg.seq_len), device=device)
    _, l_ref = ref(idx, tgt)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, l_fast = fast(idx, tgt)
    check("bf16 autocast + sdpa vs float32 explicit loss (rel)",
          abs(l_fast.float() - l_ref).item() / l_ref.item(), 2e-2)


def check_muon(device: torch.device):
    gen = torch.Generator().manual_seed(5)
    shapes = [(64, 64)] * 4 + [(256, 64)] * 2 + [(64, 256)] * 2 + [(32, 48)]
    for kind, nesterov, coeffs, steps, wd in (("ema", True, "jordan", 5, 0.0),
                                              ("classic", False, "polar-express", 7, 0.1),
                                              ("classic", True, "jordan", 5, 0.0)):
        W0 = [torch.randn(s, generator=gen) * 0.1 for s in shapes]
        grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
        runs = {}
        for impl in ("ref", "stacked"):
            W = [w.clone().to(device) for w in W0]
            params = [{"tensor": w, "lr": 0.05, "scale": max(1.0, w.shape[0] / w.shape[1]) ** 0.5,
                       "wd": wd, "dualizer": f"ns:{coeffs}:{steps}"} for w in W]
            args = dict(momentum=0.95, momentum_start=0.85, momentum_warmup=2, kind=kind,
                        nesterov=nesterov)
            opt = (Muon(params, **args) if impl == "ref"
                   else StackedMuon(params, ns_dtype=torch.float32, **args))
            for t, gs in enumerate(grads):
                for w, g in zip(W, gs):
                    w.grad = g.to(device)
                opt.step(t, 1.0)
            runs[impl] = W
        err = max(rel(s - w0.to(device), r - w0.to(device))
                  for s, r, w0 in zip(runs["stacked"], runs["ref"], W0))
        check(f"StackedMuon(float32) vs Muon, {kind} nesterov={nesterov} {coeffs}x{steps}",
              err, 1e-4)


def check_ns_bf16(device: torch.device):
    gen = torch.Generator().manual_seed(9)
    for shape in ((128, 128), (384, 128), (128, 384)):
        G = torch.randn(shape, generator=gen).to(device)
        ref = newton_schulz(G)
        one = newton_schulz_bf16(G)
        check(f"newton_schulz_bf16 vs float32, {shape} (rel)", rel(one.float(), ref), 3e-2)
        stack = torch.stack([G, 2 * G, torch.randn(shape, generator=gen).to(device)])
        many = newton_schulz_bf16(stack)
        check(f"newton_schulz_bf16 stack [0] vs single, {shape} (rel)",
              rel(many[0].float(), one.float()), 1e-2)
        check(f"newton_schulz_bf16 stack [1] (2G) vs single, {shape} (rel)",
              rel(many[1].float(), one.float()), 1e-2)
        check(f"newton_schulz_bf16(float32) vs newton_schulz, {shape} (rel)",
              rel(newton_schulz_bf16(G, dtype=torch.float32), ref), 1e-5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("check_torch_paths.py: --device cuda: torch.cuda.is_available() is false")
    device = torch.device(args.device)
    torch.manual_seed(0)
    check_sdpa(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        check_bf16_autocast(device)
    check_muon(device)
    check_ns_bf16(device)
    print("all checks passed" if not FAILED else f"{len(FAILED)} check(s) FAILED")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
