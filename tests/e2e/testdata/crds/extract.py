#!/usr/bin/env python3
"""Extracts the CRD schemas the aigw Kubernetes manifests need from Istio's and Envoy Gateway's releases.

Usage: extract.py <istio git dir> <envoy-gateway git dir>   (clones of github.com/istio/istio and
github.com/envoyproxy/gateway with their release tags), run from the repository root.

For each release named in RELEASES it reads the CRDs the release installs (Istio: the base chart's
crd-all.gen.yaml; Envoy Gateway: its Helm chart's generated CRDs and the Gateway API CRDs it bundles),
takes the openAPIV3Schema of the version our manifests use, and keeps only what validating our manifests
needs: every field our manifests set, with its whole constraints (type, required, enum, pattern, bounds,
additionalProperties, x-kubernetes-preserve-unknown-fields, oneOf/anyOf), and the other fields of every
object our manifests reach as their name and type only (so an unknown field is still told from a known
one). Descriptions and CEL rules (x-kubernetes-validations) are dropped. Releases with the same pruned
schema for a kind share one entry. Output: tests/e2e/testdata/crds/{istio,envoy-gateway}.json, each
entry naming the source repository, path and release tags. Re-run after the manifests use a new field.
"""
import glob
import json
import subprocess
import sys

import yaml

RELEASES = {
    "istio": ["1.22.8", "1.23.6", "1.24.6", "1.25.5", "1.26.8", "1.27.9", "1.28.10", "1.29.6", "1.30.3"],
    "envoy-gateway": ["v1.1.4", "v1.2.8", "v1.3.3", "v1.4.6", "v1.5.9", "v1.6.7", "v1.7.5", "v1.8.3", "v1.9.0"],
}
REPOS = {"istio": "github.com/istio/istio", "envoy-gateway": "github.com/envoyproxy/gateway"}
GROUPS = {
    "istio": {"networking.istio.io", "security.istio.io", "extensions.istio.io"},
    "envoy-gateway": {"gateway.envoyproxy.io", "gateway.networking.k8s.io"},
}
KEEP = {"type", "required", "enum", "pattern", "format", "maxLength", "minLength", "maximum", "minimum",
        "maxItems", "minItems", "maxProperties", "minProperties", "nullable", "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string", "exclusiveMinimum", "exclusiveMaximum"}


def git_files(repo, tag, candidates):
    names = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", tag],
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for pattern in candidates:
        hits = [n for n in names if glob.fnmatch.fnmatch(n, pattern)]
        if hits:
            return sorted(hits)
    return []


def crds_of(repo, tag, project):
    if project == "istio":
        paths = git_files(repo, tag, ["manifests/charts/base/files/crd-all.gen.yaml",
                                      "manifests/charts/base/crds/crd-all.gen.yaml"])
    else:
        paths = git_files(repo, tag, ["charts/gateway-helm/charts/crds/crds/generated/*.yaml",
                                      "charts/gateway-helm/crds/generated/*.yaml"])
        paths += git_files(repo, tag, ["charts/gateway-helm/charts/crds/crds/gatewayapi-crds.yaml",
                                       "charts/gateway-helm/crds/gatewayapi-crds.yaml"])
    out = {}
    for path in paths:
        text = subprocess.run(["git", "-C", repo, "show", f"{tag}:{path}"], capture_output=True, text=True,
                              check=True).stdout
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                out[(spec["group"], spec["names"]["kind"])] = (path, spec)
    return out


def shallow(schema):
    return {k: v for k, v in schema.items() if k in {"type", "x-kubernetes-preserve-unknown-fields",
                                                       "x-kubernetes-int-or-string"}}


def strip(schema):
    """A schema without descriptions and CEL rules (for oneOf/anyOf branches)."""
    if isinstance(schema, dict):
        return {k: strip(v) for k, v in schema.items() if k not in {"description", "x-kubernetes-validations"}}
    if isinstance(schema, list):
        return [strip(v) for v in schema]
    return schema


def prune(schema, values):
    out = {k: v for k, v in schema.items() if k in KEEP}
    for combinator in ("oneOf", "anyOf", "allOf"):
        if combinator in schema:
            out[combinator] = strip(schema[combinator])
    if "properties" in schema:
        props = {}
        for name, sub in schema["properties"].items():
            used = [v[name] for v in values if isinstance(v, dict) and name in v]
            props[name] = prune(sub, used) if used else shallow(sub)
        out["properties"] = props
    if isinstance(schema.get("additionalProperties"), dict):
        used = [x for v in values if isinstance(v, dict) for x in v.values()]
        out["additionalProperties"] = prune(schema["additionalProperties"], used)
    elif "additionalProperties" in schema:
        out["additionalProperties"] = schema["additionalProperties"]
    if "items" in schema:
        used = [x for v in values if isinstance(v, list) for x in v]
        out["items"] = prune(schema["items"], used)
    return out


def manifests():
    docs = []
    for path in sorted(glob.glob("envoy-config/k8s/**/*.yaml", recursive=True)):
        if "/helm/" in path:
            continue
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def main():
    repos = {"istio": sys.argv[1], "envoy-gateway": sys.argv[2]}
    docs = manifests()
    for project, tags in RELEASES.items():
        used = {}
        for doc in docs:
            group, _, version = doc["apiVersion"].rpartition("/")
            if group in GROUPS[project]:
                used.setdefault((group, doc["kind"], version), []).append(doc)
        entries = []
        for tag in tags:
            crds = crds_of(repos[project], tag, project)
            for (group, kind, version), values in sorted(used.items()):
                found = crds.get((group, kind))
                entry = {"group": group, "kind": kind, "version": version}
                if found is None:
                    entry.update({"source": None, "served": False, "schema": None})
                else:
                    path, spec = found
                    served = {v["name"]: v for v in spec["versions"] if v.get("served")}
                    schema = served.get(version, {}).get("schema", {}).get("openAPIV3Schema")
                    entry.update({"source": path, "served": version in served,
                                  "served_versions": sorted(served),
                                  "schema": prune(schema, values) if schema else None})
                same = next((e for e in entries if {k: v for k, v in e.items() if k != "releases"} == entry), None)
                if same:
                    same["releases"].append(tag)
                else:
                    entries.append(dict(entry, releases=[tag]))
        out = {
            "about": f"CRD schemas from {REPOS[project]} (paths per entry, at the release tags listed), pruned by "
                     "tests/e2e/testdata/crds/extract.py to what validating envoy-config/k8s/ needs. API facts "
                     "kept as test data; regenerate with that script.",
            "repository": REPOS[project],
            "releases": tags,
            "schemas": entries,
        }
        with open(f"tests/e2e/testdata/crds/{project}.json", "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
