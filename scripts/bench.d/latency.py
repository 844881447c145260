#!/usr/bin/python3
"""End-to-end latency: from the POST of a notification to its line in the
NDJSON output.

    latency.py --port P --output FILE --body FILE --marker HEX12
               [--rate 1000] [--seconds 5] [--connections 4]

The body is one notification (from scripts/graph-sim notify --print) whose
call-record id ends in MARKER (12 hex digits); every POST replaces it with
a unique id, and a reader of the output matches each line back to the time
its POST was sent.  POSTs are paced at RATE per second over CONNECTIONS
keep-alive connections (round robin), so the figure is the latency at that
load, not at saturation.

Prints one JSON object: sent, answered (202), seen (lines matched), and
p50/p90/p99/max in ms over the items seen; exit status 1 if an item was not
answered 202 or its line did not appear within 30 s of the last POST.
"""

import argparse
import json
import os
import re
import socket
import sys
import threading
import time


def percentile(v, p):
    if not v:
        return 0.0
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--marker", required=True)
    ap.add_argument("--path", default="/graph/notify")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=4)
    a = ap.parse_args()

    with open(a.body, "rb") as f:
        body = f.read()
    marker = a.marker.encode()
    if body.count(marker) < 1 or len(marker) != 12:
        sys.exit("latency: the marker is not in the body")
    head, tail = body.split(marker, 1)
    prefix = marker[:4]
    # the id's own characters before the marker, as the output has them
    lead = re.search(rb"[0-9a-f-]*$", head).group(0)
    pattern = re.compile(re.escape(lead) + rb"(" + re.escape(prefix)
                         + rb"[0-9a-f]{8})")

    n = int(a.rate * a.seconds)
    sent = [0.0] * n
    seen = [0.0] * n
    answered = [0]
    lock = threading.Lock()
    done = threading.Event()

    try:
        out = open(a.output, "rb")
        out.seek(0, os.SEEK_END)
    except OSError:
        out = None

    def tail_output():
        nonlocal out
        buf = b""
        while True:
            if out is None:
                try:
                    out = open(a.output, "rb")
                except OSError:
                    time.sleep(0.001)
                    continue
            data = out.read()
            if not data:
                if done.is_set():
                    return
                time.sleep(0.0005)
                continue
            t = time.monotonic()
            buf += data
            lines = buf.split(b"\n")
            buf = lines.pop()
            for line in lines:
                m = pattern.search(line)
                if m:
                    i = int(m.group(1), 16) - int(prefix + b"00000000", 16)
                    if 0 <= i < n and not seen[i]:
                        seen[i] = t

    socks = []
    for _ in range(a.connections):
        s = socket.create_connection(("127.0.0.1", a.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)

    def read_answers(s):
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            k = buf.count(b"HTTP/1.1 202")
            if k:
                with lock:
                    answered[0] += k
                buf = buf[buf.rfind(b"HTTP/1.1 202") + 12:]
            else:
                buf = buf[-16:]

    readers = [threading.Thread(target=read_answers, args=(s,), daemon=True)
               for s in socks]
    for r in readers:
        r.start()
    tailer = threading.Thread(target=tail_output, daemon=True)
    tailer.start()

    start = time.monotonic()
    for i in range(n):
        due = start + i / a.rate
        d = due - time.monotonic()
        if d > 0:
            time.sleep(d)
        b = head + b"%s%08x" % (prefix, i) + tail
        req = (b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: "
               b"application/json\r\nContent-Length: %d\r\n\r\n"
               % (a.path.encode(), len(b))) + b
        sent[i] = time.monotonic()
        socks[i % len(socks)].sendall(req)

    end = time.monotonic() + 30
    while time.monotonic() < end:
        if answered[0] >= n and all(seen):
            break
        time.sleep(0.01)
    done.set()
    tailer.join(2)
    for s in socks:
        s.close()

    lat = sorted((seen[i] - sent[i]) * 1000 for i in range(n) if seen[i])
    r = {
        "sent": n,
        "answered": answered[0],
        "seen": len(lat),
        "rate": round(n / (sent[-1] - start), 1) if n > 1 else 0,
        "p50_ms": round(percentile(lat, 50), 3),
        "p90_ms": round(percentile(lat, 90), 3),
        "p99_ms": round(percentile(lat, 99), 3),
        "max_ms": round(lat[-1], 3) if lat else 0.0,
    }
    print(json.dumps(r))
    return 0 if r["seen"] == n and r["answered"] >= n else 1


if __name__ == "__main__":
    sys.exit(main())
