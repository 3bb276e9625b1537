"""The production manifests (k8s/) render, validate against Kubernetes' schemas, and keep
the promises DESIGN.md makes about deployment; the Dockerfile is checked statically, and
so is the agreement between the two (entry point, commands, user, paths, ports, probes).
tests/image runs the built image as the manifests run it (`make test-image`)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from feature_service.definitions import load_definitions
from tests.kustomize import Doc, build

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ["dev", "prod"]
K8S_VERSION = "1.32.0"
STRIMZI_API = "kafka.strimzi.io/v1beta2"
# Created outside git in production (see k8s/overlays/prod/kustomization.yaml).
EXTERNAL_SECRETS = {"prod": {"feature-service-offline-store"}, "dev": set()}
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, build(K8S / "overlays" / request.param)


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_template(doc: Doc) -> Doc:
    return doc["spec"]["template"]


def containers(doc: Doc) -> list[Doc]:
    spec = pod_template(doc)["spec"]
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_builtin_object_validates_against_the_kubernetes_schemas(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    builtin = [d for d in docs if d["apiVersion"] != STRIMZI_API]
    assert len(builtin) >= 15
    for doc in builtin:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_the_python_renderer_agrees_with_kubectl_kustomize(overlay: tuple[str, list[Doc]]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the pure-Python renderer stands alone")
    name, docs = overlay
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = [d for d in yaml.safe_load_all(out) if d]

    def normalised(items: list[Doc]) -> list[str]:
        # Generated names carry a content hash that differs between the two renderers.
        text = [yaml.safe_dump(d, sort_keys=True) for d in items]
        return sorted(
            re.sub(r"(-definitions|-offline-store)-[a-z0-9]{10}\b", r"\1", t) for t in text
        )

    assert normalised(docs) == normalised(theirs)


def test_strimzi_kafka_runs_in_kraft_mode_with_a_controller_and_broker_pool(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    (kafka,) = by_kind(docs, "Kafka")
    assert kafka["apiVersion"] == STRIMZI_API
    annotations = kafka["metadata"]["annotations"]
    assert annotations["strimzi.io/kraft"] == "enabled"
    assert annotations["strimzi.io/node-pools"] == "enabled"
    spec = kafka["spec"]["kafka"]
    assert spec["version"]
    assert "zookeeper" not in kafka["spec"]
    listeners = spec["listeners"]
    assert listeners and all({"name", "port", "type", "tls"} <= set(li) for li in listeners)
    assert any(li["port"] == 9092 for li in listeners)
    pools = by_kind(docs, "KafkaNodePool")
    roles = {r for pool in pools for r in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    cluster = kafka["metadata"]["name"]
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert pool["spec"]["replicas"] >= 1
        assert pool["spec"]["storage"]["type"] in ("jbod", "persistent-claim", "ephemeral")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    config = spec["config"]
    assert config["min.insync.replicas"] <= config["default.replication.factor"] <= brokers
    assert config["offsets.topic.replication.factor"] <= brokers


def test_every_source_has_its_topics_with_partitions_and_retention(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    (kafka,) = by_kind(docs, "Kafka")
    brokers = sum(p["spec"]["replicas"] for p in by_kind(docs, "KafkaNodePool"))
    topics = {
        t["spec"].get("topicName", t["metadata"]["name"]): t for t in by_kind(docs, "KafkaTopic")
    }
    registry = load_definitions(K8S / "base" / "definitions")
    for source in registry.sources.values():
        for name in (source.topic, source.dlq_topic):
            topic = topics[name]
            assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
            spec = topic["spec"]
            assert spec["partitions"] >= 1
            assert 1 <= spec["replicas"] <= brokers
            assert int(spec["config"]["retention.ms"]) >= 24 * 3600 * 1000
            assert int(spec["config"].get("min.insync.replicas", 1)) <= spec["replicas"]


def test_worker_is_one_statefulset_with_no_more_replicas_than_partitions(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    worker = one(docs, "StatefulSet", "feature-service-worker")
    assert worker["spec"]["volumeClaimTemplates"], "workers keep a stable volume"
    assert one(docs, "Service", worker["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    registry = load_definitions(K8S / "base" / "definitions")
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in by_kind(docs, "KafkaTopic")}
    for source in registry.sources.values():
        assert 1 <= worker["spec"]["replicas"] <= topics[source.topic], name
    assert containers(worker)[0]["args"] == ["worker"]


def test_api_scales_with_an_hpa_and_keeps_replicas_through_disruptions(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    api = one(docs, "Deployment", "feature-service-api")
    labels = pod_template(api)["metadata"]["labels"]
    hpa = one(docs, "HorizontalPodAutoscaler", "feature-service-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "feature-service-api",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdbs = [
        p
        for p in by_kind(docs, "PodDisruptionBudget")
        if matches(p["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(pdbs) == 1
    assert pdbs[0]["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "drains must be possible"


def test_containers_are_non_root_read_only_bounded_and_probed(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        pod = pod_template(doc)["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in containers(doc):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            if doc["kind"] in ("Deployment", "StatefulSet"):
                assert "readinessProbe" in container and "livenessProbe" in container, where
        if doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "feature-service":
            continue
        for container in containers(doc):
            assert container["image"].startswith("ghcr.io/example/feature-service:"), where
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"].startswith("/health"), where


def test_services_are_scraped_by_prometheus_on_a_port_they_expose(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    for kind, name in (
        ("Deployment", "feature-service-api"),
        ("StatefulSet", "feature-service-worker"),
    ):
        template = pod_template(one(docs, kind, name))
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports


def test_every_referenced_config_and_secret_exists(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    present = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        pod = pod_template(doc)["spec"]
        refs = [
            ("ConfigMap", v["configMap"]["name"])
            for v in pod.get("volumes", [])
            if "configMap" in v
        ]
        for container in containers(doc):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    refs.append(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source and not source["secretRef"].get("optional"):
                    refs.append(("Secret", source["secretRef"]["name"]))
        for kind, ref in refs:
            if kind == "Secret" and ref in EXTERNAL_SECRETS[name]:
                continue
            assert (kind, ref) in present, f"{name}: {doc['metadata']['name']} needs {kind} {ref}"


def test_offline_store_is_an_s3_uri_from_a_secret_and_redis_matches_the_overlay(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    config = one(docs, "ConfigMap", "feature-service-config")["data"]
    assert "FS_OFFLINE_URI" not in config, "the offline URI comes with its credentials"
    secrets = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].startswith("feature-")]
    if name == "dev":
        import base64

        (secret,) = secrets
        uri = base64.b64decode(secret["data"]["FS_OFFLINE_URI"]).decode()
        assert uri.startswith("s3://")
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["data"])
    if name == "prod":
        assert config["FS_REDIS_CLUSTER"] == "true"
        redis = one(docs, "StatefulSet", "redis-cluster")
        assert redis["spec"]["replicas"] >= 6, "3 primaries with a replica each"
        conf = one(docs, "ConfigMap", "redis-cluster")["data"]["redis.conf"]
        assert "cluster-enabled yes" in conf
        assert one(docs, "Job", "redis-cluster-create")
    else:
        assert config["FS_REDIS_CLUSTER"] == "false"
        assert one(docs, "StatefulSet", "redis")["spec"]["replicas"] == 1


def test_network_policies_deny_by_default_and_select_real_pods(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    policies = by_kind(docs, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]
    pod_labels = [pod_template(d)["metadata"]["labels"] for d in docs if d["kind"] in WORKLOADS]
    pod_labels.append({"strimzi.io/cluster": "events"})  # pods the Strimzi operator creates
    for policy in policies:
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if selector:
            assert any(matches(selector, labels) for labels in pod_labels), policy["metadata"]
    api_in = one(docs, "NetworkPolicy", "feature-service-api-ingress")["spec"]["ingress"]
    assert api_in[0]["ports"][0]["port"] == 8000


def test_definitions_configmap_is_the_shipped_definitions(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    (config,) = [
        d
        for d in by_kind(docs, "ConfigMap")
        if d["metadata"]["name"].startswith("feature-service-definitions-")
    ]
    shipped = (ROOT / "definitions" / "transactions.yaml").read_text()
    assert config["data"]["transactions.yaml"] == shipped


# ---------------------------------------------------------------- Dockerfile (static)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    out = []
    for entry in logical:
        instruction, _, rest = entry.partition(" ")
        out.append((instruction.upper(), rest.strip()))
    return out


def dockerfile_args() -> dict[str, str]:
    """The defaults of the Dockerfile's ARGs (what a plain `docker build .` uses)."""
    found = {}
    for ins, rest in dockerfile_instructions():
        if ins == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            found[name.strip()] = value.strip()
    return found


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"][-1]
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for ins, rest in instructions if ins == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    assert froms[-1] == "${BASE_IMAGE} AS runtime", "the base comes from a build ARG"
    assert {f.split()[0] for f in froms} == {"${BASE_IMAGE}"}, "both stages: one base"
    assert dockerfile_args()["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    final = runtime_stage()
    users = [rest for ins, rest in final if ins == "USER"]
    assert users, "the runtime stage sets a user"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    assert any(ins == "COPY" and "--from=build" in rest for ins, rest in final)
    assert not any(ins == "RUN" and "apt-get install" in rest for ins, rest in final)
    healthcheck = [rest for ins, rest in final if ins == "HEALTHCHECK"]
    assert healthcheck and "/health/live" in healthcheck[0]
    entrypoint: Any = [rest for ins, rest in final if ins == "ENTRYPOINT"]
    assert entrypoint and '"feature-service"' in entrypoint[0]
    assert not any(ins == "ADD" for ins, _ in instructions), "COPY only, no remote ADD"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "stores", ".git"} <= set(ignored)


def feature_service_containers(docs: list[Doc]) -> list[tuple[Doc, Doc, Doc]]:
    """(workload, pod spec, container) for every container that runs our image."""
    return [
        (doc, pod_template(doc)["spec"], container)
        for doc in docs
        if doc["kind"] in WORKLOADS
        and doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "feature-service"
        for container in containers(doc)
    ]


def runtime_settings() -> dict[str, str]:
    """ENV, USER, WORKDIR, ENTRYPOINT, CMD, VOLUME, EXPOSE, HEALTHCHECK of the runtime."""
    final = runtime_stage()
    env: dict[str, str] = {}
    for ins, rest in final:
        if ins == "ENV":
            env.update(pair.partition("=")[::2] for pair in shlex.split(rest))
    last = {ins: rest for ins, rest in final}
    return {**{f"ENV {k}": v for k, v in env.items()}, **last}


def test_manifests_run_the_images_entry_point_commands_user_paths_and_ports(
    overlay: tuple[str, list[Doc]],
) -> None:
    from typer.main import get_command

    from feature_service.cli.main import app

    name, docs = overlay
    image = runtime_settings()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert json.loads(image["ENTRYPOINT"]) == ["feature-service"]
    assert "feature-service" in project["scripts"]
    cli = get_command(app)
    config = one(docs, "ConfigMap", "feature-service-config")["data"]
    definitions, stores = image["ENV FS_DEFINITIONS"], image["ENV FS_STORES_DIR"]
    assert config["FS_DEFINITIONS"] == definitions and config["FS_STORES_DIR"] == stores
    assert image["WORKDIR"] == stores, "the worker's Faust data folder lands in its volume"
    volumes = set(json.loads(image["VOLUME"]))
    assert volumes == {"/tmp", stores}
    assert image["ENV HOME"] == "/tmp"
    uid, gid = (int(part) for part in image["USER"].split(":"))
    exposed = {int(p) for p in image["EXPOSE"].split()}
    api_args = one(docs, "Deployment", "feature-service-api")
    assert json.loads(image["CMD"]) == containers(api_args)[0]["args"], "default: the API"
    assert "/health/live" in image["HEALTHCHECK"]
    views = load_definitions(K8S / "base" / "definitions").feature_views
    seen = set()
    for doc, pod, container in feature_service_containers(docs):
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        command, *rest = container["args"]
        seen.add(command)
        assert command in cli.commands, f"{where}: no command {command!r} in the image"  # type: ignore[attr-defined]
        parsed = cli.commands[command].make_context(command, list(rest))  # type: ignore[attr-defined]
        if command == "backfill":
            assert parsed.params["view"] in views, where
        security = pod["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid), where
        assert security.get("fsGroup", gid) == gid, where
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts[definitions].get("readOnly") is True, where
        assert "/tmp" in mounts, f"{where}: HOME=/tmp must be writable"
        writable = {path for path, m in mounts.items() if not m.get("readOnly")}
        assert writable <= volumes, f"{where}: writes outside the image's volumes"
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert set(ports.values()) <= exposed, where
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        if command == "serve":
            assert int(parsed.params["port"]) == ports["http"], where
        if command == "worker":
            assert int(env["FS_HEALTH_PORT"]) == ports["health"], where
            assert mounts[stores].get("readOnly") is not True, f"{where}: its state volume"
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["port"] in ports, where
        if "livenessProbe" in container:
            assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", where
    assert seen == {"worker", "serve", "backfill"}
    (images,) = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["images"]
    assert images["newTag"] == project["version"]
    assert f"IMAGE ?= feature-service:{project['version']}" in (ROOT / "Makefile").read_text()


def test_the_schema_check_refuses_a_broken_object() -> None:
    docs = build(K8S / "overlays" / "dev")
    api = one(docs, "Deployment", "feature-service-api")
    broken = yaml.safe_load(yaml.safe_dump(api))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(api))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_every_workload_reads_the_optional_kafka_secret(overlay: tuple[str, list[Doc]]) -> None:
    """FS_KAFKA_* (SASL/TLS) come from the Secret `feature-service-kafka` where it exists."""
    _, docs = overlay
    for doc in docs:
        if doc["kind"] not in WORKLOADS or not doc["metadata"]["name"].startswith("feature-"):
            continue
        for container in pod_template(doc)["spec"]["containers"]:
            refs = [s["secretRef"] for s in container.get("envFrom", []) if "secretRef" in s]
            assert {"name": "feature-service-kafka", "optional": True} in refs, doc["metadata"]
