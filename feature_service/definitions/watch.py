"""Notice that the definitions on disk changed, so running services can pick them up.

The worker and the API load the definitions once at start. A `DefinitionsWatcher` is
polled every few seconds (`FS_DEFINITIONS_POLL_S`): it hashes the names and contents of
the YAML files, and when the hash changes it loads them. Only definitions that load
cleanly are reported; broken ones are logged (once per change, ERROR) and not run, so
a half-written or wrong file never takes a running service down. While the files on
disk do not load, `refused` says so, naming each file, path and reason (the worker's
and the API's /health show it as `definitions: refused`); it is "" again once they
load.

A service started while the files do not load runs the last definitions a worker
accepted instead (`online.accepted_definitions`), and sets `refused` to say that too.

>>> watcher = DefinitionsWatcher(Path("definitions"))  # doctest: +SKIP
>>> watcher.poll() is None  # nothing changed  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from feature_service.definitions.loader import YAML_SUFFIXES, load_definitions
from feature_service.definitions.registry import DefinitionError, Registry

log = logging.getLogger(__name__)


def definitions_fingerprint(path: Path) -> str:
    """A hash of the YAML files under `path` (names and contents); stable while unchanged."""
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
    else:
        files = []
    for file in files:
        try:
            content = file.read_bytes()
        except OSError:  # deleted between listing and reading: the next poll sees it
            continue
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


class DefinitionsWatcher:
    """Polls one definitions path; `poll()` returns the new registry once per valid change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fingerprint = definitions_fingerprint(path)
        self.refused = ""  # why the files on disk are not run ("" while they load)

    def poll(self) -> Registry | None:
        """The newly loaded registry if the files changed and load cleanly, else None
        (unchanged, or they do not load: then `refused` says why)."""
        current = definitions_fingerprint(self.path)
        if current == self.fingerprint:
            return None
        self.fingerprint = current
        try:
            registry = load_definitions(self.path)
        except DefinitionError as exc:
            self.refused = refusal(self.path, exc, "the previous ones")
            log.error("%s", one_line(self.refused))
            return None
        self.refused = ""
        log.warning(
            "definitions under %s changed: %d feature views", self.path, len(registry.feature_views)
        )
        return registry


def refusal(path: Path, error: DefinitionError, running: str) -> str:
    """Why the definitions under `path` are not run and what runs instead, then one
    line per problem (file, path inside it, reason).

    >>> from feature_service.definitions.registry import DefinitionIssue
    >>> issue = DefinitionIssue("defs/bad.yaml", "feature_views[0].source", "unknown source 'x'")
    >>> error = DefinitionError([issue])
    >>> print(refusal(Path("defs"), error, "the previous ones"))
    definitions under defs do not load; running the previous ones
    defs/bad.yaml: feature_views[0].source: unknown source 'x'
    """
    return f"definitions under {path} do not load; running {running}\n{error}"


def one_line(text: str) -> str:
    """A multi-line refusal on one line, for a log record."""
    return " | ".join(line for line in text.splitlines() if line)
