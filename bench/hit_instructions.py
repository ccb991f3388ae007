#!/usr/bin/env python3
"""User-space instructions per request, counted by valgrind's callgrind: distilld against
nginx, on the same requests. On this shared VM a side-by-side timing moves by ±10% from
run to run, more than most single changes to the request path; an instruction count
does not move, so it shows what a change to distilld's own code did. It is not time:
the kernel's work (most of a loopback request's CPU, see cache-hits) is not in it, nor
how fast the instructions run.

Servers (one at a time, each under callgrind, with the origin outside it):
  distilld        shipped defaults (access log on, to /dev/null), but the epoll driver:
                  under valgrind the io_uring driver does not always stop on SIGTERM
                  (so callgrind writes nothing). The request path (the sans-IO `Conn`:
                  parsing, routing, cache, answer, log) is the same code for both;
                  the io_uring driver's own instructions are not in the count.
  distilld-nolog  the same with log.access_log = false
  nginx           proxy_cache on tmpfs (cache-hits' nginx), access_log off,
                  one process (master_process off, so callgrind sees the worker)
  nginx-log       the same with `access_log /dev/null combined buffer=64k`

Scenarios: hit-1k (GET /bytes/1024, stored with max-age=3600; every measured response
must be a 2xx hit), healthz (distilld /healthz, nginx `return 200`), proxy-1k (no cache:
distilld cache.memory_bytes = 0, nginx without proxy_cache; every response 2xx).

Request heads: `wrk` (what wrk sends: the request line and Host) and `browser` (a
desktop Chrome navigation's 13 fields, 540 bytes).

Method: for each server, scenario and head, two runs under callgrind, one with
--small requests and one with --large (sequential, over 10 keep-alive connections,
after 3 warm-up requests that fill the cache); instructions per request is the
difference of the two totals over the difference of the counts, so start-up and
shutdown cancel out. Work done per unit of time (distilld's 100 ms tick and log
writer, nginx's timers) lands in the figure in proportion to how long the extra
requests take under valgrind, which differs between the servers: a small share.
Any response that is not 2xx (or not a hit where one is meant) fails the benchmark
(benchlib.BadRun) before a table is printed.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys

import benchlib as b

ORIGIN = 18381
PORT = 18382
WRK_HEAD = "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
BROWSER_FIELDS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Connection: keep-alive\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Site: none\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"\r\n'
    "sec-ch-ua-mobile: ?0\r\n"
    'sec-ch-ua-platform: "Linux"\r\n'
)
HEADS = {
    "wrk": WRK_HEAD,
    "browser": "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + BROWSER_FIELDS + "\r\n",
}
SCENARIOS = {"hit-1k": "/bytes/1024", "healthz": "/healthz", "proxy-1k": "/bytes/1024"}
SERVERS = ["distilld", "distilld-nolog", "nginx", "nginx-log"]
PAIRS = [("distilld-nolog", "nginx"), ("distilld", "nginx-log")]


def server_argv(s, name, scenario, out, binary):
    """The server's command line under callgrind, writing its counts to `out`."""
    grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cache = scenario != "proxy-1k"
    if name.startswith("nginx"):
        conf = s.nginx_conf(PORT, ORIGIN, cache=cache, access_log=name == "nginx-log", master=False)
        return [*grind, "nginx", "-c", conf, "-p", s.tmp]
    tables = {} if cache else {"cache": {"memory_bytes": 0}}
    config = b.distilld_config(access_log=name == "distilld", **tables)
    path = os.path.join(s.tmp, f"{name}-{scenario}.toml")
    with open(path, "w") as f:
        f.write(config)
    return [*grind, binary, "run", "--config", path, "--admin", "off",
            "--listen", f"127.0.0.1:{PORT}", "--workers", "1", "--io", "epoll",
            "--origin", f"http://127.0.0.1:{ORIGIN}"]


def read_response(sock, pending):
    """One response from `sock` (Content-Length framed), with what was read past it."""
    data = pending
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise b.BadRun("the server closed a keep-alive connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if not length:
        raise b.BadRun(f"a response without Content-Length: {head[:200]!r}")
    need = int(length.group(1))
    while len(rest) < need:
        chunk = sock.recv(65536)
        if not chunk:
            raise b.BadRun("a response body ended early")
        rest += chunk
    return b.parse_response(head + b"\r\n\r\n" + rest[:need]), rest[need:]


def requests(head, n, hit, what, conns=10):
    """`n` requests, in turn over `conns` keep-alive connections; BadRun unless every
    response is 2xx and, given `hit`, a cache hit."""
    try:
        socks = [socket.create_connection(("127.0.0.1", PORT), timeout=30) for _ in range(conns)]
    except OSError as e:
        raise b.BadRun(f"{what}: cannot connect: {e}") from e
    pending = [b""] * conns
    try:
        for i in range(n):
            k = i % conns
            try:
                socks[k].sendall(head)
                r, pending[k] = read_response(socks[k], pending[k])
            except OSError as e:
                raise b.BadRun(f"{what}: request {i + 1} of {n} failed: {e}") from e
            if not 200 <= r.status < 300:
                raise b.BadRun(f"{what}: response {i + 1} of {n} was {r.status}")
            if hit and not hit(r):
                raise b.BadRun(f"{what}: response {i + 1} of {n} was not a cache hit")
    finally:
        for sock in socks:
            sock.close()


def instructions(s, name, scenario, head_name, n, binary):
    """Total instructions of a run of `n` measured requests (after the warm-up)."""
    out = os.path.join(s.tmp, f"callgrind-{name}-{scenario}-{head_name}-{n}.out")
    argv = server_argv(s, name, scenario, out, binary)
    p = subprocess.Popen(["taskset", "-c", b.SERVER_CORE, *argv],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    what = f"{name} {scenario} {head_name}"
    try:
        b.wait_port(PORT, timeout=60)
        head = HEADS[head_name].format(path=SCENARIOS[scenario], port=PORT).encode()
        requests(head, 3, None, what + " warm-up")
        hit = b.HIT["nginx" if name.startswith("nginx") else "distilld"] if scenario == "hit-1k" else None
        requests(head, n, hit, what)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    with open(out) as f:
        total = re.search(r"^totals:\s*(\d+)", f.read(), re.M)
    if not total:
        raise b.BadRun(f"{what}: callgrind wrote no totals to {out}")
    return int(total.group(1))


def per_request(s, name, scenario, head_name, small, large, binary):
    a = instructions(s, name, scenario, head_name, small, binary)
    z = instructions(s, name, scenario, head_name, large, binary)
    return (z - a) / (large - small)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="hit-1k,healthz,proxy-1k")
    ap.add_argument("--heads", default="wrk,browser")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--large", type=int, default=3000)
    ap.add_argument("--distilld", help="another build of distilld to count (default: this tree's release build)")
    args = ap.parse_args(argv)
    if not 0 < args.small < args.large:
        ap.error("--small must be above 0 and below --large")
    b.ensure(("nginx", "valgrind"))
    servers = args.servers.split(",")
    binary = args.distilld or b.release_bin("distilld")
    results = {}
    with b.Servers() as s:
        s.origin(ORIGIN, ["--cache-control", "public, max-age=3600"])
        for scenario in args.scenarios.split(","):
            for head_name in args.heads.split(","):
                for name in servers:
                    n = per_request(s, name, scenario, head_name, args.small, args.large, binary)
                    results[(scenario, head_name, name)] = n
                    print(f"  {scenario:9} {head_name:8} {name:15} {n:9.0f} instructions/request",
                          file=sys.stderr, flush=True)
    print(f"{'scenario':9} {'head':8} {'distilld':15} {'instr/req':>10} {'peer':10} {'instr/req':>10} {'ratio':>7}")
    for scenario in args.scenarios.split(","):
        for head_name in args.heads.split(","):
            for a, z in PAIRS:
                ka, kz = (scenario, head_name, a), (scenario, head_name, z)
                if ka in results and kz in results:
                    print(f"{scenario:9} {head_name:8} {a:15} {results[ka]:10.0f} {z:10} {results[kz]:10.0f} "
                          f"{results[ka] / results[kz]:7.3f}")


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
