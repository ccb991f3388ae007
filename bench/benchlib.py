"""Shared parts of distilld's benchmarks: build, install peers, start servers pinned to a
core, run load (wrk or distill-load) while reading the server's CPU time from /proc,
alternate A B A B, and print medians, min-max and ratios. Every benchmark plugs in here.

A ratio is only worth printing if both sides served what was asked: every load run is
checked (any non-2xx response, socket error or missing count raises BadRun), summarize()
refuses runs that were not checked, and a benchmark run through run_main() then exits
non-zero with the reason on stderr and no table. distilld runs with its shipped defaults
(src/default.toml) unless a benchmark says otherwise in its config and its README section.
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


class BadRun(Exception):
    """A load run whose figures must not be used: a response other than 2xx, a socket
    error, no requests at all, or (cache benchmarks) a miss where a hit was meant. Raised
    where it is seen and not caught inside a benchmark, so nothing after it (no summary,
    no ratio) is printed; run_main() turns it into a message and a non-zero exit."""


def run_main(main, argv):
    """Runs a benchmark's main(argv). A BadRun ends it with exit status 3 and the reason
    on stderr instead of a traceback; the servers are stopped by then (Servers.__exit__)."""
    try:
        main(argv)
    except BadRun as e:
        print(f"\nbenchmark FAILED, no ratio printed: {e}", file=sys.stderr)
        sys.exit(3)


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))


def distilld_config(access_log=True, loopback=True, **tables):
    """distilld's config for a benchmark: the shipped defaults (src/default.toml: access
    log on at level info, cache on with 256 MiB, ...) except `server.pin_workers = false`,
    because taskset already places the process on the benchmark's cores and pin_workers
    would move shard i to core i, onto the load generator. `access_log=False` is the one
    other setting a benchmark may turn, for a server it names "-nolog" next to the
    shipped one. `tables` ({"cache": {"memory_bytes": 0}}) are what a benchmark is about
    and are named in its README section. The benchmarks' origins listen on loopback, which
    the shipped forward proxy refuses as a destination (SSRF), so `forward.destinations_allowed`
    lets it through when the forward proxy is measured (`loopback=False` leaves it out, for
    a build from before that key)."""
    t = {"server": {"pin_workers": False}}
    if loopback:
        t["forward"] = {"destinations_allowed": ["127.0.0.0/8"]}
    if not access_log:
        t["log"] = {"access_log": False}
    for name, keys in tables.items():
        t.setdefault(name, {}).update(keys)
    return "".join(f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())
                   for name, keys in t.items())


def describe_config(config, log_to="/dev/null"):
    """One line for the report: the keys a config made by distilld_config() sets over the
    shipped defaults, and whether the access log was on, so no table hides it."""
    keys, table = [], ""
    for line in config.splitlines():
        line = line.strip()
        if line.startswith("["):
            table = line.strip("[]")
        elif "=" in line:
            key, value = (x.strip() for x in line.split("=", 1))
            keys.append(f"{table}.{key} = {value}")
    log = "access log OFF" if "log.access_log = false" in keys else f"access log on (to {log_to})"
    return f"{log}; set over the shipped defaults: {', '.join(keys) or 'nothing'}"


# distilld proxying every request: the origin's /bytes responses are cacheable
# (max-age=60), and with its cache on distilld would answer them from memory while a
# peer without a cache configured proxies each one. Otherwise the shipped defaults.
NO_CACHE = distilld_config(cache={"memory_bytes": 0})


def has_admin_flag(binary):
    out = subprocess.run([binary, "run", "--help"], capture_output=True, text=True)
    return "--admin" in out.stdout


class Servers:
    """Processes started for one benchmark, stopped together."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="distilld-bench-")
        self.procs = []
        self.shm_dirs = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        # nginx's cache files live in memory (/dev/shm): never left behind. The rest
        # (configs, logs: with the access log on, large) is kept only to look into a failure.
        for d in self.shm_dirs:
            shutil.rmtree(d, ignore_errors=True)
        if exc_type is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"servers' configs and logs kept in {self.tmp}", file=sys.stderr)

    def start(self, argv, port, core, stderr=None):
        p = subprocess.Popen(["taskset", "-c", core, *argv],
                             stdout=subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL)
        self.procs.append(p)
        wait_port(port)
        return p

    def origin(self, port, extra=(), root=CORPUS):
        return self.start([release_bin("distill-origin"), "--listen", f"127.0.0.1:{port}",
                           "--root", root, *extra], port, LOAD_CORE)

    def distilld(self, port, origin_port=None, workers=1, config="", core=SERVER_CORE, io="auto", log=None,
                 binary=None, admin=None):
        """distilld with `config` (by default distilld_config(): the shipped defaults, so
        its access log is on; it goes to /dev/null unless `log` names a file); `binary`
        runs another build than this tree's release binary; `admin` ("IP:port") turns
        its admin listener on there (off otherwise)."""
        cfg = os.path.join(self.tmp, f"distilld-{port}.toml")
        with open(cfg, "w") as f:
            f.write(config or distilld_config())
        binary = binary or release_bin("distilld")
        # Benchmarks run several side by side: none takes the shipped admin port (a
        # build from before the admin listener has neither the port nor the flag).
        admin = ["--admin", admin or "off"] if has_admin_flag(binary) else []
        argv = [binary, "run", "--config", cfg, *admin, "--listen", f"127.0.0.1:{port}",
                "--workers", str(workers), "--io", io]
        if origin_port:
            argv += ["--origin", f"http://127.0.0.1:{origin_port}"]
        p = self.start(argv, port, core, stderr=open(log, "w") if log else None)
        return [p.pid]

    def nginx(self, port, origin_port=None, workers=1, core=SERVER_CORE, cache=False, access_log=False):
        """nginx proxying to `origin_port` (with `cache`, proxy_cache on tmpfs); with
        `access_log`, its access log on as operators run it, buffered (`buffer=64k`), to
        /dev/null like distilld's."""
        conf = self.nginx_conf(port, origin_port, workers, core, cache, access_log)
        p = self.start(["nginx", "-c", conf, "-p", self.tmp], port, core)
        time.sleep(0.2)
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        return [p.pid, *map(int, kids)]

    def nginx_conf(self, port, origin_port=None, workers=1, core=SERVER_CORE, cache=False, access_log=False,
                   master=True):
        """The config file `nginx()` runs; without `master`, one process serves (for a
        tool that must see the worker, such as callgrind)."""
        conf = os.path.join(self.tmp, f"nginx-{port}.conf")
        upstream = f"upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}" if origin_port else ""
        if cache:
            # In memory like the others: the cache files live on tmpfs (/dev/shm).
            cache_dir = tempfile.mkdtemp(prefix="nginx-cache-", dir="/dev/shm")
            self.shm_dirs.append(cache_dir)
            upstream += (f"\n  proxy_cache_path {cache_dir} levels=1:2 keys_zone=c:64m max_size=1g "
                         "inactive=1h use_temp_path=off;")
        # X-Cache-Status (HIT, MISS, ...): one header line, so a sample can tell hits
        # (nginx_hit) the way Cache-Status does for distilld and X-Varnish for Varnish.
        caching = ("proxy_cache c; proxy_cache_valid 200 1h; add_header X-Cache-Status $upstream_cache_status;"
                   if cache else "")
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
master_process {"on" if master else "off"};
pid {self.tmp}/nginx-{port}.pid;
error_log {self.tmp}/nginx-{port}-error.log warn;
events {{ worker_connections 8192; }}
http {{
  {"access_log /dev/null combined buffer=64k flush=1s;" if access_log else "access_log off;"}
  {upstream}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location = /healthz {{ default_type text/plain; return 200 "ok\\n"; }}
    {proxy}
  }}
}}
""")
        return conf


    def varnish(self, port, origin_port, workers=1, core=SERVER_CORE, memory="256m", ncsa=False):
        """varnishd in the foreground with malloc storage; one thread pool per worker.
        With `ncsa`, varnishncsa runs beside it (Varnish's access log, as operators run
        it, to /dev/null), on the same cores, and its CPU counts as the server's."""
        workdir = os.path.join(self.tmp, f"varnish-{port}")
        argv = ["varnishd", "-F", "-n", workdir, "-a", f"127.0.0.1:{port}",
                "-b", f"127.0.0.1:{origin_port}", "-s", f"malloc,{memory}",
                "-p", f"thread_pools={workers}", "-p", "thread_pool_min=50"]
        p = self.start(argv, port, core)
        time.sleep(0.5)
        out = subprocess.run(["pgrep", "-f", f"varnish-{port}"], capture_output=True, text=True).stdout.split()
        pids = {p.pid, *map(int, out)}
        if ncsa:
            log = subprocess.Popen(["taskset", "-c", core, "varnishncsa", "-n", workdir, "-w", "/dev/null"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(log)
            time.sleep(0.5)
            if log.poll() is not None:
                raise BadRun(f"varnishncsa for :{port} exited with status {log.returncode}")
            pids.add(log.pid)
        return sorted(pids)


def _ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        raise BadRun(f"latency {s!r} not understood")
    v, u = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[u]


# ---- images ----

def gif_frames(data):
    """The number of images a GIF holds, by walking its blocks (a byte search miscounts:
    0x00 0x2C occurs inside LZW data). A stream that ends or breaks early counts what came
    before; not a GIF: 0."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return 0
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    frames = 0

    def skip_sub_blocks(pos):
        while pos < len(data) and data[pos]:
            pos += 1 + data[pos]
        return pos + 1

    while pos < len(data):
        kind = data[pos]
        if kind == 0x2C:
            if pos + 10 > len(data):
                break
            frames += 1
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = skip_sub_blocks(pos + 1)  # after the LZW minimum code size
        elif kind == 0x21:
            pos = skip_sub_blocks(pos + 2)
        else:  # 0x3B, the trailer, or anything that is not a block
            break
    return frames


# ---- what a server answered: a small client of its own, outside the measured window ----

class Response:
    """A response as read by http_get(): status, header fields (names lower-cased, in
    order, repeats kept) and the body."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def values(self, name):
        return [v for n, v in self.headers if n == name]

    def header(self, name):
        vs = self.values(name)
        return ", ".join(vs) if vs else None


def _dechunk(data):
    body, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise BadRun("chunked body cut short")
        size = int(data[pos:end].split(b";")[0].strip() or b"x", 16)
        if size == 0:
            return bytes(body)
        start = end + 2
        if len(data) < start + size + 2:
            raise BadRun("chunked body cut short")
        body += data[start:start + size]
        pos = start + size + 2


def parse_response(data):
    """One HTTP/1.x response, read to the end of its connection. A body shorter than its
    Content-Length or an unfinished chunked body raises BadRun: a cut answer is not served."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise BadRun(f"response head incomplete ({len(data)} bytes)")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise BadRun(f"not an HTTP response: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    r = Response(int(m.group(1)), headers, rest)
    length = r.header("content-length")
    if "chunked" in (r.header("transfer-encoding") or "").lower():
        try:
            r.body = _dechunk(rest)
        except ValueError as e:
            raise BadRun(f"bad chunk size: {e}") from e
    elif length is not None:
        if len(rest) < int(length):
            raise BadRun(f"body cut short: {len(rest)} of {length} bytes")
        r.body = rest[:int(length)]
    return r


def http_get(port, path, timeout=5.0):
    """GET on a new connection with `Connection: close`, read to EOF. Deliberately not a
    load generator: whatever wrk or distill-load miscount, this reads the server itself,
    at the same address and URL."""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req.encode("latin-1"))
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            chunks.append(piece)
    return parse_response(b"".join(chunks))


def distilld_hit(r):
    """RFC 9211 `Cache-Status: distilld; hit`: the member distilld names itself with
    carries the `hit` parameter (a miss says `fwd=...` instead)."""
    for value in r.values("cache-status"):
        for member in value.split(","):
            name, *params = [p.strip() for p in member.split(";")]
            if name == "distilld" and any(p.lower() == "hit" for p in params):
                return True
    return False


def nginx_hit(r):
    """`X-Cache-Status: HIT`, which Servers.nginx(cache=True) adds ($upstream_cache_status)."""
    return (r.header("x-cache-status") or "").strip().upper() == "HIT"


def varnish_hit(r):
    """Varnish's own `X-Varnish`: on a hit it carries two transaction ids (this request's
    and the one that stored the object), on a miss or pass only one. Needs no VCL."""
    return len((r.header("x-varnish") or "").split()) == 2


HIT = {"distilld": distilld_hit, "nginx": nginx_hit, "varnish": varnish_hit}


def sample(port, path, n=20, hit=None, what="sample"):
    """`n` requests outside the measured window, to the server and URL a load run uses.
    BadRun unless every one is 2xx (wrk counts only 4xx/5xx as errors, so this is what
    catches a 3xx) and, given `hit` (a predicate from HIT), every one was a cache hit."""
    for i in range(1, n + 1):
        try:
            r = http_get(port, path)
        except OSError as e:
            raise BadRun(f"{what}: sample request {i} of {n} to :{port}{path} failed: {e}") from e
        if not 200 <= r.status < 300:
            raise BadRun(f"{what}: sample request {i} of {n} to :{port}{path} answered {r.status}")
        if hit and not hit(r):
            shown = "; ".join(f"{k}: {v}" for k, v in r.headers if "cache" in k or k in ("x-varnish", "age"))
            raise BadRun(f"{what}: sample response {i} of {n} from :{port}{path} was not a cache hit "
                         f"({shown or 'no cache header'})")


# ---- load runs, parsed and checked ----

def check_run(r, what):
    """Marks a parsed load run good (r["bad"] = None) or bad (r["bad"] = the reason) and
    raises BadRun if bad: any non-2xx response, any socket error of any kind, or no
    requests at all. Nothing that skips this reaches a summary (check_runs)."""
    reasons = []
    if r.get("non_2xx"):
        reasons.append(f"{r['non_2xx']} non-2xx responses")
    errors = {k: v for k, v in r.get("errors", {}).items() if v}
    if errors:
        reasons.append("socket errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
    if not r.get("requests"):
        reasons.append("no requests completed")
    r["bad"] = "; ".join(reasons) or None
    if r["bad"]:
        raise BadRun(f"{what}: {r['bad']}")
    return r


def parse_wrk(out):
    """wrk's report as numbers. wrk prints `Socket errors: connect A, read B, write C,
    timeout D` and `Non-2xx or 3xx responses: N` only when not zero, so a missing line
    means none; its N counts statuses above 399 only (hence sample() around each run).
    A report without its requests, rate or latency lines raises."""
    def need(pattern, label, flags=0):
        m = re.search(pattern, out, flags)
        if not m:
            raise BadRun(f"wrk's output has no {label} line:\n{out}")
        return m.group(1)

    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors = dict(zip(errors, map(int, sock.groups())))
    elif "Socket errors" in out:
        raise BadRun(f"wrk's socket errors line not understood:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(need(r"Requests/sec:\s+([\d.]+)", "Requests/sec")),
        "requests": int(need(r"(\d+) requests in", "requests")),
        "p50_ms": _ms(need(r"^\s+50%\s+(\S+)", "50%", re.M)),
        "p99_ms": _ms(need(r"^\s+99%\s+(\S+)", "99%", re.M)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors,
    }


def parse_distill_load(report):
    """distill-load's --json report (tools/distill-load/report.rs: `status` maps each code
    seen to its count, `errors` counts connect/timeout/read/parse failures) in the shape
    of parse_wrk's. A response distill-load could not file under a code (status 1000 or
    more) leaves `status` short of `requests`, and counts as non-2xx."""
    try:
        status = {int(k): int(v) for k, v in report["status"].items()}
        requests = int(report["requests"])
        non2xx = sum(v for k, v in status.items() if not 200 <= k < 300)
        non2xx += max(0, requests - sum(status.values()))
        return {"rps": float(report["requests_per_sec"]), "requests": requests,
                "p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
                "non_2xx": non2xx, "errors": {k: int(v) for k, v in report["errors"].items()},
                "status": status}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadRun(f"distill-load's report lacks or garbles {e}: {json.dumps(report)[:300]}") from e


def run_load(argv, name):
    """A load generator's stdout; its failing is a bad run, with the tail of its stderr."""
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise BadRun(f"{name} exited with status {p.returncode}: {p.stderr.strip()[-500:]}")
    return p.stdout


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def with_client_cpu(r, before):
    """Adds the load generator's own CPU time (it is a waited-for child)."""
    cpu = children_cpu_s() - before
    r["client_cpu_s"] = cpu
    r["client_rps_per_cpu"] = r["requests"] / cpu if cpu else 0.0
    return r


def wrk(url, seconds, connections, threads=1, core=LOAD_CORE, what=None):
    before = children_cpu_s()
    out = run_load(["taskset", "-c", core, "wrk", f"-t{threads}", f"-c{connections}",
                    f"-d{seconds}s", "--latency", url], "wrk")
    return with_client_cpu(check_run(parse_wrk(out), what or f"wrk {url}"), before)


def distill_load_report(args):
    """Runs distill-load with `args` (options and URLs) and returns its JSON report,
    unchecked: callers check it (check_run(parse_distill_load(report), ...)) and may
    read more of it (cache hits, latency percentiles)."""
    fd, out_json = tempfile.mkstemp(prefix="distill-load-", suffix=".json")
    os.close(fd)
    try:
        run_load([release_bin("distill-load"), "--json", out_json, *args], "distill-load")
        with open(out_json) as f:
            return json.load(f)
    finally:
        os.unlink(out_json)


def distill_load(url, seconds, connections, threads=1, core=LOAD_CORE, extra=(), what=None):
    """A checked distill-load run; `core=None` leaves it unpinned."""
    before = children_cpu_s()
    conns = [f"-c{connections}"] if connections else []
    cores = ["--cores", core] if core else []
    report = distill_load_report([f"-t{threads}", *conns, f"-d{seconds}", *cores, *extra, url])
    return with_client_cpu(check_run(parse_distill_load(report), what or f"distill-load {url}"), before)


class Background:
    """A loop (`run`, which returns once `self.stop` is set) on a thread of its own for
    the length of a `with` block: a scraper, a prober."""

    def __init__(self):
        import threading
        self.stop = threading.Event()

    def run(self):
        raise NotImplementedError

    def __enter__(self):
        import threading
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def draws_side_by_side(argvs, what):
    """distill-load runs side by side (one thread each, argv without --json), each
    checked; returns their reports, in order. BadRun if any failed or did not finish."""
    import threading
    reports, failures = [None] * len(argvs), []

    def draw(i):
        try:
            reports[i] = distill_load_report(argvs[i])
        except BadRun as e:
            failures.append(e)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(len(argvs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    if any(r is None for r in reports):
        raise BadRun(f"{what}: a draw did not finish")
    for i, rep in enumerate(reports):
        check_run(parse_distill_load(rep), f"{what} draw {i}")
    return reports


def measured(run, pids, client_pid_hint=None):
    """Runs `run()` (a load run) and adds CPU seconds of `pids` and requests per CPU-second."""
    before = cpu_ticks(pids)
    r = run()
    cpu = (cpu_ticks(pids) - before) / CLK_TCK
    r["server_cpu_s"] = cpu
    r["rps_per_cpu"] = r["requests"] / cpu if cpu else 0.0
    return r


def take_turns(servers, path, args, label, hits=None):
    """Rounds of A B C ... with wrk: each server {name: (port, pids)} gets a 1 s warm-up
    and a measured run of `args.seconds` per round, both checked, with a sample() of its
    answers after the warm-up and after the measured run. `hits` {name: predicate} makes
    those samples require cache hits too. Returns {name: [results]}."""
    runs = {name: [] for name in servers}
    hits = hits or {}
    for i in range(args.rounds):
        for name, (port, pids) in servers.items():
            url = f"http://127.0.0.1:{port}{path}"
            what = f"{label} round {i + 1} {name}"
            wrk(url, 1, args.connections, what=f"{what} warm-up")  # and, for caches, the fill
            sample(port, path, hit=hits.get(name), what=f"{what} before")
            r = measured(lambda: wrk(url, args.seconds, args.connections, what=what), pids)
            sample(port, path, hit=hits.get(name), what=f"{what} after")
            runs[name].append(r)
            print(f"  {what}: {r['rps']:.0f} rps, "
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


def check_runs(*groups):
    """The second line of defence before a ratio is printed: every run went through
    check_run and passed (r["bad"] is None) and served requests. Raises BadRun."""
    for runs in groups:
        if not runs:
            raise BadRun("no runs to summarize")
        for r in runs:
            if "bad" not in r:
                raise BadRun("a run that was never checked (check_run) reached the summary")
            if r["bad"]:
                raise BadRun(f"a bad run reached the summary: {r['bad']}")
            if not r.get("requests"):
                raise BadRun("a run with no requests reached the summary")


def summarize(title, a_runs, b_runs, a_name, b_name, metrics=("rps", "rps_per_cpu", "p50_ms", "p99_ms")):
    check_runs(a_runs, b_runs)
    if len(a_runs) != len(b_runs):
        raise BadRun(f"{title}: {len(a_runs)} runs of {a_name} against {len(b_runs)} of {b_name}: not pairs")
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
    """summarize() for each (a, b) name pair of `runs`; returns {"a/b": rows}. Every run
    is checked before the first table, so a bad one leaves no table at all."""
    check_runs(*(runs[name] for pair in pairs for name in pair))
    return {f"{a}/{c}": summarize(title, runs[a], runs[c], a, c) for a, c in pairs}


def print_settings(configs):
    """Prints, before any table, how each distilld ran ({name: config text})."""
    for name, config in configs.items():
        print(f"distilld '{name}': {describe_config(config)}")


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


def hits_beside(port, path, seconds, rate, side=None, label=""):
    """Small cache hits on `port` (an open-loop stream at `rate`/s from 20 connections,
    latency from each request's scheduled time) while, given `side` = (urls, headers,
    clients, tmp), another distill-load asks for `urls` (one a line, each used once).
    Both are checked, and every small request must have been a cache hit. Returns the
    hits' report and the side load's (None without one)."""
    sample(port, path, n=1, what=f"{label}: fill")
    sample(port, path, n=1, hit=distilld_hit, what=f"{label}: filled")
    side_load, side_json = None, None
    if side:
        urls, headers, clients, tmp = side
        side_json = os.path.join(tmp, f"side-{port}-{time.time_ns()}.json")
        argv = [release_bin("distill-load"), "-c", str(clients), "-d", str(seconds + 2), "--urls", urls,
                "--cores", LOAD_CORE, "--json", side_json]
        for h in headers:
            argv += ["-H", h]
        side_load = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
    hits = distill_load_report(["-c", "20", "--rate", str(rate), "-d", str(seconds), "--cores", LOAD_CORE,
                                f"http://127.0.0.1:{port}{path}"])
    check_run(parse_distill_load(hits), f"{label}: small hits")
    if hits["cache"]["hits"] != hits["requests"]:
        raise BadRun(f"{label}: only {hits['cache']['hits']} of {hits['requests']} small requests were "
                     f"cache hits")
    if not side_load:
        return hits, None
    if side_load.wait(timeout=seconds + 30) != 0:
        raise BadRun(f"{label}: the side load exited with status {side_load.returncode}")
    with open(side_json) as f:
        report = json.load(f)
    check_run(parse_distill_load(report), f"{label}: side load")
    return hits, report
