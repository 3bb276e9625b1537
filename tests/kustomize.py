"""A small, pure-Python `kustomize build` for the subset k8s/ uses, so tests need no binary.

Supported fields of a kustomization: `resources` (files and kustomization folders),
`namespace`, `labels` (pairs, without selectors), `configMapGenerator` and
`secretGenerator` (`files`, `literals`, `envs`, `behavior: create|merge`), `images`, and
`patches` given inline as JSON 6902 operations with a `target` (kind, name). Generated
ConfigMaps and Secrets get a content hash suffix, and references to them from pod specs
are renamed, as kustomize does (the hash differs from kustomize's own; tests compare
names with the suffix removed). Anything else in a kustomization is refused, so the
manifests cannot silently use a feature this renderer ignores.

>>> docs = build(Path("k8s/overlays/dev"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "configMapGenerator",
    "secretGenerator",
    "images",
    "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot build, with the reason."""


def build(folder: Path) -> list[Doc]:
    """Render the kustomization in `folder` into a list of Kubernetes objects."""
    docs, generated = _build(folder)
    _rename_generated(docs, generated)
    return docs


def _build(folder: Path) -> tuple[list[Doc], dict[tuple[str, str], str]]:
    path = folder / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    spec = yaml.safe_load(path.read_text())
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not support: {sorted(unknown)}")
    docs: list[Doc] = []
    generated: dict[tuple[str, str], str] = {}
    for entry in spec.get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            sub_docs, sub_generated = _build(target)
            docs += sub_docs
            generated.update(sub_generated)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for gen in spec.get(key, []):
            _generate(folder, kind, gen, docs, generated)
    for patch in spec.get("patches", []):
        _patch(folder, patch, docs)
    for image in spec.get("images", []):
        _set_image(docs, image)
    for label in spec.get("labels", []):
        if label.get("includeSelectors"):
            raise KustomizeError(f"{path}: labels with includeSelectors are not supported")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return docs, generated


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value
    return out


def _generate(
    folder: Path, kind: str, gen: Doc, docs: list[Doc], generated: dict[tuple[str, str], str]
) -> None:
    data: dict[str, str] = {}
    for entry in gen.get("files", []):
        name, _, file = entry.rpartition("=")
        source = folder / file
        data[name or source.name] = source.read_text()
    for literal in gen.get("literals", []):
        name, _, value = literal.partition("=")
        data[name] = value
    for env in gen.get("envs", []):
        data.update(_read_env(folder / env))
    behavior = gen.get("behavior", "create")
    existing = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == gen["name"]]
    hashed = True
    if behavior == "merge":
        if not existing:
            raise KustomizeError(f"{folder}: merge into missing {kind} {gen['name']}")
        data = {**existing[0].get("data", {}), **data}
        docs.remove(existing[0])
        hashed = (kind, gen["name"]) in generated  # a plain resource keeps its name
    elif existing or behavior != "create":
        raise KustomizeError(f"{folder}: {kind} {gen['name']}: unsupported behavior {behavior}")
    metadata = copy.deepcopy(existing[0]["metadata"]) if existing else {"name": gen["name"]}
    doc: Doc = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    if kind == "Secret":
        doc["type"] = "Opaque"
        doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        doc["data"] = data
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]
    if hashed:
        generated[(kind, gen["name"])] = f"{gen['name']}-{digest}"
    docs.append(doc)


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _apply_op(doc: Doc, op: Doc) -> None:
    *parents, last = _pointer(op["path"])
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if op["op"] == "remove":
        del node[int(last) if isinstance(node, list) else last]
        return
    if op["op"] not in ("add", "replace"):
        raise KustomizeError(f"unsupported patch op {op['op']}")
    if isinstance(node, list):
        if last == "-":
            node.append(op["value"])
        elif op["op"] == "add":
            node.insert(int(last), op["value"])
        else:
            node[int(last)] = op["value"]
    else:
        if op["op"] == "replace" and last not in node:
            raise KustomizeError(f"replace of missing path {op['path']}")
        node[last] = copy.deepcopy(op["value"])


def _patch(folder: Path, patch: Doc, docs: list[Doc]) -> None:
    target = patch.get("target", {})
    ops = yaml.safe_load(patch["patch"])
    if not isinstance(ops, list):
        raise KustomizeError(f"{folder}: only JSON 6902 patches (a list of ops) are supported")
    matched = [
        d
        for d in docs
        if d["kind"] == target.get("kind", d["kind"])
        and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])
    ]
    if not matched:
        raise KustomizeError(f"{folder}: patch target {target} matches nothing")
    for doc in matched:
        for op in ops:
            _apply_op(doc, op)


def _pod_specs(doc: Doc) -> list[Doc]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Pod":
        return [spec]
    if doc["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    template = spec.get("template", {})
    return [template["spec"]] if "spec" in template else []


def _containers(pod: Doc) -> list[Doc]:
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def _set_image(docs: list[Doc], image: Doc) -> None:
    for doc in docs:
        for pod in _pod_specs(doc):
            for container in _containers(pod):
                if container["image"].split(":")[0] == image["name"]:
                    name = image.get("newName", image["name"])
                    tag = image.get("newTag")
                    container["image"] = f"{name}:{tag}" if tag else name


def _rename_generated(docs: list[Doc], generated: dict[tuple[str, str], str]) -> None:
    def renamed(kind: str, name: str) -> str:
        return generated.get((kind, name), name)

    for doc in docs:
        if (doc["kind"], doc["metadata"]["name"]) in generated:
            doc["metadata"]["name"] = renamed(doc["kind"], doc["metadata"]["name"])
        for pod in _pod_specs(doc):
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    volume["configMap"]["name"] = renamed("ConfigMap", volume["configMap"]["name"])
                if "secret" in volume:
                    secret = volume["secret"]
                    secret["secretName"] = renamed("Secret", secret["secretName"])
            for container in _containers(pod):
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        ref = source["configMapRef"]
                        ref["name"] = renamed("ConfigMap", ref["name"])
                    if "secretRef" in source:
                        source["secretRef"]["name"] = renamed("Secret", source["secretRef"]["name"])
                for env in container.get("env", []):
                    ref_from = env.get("valueFrom", {})
                    for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                        if key in ref_from:
                            ref_from[key]["name"] = renamed(kind, ref_from[key]["name"])
