"""Reading muongpt run directories, for the Python tools (plot_ranks.py, plot_compare.py,
tensorboard_export.py).

A run directory holds metrics.jsonl (docs/config.md, "The run directory") and, with telemetry
on, ranks.jsonl (docs/telemetry.md); a sweep directory holds run directories
(runs/<sweep>/<variant>/). Both files are JSON Lines that the trainer appends to, one flushed
line per record, and that a resumed run rewrites after its checkpoint's step.

Reading follows `muongpt ranks`: blank lines are skipped; a last line without its newline that
is not a record is a partial write and is skipped; any other line that is not a record is an
error naming the file and the line (RunError).
"""

import hashlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass, field

METRICS = "metrics.jsonl"
RANKS = "ranks.jsonl"
TOOLS = os.path.dirname(os.path.abspath(__file__))

# The per-block names of ranks.jsonl in the order the figures show them; kinds a model adds
# later come after these, in sorted order.
ACT_KINDS = ["attn_in", "attn_out", "mlp_in", "mlp_pre", "mlp_act"]
WEIGHT_KINDS = ["attn.wq", "attn.wk", "attn.wv", "attn.wo", "mlp.w1", "mlp.w2"]
# [model] mlp = "swiglu" runs log these too (docs/telemetry.md)
GATED_ACT_KINDS = ["mlp_up", "mlp_gate"]
GATED_WEIGHT_KINDS = ["mlp.w3"]
BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


class RunError(Exception):
    """Bad input: the message is one line naming the file or directory and the problem."""


def require(prog, packages):
    """Makes sure that `packages` ({import name: pip name}) import. When one does not, re-runs
    this script under tools/pyenv.sh, which installs them into .cache/venv first (once)."""
    missing = [mod for mod in packages if importlib.util.find_spec(mod) is None]
    if not missing:
        return
    if os.environ.get("MUONGPT_PYENV_RERUN") == "1":
        sys.exit(f"{prog}: error: {sys.executable} cannot import {', '.join(missing)} "
                 f"even after tools/pyenv.sh")
    print(f"{prog}: {', '.join(missing)} not importable by {sys.executable}: "
          f"running under tools/pyenv.sh", file=sys.stderr, flush=True)
    os.environ["MUONGPT_PYENV_RERUN"] = "1"
    pyenv = os.path.join(TOOLS, "pyenv.sh")
    args = ["bash", pyenv, *packages.values(), "--", "python", sys.argv[0], *sys.argv[1:]]
    sys.stdout.flush()
    os.execvp("bash", args)


# ---------------------------------------------------------------------------------------------
# Records


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def is_metrics_record(r):
    return isinstance(r, dict) and _is_int(r.get("step"))


def is_ranks_record(r):
    return (isinstance(r, dict) and _is_int(r.get("step")) and isinstance(r.get("act"), dict)
            and isinstance(r.get("weights"), dict))


CHECKS = {METRICS: ("metrics", is_metrics_record), RANKS: ("telemetry", is_ranks_record)}


@dataclass
class _Line:
    start: int
    end: int  # offset just past the newline
    digest: bytes
    step: int


class JsonlTail:
    """Reads the records of a metrics.jsonl or ranks.jsonl file, incrementally.

    read() returns the records added since the last call. It takes complete lines only: a line
    still being written (no newline yet) is left for a later call, unless `final` (nobody
    writes the file any more), where it is taken if it is a whole record and skipped if not.
    rewritten() notices that the file was rewritten under us (a resumed run drops the records
    after its checkpoint's step and appends new ones) and returns the smallest step whose
    records we had and that are gone or changed, after forgetting them so that read() returns
    what replaced them.
    """

    def __init__(self, path):
        self.path = path
        self.what, self.check = CHECKS[os.path.basename(path)]
        self.offset = 0  # bytes consumed
        self.line_no = 0  # lines consumed
        self.lines = []  # one per record consumed

    def _data(self):
        try:
            with open(self.path, "rb") as f:
                if self.offset:
                    f.seek(self.offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def _parse(self, raw):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return rec if self.check(rec) else None

    def read(self, final=False):
        data = self._data()
        out = []
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            complete = nl >= 0
            if not complete and not final:
                break
            end = nl + 1 if complete else len(data)
            raw = data[pos:end].strip()
            line_no = self.line_no + 1
            if raw:
                rec = self._parse(raw)
                if rec is None:
                    if not complete:
                        break  # a partial last line: skipped, as `muongpt ranks` does
                    raise RunError(f"{self.path}: line {line_no} is not a {self.what} record")
                self.lines.append(_Line(self.offset + pos, self.offset + end,
                                        hashlib.sha1(data[pos:end]).digest(), rec["step"]))
                out.append(rec)
            self.line_no = line_no
            pos = end
        self.offset += pos
        return out

    def rewritten(self):
        if not self.lines:
            return None
        last = self.lines[-1]
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(last.start)
                tail = f.read(last.end - last.start)
                if size >= self.offset and hashlib.sha1(tail).digest() == last.digest:
                    return None
                f.seek(0)
                data = f.read()
        except FileNotFoundError:
            data = b""
        keep = 0
        while keep < len(self.lines):
            ln = self.lines[keep]
            if hashlib.sha1(data[ln.start:ln.end]).digest() != ln.digest:
                break
            keep += 1
        purge = self.lines[keep].step
        # The record now where the first lost one was may have a smaller step (a resumed run
        # logs the step after its checkpoint whatever log_every says).
        if keep == 0:
            start = 0
        else:
            start = self.lines[keep - 1].end
        nl = data.find(b"\n", start)
        if nl >= 0:
            rec = self._parse(data[start:nl].strip())
            if rec is not None:
                purge = min(purge, rec["step"])
        self.forget_from(purge)
        return purge

    def forget_from(self, step):
        """Forgets the records with step >= `step` and what follows them, so that read() returns
        them again."""
        keep = 0
        while keep < len(self.lines) and self.lines[keep].step < step:
            keep += 1
        if keep == len(self.lines):
            return
        self.lines = self.lines[:keep]
        self.offset = self.lines[-1].end if self.lines else 0
        # Line numbers are only for messages: count the newlines before the new offset.
        with open(self.path, "rb") as f:
            self.line_no = f.read(self.offset).count(b"\n")


def read_records(path, missing_ok=False):
    """Every record of a metrics.jsonl or ranks.jsonl (a file nobody writes to any more, or a
    snapshot of one being written)."""
    if not os.path.isfile(path):
        if missing_ok:
            return []
        hint = " (was the run trained with [telemetry] every > 0?)" if path.endswith(RANKS) else ""
        raise RunError(f"{path}: missing{hint}")
    return JsonlTail(path).read(final=True)


# ---------------------------------------------------------------------------------------------
# Run directories


@dataclass
class Run:
    path: str
    name: str  # the run's name: its directory's name (a sweep's variant)
    sweep: str = ""  # the sweep directory's name when found through one
    label: str = ""  # name, made unique among the runs given (find_runs)
    qualname: str = ""  # sweep/variant, or name; unique among the runs given
    _metrics: list = field(default=None, repr=False)
    _ranks: list = field(default=None, repr=False)

    def metrics(self):
        if self._metrics is None:
            self._metrics = read_records(os.path.join(self.path, METRICS))
        return self._metrics

    def ranks(self):
        if self._ranks is None:
            self._ranks = read_records(os.path.join(self.path, RANKS), missing_ok=True)
        return self._ranks


def is_run(path):
    return os.path.isfile(os.path.join(path, METRICS))


def sweep_runs(path):
    """The run directories directly inside `path`, by name."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return []
    return [os.path.join(path, n) for n in names if is_run(os.path.join(path, n))]


def _name(path):
    return os.path.basename(os.path.normpath(os.path.abspath(path)))


def _unique(runs, key, fallbacks):
    """Sets run.<key> to the first of the fallbacks (functions of a run) that is unique among
    the runs sharing its first choice."""
    values = [fallbacks[0](r) for r in runs]
    for fb in fallbacks[1:]:
        dup = {v for v in values if values.count(v) > 1}
        values = [fb(r) if v in dup else v for r, v in zip(runs, values)]
    for r, v in zip(runs, values):
        setattr(r, key, v)


def find_runs(dirs):
    """The runs that `dirs` name: each a run directory (it has metrics.jsonl) or a sweep
    directory (its subdirectories that are runs). A directory that is neither is a RunError."""
    runs, seen = [], set()
    for d in dirs:
        if not os.path.isdir(d):
            raise RunError(f"{d}: no such directory")
        if is_run(d):
            found = [Run(d, _name(d))]
        else:
            found = [Run(p, _name(p), sweep=_name(d)) for p in sweep_runs(d)]
            if not found:
                raise RunError(f"{d}: not a run directory (no {METRICS})")
        for r in found:
            real = os.path.realpath(r.path)
            if real not in seen:
                seen.add(real)
                runs.append(r)
    full = lambda r: os.path.normpath(r.path)
    parent = lambda r: "/".join(os.path.normpath(os.path.abspath(r.path)).split("/")[-2:])
    qual = lambda r: f"{r.sweep}/{r.name}" if r.sweep else r.name
    _unique(runs, "label", [lambda r: r.name, qual, parent, full])
    _unique(runs, "qualname", [qual, parent, lambda r: full(r).strip("/")])
    return runs


def blocks_and_kinds(records, section, order):
    """Block count and the per-block kinds of a section ("act" or "weights") over records."""
    n, kinds = 0, set()
    for r in records:
        for key in r.get(section, {}):
            if m := BLOCK.match(key):
                n = max(n, int(m.group(1)) + 1)
                kinds.add(m.group(2))
    return n, [k for k in order if k in kinds] + sorted(kinds - set(order))


def number(x):
    """A JSON value as a float: NaN for null (undefined) and for anything not a number."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return float("nan")
    return float(x)
