"""JetStream publish-ack latency, the figures of deploy/README.md, "Durability".

Publishes N messages of SIZE bytes (random hex) to a fresh file-storage
stream BENCH (subjects bench.>) on one nats-server or cluster, and measures
the time from each publish to its PubAck:

- sequential: one publisher, each publish awaited before the next;
- concurrent: C publishers on the same connection (N split between them),
  each awaiting its own acks.

200 messages per mode warm up first and are not counted. Prints one JSON
line per mode: p50 / p99 / mean ack latency (ms), messages/s, and what the
stream holds afterwards. Deletes the stream at the end.

    python3 -m venv /tmp/js-bench && /tmp/js-bench/bin/pip install nats-py==2.16.0
    /tmp/js-bench/bin/python deploy/jetstream_ack_bench.py --url nats://127.0.0.1:14225

Never point it at a server that holds data you need: it deletes BENCH.
"""

import argparse
import asyncio
import json
import os
import statistics
import time

import nats


def percentile(sorted_ms, p):
    i = min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms)) - 1))
    return sorted_ms[i]


async def fresh_stream(js, replicas):
    try:
        await js.delete_stream("BENCH")
    except Exception:
        pass
    await js.add_stream(name="BENCH", subjects=["bench.>"], storage="file", num_replicas=replicas)


async def run(js, subject, n, concurrency, payload):
    latencies = []
    shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]

    async def publisher(count):
        for _ in range(count):
            t = time.perf_counter()
            await js.publish(subject, payload)
            latencies.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(publisher(k) for k in shares))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "n": len(latencies),
        "concurrency": concurrency,
        "msgs_per_s": round(len(latencies) / wall),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "wall_s": round(wall, 2),
    }


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="e.g. nats://127.0.0.1:14225")
    ap.add_argument("--label", default="", help="copied into the output")
    ap.add_argument("-n", type=int, default=5000, help="messages per mode (5000)")
    ap.add_argument("--size", type=int, default=300, help="payload bytes (300)")
    ap.add_argument("--concurrency", type=int, default=16, help="publishers in the concurrent mode (16)")
    ap.add_argument("--replicas", type=int, default=1, help="stream replicas (1; 3 on a 3-server cluster)")
    ap.add_argument("--modes", default="sequential,concurrent")
    a = ap.parse_args()

    nc = await nats.connect(a.url)
    js = nc.jetstream(timeout=10)
    payload = os.urandom(a.size).hex().encode()[: a.size]
    modes = {"sequential": 1, "concurrent": a.concurrency}
    for mode in a.modes.split(","):
        concurrency = modes[mode]
        await fresh_stream(js, a.replicas)
        await run(js, "bench.warmup", 200, concurrency, payload)
        result = await run(js, "bench.turns", a.n, concurrency, payload)
        info = await js.stream_info("BENCH")
        result.update(label=a.label, mode=mode, size=len(payload), replicas=info.config.num_replicas,
                      stored=info.state.messages)
        print(json.dumps(result), flush=True)
    await js.delete_stream("BENCH")
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
