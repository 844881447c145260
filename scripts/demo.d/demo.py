"""Helpers of scripts/demo: JSON in, readable text out (Python stdlib only).

    demo.py wait-port LOG SECONDS          the simulator's port, from its log
    demo.py sim-record SIM_URL JSON        create a call record in the simulator
    demo.py sim-update SIM_URL ID          bump a record's version
    demo.py sim-stats SIM_URL              requests the simulator answered, by kind
    demo.py vector-body DIR CLIENT_STATE [SIM_URL]
                                           a notification carrying Microsoft's vector,
                                           its validation token signed by the simulator
    demo.py settled STATUS_URL             exit 0 once nothing is left to write
    demo.py show OUTPUT                    the NDJSON output, one line per item
    demo.py check OUTPUT STATUS_URL GRAPH BASIC RICH ID:VERSION...
                                           every item made it to the output
    demo.py status STATUS_URL              the status page, JSON, readable
    demo.py prometheus STATUS_URL          a few lines of its Prometheus form
"""

import json
import re
import sys
import time
import urllib.request


def fetch(url, data=None):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as res:
        return res.read()


def status(url):
    return json.loads(fetch(url))


def lines(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            raw = raw.strip()
            if raw:
                out.append(json.loads(raw))
    return out


def wait_port(log, seconds):
    end = time.time() + float(seconds)
    while time.time() < end:
        try:
            with open(log, encoding="utf-8") as f:
                m = re.search(r"listening on http://[^:]+:(\d+)", f.read())
            if m:
                print(m.group(1))
                return 0
        except OSError:
            pass
        time.sleep(0.05)
    return 1


def sim_record(sim, spec):
    s = json.loads(fetch(sim + "/_sim/records", spec.encode()))
    print("  record %s: version %s, %s session(s)" % (s["id"], s["version"], s["sessions"]))
    return 0


def sim_update(sim, rid):
    s = json.loads(fetch(sim + "/_sim/records/%s/update" % rid, b"{}"))
    print("  record %s: now version %s" % (s["id"], s["version"]))
    return 0


def sim_stats(sim):
    by_kind = json.loads(fetch(sim + "/_sim/stats")).get("by_kind", {})
    print("  the simulator answered: " + (", ".join(
        "%s %d" % (k, n) for k, n in sorted(by_kind.items())) or "nothing"))
    return 0


def vector_body(vdir, client_state, sim=None):
    with open(vdir + "/encryptedContent.json", encoding="utf-8") as f:
        enc = json.load(f)
    resource = ("teams('79852646-8963-4d32-95f1-e0c5237d37fa')/channels("
                "'19:etTE40ziboDEfQ1v0B96_nCVjGUsZ77LQa5KRb0cukQ1@thread.tacv2')"
                "/messages('1625067617497')/replies('1625126194597')")
    item = {
        "subscriptionId": "10493aa0-4d29-4df5-bc0c-ef742cc6cd7f",
        "subscriptionExpirationDateTime": "2021-07-02T10:30:34.9097561-07:00",
        "changeType": "created",
        "resource": resource,
        "resourceData": {"id": "1625126194597",
                         "@odata.type": "#Microsoft.Graph.chatMessage",
                         "@odata.id": resource},
        "encryptedContent": enc,
        "clientState": client_state,
        "tenantId": "8afd02d6-ebdd-4270-a515-c749898ea5c5",
    }
    token = "eyJ0eXAiOiJKV1QifQ.e30.c2ln"
    if sim:
        token = json.loads(fetch(sim + "/_sim/validation-token",
                                 json.dumps({"tenant": item["tenantId"]}).encode()))["token"]
    print(json.dumps({"value": [item], "validationTokens": [token]}))
    return 0


def settled(url):
    s = status(url)
    q = s.get("queue", {})
    if q.get("items", 0) or q.get("pending", 0) or q.get("inflight", 0):
        return 1
    cr = s.get("callRecords")
    if s.get("graph", {}).get("enabled") and cr:
        if cr.get("active", 0) or cr.get("waiting", 0):
            return 1
    return 0


def message_text(res):
    body = (res or {}).get("body") or {}
    text = body.get("content", "")
    if body.get("contentType") == "html":
        text = re.sub(r"<[^>]*>", "", text)
    who = (((res or {}).get("from") or {}).get("user") or {}).get("displayName")
    return '"%s"%s' % (text, " from " + who if who else "")


def show(path):
    items = lines(path)
    cols = ("receivedAt", "kind", "subscriptionId", "changeType", "resource")
    print("  %-24s  %-10s  %-36s  %-10s  %s" % cols)
    for it in items:
        print("  %-24s  %-10s  %-36s  %-10s  %s" % tuple(str(it.get(c, "-")) for c in cols))
        if it.get("kind") == "rich":
            print("  %24s  message: %s" % ("", message_text(it.get("decryptedResource"))))
        elif isinstance(it.get("callRecord"), dict):
            rec = it["callRecord"]
            sessions = rec.get("sessions") or []
            segments = sum(len(s.get("segments") or []) for s in sessions)
            print("  %24s  call record: version %s, %d session(s), %d segment(s), "
                  "for %s notification(s)" % ("", rec.get("version", "?"), len(sessions),
                                               segments, it.get("notifications", "?")))
    return 0


def check(path, url, graph, basic, rich, ids):
    items = lines(path)
    s = status(url)
    it = s["items"]
    kinds = {}
    for i in items:
        kinds[i.get("kind")] = kinds.get(i.get("kind"), 0) + 1
    problems = []
    if kinds.get("rich", 0) != int(rich):
        problems.append("%d rich item(s) written, %s expected" % (kinds.get("rich", 0), rich))
    if graph == "1":
        # id:version, the newest version of each record must be written
        newest = {}
        for i in items:
            rec = i.get("callRecord")
            if isinstance(rec, dict):
                newest[rec.get("id")] = max(newest.get(rec.get("id"), 0), rec.get("version", 0))
        for want in ids:
            rid, version = want.split(":")
            if newest.get(rid, 0) < int(version):
                problems.append("call record %s version %s not written" % (rid, version))
        cr = s.get("callRecords", {})
        if sum(cr.get("dropped", {}).values()):
            problems.append("call records dropped: %s" % compact(cr["dropped"]))
    else:
        if kinds.get("basic", 0) != int(basic):
            problems.append("%d basic item(s) written, %s expected"
                            % (kinds.get("basic", 0), basic))
        if it["written"] != it["accepted"]:
            problems.append("items.written %d != items.accepted %d"
                            % (it["written"], it["accepted"]))
    if sum(it.get("dropped", {}).values()):
        problems.append("items dropped: %s" % compact(it["dropped"]))
    print("  %d line(s) in the output; items received %d, accepted %d, written %d"
          % (len(items), it["received"], it["accepted"], it["written"]))
    cr = s.get("callRecords")
    if graph == "1" and cr:
        print("  call records: %d written, %d unchanged, %d coalesced (notifications of a"
              " record answered by one fetch)" % (cr.get("written", 0), cr.get("unchanged", 0),
                                                 cr.get("coalesced", 0)))
    for p in problems:
        print("  PROBLEM: " + p)
    return 1 if problems else 0


def compact(v):
    return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))


def show_status(url):
    s = status(url)

    def block(d, pad):
        keys = list(d)
        for n, k in enumerate(keys):
            v, comma = d[k], "," if n + 1 < len(keys) else ""
            if isinstance(v, dict) and len(compact(v)) > 96 - len(pad):
                print("%s%s: {" % (pad, json.dumps(k)))
                block(v, pad + "  ")
                print("%s}%s" % (pad, comma))
            else:
                print("%s%s: %s%s" % (pad, json.dumps(k), compact(v), comma))

    print("  {")
    block(s, "    ")
    print("  }")
    return 0


def prometheus(url):
    want = re.compile(r"^graph_notify_(requests_total|handshakes_total|items_(received|accepted"
                      r"|written)_total|queue_items|helper_starts_total|call_records_total"
                      r"\{outcome=\"written\"\})")
    for line in fetch(url + "?format=prometheus").decode().splitlines():
        if want.match(line):
            print("  " + line)
    return 0


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "wait-port":
        return wait_port(*args)
    if cmd == "sim-record":
        return sim_record(*args)
    if cmd == "sim-update":
        return sim_update(*args)
    if cmd == "sim-stats":
        return sim_stats(*args)
    if cmd == "vector-body":
        return vector_body(*args)
    if cmd == "settled":
        return settled(*args)
    if cmd == "show":
        return show(*args)
    if cmd == "check":
        return check(args[0], args[1], args[2], args[3], args[4], args[5:])
    if cmd == "status":
        return show_status(*args)
    if cmd == "prometheus":
        return prometheus(*args)
    print("demo.py: unknown command " + cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as exc:  # one readable line instead of a traceback
        print("demo.py %s: %s" % (sys.argv[1] if len(sys.argv) > 1 else "", exc),
              file=sys.stderr)
        sys.exit(1)
