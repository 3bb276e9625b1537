"""Feast in its own virtual environment, for side-by-side benchmarks.

Feast pins its own dependency versions, so it never shares the project's venv:
`feast_python(root)` creates `<root>/.venv-feast` on first use with
`pip install 'feast[redis]==0.67.*'` (a few minutes, once) and returns its interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FEAST_REQUIREMENT = "feast[redis]==0.67.*"


def feast_python(root: Path) -> str:
    venv = root / ".venv-feast"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import feast"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    print(f"creating {venv} with {FEAST_REQUIREMENT} (once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", FEAST_REQUIREMENT], check=True
    )
    return str(python)
