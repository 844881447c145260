#!/usr/bin/python3
"""Call records per second through the helper, against the local simulator.

Starts scripts/graph-sim (every record id exists, 1 session) and NGINX with
the module on loopback, posts N call-record notifications spread over T
tenants, and measures until the status page says all were written:

- records per second, end to end (first POST to the last line written);
- the helper's CPU time per record (utime + stime of its process);
- the helper's resident memory as the run goes, to see that it stays flat.

Run twice by scripts/bench: with no added latency, and with 100 ms added to
every Graph call (the concurrency has to hide it).
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = "5b4f6a52-1111-4222-8333-444455556666"
SECRET = "bench-secret"
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(port, path, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: nothing answers on port {port}")


def status(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/graph/status")
    return json.loads(c.getresponse().read())


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_rss_kib(pid):
    """Private (anonymous) resident memory: the queue's shared pages that the
    helper touches are counted once, in the zone, not here."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def stub_graph(work, nginx):
    """A stand-in for Graph that costs next to nothing: a second NGINX
    answering the token request and every record GET from a file, so that
    the helper, not the simulator, is what is measured."""
    stub = f"{work}/stub"
    os.makedirs(f"{stub}/logs")
    os.makedirs(f"{stub}/html")
    with open(os.path.join(TOP, "t", "data", "graph-docs-examples",
                           "callrecord-get-expand-sessions-segments.json")) as f:
        record = json.load(f)
    record.pop("sessions@odata.nextLink", None)
    with open(f"{stub}/html/record.json", "w") as f:
        json.dump(record, f)
    port = free_port()
    with open(f"{stub}/nginx.conf", "w") as f:
        f.write(f"""
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location ~ /oauth2/v2\\.0/token$ {{
            default_type application/json;
            return 200 '{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"stub-token"}}';
        }}
        location /v1.0/ {{
            default_type application/json;
            root html;
            try_files /record.json =404;
        }}
    }}
}}
""")
    r = subprocess.run([nginx, "-p", stub, "-c", "nginx.conf"],
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"bench: the stub did not start: {r.stderr}")
    return port, stub


def item(record, tenant, sub):
    return {
        "subscriptionId": sub,
        "subscriptionExpirationDateTime": "2026-11-26T10:00:00.0000000+00:00",
        "changeType": "created",
        "resource": f"communications/callRecords/{record}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.callRecord",
                         "@odata.id": f"communications/callRecords/{record}",
                         "id": record},
        "clientState": "bench-state",
        "tenantId": tenant,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rate", type=int, default=75)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--probe-rate", type=float, default=0,
                    help="instead: POST to output line of call records at "
                         "this rate, one tenant (scripts/bench.d/latency.py)")
    ap.add_argument("--graph", choices=("sim", "stub"), default="sim",
                    help="the simulator, or a static stand-in (no latency)")
    ap.add_argument("--nginx", default=os.environ.get("NGINX_BIN", "/usr/sbin/nginx"))
    ap.add_argument("--module", default=os.environ.get(
        "MODULE", f"{TOP}/build/ngx_http_graph_notify_module.so"))
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="graph-notify-bench-")
    os.chmod(work, 0o755)    # the worker user must reach its files
    sim_port, port = free_port(), free_port()
    os.makedirs(f"{work}/logs")
    os.makedirs(f"{work}/conf")
    procs = []

    stub = None

    def stop(*_):
        subprocess.run([a.nginx, "-p", work, "-c", "conf/nginx.conf", "-s", "stop"],
                       stderr=subprocess.DEVNULL)
        if stub:
            subprocess.run([a.nginx, "-p", stub, "-c", "nginx.conf", "-s", "stop"],
                           stderr=subprocess.DEVNULL)
        for p in procs:
            p.terminate()
        time.sleep(0.3)
        if os.environ.get("BENCH_KEEP"):
            print(f"bench: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(1)))

    if a.graph == "stub":
        sim_port, stub = stub_graph(work, a.nginx)
    else:
        procs.append(subprocess.Popen(
            ["/usr/bin/python3", f"{TOP}/scripts/graph-sim", "serve", "--port",
             str(sim_port), "--secret", SECRET, "--client-id", APP, "--auto-records",
             "--latency-ms", str(a.latency_ms), "--log", os.devnull],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(sim_port, "/_sim/health")

    with open(f"{work}/conf/nginx.conf", "w") as f:
        f.write(f"""
load_module {a.module};
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path body_temp;
    graph_notify_zone graph_notify:256m max_items=250000;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state bench-state;
    graph_notify_app_id {APP};
    graph_notify_client_secret {SECRET};
    graph_notify_graph_url http://127.0.0.1:{sim_port};
    graph_notify_login_url http://127.0.0.1:{sim_port};
    graph_notify_concurrency {a.concurrency};
    graph_notify_rate {a.rate};
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;
        location = /graph/notify {{ graph_notify; }}
        location = /graph/status {{ graph_notify_status; }}
    }}
}}
""")

    r = subprocess.run([a.nginx, "-p", work, "-c", "conf/nginx.conf"],
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        stop()
        sys.exit(f"bench: nginx did not start: {r.stderr}")

    try:
        wait_http(port, "/graph/status")
        end = time.time() + 10
        helper = 0
        while time.time() < end and not helper:
            helper = status(port)["helper"]["pid"]
            time.sleep(0.1)

        if a.probe_rate:
            marker = "ffff00000000"
            with open(f"{work}/probe.json", "w") as f:
                json.dump({"value": [item("a3e1d8c4-0000-4000-8000-" + marker,
                                          str(uuid.uuid4()), "bench-sub")]}, f)
            r = subprocess.run(
                ["/usr/bin/python3", f"{TOP}/scripts/bench.d/latency.py",
                 "--port", str(port), "--output",
                 f"{work}/logs/graph_notify.ndjson", "--body",
                 f"{work}/probe.json", "--marker", marker, "--rate",
                 str(a.probe_rate), "--seconds", "10", "--connections", "1"],
                stdout=subprocess.PIPE, text=True)
            print(r.stdout.strip())
            if r.returncode:
                raise SystemExit(1)
            return

        tenants = [str(uuid.uuid4()) for _ in range(a.tenants)]
        cpu0 = proc_cpu(helper)
        rss = [(0, proc_rss_kib(helper))]
        t0 = time.time()

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        sent = 0
        while sent < a.records:
            n = min(a.batch, a.records - sent)
            body = json.dumps({"value": [
                item(str(uuid.uuid4()), tenants[(sent + i) % a.tenants], "bench-sub")
                for i in range(n)]})
            conn.request("POST", "/graph/notify", body,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 202:
                raise SystemExit(f"bench: POST answered {resp.status}")
            sent += n

        posted = time.time() - t0
        marks = {a.records * k // 10 for k in range(1, 11)}
        written = 0
        deadline = t0 + a.timeout
        while time.time() < deadline:
            st = status(port)
            written = st["callRecords"]["written"]
            for m in sorted(marks):
                if written >= m:
                    rss.append((m, proc_rss_kib(helper)))
                    marks.discard(m)
            if written >= a.records:
                break
            time.sleep(0.05)
        elapsed = time.time() - t0
        cpu = proc_cpu(helper) - cpu0
        st = status(port)

        out = {
            "records": a.records, "written": written, "tenants": a.tenants,
            "latency_ms": a.latency_ms, "concurrency": a.concurrency,
            "graph": a.graph,
            "rate_per_tenant": a.rate, "post_seconds": round(posted, 2),
            "seconds": round(elapsed, 2),
            "records_per_second": round(written / elapsed, 1),
            "helper_cpu_ms_per_record": round(cpu * 1000 / max(written, 1), 3),
            "helper_rss_anon_kib": rss,
            "graph_requests": st["graph"]["requests"],
            "throttled": st["graph"]["answers"]["throttled"],
            "dropped": sum(st["callRecords"]["dropped"].values()),
        }
        print(json.dumps(out))
    finally:
        stop()


if __name__ == "__main__":
    main()
