#!/usr/bin/env python3
"""PyTorch-CPU baseline for `muongpt bench`: the same model (model.py), the same routing as the
"speedrun" preset (Muon from optim_ref.py on every blocks.* matrix, torch.optim.AdamW on the
embedding, the head and any gains, with the config's lrs and betas), the same B x T from the
config, float32 on the CPU. Prints one JSON object with the fields `muongpt bench --json -`
prints (tokens_per_s, step_ms, forward_ms, backward_ms, optimizer_ms, ...), medians of the timed
steps.

    python3 tools/reference/train_torch.py --config configs/quickstart.toml --steps 10 --warmup 2
"""

from __future__ import annotations

import argparse
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
from optim_ref import Muon, shape_scale  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--random-data", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.config, "rb") as f:
        root = tomllib.load(f)
    cfg = Config(**root.get("model", {}))
    data = root.get("data", {})
    B = int(data.get("batch_size", 8))
    T = int(data.get("seq_len", 0)) or cfg.seq_len
    accum = int(data.get("grad_accum", 1))
    optim = root.get("optim", {})
    if optim.get("routing", "speedrun") != "speedrun" or optim.get("rules"):
        raise SystemExit("train_torch.py: only routing = \"speedrun\" without rules is supported")
    aw, mu = optim.get("adamw", {}), optim.get("muon", {})
    if mu.get("dualizer", "ns") != "ns":
        raise SystemExit("train_torch.py: only the ns dualizer is supported")
    seed = int(root.get("run", {}).get("seed", 1337))
    torch.manual_seed(seed)

    model = GPT(cfg, dtype=torch.float32)
    model.reset_parameters()
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
    adamw = torch.optim.AdamW(adamw_groups, betas=(aw.get("beta1", 0.8), aw.get("beta2", 0.95)),
                              eps=aw.get("eps", 1e-10), weight_decay=aw.get("wd", 0.0),
                              foreach=True)
    muon = Muon(muon_params, momentum=mu.get("momentum", 0.95),
                momentum_start=mu.get("momentum_start", 0.85),
                momentum_warmup=mu.get("momentum_warmup", 300),
                kind=mu.get("momentum_kind", "ema"), nesterov=mu.get("nesterov", True))

    total = (args.warmup + args.steps) * accum
    tokens = None
    if not args.random_data and data.get("train"):
        tokens = load_tokens(data["train"], total * B * T + 1)
    source = "shards" if tokens is not None else "random"
    gen = torch.Generator().manual_seed(seed)

    def batch(i: int):
        if tokens is None:
            w = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen)
        else:
            w = torch.from_numpy(np.stack([tokens[(i * B + b) * T:(i * B + b) * T + T + 1]
                                           for b in range(B)]))
        return w[:, :T].contiguous(), w[:, 1:].contiguous()

    fwd_fn = model
    compiled = "off"
    if args.compile:
        try:
            fwd_fn = torch.compile(model)
            x, y = batch(0)
            fwd_fn(x, y)[1].backward()  # compile now, outside the timings
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
    for step in range(args.warmup + args.steps):
        t_step = time.perf_counter()
        d = f = b = 0.0
        model.zero_grad(set_to_none=False)
        loss_v = 0.0
        for _ in range(accum):
            t0 = time.perf_counter()
            x, y = batch(micro)
            micro += 1
            t1 = time.perf_counter()
            _, loss = fwd_fn(x, y)
            t2 = time.perf_counter()
            (loss / accum).backward()
            t3 = time.perf_counter()
            d, f, b = d + t1 - t0, f + t2 - t1, b + t3 - t2
            loss_v += loss.item() / accum
        t0 = time.perf_counter()
        scale = 1.0  # bench runs far from the cooldown: the schedule's multiplier is 1
        for g in adamw.param_groups:
            g["lr"] = g["initial_lr"] * scale
        adamw.step()
        t1 = time.perf_counter()
        muon.step(step, scale)
        o = time.perf_counter() - t0
        if step >= args.warmup:
            times["adamw"].append((t1 - t0) * 1e3)
        if step >= args.warmup:
            for k, v in zip(list(times)[:5], (d, f, b, o, time.perf_counter() - t_step)):
                times[k].append(v * 1e3)
        if not math.isfinite(loss_v):
            raise SystemExit(f"train_torch.py: step {step + 1}: the loss is not finite")

    adamw_ms = statistics.median(times.pop("adamw"))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"tool": "pytorch", "torch": torch.__version__, "config": args.config, "data": source,
           "threads": torch.get_num_threads(), "compile": compiled, "batch": B, "seq": T,
           "grad_accum": accum, "tokens_per_step": B * T * accum, "warmup": args.warmup,
           "steps": args.steps, "tokens_per_s": B * T * accum / (med["step"] / 1e3),
           "step_ms": med["step"], "data_ms": med["data"], "forward_ms": med["forward"],
           "backward_ms": med["backward"], "optimizer_ms": med["optimizer"],
           "adamw_ms": adamw_ms, "muon_ms": med["optimizer"] - adamw_ms,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "final_loss": loss_v}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
