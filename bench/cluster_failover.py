#!/usr/bin/env python3
"""Failover under load: three nodes of one cluster (127.0.0.1, three ports, SWIM gossip
with a secret); distill-load (20 keep-alive connections) asks 60 URLs round robin through
node a while node c is killed (SIGKILL) — and, in a second run, frozen (SIGSTOP: it keeps
accepting connections but never answers). Reported: client-visible errors (any non-2xx,
connect, timeout, read or parse error counted by distill-load) and, from a prober that
asks one of c's URLs through a every 20 ms, how long after the event its answers took and
when the first one came back fast (under 50 ms) for good: the time to full service; and
the slowest answer distill-load saw (the requests a frozen owner held).
"""

import argparse
import os
import signal
import sys
import threading
import time
import urllib.request

import benchlib as b

ORIGIN = 19291
PORTS = {"a": 19292, "b": 19293, "c": 19294}


def config(me, secret):
    nodes = "".join(f'[[cluster.nodes]]\nid = "{i}"\nhttp = "127.0.0.1:{p}"\ngossip = "127.0.0.1:{p}"\n'
                    for i, p in PORTS.items())
    return b.distilld_config() + f'[cluster]\nnode = "{me}"\nsecret_file = "{secret}"\n' + nodes


def owner(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['a']}{path}", timeout=5) as r:
        status = " ".join(r.headers.get_all("Cache-Status") or [])
    return status.split("detail=owner-")[1].split()[0] if "detail=owner-" in status else "a"


class Prober(b.Background):
    """Asks `path` through a every 20 ms; keeps (sent, latency or None)."""

    def __init__(self, path):
        super().__init__()
        self.path, self.samples = path, []

    def run(self):
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['a']}{self.path}", timeout=10) as r:
                    r.read()
                    ok = 200 <= r.status < 300
            except OSError:
                ok = False
            self.samples.append((sent, time.monotonic() - sent if ok else None))
            time.sleep(0.02)



def recovery(samples, at):
    """Seconds after `at` until answers stay under 50 ms; the slowest answer after it.
    A request in flight at `at` counts (it is the one a frozen owner holds)."""
    after = [(t, lat) for t, lat in samples if t + (lat or 0) >= at]
    failed = sum(1 for _, lat in after if lat is None)
    slow_until = at
    for t, lat in after:
        if lat is None or lat > 0.05:
            slow_until = t + (lat or 0)
    worst = max((lat for _, lat in after if lat is not None), default=0.0)
    return slow_until - at, worst, failed


def one_run(event, args, tmp):
    secret = os.path.join(tmp, "cluster.key")
    with open(secret, "w") as f:
        f.write("a benchmark cluster's secret\n")
    with b.Servers() as s:
        s.origin(ORIGIN)
        pids = {n: s.distilld(p, ORIGIN, config=config(n, secret))[0] for n, p in PORTS.items()}
        time.sleep(1.5)  # membership forms
        paths = [f"/bytes/2048?f={k}" for k in range(60)]
        c_paths = [p for p in paths if owner(p) == "c"]
        if not c_paths:
            raise b.BadRun("no URL of 60 is owned by c")
        urls = os.path.join(tmp, f"urls-{event}.txt")
        with open(urls, "w") as f:
            f.writelines(f"http://127.0.0.1:{PORTS['a']}{p}\n" for p in paths)
        done = {}

        def load():
            done["report"] = b.distill_load_report(["-c", "20", "-d", str(args.seconds), "--timeout", "10",
                                                    "--urls", urls])

        with Prober(c_paths[0]) as prober:
            t = threading.Thread(target=load)
            t.start()
            time.sleep(args.seconds / 3)
            at = time.monotonic()
            os.kill(pids["c"], signal.SIGKILL if event == "kill" else signal.SIGSTOP)
            t.join()
        if event == "freeze":
            os.kill(pids["c"], signal.SIGCONT)
        report = done["report"]
        parsed = b.parse_distill_load(report)
        errors = sum(parsed["errors"].values()) + parsed["non_2xx"]
        took, worst, failed = recovery(prober.samples, at)
        return {"event": event, "requests": parsed["requests"], "client_errors": errors,
                "load_max_s": report["latency_ms"]["max"] / 1000,
                "prober_failures": failed, "time_to_full_service_s": took, "worst_answer_s": worst}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=9)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    import tempfile
    tmp = tempfile.mkdtemp(prefix="distilld-failover-")
    runs = [one_run(e, args, tmp) for e in ("kill", "freeze")]
    print(f"{'event':<8} {'requests':>9} {'client errors':>14} {'prober failures':>16} "
          f"{'time to full service':>21} {'worst answer':>13} {'load max':>9}")
    for r in runs:
        print(f"{r['event']:<8} {r['requests']:>9} {r['client_errors']:>14} {r['prober_failures']:>16} "
              f"{r['time_to_full_service_s']:>20.2f}s {r['worst_answer_s']:>12.2f}s {r['load_max_s']:>8.2f}s")
    b.write_json(args.json, {"benchmark": "cluster-failover", "args": vars(args), "runs": runs})


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
