"""The API Deployment takes `FS_API_KEYS` from an optional Secret, and its probes and
Prometheus scrape only endpoints that stay open when keys are set (DESIGN.md "Access")."""

from __future__ import annotations

import pytest

from feature_service.api.access import OPEN_PATHS
from tests.kustomize import build
from tests.unit.test_k8s_manifests import K8S, OVERLAYS, containers, one, pod_template

API = "feature-service-api"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_reads_its_keys_from_an_optional_secret_and_probes_open_paths(
    overlay: str,
) -> None:
    api = one(build(K8S / "overlays" / overlay), "Deployment", API)
    (container,) = [c for c in containers(api) if c["name"] == "api"]
    refs = [s["secretRef"] for s in container.get("envFrom", []) if "secretRef" in s]
    assert {"name": "feature-service-api-keys", "optional": True} in refs
    probed = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    scraped = pod_template(api)["metadata"]["annotations"]["prometheus.io/path"]
    assert probed | {scraped} <= OPEN_PATHS
