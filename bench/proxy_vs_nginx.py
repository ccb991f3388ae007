#!/usr/bin/env python3
"""distilld vs nginx, side by side in one run, alternating A B A B (wrk as the client).

  proxy   both proxy GET /bytes/SIZE to the same distill-origin (nginx: proxy_pass with
          upstream keepalive; distilld: reverse proxy with its pool).
  fixed   a small fixed response with no upstream: distilld's /healthz vs nginx
          `return 200`.

The server is pinned to core 1; wrk and the origin to core 0. Reported: wrk's
requests/sec and latency, and requests per second of server CPU time (/proc).
"""

import argparse
import sys

import benchlib as b

ORIGIN, DISTILLD, NGINX = 18181, 18182, 18183


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--scenario", choices=["proxy", "fixed", "all"], default="all")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("nginx", "wrk"))
    results = {"benchmark": "proxy-vs-nginx", "args": vars(args)}
    with b.Servers() as s:
        s.origin(ORIGIN)
        dpids = s.distilld(DISTILLD, ORIGIN)
        npids = s.nginx(NGINX, ORIGIN)
        for name, path in (("proxy", f"/bytes/{args.size}"), ("fixed", "/healthz")):
            if args.scenario not in (name, "all"):
                continue

            def run(port, pids):
                url = f"http://127.0.0.1:{port}{path}"
                b.wrk(url, 1, args.connections)  # warm-up
                return b.measured(lambda: b.wrk(url, args.seconds, args.connections), pids)

            a_runs, b_runs = b.alternate(args.rounds, lambda: run(DISTILLD, dpids), lambda: run(NGINX, npids), name)
            results[name] = b.summarize(f"{name} {path}", a_runs, b_runs, "distilld", "nginx")
    b.write_json(args.json, results)


if __name__ == "__main__":
    main(sys.argv[1:])
