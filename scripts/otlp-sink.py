#!/usr/bin/env python3
"""A minimal OTLP/gRPC trace receiver for measuring tracing overhead.

Accepts TraceService/Export calls, counts requests and bytes, answers with an
empty ExportTraceServiceResponse, and prints the totals on exit. Needs grpcio
(scripts/setup-clients.sh installs it into .tools/pyclients):

    .tools/pyclients/bin/python scripts/otlp-sink.py 4317
"""
import signal
import sys
import threading
from concurrent import futures

import grpc

counts = {"requests": 0, "bytes": 0}
lock = threading.Lock()


def export(request: bytes, context) -> bytes:
    with lock:
        counts["requests"] += 1
        counts["bytes"] += len(request)
    return b""  # an empty ExportTraceServiceResponse


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4317
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"otlp-sink: listening on 127.0.0.1:{port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop(1)
    print(f"otlp-sink: {counts['requests']} export requests, {counts['bytes']} bytes", flush=True)


if __name__ == "__main__":
    main()
