"""tools/tensorboard_export.py: what TensorBoard reads back equals metrics.jsonl and
ranks.jsonl, in one go and while following live runs (appends, partial lines, a resume)."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from conftest import TOOLS, FakeRun, line, read_jsonl, run_tool, train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def f32(x):
    return float(np.float32(x))


def expected(run_dir):
    """tag -> [(step, value)], from the files, by the documented tag layout."""
    out = {}

    def put(tag, step, v):
        if v is not None and not isinstance(v, (bool, str)):
            out.setdefault(tag, []).append((step, f32(v)))

    for r in read_jsonl(os.path.join(run_dir, "metrics.jsonl")):
        for k, v in r.items():
            if k != "step":
                put(f"metrics/{k}", r["step"], v)
    ranks = os.path.join(run_dir, "ranks.jsonl")
    for r in read_jsonl(ranks) if os.path.exists(ranks) else []:
        put("telemetry/seconds", r["step"], r["seconds"])
        for section in ("act", "weights"):
            for name, fields in r[section].items():
                m = BLOCK.match(name)
                group = f"blocks.{m.group(1)}/{m.group(2)}" if m else name
                for k, v in fields.items():
                    put(f"telemetry/{group}/{k}", r["step"], v)
    return out


def read_back(path):
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0})
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def assert_round_trip(run_dir, tb_dir):
    want, got = expected(run_dir), read_back(tb_dir)
    assert sorted(got) == sorted(want)
    for tag in want:
        assert got[tag] == want[tag], tag


def test_round_trip_runs_and_sweep(tmp_path):
    a = FakeRun(tmp_path / "a", steps=20, n_layer=2, seed=1, mfu=True)
    b = FakeRun(tmp_path / "sweep" / "wide", steps=12, n_layer=3, seed=2)
    c = FakeRun(tmp_path / "sweep" / "narrow", steps=8, n_layer=1, seed=3, telemetry=False)
    os.makedirs(tmp_path / "sweep" / "not-started")  # no metrics.jsonl: not a variant
    logdir = tmp_path / "tb"
    r = run_tool("tensorboard_export.py", a.path, tmp_path / "sweep", "--logdir", logdir)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(logdir)) == ["a", "sweep"]
    assert sorted(os.listdir(logdir / "sweep")) == ["narrow", "wide"]
    for run, tb in [(a, logdir / "a"), (b, logdir / "sweep" / "wide"),
                    (c, logdir / "sweep" / "narrow")]:
        assert_round_trip(run.path, tb)
    got = read_back(logdir / "a")
    # the documented layout, and what it holds
    for tag in ["metrics/train_loss", "metrics/val_loss", "metrics/lr", "metrics/grad_norm",
                "metrics/tokens_per_s", "metrics/step_ms", "metrics/mfu",
                "telemetry/blocks.1/mlp.w2/grad_nr", "telemetry/blocks.1/mlp_act/st",
                "telemetry/blocks.0/attn.wo/update_rel", "telemetry/tokens/p_max",
                "telemetry/head.weight/ratio"]:
        assert tag in got, tag
    assert [s for s, _ in got["metrics/val_loss"]] == [10, 20]
    assert [s for s, _ in got["telemetry/blocks.1/mlp_act/st"]] == [1, 2, 5, 10, 15, 20]
    # null at step 1 is left out
    assert [s for s, _ in got["telemetry/blocks.0/attn.wo/update_rel"]] == [2, 5, 10, 15, 20]
    assert not [t for t in read_back(logdir / "sweep" / "narrow") if t.startswith("telemetry")]

    # Exporting again replaces the run's event files: nothing doubles.
    r = run_tool("tensorboard_export.py", a.path, "--logdir", logdir)
    assert r.returncode == 0, r.stderr
    assert "replaced 1 old event files" in r.stdout
    assert len(os.listdir(logdir / "a")) == 1
    assert_round_trip(a.path, logdir / "a")


def test_round_trip_real_run(tmp_path, tiny_config):
    train(tiny_config)
    run = tmp_path / "runs" / "tiny"
    r = run_tool("tensorboard_export.py", run, "--logdir", tmp_path / "tb")
    assert r.returncode == 0, r.stderr
    assert_round_trip(run, tmp_path / "tb" / "tiny")
    got = read_back(tmp_path / "tb" / "tiny")
    assert len(got["metrics/train_loss"]) == 6
    assert [s for s, _ in got["telemetry/blocks.1/mlp.w2/grad_nr"]] == [2, 4, 6]  # null at 1


def test_partial_last_line_and_errors(tmp_path):
    a = FakeRun(tmp_path / "a", steps=10)
    full = read_jsonl(a.metrics_path)
    with open(a.metrics_path, "a") as f:  # a record being written
        f.write(line({"step": 11, "train_loss": 1.0})[:15])
    r = run_tool("tensorboard_export.py", a.path, "--logdir", tmp_path / "tb")
    assert r.returncode == 0, r.stderr
    got = read_back(tmp_path / "tb" / "a")
    assert [s for s, _ in got["metrics/train_loss"]] == [x["step"] for x in full]

    with open(a.ranks_path) as f:
        lines = f.readlines()
    lines[1] = lines[1][:40] + "\n"  # garbled, and not the last line
    with open(a.ranks_path, "w") as f:
        f.writelines(lines)
    r = run_tool("tensorboard_export.py", a.path, "--logdir", tmp_path / "tb")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"tensorboard_export: error: {a.ranks_path}: line 2 is not a telemetry record"]

    os.makedirs(tmp_path / "empty")
    r = run_tool("tensorboard_export.py", tmp_path / "empty", "--logdir", tmp_path / "tb")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"tensorboard_export: error: {tmp_path / 'empty'}: not a run directory "
        f"(no metrics.jsonl)"]


class Follower:
    """tensorboard_export.py --follow in a subprocess, its output lines in a queue."""

    def __init__(self, *args):
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(TOOLS, "tensorboard_export.py"), *map(str, args),
             "--follow", "--poll", "0.05"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for ln in self.p.stdout:
            self.lines.put(ln.rstrip("\n"))

    def wait_for(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ln = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.p.poll() is None, "exporter exited:\n" + "\n".join(self.seen)
                continue
            self.seen.append(ln)
            if re.search(pattern, ln):
                return ln
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.seen))

    def idle(self, seconds=0.5):
        """Lets several polls pass; returns what they printed."""
        time.sleep(seconds)
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        self.seen += out
        return out

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        rc = self.p.wait(timeout=30)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert rc == 0, "\n".join(self.seen)
        assert any("stopped" in ln for ln in self.seen), "\n".join(self.seen)
        return rc


def test_follow_appends_and_partial_lines(tmp_path):
    a = FakeRun(tmp_path / "a", steps=10)
    logdir = tmp_path / "tb"
    f = Follower(a.path, "--logdir", logdir)
    try:
        f.wait_for(r"6 metrics and 4 telemetry records, to step 10")
        m, r = a.records(11, 20)  # metrics at 12, 14, 16, 18, 20 (val); telemetry at 15, 20
        assert [x["step"] for x in m] == [12, 14, 16, 18, 20]
        with open(a.metrics_path, "a") as out:
            out.writelines(line(x) for x in m[:4])
            pending = line(m[4])
            out.write(pending[:25])  # step 20's record, half written
        with open(a.ranks_path, "a") as out:
            out.writelines(line(x) for x in r)
        f.wait_for(r"4 metrics and 2 telemetry records, to step 20")
        assert f.idle() == []  # nothing more while the line is incomplete
        got = read_back(logdir / "a")
        assert got["metrics/train_loss"][-1][0] == 18
        assert [s for s, _ in got["metrics/val_loss"]] == [10]
        with open(a.metrics_path, "a") as out:
            out.write(pending[25:])
        f.wait_for(r"1 metrics and 0 telemetry records, to step 20")
        got = read_back(logdir / "a")
        assert [s for s, _ in got["metrics/val_loss"]] == [10, 20]
    finally:
        f.stop()
    assert_round_trip(a.path, logdir / "a")


def test_follow_resumed_run_and_new_variant(tmp_path):
    a = FakeRun(tmp_path / "sweep" / "a", steps=20)
    logdir = tmp_path / "tb"
    f = Follower(tmp_path / "sweep", "--logdir", logdir)
    try:
        f.wait_for(r"sweep/a: \d+ metrics and 6 telemetry records, to step 20")
        # Resumed from step 10's checkpoint: records 11..20 are replaced by new ones (other
        # values, other steps), then the run goes on to step 24.
        a.resume(10, 24)
        f.wait_for(r"from step 1[01] on were rewritten")
        f.wait_for(r"to step 24")
        # A variant of the sweep that starts while we follow.
        b = FakeRun(tmp_path / "sweep" / "b", steps=6, seed=5)
        f.wait_for(r"sweep/b: 4 metrics and 3 telemetry records, to step 6")
        f.idle()
    finally:
        f.stop()
    assert_round_trip(a.path, logdir / "sweep" / "a")
    assert_round_trip(b.path, logdir / "sweep" / "b")


def test_follow_real_resume(tmp_path, tiny_config):
    train(tiny_config)
    run = tmp_path / "runs" / "tiny"
    before = read_jsonl(run / "metrics.jsonl")
    f = Follower(run, "--logdir", tmp_path / "tb")
    try:
        f.wait_for(r"6 metrics and 4 telemetry records, to step 6")
        # Back to step 3: the trainer rewrites both files after step 3.
        train(tiny_config, "--resume", str(run / "checkpoints" / "step_000003"))
        after = read_jsonl(run / "metrics.jsonl")
        assert [x["step"] for x in after] == [1, 2, 3, 4, 5, 6]
        assert after[3] != before[3]  # its timings at least differ
        f.wait_for(r"from step 4 on were rewritten")
        f.wait_for(r"to step 6")
        f.idle()
    finally:
        f.stop()
    assert_round_trip(run, tmp_path / "tb" / "tiny")
