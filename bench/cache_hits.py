#!/usr/bin/env python3
"""Cache hits: distilld vs nginx proxy_cache vs Varnish (malloc storage), side by side in
one run, taking turns A B C ... (wrk as the client, every request a hit), in two settings:
access logs off on every server, and on for every server as operators run them.

Servers (each its own process, all started before the first turn):
  distilld-nolog  distilld, shipped defaults but the access log off
  nginx           proxy_cache (files on tmpfs), access_log off
  varnish         -s malloc, no log reader
  distilld        distilld, shipped defaults (access log on, to /dev/null)
  nginx-log       as nginx, with `access_log /dev/null combined buffer=64k`
  varnish-log     as varnish, with varnishncsa running (-w /dev/null), its CPU counted

Scenarios:
  hit-1k, hit-100k  GET /bytes/1024 and /bytes/102400 from distill-origin with
                    `Cache-Control: public, max-age=3600`, fetched in a warm-up before
                    measuring. Checked, not assumed: after each warm-up and after each
                    measured run, 20 requests of a client of our own (benchlib.sample)
                    must all be 2xx hits (distilld `Cache-Status: distilld; hit`, nginx
                    `X-Cache-Status: HIT`, Varnish two ids in `X-Varnish`), and any
                    non-2xx or socket error in wrk's runs fails the benchmark.
  healthz           a fixed response: distilld's /healthz vs nginx `return 200` (Varnish
                    is not measured here).
  proxy-1k          no cache (distilld cache.memory_bytes = 0, nginx without
                    proxy_cache): the same open-loop load (distill-load --rate) on each,
                    and user-space CPU per request (perf record, cpu-clock:u samples over
                    the load's window), as the kernel's loopback TCP work dominates both
                    servers' system time.

With 1 worker each server is pinned to core 1 and wrk (and the origin) to core 0; with 2
workers the server may use both cores (nginx: 2 worker processes; Varnish: 2 thread pools;
distilld: 2 shards). Reported: requests/sec, p50/p99 latency, requests per second of
server CPU time (user+sys of the server's processes and threads, /proc), and the ratios
of each distilld against the peers in its own log setting.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib as b

ORIGIN = 18281
PORTS = {"distilld": 18282, "nginx-log": 18283, "varnish-log": 18284, "distilld-nolog": 18285,
         "nginx": 18286, "varnish": 18287, "distilld-proxy": 18288, "nginx-proxy": 18289}
SCENARIOS = {"hit-1k": "/bytes/1024", "hit-100k": "/bytes/102400", "healthz": "/healthz"}
# The shipped cache (256 MiB) and access log; "-nolog" turns the log off, nothing else.
CONFIGS = {"distilld": b.distilld_config(), "distilld-nolog": b.distilld_config(access_log=False),
           "distilld-proxy": b.NO_CACHE}
# Who is compared with whom: the same log setting on both sides.
PAIRS = [("distilld-nolog", "nginx"), ("distilld-nolog", "varnish"),
         ("distilld", "nginx-log"), ("distilld", "varnish-log"), ("distilld", "distilld-nolog")]
HIT_SERVERS = ["distilld-nolog", "nginx", "varnish", "distilld", "nginx-log", "varnish-log"]


def start(s, name, args, core):
    port = PORTS[name]
    if name.startswith("nginx"):
        return port, s.nginx(port, ORIGIN, workers=args.workers, core=core, cache=name != "nginx-proxy",
                             access_log=name == "nginx-log")
    if name.startswith("varnish"):
        return port, s.varnish(port, ORIGIN, workers=args.workers, core=core, ncsa=name == "varnish-log")
    return port, s.distilld(port, ORIGIN, workers=args.workers, core=core, io=args.io, config=CONFIGS[name])


def perf_user_seconds(pids, seconds):
    """Starts sampling `pids` in user mode only (perf record, cpu-clock:u, one sample per
    0.1 ms of CPU) for `seconds`; the returned function waits and gives the user-space
    CPU seconds seen. (This machine's perf has no hardware counters, and /proc's
    utime, sampled at 100 Hz, misfiles io_uring work done in the task's context.)"""
    fd, out = tempfile.mkstemp(prefix="perf-user-", suffix=".data")
    os.close(fd)
    p = subprocess.Popen(["perf", "record", "-q", "-o", out, "-e", "cpu-clock:u", "-c", "100000",
                          "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def done():
        if p.wait(timeout=seconds + 30) != 0:
            raise b.BadRun(f"perf record exited with status {p.returncode}")
        script = subprocess.run(["perf", "script", "-i", out, "-F", "ip"], capture_output=True, text=True)
        os.unlink(out)
        if script.returncode != 0:
            raise b.BadRun(f"perf script failed: {script.stderr.strip()[-300:]}")
        return len(script.stdout.splitlines()) * 100e-6
    return done


def proxy_turns(servers, args):
    """proxy-1k: the same open-loop rate on each server in turn; user-space CPU per
    request (perf, over the load's window) and all CPU per request (/proc)."""
    runs = {name: [] for name in servers}
    for i in range(args.rounds):
        for name, (port, pids) in servers.items():
            url = f"http://127.0.0.1:{port}/bytes/1024"
            what = f"proxy-1k round {i + 1} {name}"
            b.sample(port, "/bytes/1024", what=f"{what} before")
            t0 = b.cpu_ticks(pids)
            user = perf_user_seconds(pids, args.seconds)
            r = b.distill_load(url, args.seconds, 50, extra=["--rate", str(args.proxy_rate)], what=what)
            user_s, cpu = user(), (b.cpu_ticks(pids) - t0) / b.CLK_TCK
            r.update(server_cpu_s=cpu, rps_per_cpu=r["requests"] / cpu if cpu else 0.0,
                     user_us_per_req=user_s * 1e6 / r["requests"], cpu_us_per_req=cpu * 1e6 / r["requests"])
            runs[name].append(r)
            print(f"  {what}: {r['rps']:.0f} rps, user {r['user_us_per_req']:.2f} us/req, "
                  f"all {r['cpu_us_per_req']:.2f} us/req", file=sys.stderr)
    return runs


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scenarios", default="hit-1k,hit-100k,healthz,proxy-1k")
    ap.add_argument("--logs", default="both", choices=("off", "on", "both"),
                    help="which log setting to measure (hit scenarios)")
    ap.add_argument("--proxy-rate", type=int, default=20000, help="requests/s for proxy-1k, on every server")
    ap.add_argument("--io", default="uring", help="distilld's driver")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("nginx", "wrk"))
    b.ensure_packages({"varnishd": "varnish", "varnishncsa": "varnish"})
    core = b.SERVER_CORE if args.workers == 1 else "0,1"
    scenarios = args.scenarios.split(",")
    wanted = {"off": ("distilld-nolog", "nginx", "varnish"), "on": ("distilld", "nginx-log", "varnish-log")}
    hit_servers = [n for n in HIT_SERVERS if args.logs == "both" or n in wanted[args.logs]]
    pairs = [p for p in PAIRS if p[0] in hit_servers and p[1] in hit_servers]
    results = {"benchmark": "cache-hits", "args": vars(args)}
    with b.Servers() as s:
        s.origin(ORIGIN, ["--cache-control", "public, max-age=3600"])
        servers = {name: start(s, name, args, core) for name in hit_servers}
        hits = {name: b.HIT[name.split("-")[0]] for name in hit_servers}
        turns = {}
        # Everything is measured (and checked) before the first table is printed.
        for scenario in scenarios:
            if scenario == "healthz":
                fixed = {n: v for n, v in servers.items() if not n.startswith("varnish")}
                turns[scenario] = b.take_turns(fixed, SCENARIOS[scenario], args, scenario)
            elif scenario in SCENARIOS:
                turns[scenario] = b.take_turns(servers, SCENARIOS[scenario], args, scenario, hits=hits)
        proxy = None
        if "proxy-1k" in scenarios:
            proxied = {name: start(s, name, args, core) for name in ("distilld-proxy", "nginx-proxy")}
            proxy = proxy_turns(proxied, args)
    b.check_runs(*(server_runs for runs in turns.values() for server_runs in runs.values()))
    if proxy:
        b.check_runs(*proxy.values())
    b.print_settings({name: CONFIGS[name] for name in list(servers) + ["distilld-proxy"] if name in CONFIGS})
    title = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    for scenario, runs in turns.items():
        these = [p for p in pairs if p[0] in runs and p[1] in runs]
        results[scenario] = b.summarize_pairs(f"{scenario} ({title})", runs, these)
    if proxy:
        results["proxy-1k"] = b.summarize(f"proxy-1k ({title}, {args.proxy_rate}/s each)",
                                          proxy["distilld-proxy"], proxy["nginx-proxy"], "distilld", "nginx",
                                          metrics=("rps", "user_us_per_req", "cpu_us_per_req", "p50_ms", "p99_ms"))
        med = statistics.median(r["user_us_per_req"] for r in proxy["distilld-proxy"])
        print(f"proxy-1k: distilld user-space CPU {med:.2f} us per request (target <= 1.0)")
    results["distilld_settings"] = {name: b.describe_config(c) for name, c in CONFIGS.items()}
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
