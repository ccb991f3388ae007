#!/usr/bin/env python3
"""How evenly do connections and CPU split over shards? distilld with 2 workers (one
pinned per core, SO_REUSEPORT listeners), 1,000 keep-alive connections from
distill-load, for each driver. Reads each shard's open connections and requests from its
periodic stats line, and each shard thread's CPU time from /proc.

distilld runs with its shipped defaults (pin_workers, access log on: into the same log
file as the stats lines) plus `log.stats_interval_ms = 500`. A non-2xx status or an error
counted by distill-load fails the benchmark before its table.
"""

import argparse
import os
import re
import sys
import time

import benchlib as b

PORT = 18201
# Shipped defaults (pin_workers = true among them: one shard per core) and the stats lines.
CONFIG = b.distilld_config(server={"pin_workers": True}, log={"stats_interval_ms": 500})


def shard_lines(log):
    rows = {}
    with open(log) as f:
        for line in f:
            if "shard stats" not in line:
                continue
            fields = dict(re.findall(r"(\w+)=(\S+)", line))
            rows.setdefault(int(fields["shard"]), []).append(fields)
    return rows


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--drivers", default="uring,epoll")
    args = ap.parse_args(argv)
    b.ensure(())
    tables = []
    for driver in args.drivers.split(","):
        with b.Servers() as s:
            log = os.path.join(s.tmp, f"distilld-{driver}.log")
            pid = s.distilld(PORT, workers=2, config=CONFIG, core="0,1", io=driver, log=log)[0]
            before = b.thread_ticks(pid, "shard-")
            b.distill_load(f"http://127.0.0.1:{PORT}/healthz", args.seconds, args.connections, threads=1,
                           core=None, what=f"{driver}: {args.connections} connections")
            after = b.thread_ticks(pid, "shard-")
            time.sleep(0.6)
            rows = shard_lines(log)
        cpu = {k: after[k] - before.get(k, 0) for k in after}
        total_cpu = sum(cpu.values()) or 1
        peak = {sh: max(int(r["clients_open"]) for r in rs) for sh, rs in rows.items()}
        reqs = {sh: int(rs[-1]["requests"]) for sh, rs in rows.items()}
        total_conn = sum(peak.values()) or 1
        total_req = sum(reqs.values()) or 1
        lines = [f"{sh:<8} {100 * peak[sh] / total_conn:>11.1f}% {100 * reqs[sh] / total_req:>11.1f}% "
                 f"{100 * cpu.get(f'shard-{sh}', 0) / total_cpu:>7.1f}%" for sh in sorted(rows)]
        tables.append((driver, lines))
    # Printed once every driver's run has passed its check.
    print(f"distilld: {b.describe_config(CONFIG, log_to='a file')}")
    for driver, lines in tables:
        print(f"\n== {driver}: {args.connections} connections on 2 shards ==")
        print(f"{'shard':<8} {'connections':>12} {'requests':>12} {'cpu':>8}")
        print("\n".join(lines))


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
