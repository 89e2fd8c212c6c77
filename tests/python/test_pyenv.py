"""tools/pyenv.sh, the on-demand Python environment, and the tools' use of it (runlib.require)."""

import os
import subprocess
import sys

from conftest import TOOLS, FakeRun

PYENV = os.path.join(TOOLS, "pyenv.sh")


def pyenv(venv, *args, path=None):
    env = dict(os.environ, MUONGPT_VENV=str(venv))
    env.pop("MUONGPT_PYENV_RERUN", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(["bash", PYENV, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_creates_once_and_runs_inside(tmp_path):
    venv = tmp_path / "venv"
    probe = "import os, sys; print(sys.prefix); print(os.environ['VIRTUAL_ENV'])"
    r = pyenv(venv, "--", "python", "-c", probe)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"pyenv: creating the Python environment {venv} "
                                     f"(python3 -m venv)"]
    assert r.stdout.splitlines() == [str(venv), str(venv)]
    # The environment's own scripts name its path (it was made in place, not renamed).
    r = subprocess.run([str(venv / "bin" / "pip"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and str(venv) in r.stdout, r.stderr
    # Again: nothing to do, nothing said. A package that is there (pip, also with a version
    # requirement) is not installed again; the command's exit status comes through.
    r = pyenv(venv, "pip", "pip>=1", "--", "python", "-c", "raise SystemExit(3)")
    assert r.returncode == 3
    assert r.stderr == ""


def test_failed_creation_leaves_nothing(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text("#!/bin/sh\nmkdir -p \"$3/bin\"; echo 'no ensurepip' >&2; "
                                  "exit 1\n")
    (fake / "python3").chmod(0o755)
    venv = tmp_path / "venv"
    r = pyenv(venv, "matplotlib", "--", "true", path=f"{fake}:/usr/bin:/bin")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("pyenv: error: python3 -m venv failed; on Debian/Ubuntu "
                                         "install python3-venv (bash tools/setup.sh does)")
    assert not venv.exists()


def test_tool_reruns_itself_under_pyenv(tmp_path):
    """A Python without matplotlib (a bare venv) runs plot_compare.py: it re-runs itself under
    tools/pyenv.sh, here pointed at the environment these tests run in, which has it."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    run = FakeRun(tmp_path / "a", steps=10, telemetry=False)
    env = dict(os.environ, MUONGPT_VENV=sys.prefix)
    env.pop("MUONGPT_PYENV_RERUN", None)
    r = subprocess.run([str(bare / "bin" / "python"), os.path.join(TOOLS, "plot_compare.py"),
                        run.path, "--out", str(tmp_path / "a.png")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "running under tools/pyenv.sh" in r.stderr
    assert r.stdout.strip() == str(tmp_path / "a.png")
    assert (tmp_path / "a.png").exists()
