"""Helpers for the Python tools' tests: fake run directories in the documented schemas
(docs/config.md, docs/telemetry.md), a real tiny run from the built binary, running the tools.

CTest runs these under tools/pyenv.sh (tests/CMakeLists.txt, label `python`), so the
interpreter has matplotlib, tensorboardX, tensorboard and pytest.
"""

import json
import os
import random
import struct
import subprocess
import sys
import textwrap

import pytest

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(SOURCE, "tools")
sys.path.insert(0, TOOLS)

WEIGHT_KINDS = ["attn.wq", "attn.wk", "attn.wv", "attn.wo", "mlp.w1", "mlp.w2"]
INPUT = {"attn.wq": "attn_in", "attn.wk": "attn_in", "attn.wv": "attn_in", "attn.wo": "attn_out",
         "mlp.w1": "mlp_in", "mlp.w2": "mlp_act"}
ALT = {"attn.wo": "attn_in", "mlp.w2": "mlp_pre"}


def metrics_record(step, rng, tokens_per_step=1024, val=False, mfu=False):
    rec = {"grad_norm": rng.uniform(0.1, 2), "lr": rng.uniform(0, 1), "mem_bytes": 1345792,
           "step": step, "step_ms": rng.uniform(5, 50), "tokens": step * tokens_per_step,
           "tokens_per_s": rng.uniform(1e3, 1e6), "train_loss": 10.8 / (1 + 0.1 * step)
           + rng.uniform(0, 0.3)}
    if val:
        rec["val_loss"] = 10.8 / (1 + 0.1 * step) + 0.1 + rng.uniform(0, 0.05)
    if mfu:
        rec["mfu"] = rng.uniform(0.1, 0.5)
    return rec


def ranks_record(step, rng, n_layer, tokens_per_step=1024):
    act = {"tokens": {"st": rng.uniform(10, 100), "p_max": rng.uniform(0.01, 0.1)},
           "embed_out": {"st": rng.uniform(1, 50)}, "final_in": {"st": rng.uniform(1, 50)}}
    weights = {}
    for i in range(n_layer):
        for kind in ["attn_in", "attn_out", "mlp_in", "mlp_pre", "mlp_act"]:
            act[f"blocks.{i}.{kind}"] = {"st": rng.uniform(1, 60)}
        for kind in WEIGHT_KINDS:
            a = f"blocks.{i}.{INPUT[kind]}"
            w = {"input": a, "grad_nr": rng.uniform(1, 60), "grad_st": rng.uniform(1, 10),
                 "update_st": rng.uniform(10, 80),
                 # undefined at step 1 (a zero-initialised weight), as the trainer writes it
                 "update_rel": None if step == 1 and kind in ("attn.wo", "mlp.w2")
                 else rng.uniform(0, 0.1)}
            w["ratio"] = w["grad_nr"] / act[a]["st"]
            if kind in ALT:
                w["alt_input"] = f"blocks.{i}.{ALT[kind]}"
                w["alt_ratio"] = rng.uniform(0.5, 3)
            weights[f"blocks.{i}.{kind}"] = w
    for name, a in [("embed.weight", "tokens"), ("head.weight", "final_in")]:
        weights[name] = {"input": a, "grad_nr": rng.uniform(1, 60), "grad_st": rng.uniform(1, 9),
                         "update_st": rng.uniform(1, 80), "update_rel": rng.uniform(0, 0.1),
                         "ratio": rng.uniform(0.1, 5)}
    return {"step": step, "tokens": tokens_per_step, "seconds": rng.uniform(0.01, 0.5),
            "act": act, "weights": weights}


def line(rec):
    return json.dumps(rec) + "\n"


class FakeRun:
    """A run directory as the trainer writes it: metrics every `log_every` steps (and step 1),
    val_loss every `eval_every`, telemetry at steps 1, 2 and every `tel_every`."""

    def __init__(self, path, steps=20, n_layer=2, seed=1, log_every=2, eval_every=10,
                 tel_every=5, telemetry=True, mfu=False):
        self.path = str(path)
        self.n_layer, self.log_every, self.eval_every = n_layer, log_every, eval_every
        self.tel_every, self.mfu = tel_every, mfu
        self.rng = random.Random(seed)
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, "config.toml"), "w") as f:
            f.write(f'[run]\nname = "{os.path.basename(self.path)}"\n\n'
                    f"[model]\nn_layer = {n_layer}\n")
        open(self.metrics_path, "w").close()
        if telemetry:
            open(self.ranks_path, "w").close()
        self.telemetry = telemetry
        self.append(1, steps)

    @property
    def metrics_path(self):
        return os.path.join(self.path, "metrics.jsonl")

    @property
    def ranks_path(self):
        return os.path.join(self.path, "ranks.jsonl")

    def records(self, first, last):
        m, r = [], []
        for s in range(first, last + 1):
            if self.telemetry and (s in (1, 2) or s % self.tel_every == 0):
                r.append(ranks_record(s, self.rng, self.n_layer))
            val = s % self.eval_every == 0
            if s == 1 or s % self.log_every == 0 or val:
                m.append(metrics_record(s, self.rng, val=val, mfu=self.mfu))
        return m, r

    def append(self, first, last):
        m, r = self.records(first, last)
        with open(self.metrics_path, "a") as f:
            f.writelines(line(x) for x in m)
        if self.telemetry:
            with open(self.ranks_path, "a") as f:
                f.writelines(line(x) for x in r)
        return m, r

    def resume(self, checkpoint_step, last):
        """What `--resume` does to the files: drop the records after the checkpoint's step
        (keeping the others byte for byte), then the resumed steps append new ones."""
        for p in [self.metrics_path] + ([self.ranks_path] if self.telemetry else []):
            with open(p) as f:
                kept = [ln for ln in f if json.loads(ln)["step"] <= checkpoint_step]
            with open(p, "w") as f:
                f.writelines(kept)
        # the first step after a resume is always logged
        m, r = self.records(checkpoint_step + 1, last)
        if not m or m[0]["step"] != checkpoint_step + 1:
            m.insert(0, metrics_record(checkpoint_step + 1, self.rng))
        with open(self.metrics_path, "a") as f:
            f.writelines(line(x) for x in m)
        if self.telemetry:
            with open(self.ranks_path, "a") as f:
                f.writelines(line(x) for x in r)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.endswith("\n") and x.strip()]


def run_tool(script, *args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, os.path.join(TOOLS, script), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def write_shard(path, tokens):
    header = [20240520, 1, len(tokens)] + [0] * 253
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{len(tokens)}H", *tokens))


def muongpt_bin():
    b = os.environ.get("MUONGPT_BIN", "")
    return b if b and os.access(b, os.X_OK) else None


@pytest.fixture
def tiny_config(tmp_path):
    """tests/testing/tiny_run.h's setup: shards of noisy counting modulo 96 and a 2-layer
    config that trains 6 steps in well under a second."""
    rng = random.Random(1)
    for name, n in [("tiny_val_000000.bin", 3000), ("tiny_train_000001.bin", 6000),
                    ("tiny_train_000002.bin", 5000)]:
        x, toks = 0, []
        for _ in range(n):
            x = (x + 1 + (rng.randrange(5) if rng.randrange(8) == 0 else 0)) % 96
            toks.append(x)
        write_shard(tmp_path / name, toks)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [run]
        name = "tiny"
        dir = "{tmp_path / 'runs'}"
        seed = 7

        [model]
        vocab_size = 96
        n_layer = 2
        d_model = 64
        d_head = 32
        seq_len = 16

        [data]
        train = "{tmp_path / 'tiny_train_*.bin'}"
        val = "{tmp_path / 'tiny_val_*.bin'}"
        val_tokens = 2048
        batch_size = 2
        grad_accum = 2

        [train]
        steps = 6
        log_every = 1
        eval_every = 3
        checkpoint_every = 3
        keep_checkpoints = 2

        [telemetry]
        every = 2
        """))
    return cfg


def train(config, *args):
    b = muongpt_bin()
    if b is None:
        pytest.skip("no muongpt binary (MUONGPT_BIN): build it first")
    r = subprocess.run([b, "train", "--config", str(config), *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r
