#!/usr/bin/env python3
"""distilld vs nginx, side by side in one run, alternating A B A B.

Scenarios:
  proxy   both proxy GET /bytes/SIZE to the same distill-origin (nginx: proxy_pass with
          upstream keepalive; distilld: reverse proxy with its pool).
  fixed   both answer a small fixed response with no upstream (distilld's /healthz vs
          nginx `return 200`).

On this 2-core machine the server is pinned to core 1 and wrk (and the origin) to core 0.
For each run we report wrk's requests/sec and latency, and requests per second of
*server CPU time* (user+sys of the server's processes, read from /proc before and after),
which compares servers honestly when the load generator saturates first.

Usage: bench/proxy_vs_nginx.py [--rounds 3] [--seconds 8] [--connections 50]
                               [--size 1024] [--scenario proxy|fixed|all] [--json FILE]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
ORIGIN_PORT = 18181
DISTILLD_PORT = 18182
NGINX_PORT = 18183
SERVER_CORE = "1"
LOAD_CORE = "0"


def ensure_tools():
    missing = [p for p, b in (("nginx", "nginx"), ("wrk", "wrk")) if not shutil.which(b)]
    if missing:
        print(f"installing {' '.join(missing)} from Debian's packages", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (whole process)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total


def wait_port(port, timeout=10.0):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def start_origin():
    exe = os.path.join(ROOT, "target/release/distill-origin")
    p = subprocess.Popen(["taskset", "-c", LOAD_CORE, exe, "--listen", f"127.0.0.1:{ORIGIN_PORT}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(ORIGIN_PORT)
    return p


def start_distilld(tmp):
    cfg = os.path.join(tmp, "distilld.toml")
    with open(cfg, "w") as f:
        f.write("[server]\npin_workers = false\n[log]\naccess_log = false\nlevel = \"warn\"\n")
    exe = os.path.join(ROOT, "target/release/distilld")
    p = subprocess.Popen(["taskset", "-c", SERVER_CORE, exe, "run", "--config", cfg,
                          "--listen", f"127.0.0.1:{DISTILLD_PORT}", "--workers", "1",
                          "--origin", f"http://127.0.0.1:{ORIGIN_PORT}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(DISTILLD_PORT)
    return p, [p.pid]


def start_nginx(tmp):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
worker_cpu_affinity {1 << int(SERVER_CORE):b};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream origin {{ server 127.0.0.1:{ORIGIN_PORT}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{NGINX_PORT} reuseport;
    location = /healthz {{ default_type text/plain; return 200 "ok\\n"; }}
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }}
  }}
}}
""")
    p = subprocess.Popen(["taskset", "-c", SERVER_CORE, "nginx", "-c", conf, "-p", tmp],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(NGINX_PORT)
    time.sleep(0.2)
    kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    return p, [p.pid, *map(int, kids)]


def parse_wrk(out):
    def dur(s):
        m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
        v, u = float(m.group(1)), m.group(2)
        return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[u]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = dur(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = dur(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return rps, total, p50, p99, (int(errors.group(1)) if errors else 0), (sock.group(1) if sock else "")


def run_wrk(port, path, args, pids):
    url = f"http://127.0.0.1:{port}{path}"
    # warm-up so pools and caches are in steady state
    subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{args.connections}", "-d1s", url],
                   capture_output=True, check=True)
    before = cpu_ticks(pids)
    out = subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{args.connections}",
                          f"-d{args.seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    cpu = (cpu_ticks(pids) - before) / CLK_TCK
    rps, total, p50, p99, non2xx, sockerr = parse_wrk(out)
    if non2xx or sockerr:
        print(f"  warning: {non2xx} non-2xx, socket errors: {sockerr}", file=sys.stderr)
    return {"rps": rps, "requests": total, "cpu_s": cpu, "rps_per_cpu": total / cpu if cpu else 0.0,
            "p50_ms": p50, "p99_ms": p99}


def summarize(name, a_runs, b_runs, a_name, b_name):
    rows = []
    for metric in ("rps", "rps_per_cpu", "p50_ms", "p99_ms"):
        a = [r[metric] for r in a_runs]
        b = [r[metric] for r in b_runs]
        ratios = [x / y if y else 0 for x, y in zip(a, b)]
        rows.append((metric, statistics.median(a), statistics.median(b), statistics.median(ratios),
                     min(ratios), max(ratios)))
    print(f"\n== {name}: {a_name} vs {b_name} ({len(a_runs)} pairs, A B A B) ==")
    print(f"{'metric':<12} {a_name:>14} {b_name:>14} {'ratio':>7} {'min':>7} {'max':>7}")
    for m, a, b, r, lo, hi in rows:
        print(f"{m:<12} {a:>14.1f} {b:>14.1f} {r:>7.3f} {lo:>7.3f} {hi:>7.3f}")
    return {m: {"a": a, "b": b, "ratio": r, "min": lo, "max": hi} for m, a, b, r, lo, hi in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--scenario", choices=["proxy", "fixed", "all"], default="all")
    ap.add_argument("--json")
    args = ap.parse_args()
    ensure_tools()
    tmp = tempfile.mkdtemp(prefix="distilld-bench-")
    procs = []
    results = {"machine": os.uname().release, "cpus": os.cpu_count(), "args": vars(args)}
    try:
        origin = start_origin()
        procs.append(origin)
        dp, dpids = start_distilld(tmp)
        procs.append(dp)
        np_, npids = start_nginx(tmp)
        procs.append(np_)
        scenarios = {"proxy": f"/bytes/{args.size}", "fixed": "/healthz"}
        for name, path in scenarios.items():
            if args.scenario not in (name, "all"):
                continue
            a_runs, b_runs = [], []
            for i in range(args.rounds):
                a_runs.append(run_wrk(DISTILLD_PORT, path, args, dpids))
                b_runs.append(run_wrk(NGINX_PORT, path, args, npids))
                print(f"  {name} pair {i + 1}: distilld {a_runs[-1]['rps']:.0f} rps "
                      f"({a_runs[-1]['rps_per_cpu']:.0f}/cpu-s), nginx {b_runs[-1]['rps']:.0f} rps "
                      f"({b_runs[-1]['rps_per_cpu']:.0f}/cpu-s)", file=sys.stderr)
            results[name] = {"distilld": a_runs, "nginx": b_runs,
                             "summary": summarize(f"{name} {path}", a_runs, b_runs, "distilld", "nginx")}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
