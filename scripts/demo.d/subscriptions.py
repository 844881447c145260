#!/usr/bin/python3
"""Demo step: subscriptions kept alive by the helper, against graph-sim.

    subscriptions.py NGINX_BIN MODULE RUN_DIR SIM_URL APP_ID SECRET TENANT

Starts its own NGINX (master process) in RUN_DIR with one declared
call-record subscription, and shows: the subscription created (Graph's
handshake against this NGINX), renewed (lifetimes cut to a few seconds by
the simulator), a lifecycle event acted on, a backfill after an outage of
"two hours" (the helper's heartbeat set back), and the verdicts.  Exit
status 0 when every step worked.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

LIFETIME = 6


def say(text=""):
    print(text, flush=True)


def heading(text):
    say()
    say("== " + text)


class Failed(Exception):
    pass


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        text = e.read().decode()
    return json.loads(text) if text.strip()[:1] in ("{", "[") else text


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, cond, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = cond()
        except (OSError, ValueError, KeyError, IndexError):
            v = None
        if v:
            return v
        time.sleep(0.2)
    raise Failed(what)


class Demo:
    def __init__(self, argv):
        (self.nginx, self.module, self.run, self.sim, self.app, self.secret,
         self.tenant) = argv
        self.port = free_port()
        self.conf = os.path.join(self.run, "nginx.conf")
        self.proc = None

    def write_conf(self):
        r = self.run
        for d in ("logs", "tmp"):
            os.makedirs(os.path.join(r, d), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(f"""load_module {self.module};
daemon off;
master_process on;
worker_processes 2;
pid {r}/logs/nginx.pid;
error_log {r}/logs/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {r}/tmp/body;
    proxy_temp_path {r}/tmp/proxy;
    fastcgi_temp_path {r}/tmp/fastcgi;
    uwsgi_temp_path {r}/tmp/uwsgi;
    scgi_temp_path {r}/tmp/scgi;

    graph_notify_zone   graph_notify_subs:4m;
    graph_notify_path   {r}/graph_notify_temp;
    graph_notify_output {r}/graph_notify.ndjson;
    graph_notify_client_state secret-subs;

    graph_notify_app_id         {self.app};
    graph_notify_client_secret  {self.secret};
    graph_notify_login_url      {self.sim};
    graph_notify_graph_url      {self.sim};

    # the subscription the helper keeps alive
    graph_notify_subscription communications/callRecords
        tenant={self.tenant}
        url=http://127.0.0.1:{self.port}/graph/notify;
    graph_notify_backfill longest_call=1h latency=10m outage=1m;

    server {{
        listen 127.0.0.1:{self.port};
        location = /graph/notify {{ graph_notify; }}
        location = /graph/status {{ graph_notify_status; }}
    }}
}}
""")

    def start(self):
        self.proc = subprocess.Popen([self.nginx, "-p", self.run, "-c", self.conf,
                                      "-e", os.path.join(self.run, "logs/error.log")],
                                     stderr=open(os.path.join(self.run, "logs/stderr"), "a"))
        wait("NGINX did not start", lambda: self.status())

    def stop(self):
        if self.proc:
            self.proc.send_signal(3)  # SIGQUIT
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def status(self):
        return http("GET", f"http://127.0.0.1:{self.port}/graph/status")

    def item(self):
        return self.status()["subscriptions"]["items"][0]

    def log_lines(self, pattern):
        with open(os.path.join(self.run, "logs/error.log")) as f:
            return [l.rstrip() for l in f if pattern in l]

    def show_log(self, pattern, last=1):
        for line in self.log_lines(pattern)[-last:]:
            say("  log: " + line.split("graph_notify: ", 1)[-1])

    def main(self):
        http("POST", f"{self.sim}/_sim/subscriptions/lifetime", {"seconds": LIFETIME})

        heading("Subscriptions: declared in nginx.conf, created by the helper")
        self.write_conf()
        self.start()
        s = wait("no healthy subscription", lambda: (lambda x: x if x["verdict"] == "healthy"
                                                     else None)(self.item()))
        self.show_log("created subscription")
        say(f"  Graph ran its handshake against this NGINX: "
            f"{self.status()['handshakes']} handshake(s) answered")
        say(f"  subscription {s['id']}: verdict {s['verdict']}, expires in "
            f"{s['expiresIn']} s (the simulator cuts lifetimes to {LIFETIME} s)")

        heading("Renewals at 50-75 % of the lifetime")
        s = wait("not renewed", lambda: (lambda x: x if x["renewals"] >= 3 else None)(self.item()))
        say(f"  renewed {s['renewals']} times, last {s['lastRenewal']['at']} "
            f"({s['lastRenewal']['result']}), expires in {s['expiresIn']} s, same id "
            f"{s['id'] == self.item()['id']}")

        heading("A lifecycle event: reauthorizationRequired")
        n = s["renewals"]
        r = http("POST", f"{self.sim}/_sim/subscriptions/{s['id']}/lifecycle",
                 {"event": "reauthorizationRequired"})
        say(f"  Graph posted it to the lifecycle URL: answered {r['status']}")
        wait("lifecycle event not acted on",
             lambda: self.log_lines('lifecycle event "reauthorizationRequired"'))
        self.show_log('lifecycle event "reauthorizationRequired"')
        s = wait("not renewed after the event",
                 lambda: (lambda x: x if x["renewals"] > n else None)(self.item()))
        say(f"  renewed at once (renewal {s['renewals']}), the event is in the output too")

        heading("NGINX down for two hours: a backfill of the gap")
        http("POST", f"{self.sim}/_sim/subscriptions/lifetime", {"seconds": 0})
        self.stop()
        state_file = os.path.join(self.run, "graph_notify_temp/subscriptions.state")
        with open(state_file) as f:
            state = json.load(f)
        state["heartbeat"] = int(time.time()) - 7200
        with open(state_file, "w") as f:
            json.dump(state, f)
        say("  stopped; the helper's last heartbeat set back two hours")
        ids = []
        for i in range(3):
            start = time.gmtime(time.time() - 1800 * (i + 1))
            rec = http("POST", f"{self.sim}/_sim/records",
                       {"sessions": 1, "tenant": self.tenant, "duration_seconds": 600,
                        "startDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", start)})
            ids.append(rec["id"])
        say(f"  meanwhile Graph made 3 call records (no notification reached us)")
        self.start()
        # a new NGINX: its counters start at zero
        wait("no backfill", lambda: self.status()["subscriptions"]["backfill"]["found"] >= 3)
        self.show_log("last heartbeat is")
        self.show_log("not written yet and fetched")

        def written():
            try:
                with open(os.path.join(self.run, "graph_notify.ndjson")) as f:
                    lines = [json.loads(l) for l in f if l.strip()]
            except OSError:
                return None
            got = [l for l in lines if l.get("kind") == "callRecord" and l.get("backfill")
                   and l["callRecord"]["id"] in ids]
            return got if len(got) >= 3 else None
        got = wait("the gap's records were not written", written)
        say(f"  written: {len(got)} call record(s) marked \"backfill\": "
            + ", ".join(sorted(l["callRecord"]["id"][:8] + "…" for l in got)))
        if sorted(l["callRecord"]["id"] for l in got) != sorted(ids):
            raise Failed("a record of the gap was written twice")

        heading("Verdicts on the status page")
        sid = self.item()["id"]
        rec = http("POST", f"{self.sim}/_sim/records", {"sessions": 1, "tenant": self.tenant})
        r = http("POST", f"{self.sim}/_sim/subscriptions/{sid}/notify", {"record": rec["id"]})
        say(f"  a call notified through the subscription: answered {r['status']}")
        wait("the notification is not seen",
             lambda: self.item()["lastNotificationAge"] >= 0)
        st = self.status()["subscriptions"]
        for x in st["items"]:
            say(f"  {x['resource']} tenant {x['tenant'][:8]}… id {x['id'][:8]}…: "
                f"{x['verdict']}, expires in {x['expiresIn']} s, renewals {x['renewals']}, "
                f"last notification {x['lastNotificationAge']} s ago")
        say(f"  backfill: {st['backfill']['runs']} run(s), {st['backfill']['found']} record(s) found")
        prom = http("GET", f"http://127.0.0.1:{self.port}/graph/status?format=prometheus")
        for line in prom.splitlines():
            if line.startswith(("graph_notify_subscription_up", "graph_notify_subscription_verdict",
                                "graph_notify_backfill_records_total")):
                say("  " + line)
        self.stop()
        return 0


def main():
    if len(sys.argv) != 8:
        print(__doc__, file=sys.stderr)
        return 2
    d = Demo(sys.argv[1:])
    try:
        return d.main()
    except Failed as e:
        print(f"subscriptions: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        d.stop()


if __name__ == "__main__":
    sys.exit(main())
