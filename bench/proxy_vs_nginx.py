#!/usr/bin/env python3
"""distilld (io_uring and epoll drivers) vs nginx, side by side in one run, taking turns
A B C A B C (wrk as the client).

Scenarios:
  fixed      a small fixed response with no upstream: distilld's /healthz vs nginx
             `return 200`
  proxy-1k   GET /bytes/1024 proxied to the same distill-origin (nginx: proxy_pass with
             upstream keepalive; distilld: reverse proxy with its pool); neither caches
  proxy-100k GET /bytes/102400, likewise

With 1 worker the server is pinned to core 1 and wrk (and the origin) to core 0; with 2
workers the server may use both cores. Reported: requests/sec, p50/p99 latency, and
requests per second of server CPU time (user+sys of the server's processes, /proc).
"""

import argparse
import sys

import benchlib as b

ORIGIN, URING, EPOLL, NGINX, URING_FD = 18181, 18182, 18184, 18183, 18185
SCENARIOS = {"fixed": "/healthz", "proxy-1k": "/bytes/1024", "proxy-100k": "/bytes/102400"}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scenarios", default="fixed,proxy-1k,proxy-100k")
    ap.add_argument("--servers", default="uring,epoll,nginx",
                    help="comma list of uring, epoll, nginx, uring-fd (io_uring naming sockets by "
                         "descriptor instead of registered files), compared in this order")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("nginx", "wrk"))
    core = b.SERVER_CORE if args.workers == 1 else "0,1"
    results = {"benchmark": "proxy-vs-nginx", "args": vars(args)}
    with b.Servers() as s:
        s.origin(ORIGIN)
        servers = {}
        for name in args.servers.split(","):
            if name == "nginx":
                servers[name] = (NGINX, s.nginx(NGINX, ORIGIN, workers=args.workers, core=core))
            elif name in ("uring", "epoll"):
                port = URING if name == "uring" else EPOLL
                pids = s.distilld(port, ORIGIN, workers=args.workers, core=core, io=name, config=b.NO_CACHE)
                servers[name] = (port, pids)
            elif name == "uring-fd":
                config = b.NO_CACHE + "[uring]\nfixed_files = 0\n"
                servers[name] = (URING_FD, s.distilld(URING_FD, ORIGIN, workers=args.workers, core=core,
                                                      io="uring", config=config))
            else:
                sys.exit(f"unknown server {name}")
        for scenario in args.scenarios.split(","):
            path = SCENARIOS[scenario]
            runs = b.take_turns(servers, path, args, scenario)
            names = list(servers)
            pairs = [(a, c) for x, a in enumerate(names) for c in names[x + 1:]]
            results[scenario] = b.summarize_pairs(
                f"{scenario} ({args.workers} worker{'s' if args.workers > 1 else ''})", runs, pairs)
    b.write_json(args.json, results)


if __name__ == "__main__":
    main(sys.argv[1:])
