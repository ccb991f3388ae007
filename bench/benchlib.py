"""Shared parts of distilld's benchmarks: build, install peers, start servers pinned to a
core, run load (wrk or distill-load) while reading the server's CPU time from /proc,
alternate A B A B, and print medians, min-max and ratios. Every benchmark plugs in here.
"""

import json
import os
import resource
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE = "1"
LOAD_CORE = "0"
CORPUS = os.path.join(ROOT, "..", "shared", "corpus")


def release_bin(name):
    return os.path.join(ROOT, "target", "release", name)


def ensure(packages=("nginx", "wrk")):
    """Installs missing Debian packages (binary name == package name here) and builds."""
    missing = [p for p in packages if not shutil.which(p)]
    if missing:
        print(f"installing {' '.join(missing)} from Debian's packages", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)


def ensure_packages(binaries):
    """Installs Debian packages for missing binaries: {binary: package}."""
    missing = [pkg for binary, pkg in binaries.items() if not shutil.which(binary)]
    if missing:
        print(f"installing {' '.join(missing)} from Debian's packages", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def cpu_ticks(pids):
    """user+sys clock ticks of whole processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


# distilld proxying every request: the origin's /bytes responses are cacheable
# (max-age=60), and with its cache on distilld would answer them from memory while a
# peer without a cache configured proxies each one.
NO_CACHE = """[server]
pin_workers = false
[log]
access_log = false
level = "warn"
[cache]
memory_bytes = 0
"""


class Servers:
    """Processes started for one benchmark, stopped together."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="distilld-bench-")
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()

    def start(self, argv, port, core, stderr=None):
        p = subprocess.Popen(["taskset", "-c", core, *argv],
                             stdout=subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL)
        self.procs.append(p)
        wait_port(port)
        return p

    def origin(self, port, extra=()):
        return self.start([release_bin("distill-origin"), "--listen", f"127.0.0.1:{port}",
                           "--root", CORPUS, *extra], port, LOAD_CORE)

    def distilld(self, port, origin_port=None, workers=1, config="", core=SERVER_CORE, io="auto", log=None):
        cfg = os.path.join(self.tmp, f"distilld-{port}.toml")
        with open(cfg, "w") as f:
            f.write(config or "[server]\npin_workers = false\n[log]\naccess_log = false\nlevel = \"warn\"\n")
        argv = [release_bin("distilld"), "run", "--config", cfg, "--listen", f"127.0.0.1:{port}",
                "--workers", str(workers), "--io", io]
        if origin_port:
            argv += ["--origin", f"http://127.0.0.1:{origin_port}"]
        p = self.start(argv, port, core, stderr=open(log, "w") if log else None)
        return [p.pid]

    def nginx(self, port, origin_port=None, workers=1, core=SERVER_CORE, cache=False):
        conf = os.path.join(self.tmp, f"nginx-{port}.conf")
        upstream = f"upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}" if origin_port else ""
        if cache:
            # In memory like the others: the cache files live on tmpfs (/dev/shm).
            cache_dir = tempfile.mkdtemp(prefix="nginx-cache-", dir="/dev/shm")
            upstream += (f"\n  proxy_cache_path {cache_dir} levels=1:2 keys_zone=c:64m max_size=1g "
                         "inactive=1h use_temp_path=off;")
        caching = "proxy_cache c; proxy_cache_valid 200 1h;" if cache else ""
        proxy = f"""location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {caching}
    }}""" if origin_port else ""
        affinity = "" if workers > 1 else f"worker_cpu_affinity {1 << int(core):b};"
        with open(conf, "w") as f:
            f.write(f"""
worker_processes {workers};
{affinity}
daemon off;
master_process on;
pid {self.tmp}/nginx-{port}.pid;
error_log {self.tmp}/nginx-{port}-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  {upstream}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location = /healthz {{ default_type text/plain; return 200 "ok\\n"; }}
    {proxy}
  }}
}}
""")
        p = self.start(["nginx", "-c", conf, "-p", self.tmp], port, core)
        time.sleep(0.2)
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        return [p.pid, *map(int, kids)]


    def varnish(self, port, origin_port, workers=1, core=SERVER_CORE, memory="256m"):
        """varnishd in the foreground with malloc storage; one thread pool per worker."""
        workdir = os.path.join(self.tmp, f"varnish-{port}")
        argv = ["varnishd", "-F", "-n", workdir, "-a", f"127.0.0.1:{port}",
                "-b", f"127.0.0.1:{origin_port}", "-s", f"malloc,{memory}",
                "-p", f"thread_pools={workers}", "-p", "thread_pool_min=50"]
        p = self.start(argv, port, core)
        time.sleep(0.5)
        out = subprocess.run(["pgrep", "-f", f"varnish-{port}"], capture_output=True, text=True).stdout.split()
        return sorted({p.pid, *map(int, out)})


def _ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    v, u = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[u]


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def with_client_cpu(r, before):
    """Adds the load generator's own CPU time (it is a waited-for child)."""
    cpu = children_cpu_s() - before
    r["client_cpu_s"] = cpu
    r["client_rps_per_cpu"] = r["requests"] / cpu if cpu else 0.0
    return r


def wrk(url, seconds, connections, threads=1, core=LOAD_CORE):
    before = children_cpu_s()
    out = subprocess.run(["taskset", "-c", core, "wrk", f"-t{threads}", f"-c{connections}",
                          f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    if non2xx or sock:
        print(f"  warning: wrk saw {non2xx.group(1) if non2xx else 0} non-2xx, "
              f"socket errors: {sock.group(1) if sock else '-'}", file=sys.stderr)
    return with_client_cpu({
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
    }, before)


def distill_load(url, seconds, connections, threads=1, core=LOAD_CORE, extra=()):
    out_json = tempfile.mktemp(prefix="distill-load-", suffix=".json")
    before = children_cpu_s()
    conns = [f"-c{connections}"] if connections else []
    subprocess.run([release_bin("distill-load"), f"-t{threads}", *conns, f"-d{seconds}",
                    "--cores", core, "--json", out_json, *extra, url],
                   capture_output=True, text=True, check=True)
    with open(out_json) as f:
        r = json.load(f)
    os.unlink(out_json)
    if sum(r["errors"].values()) or any(k[0] != "2" for k in r["status"]):
        print(f"  warning: distill-load saw errors {r['errors']} statuses {r['status']}", file=sys.stderr)
    return with_client_cpu({"rps": r["requests_per_sec"], "requests": r["requests"],
                            "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"]}, before)


def measured(run, pids, client_pid_hint=None):
    """Runs `run()` (a load run) and adds CPU seconds of `pids` and requests per CPU-second."""
    before = cpu_ticks(pids)
    r = run()
    cpu = (cpu_ticks(pids) - before) / CLK_TCK
    r["server_cpu_s"] = cpu
    r["rps_per_cpu"] = r["requests"] / cpu if cpu else 0.0
    return r


def take_turns(servers, path, args, label):
    """Rounds of A B C ... with wrk: each server {name: (port, pids)} gets a 1 s warm-up
    and a measured run of `args.seconds` per round. Returns {name: [results]}."""
    runs = {name: [] for name in servers}
    for i in range(args.rounds):
        for name, (port, pids) in servers.items():
            url = f"http://127.0.0.1:{port}{path}"
            wrk(url, 1, args.connections)  # warm-up (and, for caches, the fill)
            r = measured(lambda: wrk(url, args.seconds, args.connections), pids)
            runs[name].append(r)
            print(f"  {label} round {i + 1} {name}: {r['rps']:.0f} rps, "
                  f"{r['rps_per_cpu']:.0f}/cpu-s, p99 {r['p99_ms']:.2f} ms", file=sys.stderr)
    return runs


def alternate(rounds, a, b, label=""):
    """A B A B: returns the two lists of results."""
    a_runs, b_runs = [], []
    for i in range(rounds):
        a_runs.append(a())
        b_runs.append(b())
        print(f"  {label} pair {i + 1}: A {a_runs[-1]['rps']:.0f} rps ({a_runs[-1].get('rps_per_cpu', 0):.0f}/cpu-s)"
              f"  B {b_runs[-1]['rps']:.0f} rps ({b_runs[-1].get('rps_per_cpu', 0):.0f}/cpu-s)", file=sys.stderr)
    return a_runs, b_runs


def summarize(title, a_runs, b_runs, a_name, b_name, metrics=("rps", "rps_per_cpu", "p50_ms", "p99_ms")):
    rows = {}
    print(f"\n== {title}: {a_name} vs {b_name} ({len(a_runs)} pairs, A B A B) ==")
    print(f"{'metric':<12} {a_name:>14} {b_name:>14} {'ratio':>7} {'min':>7} {'max':>7}")
    for m in metrics:
        a = [r[m] for r in a_runs if m in r]
        b = [r[m] for r in b_runs if m in r]
        if not a or not b:
            continue
        ratios = [x / y if y else 0.0 for x, y in zip(a, b)]
        row = {"a": statistics.median(a), "b": statistics.median(b), "ratio": statistics.median(ratios),
               "min": min(ratios), "max": max(ratios)}
        rows[m] = row
        print(f"{m:<12} {row['a']:>14.1f} {row['b']:>14.1f} {row['ratio']:>7.3f} {row['min']:>7.3f} {row['max']:>7.3f}")
    return {"a": a_name, "b": b_name, "runs_a": a_runs, "runs_b": b_runs, "summary": rows}


def summarize_pairs(title, runs, pairs):
    """summarize() for each (a, b) name pair of `runs`; returns {"a/b": rows}."""
    return {f"{a}/{c}": summarize(title, runs[a], runs[c], a, c) for a, c in pairs}


def write_json(path, results):
    if path:
        results = {"kernel": os.uname().release, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
                   **results}
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {path}", file=sys.stderr)


def thread_ticks(pid, prefix):
    """user+sys ticks of each thread of `pid` whose name starts with `prefix`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            if not name.startswith(prefix):
                continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[name] = int(fields[11]) + int(fields[12])
        except (FileNotFoundError, IndexError):
            pass
    return out
