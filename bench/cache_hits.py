#!/usr/bin/env python3
"""Cache hits: distilld vs nginx proxy_cache vs Varnish (malloc storage), side by side in
one run, taking turns A B C A B C (wrk as the client, every request a hit).

Objects: GET /bytes/1024 and /bytes/102400 from distill-origin with
`Cache-Control: public, max-age=3600`, fetched in a warm-up before measuring so every
measured request is a hit. That is checked, not assumed: after each warm-up and after each
measured run, 20 requests of a client of our own (benchlib.sample) must all be 2xx hits
(distilld `Cache-Status: distilld; hit`, nginx `X-Cache-Status: HIT`, Varnish two ids in
`X-Varnish`), and any non-2xx or socket error in wrk's runs fails the benchmark.

distilld runs its io_uring driver with its shipped defaults (cache on, 256 MiB; access log
on, to /dev/null) as `distilld`, and beside it with only the access log off as
`distilld-nolog`; nginx keeps its cache files on tmpfs; Varnish uses `-s malloc`.

With 1 worker each server is pinned to core 1 and wrk (and the origin) to core 0; with 2
workers the server may use both cores (nginx: 2 worker processes; Varnish: 2 thread pools;
distilld: 2 shards). Reported: requests/sec, p50/p99 latency, requests per second of
server CPU time (user+sys of the server's processes, /proc), and the ratios.
"""

import argparse
import sys

import benchlib as b

ORIGIN, DISTILLD, NGINX, VARNISH, DISTILLD_NOLOG = 18281, 18282, 18283, 18284, 18285
SCENARIOS = {"hit-1k": "/bytes/1024", "hit-100k": "/bytes/102400"}
# The shipped cache (256 MiB) and access log; "-nolog" turns the log off, nothing else.
CONFIGS = {"distilld": b.distilld_config(), "distilld-nolog": b.distilld_config(access_log=False)}
PORTS = {"distilld": DISTILLD, "distilld-nolog": DISTILLD_NOLOG}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scenarios", default="hit-1k,hit-100k")
    ap.add_argument("--servers", default="distilld,distilld-nolog,nginx,varnish",
                    help="comma list of distilld, distilld-nolog, nginx, varnish")
    ap.add_argument("--io", default="uring", help="distilld's driver")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("nginx", "wrk"))
    b.ensure_packages({"varnishd": "varnish"})
    core = b.SERVER_CORE if args.workers == 1 else "0,1"
    results = {"benchmark": "cache-hits", "args": vars(args)}
    with b.Servers() as s:
        s.origin(ORIGIN, ["--cache-control", "public, max-age=3600"])
        servers, hits = {}, {}
        for name in args.servers.split(","):
            if name == "nginx":
                servers[name] = (NGINX, s.nginx(NGINX, ORIGIN, workers=args.workers, core=core, cache=True))
            elif name == "varnish":
                servers[name] = (VARNISH, s.varnish(VARNISH, ORIGIN, workers=args.workers, core=core))
            elif name in CONFIGS:
                port = PORTS[name]
                pids = s.distilld(port, ORIGIN, workers=args.workers, core=core, io=args.io, config=CONFIGS[name])
                servers[name] = (port, pids)
            else:
                sys.exit(f"unknown server {name}")
            hits[name] = b.HIT[name.split("-")[0]]
        # Everything is measured (and checked) before the first table is printed.
        turns = {scenario: b.take_turns(servers, SCENARIOS[scenario], args, scenario, hits=hits)
                 for scenario in args.scenarios.split(",")}
    names = list(servers)
    # Each distilld against each later server: distilld/distilld-nolog is the log's cost.
    pairs = [(a, c) for x, a in enumerate(names) if a in CONFIGS for c in names[x + 1:]]
    b.check_runs(*(server_runs for runs in turns.values() for server_runs in runs.values()))
    b.print_settings({name: CONFIGS[name] for name in names if name in CONFIGS})
    for scenario, runs in turns.items():
        results[scenario] = b.summarize_pairs(
            f"{scenario} ({args.workers} worker{'s' if args.workers > 1 else ''})", runs, pairs)
    results["distilld_settings"] = {name: b.describe_config(CONFIGS[name]) for name in names if name in CONFIGS}
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
