#!/usr/bin/env python3
"""PyTorch baseline for `muongpt bench`: the same model (model.py), the same routing as the
"speedrun" preset (Muon on every blocks.* matrix, torch.optim.AdamW on the embedding, the head
and any gains, with the config's lrs and betas), the same B x T from the config. Prints one
JSON object with the fields `muongpt bench --json -` prints (tokens_per_s, step_ms, forward_ms,
backward_ms, optimizer_ms, ...), medians of the timed steps.

CPU (the default): float32, the explicit attention of model.py, optim_ref.py's Muon (float32
Newton-Schulz), AdamW(foreach=True). CUDA (--device cuda): float32 parameters on the GPU,
forward and backward under bf16 autocast, flash attention (scaled_dot_product_attention,
is_causal=True), AdamW(fused=True), Muon with the momentum and a bf16 Newton-Schulz batched
over same-shape matrices (optim_ref.newton_schulz_bf16, the modded-nanogpt way); --compile
wraps the model in torch.compile. docs/bench.md explains each choice.

    python3 tools/reference/train_torch.py --config configs/quickstart.toml --steps 10 --warmup 2
    python3 tools/reference/train_torch.py --config configs/speedrun-124m.toml --device cuda \
        --compile --random-data
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import resource
import statistics
import sys
import time
import tomllib

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import GPT, Config  # noqa: E402
from optim_ref import Muon, newton_schulz_bf16, shape_scale  # noqa: E402

SHARD_MAGIC, HEADER_BYTES = 20240520, 1024


def load_tokens(pattern: str, need: int) -> np.ndarray | None:
    """The first `need` tokens of the sorted shards, or None when there are too few."""
    parts, have = [], 0
    for path in sorted(glob.glob(pattern)):
        header = np.fromfile(path, dtype="<i4", count=256)
        if header[0] != SHARD_MAGIC:
            raise SystemExit(f"{path}: not a token shard (magic {header[0]})")
        toks = np.fromfile(path, dtype="<u2", count=int(header[2]), offset=HEADER_BYTES)
        parts.append(toks.astype(np.int64))
        have += len(toks)
        if have >= need:
            break
    return np.concatenate(parts)[:need] if have >= need else None


class StackedMuon:
    """optim_ref.Muon's update (same momentum, schedule, dualizer, scale, wd) arranged for the
    GPU: matrices of one shape and hyper-parameters are stacked into one [k, m, n] tensor, so
    the momentum is two lerps and Newton-Schulz is batched GEMMs (newton_schulz_bf16 in
    `ns_dtype`) instead of a few kernels per matrix; the update goes back with _foreach ops.
    Same `params` dicts as Muon (tensor, lr, scale, wd, dualizer); only ns:* dualizers."""

    def __init__(self, params, momentum=0.95, momentum_start=0.85, momentum_warmup=300,
                 kind="ema", nesterov=True, ns_dtype=torch.bfloat16):
        self.momentum, self.momentum_start = momentum, momentum_start
        self.momentum_warmup, self.kind, self.nesterov = momentum_warmup, kind, nesterov
        self.ns_dtype = ns_dtype
        groups: dict[tuple, list[torch.Tensor]] = {}
        for p in params:
            if not p["dualizer"].startswith("ns:"):
                raise ValueError(f"StackedMuon: only ns dualizers, got {p['dualizer']!r}")
            key = (tuple(p["tensor"].shape), p["lr"], p["scale"], p["wd"], p["dualizer"])
            groups.setdefault(key, []).append(p["tensor"])
        self.groups = []
        for (shape, lr, scale, wd, spec), tensors in groups.items():
            _, coeffs, steps = spec.split(":")
            buf = torch.zeros((len(tensors), *shape), dtype=tensors[0].dtype,
                              device=tensors[0].device)
            self.groups.append({"tensors": tensors, "lr": lr, "scale": scale, "wd": wd,
                                "coeffs": coeffs, "steps": int(steps), "buf": buf})

    mu = Muon.mu

    @torch.no_grad()
    def step(self, step: int, lr_scale: float):
        mu = self.mu(step)
        for g in self.groups:
            W, buf = g["tensors"], g["buf"]
            G = torch.stack([w.grad for w in W])
            if self.kind == "ema":  # buf = mu*buf + (1-mu)*G; u = (1-mu)*G + mu*buf
                buf.lerp_(G, 1 - mu)
                u = G.lerp_(buf, mu) if self.nesterov else buf
            else:  # buf = mu*buf + G; u = G + mu*buf
                buf.mul_(mu).add_(G)
                u = G.add_(buf, alpha=mu) if self.nesterov else buf
            O = newton_schulz_bf16(u, g["coeffs"], g["steps"], dtype=self.ns_dtype)
            O = O.to(dtype=W[0].dtype, memory_format=torch.contiguous_format)
            lr = g["lr"] * lr_scale
            if g["wd"]:
                torch._foreach_mul_(W, 1 - lr * g["wd"])
            torch._foreach_add_(W, list(O.unbind(0)), alpha=-lr * g["scale"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default=None,
                    help="compute type: fp32, or bf16 autocast (cuda only); default: fp32 on "
                         "cpu, bf16 on cuda")
    ap.add_argument("--attention", choices=("auto", "explicit", "sdpa"), default="auto",
                    help="model.py attention: auto = explicit on cpu, sdpa on cuda")
    ap.add_argument("--batch", type=int, default=None,
                    help="sequences per micro-step (default: the config's data.batch_size)")
    ap.add_argument("--grad-accum", type=int, default=None,
                    help="micro-steps per step (default: the config's data.grad_accum)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default: torch's default)")
    ap.add_argument("--peak-gflops", type=float, default=0.0,
                    help="the device's peak GFLOP/s, to report an MFU (0 = none)")
    ap.add_argument("--random-data", action="store_true")
    args = ap.parse_args()

    cuda = args.device == "cuda"
    dtype_name = args.dtype or ("bf16" if cuda else "fp32")
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"train_torch.py: --device cuda: no usable GPU "
                         f"(torch.cuda.is_available() is false; torch {torch.__version__}, "
                         f"CUDA build {torch.version.cuda or 'none'})")
    if not cuda and dtype_name != "fp32":
        raise SystemExit("train_torch.py: --dtype bf16 needs --device cuda (the CPU baseline "
                         "is float32)")
    if args.batch is not None and args.batch < 1:
        raise SystemExit(f"train_torch.py: --batch must be positive, got {args.batch}")
    if args.grad_accum is not None and args.grad_accum < 1:
        raise SystemExit(f"train_torch.py: --grad-accum must be positive, got {args.grad_accum}")
    device = torch.device("cuda" if cuda else "cpu")
    attention = args.attention if args.attention != "auto" else ("sdpa" if cuda else "explicit")
    bf16 = dtype_name == "bf16"

    torch.set_num_threads(args.threads)
    with open(args.config, "rb") as f:
        root = tomllib.load(f)
    cfg = Config(**root.get("model", {}))
    data = root.get("data", {})
    B = args.batch if args.batch is not None else int(data.get("batch_size", 8))
    T = int(data.get("seq_len", 0)) or cfg.seq_len
    accum = args.grad_accum if args.grad_accum is not None else int(data.get("grad_accum", 1))
    optim = root.get("optim", {})
    if optim.get("routing", "speedrun") != "speedrun" or optim.get("rules"):
        raise SystemExit("train_torch.py: only routing = \"speedrun\" without rules is supported")
    aw, mu = optim.get("adamw", {}), optim.get("muon", {})
    if mu.get("dualizer", "ns") != "ns":
        raise SystemExit("train_torch.py: only the ns dualizer is supported")
    seed = int(root.get("run", {}).get("seed", 1337))
    torch.manual_seed(seed)

    model = GPT(cfg, dtype=torch.float32, attention=attention)
    model.reset_parameters()  # on the CPU, so both devices start from the same weights
    if cuda:
        model.cache_rope(T)
        model.to(device)
    muon_params, adamw_groups = [], []
    for name, p in model.named_parameters():
        if name.startswith("blocks.") and p.ndim == 2:
            muon_params.append({"tensor": p, "lr": mu.get("lr", 0.05),
                                "scale": shape_scale(mu.get("scale", "keller"), *p.shape),
                                "wd": mu.get("wd", 0.0),
                                "dualizer": f"ns:{mu.get('ns_coeffs', 'jordan')}:"
                                            f"{mu.get('ns_steps', 5)}"})
        else:
            lr = (aw.get("embed_lr", 0.6) if name == "embed.weight" else
                  aw.get("head_lr", 0.008) if name == "head.weight" else
                  aw.get("scalar_lr", 0.04) if p.ndim == 1 else aw.get("matrix_lr", 0.0018))
            adamw_groups.append({"params": [p], "lr": lr, "initial_lr": lr})
    # CPU: foreach (the multi-tensor path); CUDA: fused (one kernel for all of AdamW)
    adamw = torch.optim.AdamW(adamw_groups, betas=(aw.get("beta1", 0.8), aw.get("beta2", 0.95)),
                              eps=aw.get("eps", 1e-10), weight_decay=aw.get("wd", 0.0),
                              **({"fused": True} if cuda else {"foreach": True}))
    muon_args = dict(momentum=mu.get("momentum", 0.95),
                     momentum_start=mu.get("momentum_start", 0.85),
                     momentum_warmup=mu.get("momentum_warmup", 300),
                     kind=mu.get("momentum_kind", "ema"), nesterov=mu.get("nesterov", True))
    if cuda:
        muon = StackedMuon(muon_params, ns_dtype=torch.bfloat16 if bf16 else torch.float32,
                           **muon_args)
    else:
        muon = Muon(muon_params, **muon_args)
    # FLOPs per token, docs/bench.md: 6*N (every parameter but the embedding, the head with its
    # vocab_size used rows) + 6*L*T*d (causal attention)
    n_flop = (sum(p.numel() for n, p in model.named_parameters() if n != "embed.weight")
              - (cfg.vocab_padded - cfg.vocab_size) * cfg.d_model)
    flops_per_token = 6.0 * n_flop + 6.0 * cfg.n_layer * T * cfg.d_model

    total = (args.warmup + args.steps) * accum
    tokens = None
    if not args.random_data and data.get("train"):
        tokens = load_tokens(data["train"], total * B * T + 1)
    source = "shards" if tokens is not None else "random"
    gen = torch.Generator(device=device).manual_seed(seed)  # random ids made on the device

    def batch(i: int):
        if tokens is None:
            w = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen, device=device)
        else:
            w = torch.from_numpy(np.stack([tokens[(i * B + b) * T:(i * B + b) * T + T + 1]
                                           for b in range(B)])).to(device)
        return w[:, :T].contiguous(), w[:, 1:].contiguous()

    def autocast():
        return (torch.autocast("cuda", dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())

    def now() -> float:  # GPU work is asynchronous: wait for it before reading the clock
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    fwd_fn = model
    compiled = "off"
    if args.compile:
        try:
            fwd_fn = torch.compile(model, mode=args.compile_mode)
            x, y = batch(0)
            with autocast():
                loss = fwd_fn(x, y)[1]
            loss.backward()  # compile now (forward and backward), outside the timings
            model.zero_grad(set_to_none=True)
            compiled = "on"
        except Exception as e:  # no working compiler: fall back to eager
            print(f"train_torch.py: torch.compile failed, running eager: "
                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                  file=sys.stderr)
            fwd_fn, compiled = model, "failed"

    times = {k: [] for k in ("data", "forward", "backward", "optimizer", "step")}
    times["adamw"] = []
    micro, loss_v = 0, float("nan")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.warmup + args.steps):
        t_step = now()
        d = f = b = 0.0
        model.zero_grad(set_to_none=cuda)  # cuda: backward writes fresh gradients, no zeroing
        losses = []
        for _ in range(accum):
            t0 = now()
            x, y = batch(micro)
            micro += 1
            t1 = now()
            with autocast():
                _, loss = fwd_fn(x, y)
            t2 = now()
            (loss / accum).backward()
            t3 = now()
            d, f, b = d + t1 - t0, f + t2 - t1, b + t3 - t2
            losses.append(loss.detach())
        t0 = now()
        scale = 1.0  # bench runs far from the cooldown: the schedule's multiplier is 1
        for g in adamw.param_groups:
            g["lr"] = g["initial_lr"] * scale
        adamw.step()
        t1 = now()
        muon.step(step, scale)
        t_end = now()
        o = t_end - t0
        if step >= args.warmup:
            times["adamw"].append((t1 - t0) * 1e3)
            for k, v in zip(list(times)[:5], (d, f, b, o, t_end - t_step)):
                times[k].append(v * 1e3)
        loss_v = sum(v.item() for v in losses) / accum  # read after the step's clock stopped
        if not math.isfinite(loss_v):
            raise SystemExit(f"train_torch.py: step {step + 1}: the loss is not finite")

    adamw_ms = statistics.median(times.pop("adamw"))
    med = {k: statistics.median(v) for k, v in times.items()}
    tokens_per_s = B * T * accum / (med["step"] / 1e3)
    out = {"tool": "pytorch", "torch": torch.__version__, "config": args.config, "data": source,
           "device": torch.cuda.get_device_name(device) if cuda else "cpu",
           "dtype": dtype_name, "attention": attention,
           "threads": torch.get_num_threads(), "compile": compiled, "batch": B, "seq": T,
           "grad_accum": accum, "tokens_per_step": B * T * accum, "warmup": args.warmup,
           "steps": args.steps, "params_flop": n_flop, "flops_per_token": flops_per_token,
           "tokens_per_s": tokens_per_s,
           "step_ms": med["step"], "data_ms": med["data"], "forward_ms": med["forward"],
           "backward_ms": med["backward"], "optimizer_ms": med["optimizer"],
           "adamw_ms": adamw_ms, "muon_ms": med["optimizer"] - adamw_ms,
           "gflops_per_s": flops_per_token * tokens_per_s / 1e9,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "final_loss": loss_v}
    if args.peak_gflops > 0:
        out["mfu"] = out["gflops_per_s"] / args.peak_gflops
    if cuda:
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 1048576.0
        out["peak_gpu_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 1048576.0
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
