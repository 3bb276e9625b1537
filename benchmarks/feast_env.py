"""Feast in its own virtual environment, for the benchmarks and the Feast-client test.

Feast pins its own dependency versions, so it never shares the project's venv:
`feast_python()` creates one on first use with `pip install 'feast[redis]==0.67.*'`
(a few minutes, once) and returns its interpreter. It lives outside any checkout,
beside the Kafka jars, so every clone and worktree on the machine shares it:
`$XDG_CACHE_HOME/feature-service/feast-0.67/venv` (`~/.cache` by default), or the
folder `FS_FEAST_VENV` names. Processes creating it at once take turns (a file lock);
one interrupted half way is made again.

`python benchmarks/feast_env.py` creates it and prints the interpreter (`make test`
runs it first, so the test does not spend its time budget on pip).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

FEAST_VERSION = "0.67"
FEAST_REQUIREMENT = f"feast[redis]=={FEAST_VERSION}.*"


def feast_venv() -> Path:
    """Where Feast's venv is (created or not)."""
    named = os.environ.get("FS_FEAST_VENV")
    if named:
        return Path(named)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "feature-service" / f"feast-{FEAST_VERSION}" / "venv"


def feast_python(root: Path | None = None) -> str:
    """Feast's interpreter, its venv created on first use.

    `root` is a checkout: a working `<root>/.venv-feast` made by an earlier version of
    this helper is used as it is rather than installed again.
    """
    if root is not None:
        old = root / ".venv-feast" / "bin" / "python"
        check = [str(old), "-c", "import feast"]
        if old.exists() and subprocess.run(check, capture_output=True).returncode == 0:
            return str(old)
    venv = feast_venv()
    python = venv / "bin" / "python"
    done = venv.parent / f".{venv.name}.complete"
    if done.exists() and python.exists():
        return str(python)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing it
        if not (done.exists() and python.exists()):
            print(f"creating {venv} with {FEAST_REQUIREMENT} (once)...", file=sys.stderr)
            shutil.rmtree(venv, ignore_errors=True)  # what an interrupted run left
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 FEAST_REQUIREMENT],
                check=True,
            )  # fmt: skip
            done.touch()
    return str(python)


def feast_cli(python: str) -> str:
    """The `feast` command of the venv whose interpreter is `python`."""
    return str(Path(python).parent / "feast")


if __name__ == "__main__":
    print(feast_python())
