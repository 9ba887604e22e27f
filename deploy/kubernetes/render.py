#!/usr/bin/env python3
"""Renders a kustomization of deploy/kubernetes to one YAML stream, for offline validation
(kubectl/kustomize are not needed). It understands what these manifests use and nothing
more: `resources` (files or other kustomization directories), `labels` with
`includeSelectors`, `configMapGenerator` with `files` (no name hash), and `patches` that are
strategic-merge documents: maps merge, lists of maps merge by `name`, `null` deletes a key,
`$patch: delete` removes the resource. Anything else is an error, not silently ignored.

    python3 deploy/kubernetes/render.py deploy/kubernetes/overlays/replicas
"""

import copy
import os
import sys

import yaml

KNOWN = {"apiVersion", "kind", "labels", "resources", "configMapGenerator",
         "generatorOptions", "patches"}


def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            for i, existing in enumerate(out):
                if existing["name"] == item["name"]:
                    out[i] = merge(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def key(doc):
    return (doc["kind"], doc["metadata"]["name"])


def add_labels(doc, labels, selectors):
    doc.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    if not selectors:
        return
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "PodDisruptionBudget"):
        spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(labels)
    if doc["kind"] == "Deployment":
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    if doc["kind"] == "Service":
        spec.setdefault("selector", {}).update(labels)


def render(directory):
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - KNOWN
    if unknown:
        sys.exit(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    docs = []
    for resource in k.get("resources", []):
        path = os.path.join(directory, resource)
        if os.path.isdir(path):
            docs.extend(render(path))
        else:
            with open(path) as f:
                docs.extend(d for d in yaml.safe_load_all(f) if d)
    for gen in k.get("configMapGenerator", []):
        data = {}
        for name in gen.get("files", []):
            with open(os.path.join(directory, name)) as f:
                data[os.path.basename(name)] = f.read()
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": gen["name"]}, "data": data})
    for entry in k.get("labels", []):
        for doc in docs:
            add_labels(doc, entry["pairs"], entry.get("includeSelectors", False))
    for entry in k.get("patches", []):
        with open(os.path.join(directory, entry["path"])) as f:
            patch = yaml.safe_load(f)
        matches = [i for i, d in enumerate(docs) if key(d) == key(patch)]
        if not matches:
            sys.exit(f"{directory}: patch {entry['path']} matches no resource {key(patch)}")
        if patch.get("$patch") == "delete":
            docs.pop(matches[0])
        else:
            docs[matches[0]] = merge(docs[matches[0]], patch)
    return docs


if __name__ == "__main__":
    yaml.safe_dump_all(render(sys.argv[1]), sys.stdout, sort_keys=False)
