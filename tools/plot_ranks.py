#!/usr/bin/env python3
"""Paper-style rank telemetry figures for a muongpt run.

    python3 tools/plot_ranks.py RUN_DIR [--out DIR]

Reads RUN_DIR/ranks.jsonl (schema: docs/telemetry.md) and writes three PNGs into
RUN_DIR/plots/ (or --out); matplotlib is installed on demand (tools/pyenv.sh):

  act_stable_rank.png    st(A) vs step, one panel per activation kind, one line per block
  grad_nuclear_rank.png  nr(G) vs step, one panel per weight kind, one line per block
  ratio.png              nr(G)/st(A) vs step per weight kind; above 1 a spectral update is
                         predicted to beat a Euclidean one
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402
from runlib import ACT_KINDS, BLOCK, GATED_ACT_KINDS, GATED_WEIGHT_KINDS, WEIGHT_KINDS  # noqa: E402


def read_records(path):
    try:
        records = runlib.read_records(path)
    except runlib.RunError as e:
        sys.exit(f"plot_ranks: error: {e}")
    if not records:
        sys.exit(f"plot_ranks: error: {path}: no telemetry records")
    return records


def value(x):
    return float("nan") if x is None else float(x)


def series(records, getter):
    steps, values = [], []
    for r in records:
        steps.append(r["step"])
        try:
            values.append(value(getter(r)))
        except (KeyError, TypeError):
            values.append(float("nan"))
    return steps, values


def n_blocks(record):
    return 1 + max(int(m.group(1)) for k in record["act"] if (m := BLOCK.match(k)))


def panels(plt, titles):
    cols = 3
    rows = math.ceil(len(titles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for ax in flat[len(titles):]:
        ax.axis("off")
    for ax, title in zip(flat, titles):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return fig, flat


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="output directory (default RUN_DIR/plots)")
    args = ap.parse_args()
    records = read_records(os.path.join(args.run_dir, "ranks.jsonl"))
    runlib.require("plot_ranks", {"matplotlib": "matplotlib"})
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = args.out or os.path.join(args.run_dir, "plots")
    os.makedirs(out, exist_ok=True)
    L = n_blocks(records[-1])
    gated = "blocks.0.mlp_up" in records[-1]["act"]
    act_kinds = ACT_KINDS + (GATED_ACT_KINDS if gated else [])
    weight_kinds = WEIGHT_KINDS + (GATED_WEIGHT_KINDS if gated else [])
    cmap = plt.get_cmap("viridis")
    color = lambda i: cmap(i / max(L - 1, 1))

    # 1. Activation stable ranks.
    fig, axes = panels(plt, act_kinds + ["embed_out / final_in / tokens"])
    for ax, kind in zip(axes, act_kinds):
        for i in range(L):
            s, v = series(records, lambda r: r["act"][f"blocks.{i}.{kind}"]["st"])
            ax.plot(s, v, color=color(i), label=f"block {i}")
        ax.set_ylabel("st(A)")
    for key in ["embed_out", "final_in", "tokens"]:
        s, v = series(records, lambda r: r["act"][key]["st"])
        axes[len(act_kinds)].plot(s, v, label=key)
    axes[0].legend(fontsize=7)
    axes[len(act_kinds)].legend(fontsize=7)
    fig.suptitle("stable rank of the activations feeding each block")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "act_stable_rank.png"), dpi=110)

    # 2. Gradient nuclear ranks and 3. the ratio nr(G)/st(A).
    for fname, field, ylabel, title in [
        ("grad_nuclear_rank.png", "grad_nr", "nr(G)", "nuclear rank of each weight's gradient"),
        ("ratio.png", "ratio", "nr(G) / st(A)", "nr(G)/st(A): > 1 favours a spectral update"),
    ]:
        fig, axes = panels(plt, weight_kinds + ["embed / head"])
        for ax, kind in zip(axes, weight_kinds):
            for i in range(L):
                s, v = series(records, lambda r: r["weights"][f"blocks.{i}.{kind}"][field])
                ax.plot(s, v, color=color(i), label=f"block {i}")
            ax.set_ylabel(ylabel)
        for name in ["embed.weight", "head.weight"]:
            s, v = series(records, lambda r: r["weights"][name][field])
            axes[len(weight_kinds)].plot(s, v, label=name)
        if field == "ratio":
            for ax in axes[: len(weight_kinds) + 1]:
                ax.axhline(1.0, color="red", lw=0.8, ls="--")
        axes[0].legend(fontsize=7)
        axes[len(weight_kinds)].legend(fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=110)

    for f in ["act_stable_rank.png", "grad_nuclear_rank.png", "ratio.png"]:
        print(os.path.join(out, f))


if __name__ == "__main__":
    main()
