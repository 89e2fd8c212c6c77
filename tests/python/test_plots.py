"""tools/plot_compare.py and tools/plot_ranks.py on fake and real runs, their bad-input errors,
and tools/runlib.py (naming runs, reading JSONL as it is being written)."""

import os

import numpy as np
import pytest
from conftest import FakeRun, line, read_jsonl, run_tool, train

import plot_compare
import runlib

# tab10's first colours: the runs' colours, in order
C = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def png(path):
    """The image as uint8 RGB, after checking that it is a PNG."""
    import matplotlib.image
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    return (img[..., :3] * 255).round().astype(np.int16)


def pixels(img, rgb):
    return int((np.abs(img - np.array(rgb)).max(axis=-1) <= 2).sum())


def test_compare_two_runs(tmp_path):
    a = FakeRun(tmp_path / "a", steps=40, n_layer=2, seed=1)
    b = FakeRun(tmp_path / "b", steps=30, n_layer=3, seed=2)
    out = tmp_path / "figs" / "ab.png"
    r = run_tool("plot_compare.py", a.path, b.path, "--out", out, "--smooth", 3)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    img = png(out)
    h, w = img.shape[:2]
    assert 1200 <= w <= 2000 and 1000 <= h <= 1600  # 6 columns; losses, 3 + 1 rows of blocks
    assert pixels(img, C[0]) > 200 and pixels(img, C[1]) > 200  # one colour per run
    assert pixels(img, C[2]) == 0


def test_compare_sweep(tmp_path):
    sweep = tmp_path / "runs" / "lr-sweep"
    for i, v in enumerate(["lr=0.02", "lr=0.05", "lr=0.1"]):
        FakeRun(sweep / v, steps=20, seed=i)
    os.makedirs(sweep / "notes")  # not a run: ignored
    r = run_tool("plot_compare.py", sweep, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    img = png(tmp_path / "compare.png")  # the default --out
    for c in C[:3]:
        assert pixels(img, c) > 200
    assert pixels(img, C[3]) == 0


def test_compare_figure(tmp_path):
    """What the figure holds: legend = run names (a sweep's variants by variant), titles, units,
    log scales, a panel per weight block with a line per run for nr(G) and for st(A)."""
    FakeRun(tmp_path / "sweep" / "muon", steps=20, n_layer=2, seed=1)
    FakeRun(tmp_path / "sweep" / "adamw", steps=20, n_layer=2, seed=2)
    FakeRun(tmp_path / "baseline", steps=20, n_layer=2, seed=3, telemetry=False)
    runs = runlib.find_runs([tmp_path / "sweep", tmp_path / "baseline"])
    fig = plot_compare.draw(runs, 5)
    ax_val, ax_train = fig.axes[:2]
    assert [t.get_text() for t in ax_val.get_legend().get_texts()] == [
        "adamw", "muon", "baseline"]
    assert ax_val.get_title() == "validation loss"
    assert ax_train.get_title() == "train loss, centred mean over 5 logged steps"
    for ax in (ax_val, ax_train):
        assert ax.get_xlabel() == "tokens" and "nats" in ax.get_ylabel()
        assert ax.get_yscale() == "log"
    # the val loss points: at steps 10 and 20, 1024 tokens a step
    assert list(ax_val.lines[0].get_xdata()) == [10240, 20480]
    grid = [ax for ax in fig.axes[2:] if ax.get_title()]
    assert [ax.get_title() for ax in grid] == [
        f"blocks.{i}.{k}" for i in range(2) for k in
        ["attn.wq", "attn.wk", "attn.wv", "attn.wo", "mlp.w1", "mlp.w2"]] + [
        "embed.weight", "head.weight"]
    for ax in grid:
        assert ax.get_yscale() == "log"
        assert len(ax.lines) == 4  # nr(G) and st(A) of the two runs with telemetry
    # blocks.1.mlp.w2: nr(G) of adamw's records against tokens, st(A) of its input mlp_act
    ax = grid[11]
    recs = read_jsonl(tmp_path / "sweep" / "adamw" / "ranks.jsonl")
    assert list(ax.lines[0].get_xdata()) == [r["step"] * 1024 for r in recs]
    assert list(ax.lines[0].get_ydata()) == [r["weights"]["blocks.1.mlp.w2"]["grad_nr"]
                                             for r in recs]
    assert list(ax.lines[1].get_ydata()) == [r["act"]["blocks.1.mlp_act"]["st"] for r in recs]
    assert ax.lines[1].get_linestyle() == "--"


def test_compare_without_telemetry(tmp_path):
    a = FakeRun(tmp_path / "a", steps=20, telemetry=False)
    r = run_tool("plot_compare.py", a.path, "--out", tmp_path / "a.png")
    assert r.returncode == 0, r.stderr
    h, w = png(tmp_path / "a.png").shape[:2]
    assert h < 500  # the loss panels only


def test_compare_bad_input(tmp_path):
    a = FakeRun(tmp_path / "a", steps=20)
    os.makedirs(tmp_path / "empty" / "sub")
    out = tmp_path / "out.png"

    def error(*dirs):
        r = run_tool("plot_compare.py", *dirs, "--out", out)
        assert r.returncode == 1, r.stdout + r.stderr
        assert not out.exists()
        lines = r.stderr.splitlines()
        assert len(lines) == 1, r.stderr
        return lines[0]

    assert error(a.path, tmp_path / "empty") == (
        f"plot_compare: error: {tmp_path / 'empty'}: not a run directory (no metrics.jsonl)")
    assert error(tmp_path / "nope") == f"plot_compare: error: {tmp_path / 'nope'}: no such directory"

    with open(a.metrics_path) as f:
        lines = f.readlines()
    with open(a.metrics_path, "w") as f:
        f.writelines(lines[:2] + ['{"step": 3, "train_loss": 1.\n'] + lines[2:])
    assert error(a.path) == f"plot_compare: error: {a.metrics_path}: line 3 is not a metrics record"
    with open(a.metrics_path, "w") as f:
        f.writelines(lines[:2] + ['{"train_loss": 1.0}\n'] + lines[2:])  # no step
    assert error(a.path) == f"plot_compare: error: {a.metrics_path}: line 3 is not a metrics record"
    with open(a.metrics_path, "w") as f:
        f.writelines(lines)

    n = len(read_jsonl(a.ranks_path)) + 1
    with open(a.ranks_path, "ab") as f:  # not UTF-8
        f.write(b"\xff\xfe\n" + line({"step": 99, "act": {}, "weights": {}}).encode())
    assert error(a.path) == f"plot_compare: error: {a.ranks_path}: line {n} is not a telemetry record"


def test_compare_partial_last_line(tmp_path):
    a = FakeRun(tmp_path / "a", steps=20)
    with open(a.metrics_path, "a") as f:
        f.write('{"step": 21, "train_lo')  # a run killed while writing
    with open(a.ranks_path, "a") as f:
        f.write('{"step": 25, "act": {"tokens"')
    r = run_tool("plot_compare.py", a.path, "--out", tmp_path / "a.png")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert (tmp_path / "a.png").exists()


def test_plot_ranks(tmp_path):
    a = FakeRun(tmp_path / "a", steps=20, n_layer=3)
    r = run_tool("plot_ranks.py", a.path)
    assert r.returncode == 0, r.stderr
    names = ["act_stable_rank.png", "grad_nuclear_rank.png", "ratio.png"]
    assert r.stdout.split() == [os.path.join(a.path, "plots", n) for n in names]
    for n in names:
        img = png(os.path.join(a.path, "plots", n))
        assert img.shape[1] > 1000
    # the same errors as the other tools
    n = len(read_jsonl(a.ranks_path)) + 1
    with open(a.ranks_path, "a") as f:
        f.write("garbage\n")
    r = run_tool("plot_ranks.py", a.path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"plot_ranks: error: {a.ranks_path}: line {n} is not a telemetry record"]
    b = FakeRun(tmp_path / "b", steps=5, telemetry=False)
    r = run_tool("plot_ranks.py", b.path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"plot_ranks: error: {b.ranks_path}: missing (was the run trained with [telemetry] "
        f"every > 0?)"]


def test_plots_of_a_real_run(tmp_path, tiny_config):
    train(tiny_config)
    run = tmp_path / "runs" / "tiny"
    r = run_tool("plot_ranks.py", run, "--out", tmp_path / "ranks")
    assert r.returncode == 0, r.stderr
    assert len(os.listdir(tmp_path / "ranks")) == 3
    train(tiny_config, "--set", "run.name=wide", "--set", "model.d_model=128")
    r = run_tool("plot_compare.py", run, tmp_path / "runs" / "wide", "--out", tmp_path / "c.png")
    assert r.returncode == 0, r.stderr
    img = png(tmp_path / "c.png")
    assert pixels(img, C[0]) > 100 and pixels(img, C[1]) > 100


# --- runlib -------------------------------------------------------------------------------


def test_run_names(tmp_path):
    for d in ["s1/a", "s1/b", "s2/a", "x/run", "y/run", "solo"]:
        FakeRun(tmp_path / d, steps=2, telemetry=False)
    runs = runlib.find_runs([tmp_path / "s1", tmp_path / "s2", tmp_path / "x" / "run",
                             tmp_path / "y" / "run", tmp_path / "solo", tmp_path / "s1" / "a"])
    assert [(r.label, r.qualname) for r in runs] == [
        ("s1/a", "s1/a"), ("b", "s1/b"), ("s2/a", "s2/a"), ("x/run", "x/run"),
        ("y/run", "y/run"), ("solo", "solo")]  # s1/a given twice: once


def test_smooth():
    x = np.arange(10.0) ** 2
    s = plot_compare.smooth(x, 5)
    assert s[0] == x[0] and s[-1] == x[-1]  # the ends stay
    assert s[1] == x[:3].mean() and s[5] == x[3:8].mean()
    assert list(plot_compare.smooth(x, 1)) == list(x)
    assert np.allclose(plot_compare.smooth(np.arange(7.0), 4), np.arange(7.0))  # lines stay


def test_tail(tmp_path):
    p = tmp_path / "metrics.jsonl"
    recs = [{"step": s, "train_loss": 1.0 / s} for s in range(1, 7)]
    p.write_text("".join(line(r) for r in recs[:3]) + line(recs[3])[:8])
    t = runlib.JsonlTail(str(p))
    assert t.read() == recs[:3]
    assert t.read() == []  # the partial line waits
    with open(p, "a") as f:
        f.write(line(recs[3])[8:] + "\n" + line(recs[4]))  # a blank line is skipped
    assert t.read() == recs[3:5]
    assert t.rewritten() is None
    # resumed from step 2: 3.. rewritten with new values, and the first new step is 3
    new = [{"step": s, "train_loss": 2.0 / s} for s in range(3, 7)]
    p.write_text("".join(line(r) for r in recs[:2] + new))
    assert t.rewritten() == 3
    assert t.read() == new
    # truncated to before what we have: everything from its first lost record
    p.write_text(line(recs[0]))
    assert t.rewritten() == 2
    assert t.read() == []
    p.write_text(line(recs[0]) + "nonsense\n" + line(recs[1]))
    with pytest.raises(runlib.RunError, match=r"metrics.jsonl: line 2 is not a metrics record"):
        t.read()
