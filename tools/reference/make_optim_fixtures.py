#!/usr/bin/env python3
"""Write the optimizer parity fixtures (see docs/optim.md, "Parity with PyTorch").

usage: python3 tools/reference/make_optim_fixtures.py [--out DIR]   (default: tests/fixtures)

Two files, each a standard safetensors file with one or more cases that share the initial
parameters and the per-step gradients:

  optim_adamw.safetensors   torch.optim.AdamW, per-parameter lr and weight decay
  optim_muon.safetensors    the reference Muon of optim_ref.py (matrices) + torch AdamW (rest):
                            muon (EMA-Nesterov, jordan NS5), muon_classic (classic momentum,
                            no Nesterov, polar-express x9), specgd (exact polar), dualizers
                            (schatten-p:4, sign, frobenius, per-rule options)
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

import optim_ref  # noqa: E402

STEPS = 5
LR_SCALES = [0.5, 1.0, 1.0, 0.7, 0.3]  # schedule multipliers of steps 0..4
MAX_BYTES = 1 << 20

# Parameter order is the interface order the C++ test builds its slots in.
PARAMS = [
    ("embed.weight", (64, 16)),  # an embedding-like table (role embed)
    ("mat.wide", (32, 48)),
    ("mat.tall", (48, 32)),
    ("mat.square", (40, 40)),
    ("gain", (40,)),  # a 1-D gain (role scalar)
    ("head.weight", (64, 16)),  # role head
]

ADAMW_LR = {"embed": 0.6, "head": 0.008, "scalar": 0.04, "matrix": 0.0018}
BETAS, EPS = (0.8, 0.95), 1e-10


def role(name: str, shape) -> str:
    if name.startswith("embed."):
        return "embed"
    if name.startswith("head."):
        return "head"
    return "scalar" if len(shape) < 2 else "matrix"


def adamw_route(name, shape, lr_mult=1.0, wd=0.0):
    return dict(optimizer="adamw", dualizer="", lr=ADAMW_LR[role(name, shape)] * lr_mult,
                scale=1.0, wd=wd)


def muon_route(shape, dualizer="ns:jordan:5", lr=0.05, scale="keller", wd=0.0):
    return dict(optimizer="muon", dualizer=dualizer, lr=lr,
                scale=optim_ref.shape_scale(scale, *shape), wd=wd)


def routes_for(case: str) -> dict[str, dict]:
    """The expected routing table of each case, written out by hand from the case's rules."""
    shapes = dict(PARAMS)
    r = {n: adamw_route(n, s) for n, s in PARAMS}
    if case == "adamw":
        r["mat.square"] = adamw_route("mat.square", shapes["mat.square"], lr_mult=2, wd=0.1)
        for n in ("mat.wide", "mat.tall"):
            r[n] = adamw_route(n, shapes[n], wd=0.1)
    elif case == "muon":
        for n in ("mat.wide", "mat.tall", "mat.square"):
            r[n] = muon_route(shapes[n], wd=0.1)
    elif case == "muon_classic":
        for n in ("mat.wide", "mat.tall", "mat.square"):
            r[n] = muon_route(shapes[n], dualizer="ns:polar-express:9", lr=0.02, scale="spectral")
    elif case == "specgd":
        for n in ("mat.wide", "mat.tall", "mat.square"):
            r[n] = muon_route(shapes[n], dualizer="polar", scale="moonlight", wd=0.05)
    elif case == "dualizers":
        r["mat.wide"] = muon_route(shapes["mat.wide"], dualizer="schatten-p:4")
        r["mat.tall"] = muon_route(shapes["mat.tall"], dualizer="sign", lr=0.001)
        r["mat.square"] = muon_route(shapes["mat.square"], dualizer="frobenius", lr=0.1)
    else:
        raise ValueError(case)
    return r


# Each case's [optim] config, as the C++ side reads it. Keys left out take the defaults.
CONFIGS = {
    "adamw": """[optim]
routing = "none"
rules = ["mat.square = adamw(lr_mult=2, wd=0.1)", "mat.* = adamw(wd=0.1)", "* = adamw"]
""",
    "muon": """[optim]
routing = "none"
rules = ["mat.* = muon", "* = adamw"]

[optim.muon]
wd = 0.1
""",
    "muon_classic": """[optim]
routing = "none"
rules = ["mat.* = muon", "* = adamw"]

[optim.muon]
lr = 0.02
momentum = 0.9
momentum_start = 0.5
momentum_warmup = 2
momentum_kind = "classic"
nesterov = false
ns_coeffs = "polar-express"
ns_steps = 9
scale = "spectral"
""",
    "specgd": """[optim]
routing = "none"
rules = ["mat.* = muon(dualizer=polar, scale=moonlight, wd=0.05)", "* = adamw"]
""",
    "dualizers": """[optim]
routing = "none"
rules = ["mat.wide = muon(dualizer=schatten-p:4)", "mat.tall = muon(dualizer=sign, lr=0.001)",
         "mat.square = muon(dualizer=frobenius, lr_mult=2)", "* = adamw"]
""",
}
MUON_SETTINGS = {  # the [optim.muon] momentum keys of each case, for the reference Muon
    "muon": dict(),
    "muon_classic": dict(momentum=0.9, momentum_start=0.5, momentum_warmup=2, kind="classic",
                         nesterov=False),
    "specgd": dict(),
    "dualizers": dict(),
}
FILES = {"optim_adamw": ["adamw"], "optim_muon": ["muon", "muon_classic", "specgd", "dualizers"]}


def initial_params(gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, shape in PARAMS:
        if name == "embed.weight":
            t = torch.randn(shape, generator=gen)
        elif name == "head.weight":
            t = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:
            t = 1 + 0.2 * torch.randn(shape, generator=gen)
        else:
            bound = math.sqrt(3) * 0.5 / math.sqrt(shape[1])
            t = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        out[name] = t.to(torch.float32).contiguous()
    return out


def gradients(gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Per step: matrices get a rank-4 signal plus 10% noise (gradient-like: a few dominant
    directions, a full-rank tail); the table gets rows that stay zero (absent tokens)."""
    steps = []
    for _ in range(STEPS):
        g = {}
        for name, shape in PARAMS:
            if len(shape) == 1:
                t = 0.01 * torch.randn(shape, generator=gen)
            else:
                m, n = shape
                low = torch.randn(m, 4, generator=gen) @ torch.randn(4, n, generator=gen) / 2
                t = 1e-3 * (low + 0.1 * torch.randn(m, n, generator=gen))
                if name == "embed.weight":
                    t[torch.rand(m, generator=gen) < 0.5] = 0
            g[name] = t.to(torch.float32).contiguous()
        steps.append(g)
    return steps


def run_case(case: str, init: dict, grads: list) -> list[dict[str, torch.Tensor]]:
    routes = routes_for(case)
    params = {n: init[n].clone().requires_grad_(True) for n, _ in PARAMS}
    adam_groups, muon_params = [], []
    for name, _ in PARAMS:
        r = routes[name]
        if r["optimizer"] == "adamw":
            adam_groups.append(dict(params=[params[name]], lr=r["lr"], weight_decay=r["wd"],
                                    base_lr=r["lr"]))
        else:
            muon_params.append(dict(tensor=params[name], dualizer=r["dualizer"], lr=r["lr"],
                                    scale=r["scale"], wd=r["wd"]))
    adam = torch.optim.AdamW(adam_groups, betas=BETAS, eps=EPS, foreach=False, fused=False)
    muon = optim_ref.Muon(muon_params, **MUON_SETTINGS[case]) if muon_params else None
    after = []
    for step in range(STEPS):
        for name, _ in PARAMS:
            params[name].grad = grads[step][name].clone()
        for group in adam.param_groups:
            group["lr"] = group["base_lr"] * LR_SCALES[step]
        adam.step()
        if muon:
            muon.step(step, LR_SCALES[step])
        after.append({n: p.detach().clone() for n, p in params.items()})
    return after


def routes_tsv(case: str) -> str:
    """The expected table in routing_tsv()'s columns (without the rule column)."""
    lines = ["name\tshape\toptimizer\tdualizer\tlr\tscale\twd"]
    for name, shape in PARAMS:
        r = routes_for(case)[name]
        lines.append("\t".join([name, "x".join(map(str, shape)), r["optimizer"],
                                r["dualizer"] or "-", repr(r["lr"]), repr(r["scale"]),
                                repr(r["wd"])]))
    return "\n".join(lines) + "\n"


def save_deterministic(tensors: dict, metadata: dict, path: Path):
    """safetensors.torch.save with the JSON header re-serialised with sorted keys, so that a
    regenerated file is byte-identical."""
    blob = save(tensors, metadata=metadata)
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"))
    header = header.encode() + b" " * (-len(header) % 8)
    out = struct.pack("<Q", len(header)) + header + blob[8 + n :]
    check = load(out)
    assert check.keys() == tensors.keys()
    assert all(torch.equal(check[k], v) for k, v in tensors.items())
    path.write_bytes(out)


def self_checks(gen: torch.Generator):
    """The reference dualizers satisfy the identities the C++ tests also check."""
    X = torch.randn(24, 36, generator=gen, dtype=torch.float64).to(torch.float32)
    fro = X / X.to(torch.float64).norm().to(torch.float32)
    assert torch.allclose(optim_ref.schatten(X, 2.0), fro, atol=1e-6)
    P = optim_ref.schatten(X, math.inf).to(torch.float64)
    assert torch.allclose(P @ P.T, torch.eye(24, dtype=torch.float64), atol=1e-5)
    s = torch.linalg.svdvals(optim_ref.newton_schulz(X).to(torch.float64))
    assert 0.6 <= s.min() and s.max() <= 1.25, (s.min(), s.max())
    s = torch.linalg.svdvals(optim_ref.newton_schulz(X, "polar-express", 9).to(torch.float64))
    assert (s - 1).abs().max() < 1e-3, s


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # one summation order for the float32 GEMMs
    self_checks(torch.Generator().manual_seed(7))

    gen = torch.Generator().manual_seed(2024)
    init = initial_params(gen)
    grads = gradients(gen)
    for fname, cases in FILES.items():
        tensors = {f"param.{n}": init[n] for n, _ in PARAMS}
        for step in range(STEPS):
            for n, _ in PARAMS:
                tensors[f"grad.{step}.{n}"] = grads[step][n]
        metadata = {
            "params": ",".join(n for n, _ in PARAMS),
            "steps": str(STEPS),
            "lr_scales": ",".join(repr(s) for s in LR_SCALES),
            "cases": ",".join(cases),
            "generator": "tools/reference/make_optim_fixtures.py",
            "torch": torch.__version__,
        }
        for case in cases:
            after = run_case(case, init, grads)
            for step in range(STEPS):
                for n, _ in PARAMS:
                    tensors[f"{case}.after.{step}.{n}"] = after[step][n].contiguous()
            metadata[f"{case}.config"] = CONFIGS[case]
            metadata[f"{case}.routes"] = routes_tsv(case)
            moved = max((after[-1][n] - init[n]).abs().max().item() for n, _ in PARAMS)
            print(f"  case {case}: largest total change of a parameter {moved:.4g}")
        path = args.out / f"{fname}.safetensors"
        save_deterministic(tensors, metadata, path)
        size = path.stat().st_size
        print(f"{path}: {size} bytes, cases {', '.join(cases)}")
        assert size < MAX_BYTES, f"{path} is {size} bytes (limit {MAX_BYTES})"


if __name__ == "__main__":
    main()
