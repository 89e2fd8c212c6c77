#!/usr/bin/env python3
"""Exports muongpt runs to TensorBoard, to compare them interactively.

    python3 tools/tensorboard_export.py DIR... --logdir L [--follow [--poll SECONDS]]
    tensorboard --logdir L      # bash tools/pyenv.sh tensorboard -- tensorboard --logdir L

DIR is a run directory or a sweep directory (its subdirectories that are runs). Each run
becomes one TensorBoard run, the subdirectory L/<run> (L/<sweep>/<variant> for a sweep's
variant), whose old event files are replaced. Scalars, at the record's step:

  metrics/<field>                            every number of metrics.jsonl (train_loss,
                                             val_loss, lr, grad_norm, tokens_per_s, step_ms,
                                             mfu, tokens, ...)
  telemetry/blocks.<i>/<activation>/st       ranks.jsonl's "act", grouped by block
  telemetry/blocks.<i>/<weight>/<field>      ranks.jsonl's "weights": grad_nr, grad_st, ratio,
                                             update_st, update_rel, alt_ratio
  telemetry/<name>/<field>                   the rest (tokens/st, tokens/p_max, embed_out/st,
                                             final_in/st, head.weight/grad_nr, ...)
  telemetry/seconds                          the time telemetry took

Undefined values (null) are left out. With --follow it keeps up with live runs (new variants of
a sweep too): every --poll seconds it writes the records added since, leaves a line still being
written for later, and when a resumed run rewrites its files after a checkpoint's step it has
TensorBoard drop the steps from there on (a restart marker, as tensorboardX's purge_step) before
writing the new records; what it wrote is on disk when it says so. Ctrl-C (or SIGTERM) ends it
cleanly. tensorboardX is installed on demand (tools/pyenv.sh).
"""

import argparse
import glob
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

PROG = "tensorboard_export"


def metric_scalars(rec):
    for key, v in rec.items():
        if key != "step" and not isinstance(v, bool) and isinstance(v, (int, float)):
            yield f"metrics/{key}", v


def telemetry_tag(name):
    m = runlib.BLOCK.match(name)
    return f"telemetry/blocks.{m.group(1)}/{m.group(2)}" if m else f"telemetry/{name}"


def telemetry_scalars(rec):
    if isinstance(rec.get("seconds"), (int, float)):
        yield "telemetry/seconds", rec["seconds"]
    for section in ("act", "weights"):
        for name, fields in rec[section].items():
            if not isinstance(fields, dict):
                continue
            for key, v in fields.items():
                if not isinstance(v, bool) and isinstance(v, (int, float)):
                    yield f"{telemetry_tag(name)}/{key}", v


class RunExport:
    """One run's event files: its two JSONL files, followed, and the writer."""

    def __init__(self, run, logdir):
        self.run = run
        self.dir = os.path.join(logdir, run.qualname)
        self.tails = [(runlib.JsonlTail(os.path.join(run.path, f)), scalars)
                      for f, scalars in [(runlib.METRICS, metric_scalars),
                                         (runlib.RANKS, telemetry_scalars)]]
        self.writer = None
        self.files = 0
        self.counts = [0, 0]
        self.last_step = None
        os.makedirs(self.dir, exist_ok=True)
        old = glob.glob(os.path.join(glob.escape(self.dir), "events.out.tfevents.*"))
        for f in old:
            os.remove(f)
        self.replaced = len(old)

    def _open(self, purge_step=None):
        # tensorboardX's synchronous event file writer (SummaryWriter queues events for a
        # thread that flushes when it likes; a follower must know its records are on disk).
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        if self.writer:
            self.writer.close()
        self.files += 1
        # Files are named by the second they were opened in: the suffix keeps two of one second
        # apart, in order.
        self.writer = EventsWriter(os.path.join(self.dir, "events"),
                                   f".{os.getpid()}.{self.files:06d}")
        if purge_step is not None:
            # TensorBoard drops the steps >= purge_step it has read (what SummaryWriter's
            # purge_step writes).
            self.writer.write_event(Event(wall_time=time.time(), step=purge_step,
                                          session_log=SessionLog(status=SessionLog.START)))

    def _write(self, step, scalars):
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import scalar
        values = [v for tag, x in scalars for v in scalar(tag, x).value]
        if values:  # one event per record, a value per scalar
            self.writer.write_event(Event(wall_time=time.time(), step=step,
                                          summary=Summary(value=values)))

    def update(self, final):
        """Writes what is new; returns (metrics records, telemetry records, purge step)."""
        purge = [s for t, _ in self.tails if (s := t.rewritten()) is not None]
        purge = min(purge) if purge else None
        if purge is not None:
            for t, _ in self.tails:
                t.forget_from(purge)
            self._open(purge_step=purge)
        new = []
        for i, (tail, scalars) in enumerate(self.tails):
            records = tail.read(final=final)
            if records and self.writer is None:
                self._open()
            for rec in records:
                self._write(rec["step"], scalars(rec))
            self.counts[i] += len(records)
            new.append(len(records))
        if self.writer and (any(new) or purge is not None):
            self.writer.flush()
        self.last_step = max((t.lines[-1].step for t, _ in self.tails if t.lines), default=None)
        return new[0], new[1], purge

    def close(self):
        if self.writer:
            self.writer.close()


def say(*args):
    print(f"{PROG}:", *args, flush=True)


def main():
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="run or sweep directories")
    ap.add_argument("--logdir", required=True, help="TensorBoard log directory to write")
    ap.add_argument("--follow", action="store_true",
                    help="keep exporting what the runs add, until interrupted")
    ap.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                    help="with --follow, seconds between looks at the files (default 2)")
    args = ap.parse_args()
    if not args.poll > 0:
        ap.error("--poll must be positive")
    try:
        runs = runlib.find_runs(args.dirs)
    except runlib.RunError as e:
        sys.exit(f"{PROG}: error: {e}")
    runlib.require(PROG, {"tensorboardX": "tensorboardX"})

    stop = []
    if args.follow:
        def on_signal(signum, frame):
            stop.append(signum)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    exports = {}  # by the run directory's real path

    def add(run):
        e = exports[os.path.realpath(run.path)] = RunExport(run, args.logdir)
        note = f" (replaced {e.replaced} old event files)" if e.replaced else ""
        say(f"{run.path} -> {e.dir}{note}")

    for run in runs:
        add(run)
    sweeps = [d for d in args.dirs if not runlib.is_run(d)]
    try:
        first = True
        while True:
            for e in list(exports.values()):
                m, t, purge = e.update(final=not args.follow)
                if purge is not None:
                    say(f"{e.run.path}: its records from step {purge} on were rewritten "
                        f"(a resumed run): TensorBoard drops them and gets the new ones")
                if first or m or t:
                    say(f"{e.run.path}: {m} metrics and {t} telemetry records"
                        + (f", to step {e.last_step}" if e.last_step is not None else ""))
            first = False
            if not args.follow:
                break
            deadline = time.monotonic() + args.poll
            while not stop and time.monotonic() < deadline:
                time.sleep(min(0.05, args.poll))
            if stop:
                break
            if sweeps:  # a sweep's variants that started since
                for run in runlib.find_runs(sweeps):
                    if os.path.realpath(run.path) not in exports:
                        add(run)
    except runlib.RunError as e:
        for x in exports.values():
            x.close()
        sys.exit(f"{PROG}: error: {e}")
    except KeyboardInterrupt:  # without --follow: what was written so far stays
        for x in exports.values():
            x.close()
        sys.exit(f"{PROG}: interrupted")
    for e in exports.values():
        e.close()
    if args.follow:
        say("stopped; " + ", ".join(f"{e.run.qualname}: {e.counts[0]} metrics and "
                                     f"{e.counts[1]} telemetry records" for e in exports.values()))
    say(f"view with: bash tools/pyenv.sh tensorboard -- tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
