#!/usr/bin/env bash
# Installs what the client examples in clients/ need, at pinned versions:
# a Python venv with grpcio + grpcio-tools (clients/python/requirements.txt)
# in .tools/pyclients, the MCP SDK and the OpenAPI validator
# (clients/checks/requirements.txt) in .tools/pychecks, and @grpc/grpc-js + @grpc/proto-loader from
# clients/node/package-lock.json into clients/node/node_modules.
# Idempotent: does nothing when the installed pins match.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${ENGRAM_TOOLS_DIR:-$REPO/.tools}
PY=${PYTHON:-python3}

# Python: a venv whose stamp is the sha256 of the requirements it holds.
REQS=$REPO/clients/python/requirements.txt
VENV=$TOOLS/pyclients
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" && -f "$VENV/.requirements.sha256" && "$(cat "$VENV/.requirements.sha256")" == "$want" ]]; then
  echo "setup-clients: python venv present"
else
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: -r "$REQS"
  "$VENV/bin/python" -c 'import grpc, grpc_tools.protoc'
  echo "$want" >"$VENV/.requirements.sha256"
  echo "setup-clients: python venv installed ($VENV)"
fi

# Python checks: the official MCP SDK and the OpenAPI validator, in their
# own venv (their dependencies need not agree with grpcio's pins).
CHECKS=$REPO/clients/checks/requirements.txt
CVENV=$TOOLS/pychecks
want=$(sha256sum "$CHECKS" | cut -d' ' -f1)
if [[ -x "$CVENV/bin/python" && -f "$CVENV/.requirements.sha256" && "$(cat "$CVENV/.requirements.sha256")" == "$want" ]]; then
  echo "setup-clients: python checks venv present"
else
  rm -rf "$CVENV"
  "$PY" -m venv "$CVENV"
  "$CVENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: -r "$CHECKS"
  "$CVENV/bin/python" -c 'import mcp, openapi_spec_validator'
  echo "$want" >"$CVENV/.requirements.sha256"
  echo "setup-clients: python checks venv installed ($CVENV)"
fi

# Node: npm ci from the committed lock; the stamp is the lock's sha256.
NODE_DIR=$REPO/clients/node
want=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
stamp=$NODE_DIR/node_modules/.engram-lock.sha256
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup-clients: node modules present"
else
  (cd "$NODE_DIR" && npm ci --ignore-scripts --silent --no-audit --no-fund >/dev/null)
  echo "$want" >"$stamp"
  echo "setup-clients: node modules installed ($NODE_DIR/node_modules)"
fi
