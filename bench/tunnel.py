#!/usr/bin/env python3
"""CONNECT tunnels: bytes relayed through distilld's tunnel on each network driver
(io_uring: receives into the shard's provided-buffer ring, sends from the connection's
buffer; epoll: read(2)/write(2) through the same buffer) against Squid's CONNECT, on the
same machine, A B C A B C. Nothing is spliced: distilld copies each byte once through
user space, as Squid does.

Each of `--tunnels` clients opens a CONNECT tunnel to distill-origin and, inside it,
asks GET /bytes/SIZE again and again over one keep-alive HTTP/1.1 connection for
`--seconds`, reading every body to its end. Every response must be a 200 with exactly
SIZE bytes, and every CONNECT a 200, or the run fails before any table is printed. The
server under test is pinned to core 1; the clients (this script's threads) and the
origin share core 0. Reported: MB/s through the tunnel, and MB per second of the
server's CPU time (user + system, from /proc).

distilld runs with its shipped defaults except the keys named in its settings line:
`forward.connect_ports` (the origin's port) and `forward.destinations_allowed`
(loopback, where the origin listens). Squid: one process (-N), no cache, access log
to /dev/null as distilld's.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

import benchlib as b

ORIGIN, URING, EPOLL, SQUID = 18241, 18242, 18243, 18244


def config():
    return b.distilld_config(forward={"connect_ports": [ORIGIN]})


def squid(s, port):
    conf = os.path.join(s.tmp, "squid.conf")
    os.chmod(s.tmp, 0o777)
    with open(conf, "w") as f:
        f.write(f"""http_port 127.0.0.1:{port}
acl origin_port port {ORIGIN}
acl CONNECT method CONNECT
http_access allow CONNECT origin_port localhost
http_access deny all
cache deny all
cache_mem 0 MB
access_log stdio:/dev/null
cache_log {s.tmp}/squid-cache.log
pid_filename {s.tmp}/squid.pid
coredump_dir {s.tmp}
shutdown_lifetime 0 seconds
""")
    p = s.start(["squid", "-N", "-f", conf], port, b.SERVER_CORE)
    return [p.pid]


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.bytes = 0
        self.responses = 0
        self.bad = []


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def client(port, size, until, tally):
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"CONNECT 127.0.0.1:{ORIGIN} HTTP/1.1\r\nHost: 127.0.0.1:{ORIGIN}\r\n\r\n".encode())
        head, rest = read_head(sock, b"")
        if not head.startswith("HTTP/1.1 200") and not head.startswith("HTTP/1.0 200"):
            raise ConnectionError(f"CONNECT answered {head.splitlines()[0]!r}")
        view = memoryview(bytearray(1 << 20))
        while time.monotonic() < until:
            sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: origin\r\n\r\n".encode())
            head, rest = read_head(sock, rest)
            if not head.startswith("HTTP/1.1 200"):
                raise ConnectionError(f"inside the tunnel: {head.splitlines()[0]!r}")
            length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                          if line.lower().startswith("content-length:"))
            got = len(rest)
            rest = b""
            while got < length:
                n = sock.recv_into(view, min(len(view), length - got))
                if n == 0:
                    raise ConnectionError(f"body cut at {got} of {length}")
                got += n
            if got != length or length != size:
                raise ConnectionError(f"body of {got} bytes, {size} asked")
            with tally.lock:
                tally.bytes += got
                tally.responses += 1
        sock.close()
    except (OSError, ConnectionError, StopIteration, ValueError) as e:
        with tally.lock:
            tally.bad.append(str(e) or type(e).__name__)


def run(port, pids, args, what):
    def load():
        tally = Tally()
        until = time.monotonic() + args.seconds
        start = time.monotonic()
        threads = [threading.Thread(target=client, args=(port, args.size, until, tally))
                   for _ in range(args.tunnels)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        r = {"requests": tally.responses, "mb_s": tally.bytes / elapsed / 1e6,
             "errors": {"tunnel": len(tally.bad)}, "non_2xx": 0, "bytes": tally.bytes}
        if tally.bad:
            print(f"  {what}: {tally.bad[:3]}", file=sys.stderr)
        return b.check_run(r, what)

    r = b.measured(load, pids)
    r["mb_per_cpu_s"] = r["bytes"] / 1e6 / r["server_cpu_s"] if r["server_cpu_s"] else 0.0
    r["rps"] = r["mb_s"]
    print(f"  {what}: {r['mb_s']:.0f} MB/s, {r['mb_per_cpu_s']:.0f} MB/cpu-s", file=sys.stderr)
    return r


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--tunnels", type=int, default=4)
    ap.add_argument("--size", type=int, default=8 << 20)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    b.ensure_packages({"squid": "squid"})
    cfg = config()
    runs = {"uring": [], "epoll": [], "squid": []}
    with b.Servers() as s:
        s.origin(ORIGIN)
        servers = {
            "uring": (URING, s.distilld(URING, config=cfg, io="uring")),
            "epoll": (EPOLL, s.distilld(EPOLL, config=cfg, io="epoll")),
            "squid": (SQUID, squid(s, SQUID)),
        }
        for i in range(args.rounds):
            for name, (port, pids) in servers.items():
                runs[name].append(run(port, pids, args, f"round {i + 1} {name}"))
    b.check_runs(*runs.values())
    b.print_settings({"uring": cfg, "epoll": cfg})
    metrics = ("mb_s", "mb_per_cpu_s")
    results = {"benchmark": "tunnel", "args": vars(args), "distilld_settings": b.describe_config(cfg)}
    for a, c in (("uring", "squid"), ("epoll", "squid"), ("uring", "epoll")):
        results[f"{a}/{c}"] = b.summarize(f"CONNECT tunnel, GET /bytes/{args.size} inside", runs[a], runs[c],
                                          a, c, metrics=metrics)
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
