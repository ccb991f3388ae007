#!/usr/bin/env python3
"""distilld's io_uring driver vs its epoll driver where batching should matter most:
many connections, pipelined clients, large bodies. distill-load is the client (it can
pipeline); server pinned to core 1, client and origin to core 0; A B A B.

  conns-1000   1,000 keep-alive connections, GET /healthz
  pipeline-16  50 connections, 16 requests in flight on each, GET /healthz
  proxy-1m     20 connections, GET /bytes/1048576 proxied to distill-origin

Both drivers run with distilld's shipped defaults (access log on, to /dev/null) but
without the cache (benchlib.NO_CACHE), so proxy-1m is proxied for real. Any non-2xx
status or error counted by distill-load fails the benchmark before a table is printed.
"""

import argparse
import sys

import benchlib as b

ORIGIN, URING, EPOLL = 18211, 18212, 18213
SCENARIOS = {
    "conns-1000": ("/healthz", ["-c", "1000"]),
    "pipeline-16": ("/healthz", ["-c", "50", "--pipeline", "16"]),
    "proxy-1m": ("/bytes/1048576", ["-c", "20"]),
}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    results = {"benchmark": "uring-vs-epoll", "args": vars(args)}
    turns = {}
    with b.Servers() as s:
        s.origin(ORIGIN)
        upids = s.distilld(URING, ORIGIN, io="uring", config=b.NO_CACHE)
        epids = s.distilld(EPOLL, ORIGIN, io="epoll", config=b.NO_CACHE)
        for name in args.scenarios.split(","):
            path, extra = SCENARIOS[name]

            def run(port, pids):
                url = f"http://127.0.0.1:{port}{path}"
                what = f"{name} {'uring' if port == URING else 'epoll'}"
                return b.measured(lambda: b.distill_load(url, args.seconds, 0, extra=extra, what=what), pids)

            turns[name] = b.alternate(args.rounds, lambda: run(URING, upids), lambda: run(EPOLL, epids), name)
    # Everything is measured (and checked) before the first table is printed.
    b.check_runs(*(runs for pair in turns.values() for runs in pair))
    b.print_settings({"uring": b.NO_CACHE, "epoll": b.NO_CACHE})
    for name, (a_runs, b_runs) in turns.items():
        results[name] = b.summarize(name, a_runs, b_runs, "uring", "epoll")
    results["distilld_settings"] = b.describe_config(b.NO_CACHE)
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
