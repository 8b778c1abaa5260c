#!/usr/bin/env python3
"""Engram from Python: token -> Remember -> Recall over gRPC.

The stubs are generated from proto/ at run time with grpc_tools.protoc, so
nothing generated is committed:

    scripts/setup-clients.sh                  # venv in .tools/pyclients
    export ENGRAM_ADDR=127.0.0.1:50051
    export ENGRAM_TOKEN=$(engram token --org org_demo --user alice)
    .tools/pyclients/bin/python clients/python/engram_client_test.py

crates/engram/tests/clients.rs runs this file against a real `engram serve`.
Exits 0 when every check passes, 1 with the reason otherwise.
"""

import base64
import importlib
import json
import os
import sys
import tempfile
import uuid
from importlib import resources
from pathlib import Path

import grpc
from grpc_tools import protoc

PROTO_DIR = Path(os.environ.get("ENGRAM_PROTO_DIR", Path(__file__).resolve().parents[2] / "proto"))
ADDR = os.environ.get("ENGRAM_ADDR", "127.0.0.1:50051")
TIMEOUT = 30  # seconds per call


def generate_stubs(out_dir):
    """Compiles proto/engram/v1 into out_dir and returns the modules used here."""
    # google/protobuf/*.proto (Struct, Timestamp) ship inside grpc_tools.
    well_known = str(resources.files("grpc_tools") / "_proto")
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "engram" / "v1").glob("*.proto"))
    if not protos:
        sys.exit(f"FAIL: no .proto files in {PROTO_DIR / 'engram' / 'v1'} (set ENGRAM_PROTO_DIR)")
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + protos) != 0:
        sys.exit(f"FAIL: protoc could not compile {protos} from {PROTO_DIR}")
    sys.path.insert(0, out_dir)
    names = ["ingest_pb2", "ingest_pb2_grpc", "recall_pb2", "recall_pb2_grpc", "common_pb2"]
    return [importlib.import_module(f"engram.v1.{n}") for n in names]


def token_org(token):
    """The org_id claim of a JWT: the tenant every scope must name."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["org_id"]


def expect_code(code, fn):
    """Runs fn() and checks that it fails with the gRPC status code."""
    try:
        fn()
    except grpc.RpcError as err:
        if err.code() != code:
            sys.exit(f"FAIL: expected {code.name}, got {err.code().name}: {err.details()}")
        return
    sys.exit(f"FAIL: expected {code.name}, the call succeeded")


def main():
    token = os.environ.get("ENGRAM_TOKEN")
    if not token:
        sys.exit("FAIL: ENGRAM_TOKEN is not set: mint one with `engram token --org O --user U`")
    with tempfile.TemporaryDirectory(prefix="engram-pb-") as out_dir:
        ingest_pb2, ingest_grpc, recall_pb2, recall_grpc, common_pb2 = generate_stubs(out_dir)

    channel = grpc.insecure_channel(ADDR)
    ingest = ingest_grpc.IngestServiceStub(channel)
    recall = recall_grpc.RecallServiceStub(channel)
    auth = [("authorization", f"Bearer {token}")]
    scope = common_pb2.Scope(org_id=token_org(token), session_id=f"py-{uuid.uuid4().hex[:8]}")

    # 1. Remember a turn: it is recallable as soon as the call returns.
    remembered = ingest.Remember(
        ingest_pb2.RememberRequest(
            scope=scope,
            turns=[ingest_pb2.Turn(role="user", text="I'm allergic to shellfish.", timestamp="2026-05-08T14:00:00Z")],
        ),
        metadata=auth,
        timeout=TIMEOUT,
    )
    if len(remembered.active_fragment_ids) != 1:
        sys.exit(f"FAIL: expected one fragment id, got {remembered}")
    print(f"ok: Remember stored fragment {remembered.active_fragment_ids[0][:12]}…")

    # 2. Recall with a question that shares no word with the turn.
    recalled = recall.Recall(
        recall_pb2.RecallRequest(scope=scope, q="any food restrictions?", top_k=5),
        metadata=auth,
        timeout=TIMEOUT,
    )
    hit = next((h for h in recalled.hits.turns if h.id == remembered.active_fragment_ids[0]), None)
    if hit is None or "allergic to shellfish" not in hit.text:
        sys.exit(f"FAIL: the allergy turn is not among the hits: {list(recalled.hits.turns)}")
    print(f"ok: Recall found {hit.text!r} (score {hit.score:.3f}, confidence {recalled.confidence:.2f})")

    # 3. No token: UNAUTHENTICATED.
    expect_code(
        grpc.StatusCode.UNAUTHENTICATED,
        lambda: recall.Recall(recall_pb2.RecallRequest(scope=scope, q="any food restrictions?"), timeout=TIMEOUT),
    )
    print("ok: a call without the token is UNAUTHENTICATED")

    # 4. An empty turn: INVALID_ARGUMENT.
    empty = ingest_pb2.RememberRequest(
        scope=scope, turns=[ingest_pb2.Turn(role="user", text="", timestamp="2026-05-08T14:00:00Z")]
    )
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: ingest.Remember(empty, metadata=auth, timeout=TIMEOUT))
    print("ok: a turn with empty text is INVALID_ARGUMENT")

    channel.close()
    print("4 passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as err:
        sys.exit(f"FAIL: {err.code().name}: {err.details()}")
