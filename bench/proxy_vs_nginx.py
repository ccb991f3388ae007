#!/usr/bin/env python3
"""distilld (io_uring and epoll drivers) vs nginx, side by side in one run, taking turns
A B C A B C (wrk as the client).

Scenarios:
  fixed      a small fixed response with no upstream: distilld's /healthz vs nginx
             `return 200`
  proxy-1k   GET /bytes/1024 proxied to the same distill-origin (nginx: proxy_pass with
             upstream keepalive; distilld: reverse proxy with its pool); neither caches
  proxy-100k GET /bytes/102400, likewise

distilld runs with its shipped defaults (access log on, to /dev/null) but without its
cache (benchlib.NO_CACHE: nginx here has none); `uring-nolog` (and any NAME-nolog) is the
same with only the access log off, side by side. Every wrk run is checked (any non-2xx or
socket error fails the benchmark), and 20 requests before and after each must be 2xx.

With 1 worker the server is pinned to core 1 and wrk (and the origin) to core 0; with 2
workers the server may use both cores. Reported: requests/sec, p50/p99 latency, and
requests per second of server CPU time (user+sys of the server's processes, /proc).
"""

import argparse
import sys

import benchlib as b

ORIGIN, URING, EPOLL, NGINX, URING_FD = 18181, 18182, 18184, 18183, 18185
PORTS = {"uring": URING, "epoll": EPOLL, "uring-fd": URING_FD}
NOLOG_PORT_OFFSET = 10  # uring-nolog on 18192, ...
SCENARIOS = {"fixed": "/healthz", "proxy-1k": "/bytes/1024", "proxy-100k": "/bytes/102400"}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scenarios", default="fixed,proxy-1k,proxy-100k")
    ap.add_argument("--servers", default="uring,uring-nolog,epoll,nginx",
                    help="comma list of uring, epoll, nginx, uring-fd (io_uring naming sockets by "
                         "descriptor instead of registered files), compared in this order; a distilld "
                         "name with -nolog appended runs with its access log off")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("nginx", "wrk"))
    core = b.SERVER_CORE if args.workers == 1 else "0,1"
    results = {"benchmark": "proxy-vs-nginx", "args": vars(args)}
    with b.Servers() as s:
        s.origin(ORIGIN)
        servers, configs = {}, {}
        for name in args.servers.split(","):
            base, nolog = name.removesuffix("-nolog"), name.endswith("-nolog")
            if name == "nginx":
                servers[name] = (NGINX, s.nginx(NGINX, ORIGIN, workers=args.workers, core=core))
            elif base in PORTS:
                extra = {"uring": {"fixed_files": 0}} if base == "uring-fd" else {}
                configs[name] = b.distilld_config(access_log=not nolog, cache={"memory_bytes": 0}, **extra)
                port = PORTS[base] + (NOLOG_PORT_OFFSET if nolog else 0)
                pids = s.distilld(port, ORIGIN, workers=args.workers, core=core, io=base.removesuffix("-fd"),
                                  config=configs[name])
                servers[name] = (port, pids)
            else:
                sys.exit(f"unknown server {name}")
        # Everything is measured (and checked) before the first table is printed.
        turns = {scenario: b.take_turns(servers, SCENARIOS[scenario], args, scenario)
                 for scenario in args.scenarios.split(",")}
    names = list(servers)
    pairs = [(a, c) for x, a in enumerate(names) for c in names[x + 1:]]
    b.check_runs(*(server_runs for runs in turns.values() for server_runs in runs.values()))
    b.print_settings(configs)
    for scenario, runs in turns.items():
        results[scenario] = b.summarize_pairs(
            f"{scenario} ({args.workers} worker{'s' if args.workers > 1 else ''})", runs, pairs)
    results["distilld_settings"] = {name: b.describe_config(c) for name, c in configs.items()}
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
