"""Quix Streams in its own virtual environment, for side-by-side benchmarks.

Quix Streams pins its own confluent-kafka and rocksdict, so it never shares the project's
venv: `quix_python(root)` creates `<root>/.venv-quix` on first use with
`pip install 'quixstreams==3.28.*'` (a minute or two, once) and returns its interpreter.
Like benchmarks/feast_env.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUIX_REQUIREMENT = "quixstreams==3.28.*"


def quix_python(root: Path) -> str:
    venv = root / ".venv-quix"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import quixstreams, confluent_kafka"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    print(f"creating {venv} with {QUIX_REQUIREMENT} (once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", QUIX_REQUIREMENT], check=True)
    return str(python)


if __name__ == "__main__":
    print(quix_python(Path(__file__).resolve().parent.parent))
