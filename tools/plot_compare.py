#!/usr/bin/env python3
"""Several muongpt runs on one figure: losses and per-block rank telemetry.

    python3 tools/plot_compare.py DIR... [--out FILE.png] [--smooth N]

DIR is a run directory or a sweep directory (runs/<sweep>/, whose subdirectories are runs, each
named by its variant). One PNG (default compare.png), one colour per run, the legend naming the
runs, the x axis in tokens throughout:

  validation loss    val_loss of metrics.jsonl against tokens, every evaluation (log scale)
  train loss         train_loss, a centred mean over N logged steps (--smooth, default 5; 1 =
                     raw), the raw values faint behind it (log scale)
  per weight block   a grid of small multiples, a row per block (and one for embed/head), a
                     column per weight (attn.wq ... mlp.w2): nr(G) of its gradient, solid, and
                     st(A) of the activation it multiplies, dashed, from ranks.jsonl (log
                     scale). The seed paper's criterion favours a spectral update where the
                     solid line is above the dashed one.

Runs without ranks.jsonl (telemetry off) appear in the loss panels only. matplotlib is installed
on demand (tools/pyenv.sh). Schemas: docs/config.md (metrics.jsonl), docs/telemetry.md.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

PROG = "plot_compare"
OTHER_WEIGHTS = ["embed.weight", "head.weight"]


def smooth(values, n):
    """A centred mean over n points (n rounded up to odd), the window shrinking symmetrically at
    the ends so that the first and last points stay where they are."""
    import numpy as np
    x = np.asarray(values, dtype=float)
    h = max(int(n), 1) // 2
    if h == 0 or len(x) < 3:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(len(x))
    w = np.minimum(np.minimum(i, len(x) - 1 - i), h)
    return (c[i + w + 1] - c[i - w]) / (2 * w + 1)


def tokens_of_steps(metrics, ranks):
    """Maps the telemetry records' steps to tokens seen, through metrics.jsonl's (step, tokens)
    pairs; outside them a step counts the tokens its telemetry record covers."""
    import numpy as np
    ms = np.array([r["step"] for r in metrics if "tokens" in r], dtype=float)
    mt = np.array([runlib.number(r["tokens"]) for r in metrics if "tokens" in r], dtype=float)
    out = []
    for r in ranks:
        s, per_step = r["step"], runlib.number(r.get("tokens"))
        if len(ms) and ms[0] <= s <= ms[-1]:
            out.append(float(np.interp(s, ms, mt)))
        elif len(ms) and s > ms[-1]:
            out.append(mt[-1] + (s - ms[-1]) * per_step)
        else:
            out.append(s * per_step)
    return out


def main():
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="run or sweep directories")
    ap.add_argument("--out", default="compare.png", metavar="FILE.png",
                    help="the PNG to write (default compare.png)")
    ap.add_argument("--smooth", type=int, default=5, metavar="N",
                    help="train loss: centred mean over N logged steps (default 5; 1 = raw)")
    args = ap.parse_args()
    if args.smooth < 1:
        ap.error("--smooth must be at least 1")
    try:
        runs = runlib.find_runs(args.dirs)
        for r in runs:  # read everything first: a bad file is an error before any drawing
            r.metrics()
            r.ranks()
    except runlib.RunError as e:
        sys.exit(f"{PROG}: error: {e}")
    runlib.require(PROG, {"matplotlib": "matplotlib", "numpy": "numpy"})
    fig = draw(runs, args.smooth)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(args.out)


def draw(runs, smooth_n):
    """The figure for `runs` (runlib.Run, records read)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
    from matplotlib.lines import Line2D

    cmap = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    colour = {r.label: cmap(i % cmap.N) for i, r in enumerate(runs)}
    tok_fmt = ticker.EngFormatter(sep="")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")

    def log_y(ax, span):
        """Log scale, every tick labelled with a plain number: 1, 2, 5, 10, 20, 50, ..., or
        every integer times a power of ten where the axis spans less than a factor `span`."""
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        subs = (2.0, 5.0) if hi > span * lo else (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
        ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)

    # The grid's shape: blocks and weight kinds over every run's telemetry.
    telemetry = [r for r in runs if r.ranks()]
    n_blocks, kinds = 0, []
    for r in telemetry:
        n, k = runlib.blocks_and_kinds(r.ranks(), "weights", runlib.WEIGHT_KINDS)
        n_blocks = max(n_blocks, n)
        kinds += [x for x in k if x not in kinds]
    others = [w for w in OTHER_WEIGHTS if any(w in x["weights"] for r in telemetry
                                              for x in r.ranks())]
    cols = max(len(kinds), len(others), 2)
    rows = n_blocks + (1 if others else 0)
    # Sizes in inches, laid out by hand (matplotlib's layout engines take seconds on ~80 axes):
    # the loss panels in a band of top_h, then a title line and a row of panel_h per block.
    panel_w, panel_h, top_h, title_h, bottom_h = 2.6, 1.9, 4.6, 0.5, 0.45
    W = cols * panel_w
    grid_h = title_h + rows * panel_h + bottom_h if rows else 0
    H = top_h + grid_h
    fig = plt.figure(figsize=(W, H))
    top = fig.add_gridspec(1, 2, left=0.75 / W, right=1 - 0.3 / W, top=1 - 0.55 / H,
                           bottom=(grid_h + 0.75) / H, wspace=0.2)

    # Losses.
    ax_val, ax_train = fig.add_subplot(top[0, 0]), fig.add_subplot(top[0, 1])
    window = 2 * (smooth_n // 2) + 1
    for r in runs:
        c = colour[r.label]
        val = [(x["tokens"], x["val_loss"]) for x in r.metrics()
               if runlib.number(x.get("val_loss")) == runlib.number(x.get("val_loss"))]
        ax_val.plot([t for t, _ in val], [v for _, v in val], "o-", ms=3, color=c, label=r.label)
        tr = [(x["tokens"], runlib.number(x.get("train_loss"))) for x in r.metrics()
              if "tokens" in x]
        xs, ys = [t for t, _ in tr], [v for _, v in tr]
        if window > 1:
            ax_train.plot(xs, ys, color=c, lw=0.6, alpha=0.25)
        ax_train.plot(xs, smooth(ys, smooth_n), color=c, lw=1.5, label=r.label)
    ax_val.set_title("validation loss")
    ax_train.set_title("train loss" + (f", centred mean over {window} logged steps"
                                       if window > 1 else ""))
    for ax, what in [(ax_val, "val loss (nats/token)"), (ax_train, "train loss (nats/token)")]:
        ax.set_xlabel("tokens")
        ax.set_ylabel(what)
        log_y(ax, 10)
        ax.xaxis.set_major_formatter(tok_fmt)
        ax.tick_params(axis="y", which="both", labelsize=8)
        ax.grid(alpha=0.3, which="both")
    ax_val.legend(fontsize=8, title="run", title_fontsize=8)
    fig.suptitle(f"{len(runs)} runs: " + ", ".join(r.label for r in runs)
                 if len(runs) <= 6 else f"{len(runs)} runs", y=1 - 0.15 / H, fontsize=12)

    # Per-block telemetry: nr(G) solid, st(A) of the input dashed.
    if rows:
        grid = fig.add_gridspec(rows, cols, left=0.6 / W, right=1 - 0.15 / W,
                                top=(grid_h - title_h) / H, bottom=bottom_h / H,
                                hspace=0.32, wspace=0.28)
        axes = grid.subplots(sharex=True, squeeze=False)
        panels = [(i, j, f"blocks.{i}.{k}") for i in range(n_blocks) for j, k in enumerate(kinds)]
        panels += [(n_blocks, j, w) for j, w in enumerate(others)]
        used = set()
        for i, j, name in panels:
            ax = axes[i][j]
            used.add((i, j))
            ax.set_title(name, fontsize=8, pad=2)
            for r in telemetry:
                recs = [x for x in r.ranks() if name in x["weights"]]
                if not recs:
                    continue
                toks = tokens_of_steps(r.metrics(), recs)
                nr = [runlib.number(x["weights"][name].get("grad_nr")) for x in recs]
                st = [runlib.number(x["act"].get(x["weights"][name].get("input"), {}).get("st"))
                      for x in recs]
                c = colour[r.label]
                ax.plot(toks, nr, color=c, lw=1.2)
                ax.plot(toks, st, color=c, lw=1.0, ls="--")
            log_y(ax, 4)
            ax.xaxis.set_major_formatter(tok_fmt)
            ax.tick_params(which="both", labelsize=7)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("rank", fontsize=8)
            if i == rows - 1:
                ax.set_xlabel("tokens", fontsize=8)
        for i in range(rows):
            for j in range(cols):
                if (i, j) not in used:
                    axes[i][j].axis("off")
        style = [Line2D([], [], color="k", lw=1.2, label="nr(G), gradient"),
                 Line2D([], [], color="k", lw=1.0, ls="--", label="st(A), its input")]
        axes[0][0].legend(handles=style, fontsize=6, loc="best")
        fig.text(0.5, (grid_h - 0.2) / H, "per weight block: nuclear rank nr(G) of the gradient (solid) and stable "
                      "rank st(A) of the activation it multiplies (dashed), log scale; "
                      "solid above dashed favours a spectral update", ha="center", va="center",
                 fontsize=10)
    return fig


if __name__ == "__main__":
    main()
