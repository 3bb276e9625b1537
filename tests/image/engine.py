"""Running the built image as Kubernetes would run a container of `k8s/`, with podman or
docker on the host network.

`ContainerEngine` finds the engine the way `image/engine.sh` does (podman with runc and
explicit ulimits where runc is installed, else a docker whose daemon answers);
`run_args` turns a container of the rendered manifests into `run` options: its
`securityContext` user and read-only root file system, its `envFrom` ConfigMap and `env`
(with settings pointed at the embedded stack), and its volume mounts (an `emptyDir` is a
tmpfs, a ConfigMap a read-only bind of the checkout's files, a claim a host folder).

>>> engine = ContainerEngine.find()  # doctest: +SKIP
>>> engine.run(["--rm", "feature-service:0.1.0", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Doc = dict[str, Any]


class NoEngine(RuntimeError):
    """No container engine can run containers here (the message says why)."""


@dataclass(frozen=True)
class ContainerEngine:
    """A container engine command line: `podman --runtime runc` or `docker`."""

    name: str
    command: tuple[str, ...]
    run_options: tuple[str, ...]  # of every `run`: ulimits, healthcheck

    @classmethod
    def find(cls) -> ContainerEngine:
        """The engine `make image` uses here; NoEngine when there is none."""
        chosen = os.environ.get("CONTAINER_ENGINE")
        if chosen is None:
            if shutil.which("podman"):
                chosen = "podman"
            elif shutil.which("docker") and _answers(["docker", "info"]):
                chosen = "docker"
            else:
                raise NoEngine(
                    "no container engine: install podman (apt-get install podman runc) "
                    "or start Docker"
                )
        command: tuple[str, ...] = (chosen,)
        run_options: tuple[str, ...] = ()
        if chosen == "podman" and shutil.which("runc"):
            # crun cannot set the rlimits it inherits on these machines; runc with
            # explicit limits can (README "Deploying")
            command = ("podman", "--runtime", "runc")
            run_options = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
        if chosen == "podman" and not Path("/run/systemd/system").is_dir():
            # podman runs HEALTHCHECKs from systemd timers; without systemd it only logs
            # errors about it (the test probes the same endpoints itself)
            run_options += ("--no-healthcheck",)
        return cls(chosen, command, run_options)

    def run(
        self, args: Sequence[str], timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`ENGINE ARGS...` (e.g. `image inspect X`), its output captured as text."""
        done = subprocess.run(
            [*self.command, *args], capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(args[:3])} ... failed ({done.returncode}): "
                f"{done.stderr.strip()[-2000:]}"
            )
        return done

    def inspect(self, image: str) -> Doc:
        """The image's configuration (`Config` of `image inspect`, with `Healthcheck`,
        which podman reports beside `Config` and docker inside it)."""
        (found,) = json.loads(self.run(["image", "inspect", image]).stdout)
        config = dict(found["Config"])
        if "Healthcheck" not in config and found.get("Healthcheck"):
            config["Healthcheck"] = found["Healthcheck"]
        return config

    def read_only_options(self) -> list[str]:
        """A read-only root file system with nothing writable but what is mounted."""
        if self.name == "podman":
            return ["--read-only", "--read-only-tmpfs=false"]  # no implicit /tmp, /run
        return ["--read-only"]


def _answers(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run_args(
    pod: Doc,
    container: Doc,
    config: Mapping[str, str],
    env: Mapping[str, str],
    mounts: Mapping[str, Path],
    engine: ContainerEngine,
) -> list[str]:
    """`run` options (before the image) for `container` of the pod spec `pod`.

    `config` is the data of the ConfigMaps its `envFrom` names (Secrets are left out: the
    test has no S3); `env` overrides single variables after the manifest's own; `mounts`
    gives a host path for each ConfigMap or claim volume by volume name. Each mount path
    of the manifest is mounted, so a path the image does not use is found out.
    """
    security = pod.get("securityContext", {})
    user = security.get("runAsUser")
    assert user is not None, f"{container['name']}: no runAsUser"
    args = ["--network=host", "--user", f"{user}:{security.get('runAsGroup', user)}"]
    if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        args += engine.read_only_options()
    args += list(engine.run_options)
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(config)
    for item in container.get("env", []):
        values[item["name"]] = str(item["value"])
    values.update(env)
    for name, value in sorted(values.items()):
        args += ["--env", f"{name}={value}"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        target = mount["mountPath"]
        if "emptyDir" in volume:
            args += ["--tmpfs", f"{target}:rw,mode=1777"]
            continue
        host = mounts.get(mount["name"])
        assert host is not None, f"{container['name']}: no host folder for {mount['name']}"
        mode = "ro" if mount.get("readOnly") or "configMap" in volume else "rw"
        args += ["--volume", f"{host}:{target}:{mode}"]
    return args
