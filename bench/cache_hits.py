#!/usr/bin/env python3
"""Cache hits: distilld vs nginx proxy_cache vs Varnish (malloc storage), side by side in
one run, taking turns A B C A B C (wrk as the client, every request a hit).

Objects: GET /bytes/1024 and /bytes/102400 from distill-origin with
`Cache-Control: public, max-age=3600`, fetched once before measuring so every measured
request is a hit. distilld runs its io_uring driver with the cache on (default budget);
nginx keeps its cache files on tmpfs; Varnish uses `-s malloc`.

With 1 worker each server is pinned to core 1 and wrk (and the origin) to core 0; with 2
workers the server may use both cores (nginx: 2 worker processes; Varnish: 2 thread pools;
distilld: 2 shards). Reported: requests/sec, p50/p99 latency, requests per second of
server CPU time (user+sys of the server's processes, /proc), and the ratios.
"""

import argparse
import sys

import benchlib as b

ORIGIN, DISTILLD, NGINX, VARNISH = 18281, 18282, 18283, 18284
SCENARIOS = {"hit-1k": "/bytes/1024", "hit-100k": "/bytes/102400"}
CONFIG = """[server]
pin_workers = false
[log]
access_log = false
level = "warn"
[cache]
memory_bytes = 268435456
"""


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scenarios", default="hit-1k,hit-100k")
    ap.add_argument("--servers", default="distilld,nginx,varnish")
    ap.add_argument("--io", default="uring", help="distilld's driver")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("nginx", "wrk"))
    b.ensure_packages({"varnishd": "varnish"})
    core = b.SERVER_CORE if args.workers == 1 else "0,1"
    results = {"benchmark": "cache-hits", "args": vars(args)}
    with b.Servers() as s:
        s.origin(ORIGIN, ["--cache-control", "public, max-age=3600"])
        servers = {}
        for name in args.servers.split(","):
            if name == "nginx":
                servers[name] = (NGINX, s.nginx(NGINX, ORIGIN, workers=args.workers, core=core, cache=True))
            elif name == "varnish":
                servers[name] = (VARNISH, s.varnish(VARNISH, ORIGIN, workers=args.workers, core=core))
            elif name == "distilld":
                pids = s.distilld(DISTILLD, ORIGIN, workers=args.workers, core=core, io=args.io, config=CONFIG)
                servers[name] = (DISTILLD, pids)
            else:
                sys.exit(f"unknown server {name}")
        for scenario in args.scenarios.split(","):
            path = SCENARIOS[scenario]
            runs = b.take_turns(servers, path, args, scenario)
            names = list(servers)
            results[scenario] = b.summarize_pairs(
                f"{scenario} ({args.workers} worker{'s' if args.workers > 1 else ''})", runs,
                [(names[0], c) for c in names[1:]])
    b.write_json(args.json, results)


if __name__ == "__main__":
    main(sys.argv[1:])
