#!/usr/bin/env python3
"""distill-load vs wrk: can the bundled load generator drive a server at least as hard?

Both hit the same nginx (`return 200`, or a proxied 1 KiB body) with the same
connections and threads, A B A B. The load generator is pinned to core 0 and nginx to
core 1. Reported: requests/sec achieved, and requests per second of the load
generator's own CPU time (client_rps_per_cpu, from getrusage of the waited child): when
nginx saturates first, that is the figure that tells which generator is cheaper.
No distilld here. Any non-2xx or socket error in either generator's run fails the
benchmark before the table is printed.
"""

import argparse
import sys

import benchlib as b

NGINX = 18193


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("nginx", "wrk"))
    results = {"benchmark": "load-vs-wrk", "args": vars(args)}
    with b.Servers() as s:
        npids = s.nginx(NGINX)
        url = f"http://127.0.0.1:{NGINX}/healthz"
        b.wrk(url, 1, args.connections)  # warm-up
        a_runs, b_runs = b.alternate(
            args.rounds,
            lambda: b.measured(lambda: b.distill_load(url, args.seconds, args.connections, args.threads), npids),
            lambda: b.measured(lambda: b.wrk(url, args.seconds, args.connections, args.threads), npids),
            "load")
        results["fixed"] = b.summarize("nginx return 200", a_runs, b_runs, "distill-load", "wrk",
                                       metrics=("rps", "client_rps_per_cpu", "p50_ms", "p99_ms"))
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
