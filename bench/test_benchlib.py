"""Tests of the benchmark library's checks, with no server, load generator or cargo:
wrk's and distill-load's reports (as they print them, good and bad) go through the same
parsing and checking a benchmark uses, and stand-in `wrk`/`distill-load` programs stand
for the real ones. What is asserted is what keeps a ratio from a bad run off the page: a
non-2xx response or socket error raises BadRun, summarize() refuses unchecked, bad or
empty runs without printing, and a cache sample fails on a miss.

    python3 -m unittest discover -s bench -p 'test_*.py' -v
"""

import contextlib
import io
import json
import os
import socket
import stat
import sys
import tempfile
import threading
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

# wrk 4.x's report, `--latency`, a run with nothing wrong: no error lines at all.
WRK_GOOD = """Running 4s test @ http://127.0.0.1:18282/bytes/1024
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.52us   95.13us   4.21ms   91.37%
    Req/Sec   161.02k     4.88k  168.35k    75.00%
  Latency Distribution
     50%  296.00us
     75%  321.00us
     90%  372.00us
     99%    1.61ms
  640843 requests in 4.00s, 757.51MB read
Requests/sec: 160196.11
Transfer/sec:    189.36MB
"""
REQUESTS_LINE = "  640843 requests in 4.00s, 757.51MB read\n"


def wrk_with(*lines):
    """WRK_GOOD with wrk's error lines where wrk prints them: after the requests line."""
    return WRK_GOOD.replace(REQUESTS_LINE, REQUESTS_LINE + "".join(f"  {line}\n" for line in lines))


WRK_NON2XX = wrk_with("Non-2xx or 3xx responses: 42")
WRK_SOCKET = wrk_with("Socket errors: connect 0, read 12, write 0, timeout 3")
WRK_BOTH = wrk_with("Socket errors: connect 7, read 0, write 0, timeout 0", "Non-2xx or 3xx responses: 1")
WRK_NOTHING = """Running 4s test @ http://127.0.0.1:18282/bytes/1024
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 4.00s, 0.00B read
  Socket errors: connect 50, read 0, write 0, timeout 0
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


def load_report(status=None, errors=None, requests=20000):
    """A distill-load --json report (tools/distill-load/report.rs's field names)."""
    return {
        "seconds": 4.0, "threads": 1, "connections": 50, "mode": "closed loop", "target_rate": None,
        "requests": requests, "requests_per_sec": requests / 4.0, "bytes": requests * 1024,
        "latency_ms": {"p50": 0.29, "p90": 0.4, "p99": 1.2, "p99_9": 2.0, "max": 4.1, "mean": 0.31},
        "status": {"200": requests} if status is None else status,
        "errors": {"connect": 0, "timeout": 0, "read": 0, "parse": 0, **(errors or {})},
        "connects": 50, "cache": {"lookups": requests, "hits": requests},
        "distill": {"responses": 0, "original_bytes": 0, "sent_bytes": 0, "saved_bytes": 0},
        "unsent": 0, "shortfall": None,
    }


def good_run(rps=1000.0):
    return b.check_run({"rps": rps, "requests": int(rps * 4), "p50_ms": 0.3, "p99_ms": 1.0,
                        "rps_per_cpu": rps * 1.2}, "test")


class WrkReport(unittest.TestCase):
    def test_a_clean_run_passes_with_its_numbers(self):
        r = b.check_run(b.parse_wrk(WRK_GOOD), "wrk")
        self.assertIsNone(r["bad"])
        self.assertEqual(r["requests"], 640843)
        self.assertAlmostEqual(r["rps"], 160196.11)
        self.assertAlmostEqual(r["p50_ms"], 0.296)
        self.assertAlmostEqual(r["p99_ms"], 1.61)
        self.assertEqual(r["non_2xx"], 0)
        self.assertEqual(sum(r["errors"].values()), 0)

    def test_non_2xx_responses_make_the_run_bad(self):
        r = b.parse_wrk(WRK_NON2XX)
        self.assertEqual(r["non_2xx"], 42)
        with self.assertRaisesRegex(b.BadRun, "42 non-2xx"):
            b.check_run(r, "wrk")
        self.assertIn("42 non-2xx", r["bad"])

    def test_socket_errors_make_the_run_bad(self):
        r = b.parse_wrk(WRK_SOCKET)
        self.assertEqual(r["errors"], {"connect": 0, "read": 12, "write": 0, "timeout": 3})
        with self.assertRaisesRegex(b.BadRun, "read 12, timeout 3"):
            b.check_run(r, "wrk")

    def test_each_kind_of_socket_error_alone_is_enough(self):
        for kind in ("connect", "read", "write", "timeout"):
            counts = {k: int(k == kind) for k in ("connect", "read", "write", "timeout")}
            out = wrk_with("Socket errors: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            with self.subTest(kind=kind), self.assertRaisesRegex(b.BadRun, f"{kind} 1"):
                b.check_run(b.parse_wrk(out), "wrk")

    def test_both_lines_are_reported(self):
        with self.assertRaises(b.BadRun) as e:
            b.check_run(b.parse_wrk(WRK_BOTH), "proxy-1k round 2 nginx")
        self.assertIn("proxy-1k round 2 nginx", str(e.exception))
        self.assertIn("1 non-2xx", str(e.exception))
        self.assertIn("connect 7", str(e.exception))

    def test_a_run_with_no_requests_is_bad(self):
        with self.assertRaisesRegex(b.BadRun, "no requests"):
            b.check_run(b.parse_wrk(WRK_NOTHING), "wrk")

    def test_output_that_is_not_a_report_raises(self):
        for out in ("", "unable to connect to 127.0.0.1:1 Connection refused\n",
                    WRK_GOOD.replace("Requests/sec", "Reqs/s"),
                    wrk_with("Socket errors: something new")):
            with self.subTest(out=out[:40]), self.assertRaises(b.BadRun):
                b.parse_wrk(out)


class DistillLoadReport(unittest.TestCase):
    def test_a_clean_run_passes_with_its_numbers(self):
        r = b.check_run(b.parse_distill_load(load_report()), "distill-load")
        self.assertIsNone(r["bad"])
        self.assertEqual(r["requests"], 20000)
        self.assertEqual(r["rps"], 5000.0)
        self.assertEqual((r["p50_ms"], r["p99_ms"]), (0.29, 1.2))

    def test_any_status_outside_2xx_makes_the_run_bad(self):
        for code in ("404", "503", "301", "304", "101"):
            report = load_report(status={"200": 19990, code: 10})
            with self.subTest(code=code), self.assertRaisesRegex(b.BadRun, "10 non-2xx"):
                b.check_run(b.parse_distill_load(report), "distill-load")

    def test_other_2xx_statuses_are_fine(self):
        b.check_run(b.parse_distill_load(load_report(status={"200": 19000, "204": 999, "206": 1})), "x")

    def test_any_error_count_makes_the_run_bad(self):
        for kind in ("connect", "timeout", "read", "parse"):
            with self.subTest(kind=kind), self.assertRaisesRegex(b.BadRun, f"{kind} 2"):
                b.check_run(b.parse_distill_load(load_report(errors={kind: 2})), "distill-load")

    def test_responses_without_a_status_count_as_non_2xx(self):
        # distill-load files codes 0..999; a response it could not file is missing there.
        with self.assertRaisesRegex(b.BadRun, "5 non-2xx"):
            b.check_run(b.parse_distill_load(load_report(status={"200": 19995})), "distill-load")

    def test_no_requests_is_bad(self):
        with self.assertRaisesRegex(b.BadRun, "no requests"):
            b.check_run(b.parse_distill_load(load_report(status={}, requests=0)), "distill-load")

    def test_a_report_missing_a_field_raises(self):
        report = load_report()
        del report["errors"]
        with self.assertRaisesRegex(b.BadRun, "errors"):
            b.parse_distill_load(report)


def serve(test, response):
    """A listener on 127.0.0.1 in this process answering every request with `response`
    and closing: stands for the server under test, with no peer beyond the test."""
    listener = socket.create_server(("127.0.0.1", 0))
    test.addCleanup(listener.close)

    def loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(4096)
                    if not piece:
                        break
                    data += piece
                conn.sendall(response)

    threading.Thread(target=loop, daemon=True).start()
    return listener.getsockname()[1]


def write_program(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


class LoadGenerators(unittest.TestCase):
    """wrk() and distill_load() as benchmarks call them, with stand-in programs: the
    check must be on the path a benchmark takes, not only in the parser."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="benchlib-test-")
        self.output = os.path.join(self.dir, "output")
        # taskset -c CORE PROGRAM ARGS... -> PROGRAM ARGS... (no pinning in a test)
        write_program(self.dir, "taskset", '#!/bin/sh\nshift 2\nexec "$@"\n')
        write_program(self.dir, "wrk", f"""#!{sys.executable}
import sys
sys.stdout.write(open({self.output!r}).read())
sys.exit(int(open({self.output!r} + ".status").read()))
""")
        self.distill_load = write_program(self.dir, "distill-load", f"""#!{sys.executable}
import sys
args = sys.argv[1:]
open(args[args.index("--json") + 1], "w").write(open({self.output!r}).read())
sys.exit(int(open({self.output!r} + ".status").read()))
""")
        env = mock.patch.dict(os.environ, {"PATH": self.dir + os.pathsep + os.environ.get("PATH", "")})
        env.start()
        self.addCleanup(env.stop)
        binary = mock.patch.object(b, "release_bin", lambda name: os.path.join(self.dir, name))
        binary.start()
        self.addCleanup(binary.stop)

    def tearDown(self):
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def prints(self, text, status=0):
        with open(self.output, "w") as f:
            f.write(text)
        with open(self.output + ".status", "w") as f:
            f.write(str(status))

    def test_wrk_returns_a_checked_run(self):
        self.prints(WRK_GOOD)
        r = b.wrk("http://127.0.0.1:1/", 1, 50)
        self.assertIsNone(r["bad"])
        self.assertEqual(r["requests"], 640843)

    def test_wrk_raises_on_non_2xx_and_socket_errors(self):
        for out in (WRK_NON2XX, WRK_SOCKET, WRK_BOTH, WRK_NOTHING):
            self.prints(out)
            with self.subTest(out=out.splitlines()[-3]), self.assertRaises(b.BadRun):
                b.wrk("http://127.0.0.1:1/", 1, 50)

    def test_wrk_failing_is_a_bad_run(self):
        self.prints("", status=1)
        with self.assertRaisesRegex(b.BadRun, "wrk exited with status 1"):
            b.wrk("http://127.0.0.1:1/", 1, 50)

    def test_measured_keeps_the_check(self):
        self.prints(WRK_NON2XX)
        with self.assertRaises(b.BadRun):
            b.measured(lambda: b.wrk("http://127.0.0.1:1/", 1, 50), [])
        self.prints(WRK_GOOD)
        self.assertIsNone(b.measured(lambda: b.wrk("http://127.0.0.1:1/", 1, 50), [])["bad"])

    def test_take_turns_samples_hits_around_each_measured_run(self):
        hit = serve(self, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache-Status: HIT\r\n\r\nok")
        miss = serve(self, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache-Status: MISS\r\n\r\nok")
        args = mock.Mock(rounds=2, seconds=1, connections=50)
        self.prints(WRK_GOOD)
        with contextlib.redirect_stderr(io.StringIO()):
            runs = b.take_turns({"nginx": (hit, [])}, "/bytes/1024", args, "hit-1k", hits={"nginx": b.nginx_hit})
            self.assertEqual([r["bad"] for r in runs["nginx"]], [None, None])
            with self.assertRaisesRegex(b.BadRun, "hit-1k round 1 nginx before: .*not a cache hit"):
                b.take_turns({"nginx": (miss, [])}, "/bytes/1024", args, "hit-1k", hits={"nginx": b.nginx_hit})
            # wrk's own count still fails a turn whose samples are all hits
            self.prints(WRK_NON2XX)
            with self.assertRaisesRegex(b.BadRun, "warm-up: 42 non-2xx"):
                b.take_turns({"nginx": (hit, [])}, "/bytes/1024", args, "hit-1k", hits={"nginx": b.nginx_hit})

    def test_distill_load_returns_a_checked_run(self):
        self.prints(json.dumps(load_report()))
        r = b.distill_load("http://127.0.0.1:1/", 1, 50)
        self.assertIsNone(r["bad"])
        self.assertEqual(r["requests"], 20000)

    def test_distill_load_raises_on_non_2xx_and_errors(self):
        for report in (load_report(status={"200": 19999, "502": 1}), load_report(errors={"read": 1}),
                       load_report(status={}, requests=0)):
            self.prints(json.dumps(report))
            with self.subTest(report=report["status"]), self.assertRaises(b.BadRun):
                b.distill_load("http://127.0.0.1:1/", 1, 50)

    def test_distill_load_failing_is_a_bad_run(self):
        self.prints("{}", status=1)
        with self.assertRaisesRegex(b.BadRun, "distill-load exited with status 1"):
            b.distill_load("http://127.0.0.1:1/", 1, 50)


class Summaries(unittest.TestCase):
    def summarize(self, *args, **kw):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                return b.summarize(*args, **kw)
            finally:
                self.printed = out.getvalue()

    def test_good_runs_are_summarized(self):
        s = self.summarize("t", [good_run(2000), good_run(2200)], [good_run(1000), good_run(1000)], "a", "b")
        self.assertAlmostEqual(s["summary"]["rps"]["ratio"], 2.1)
        self.assertIn("rps", self.printed)

    def test_a_bad_run_is_refused_and_nothing_printed(self):
        bad = b.parse_wrk(WRK_NON2XX)
        with self.assertRaises(b.BadRun):
            b.check_run(bad, "wrk")
        bad.update(rps_per_cpu=1.0)
        for a_runs, b_runs in (([good_run(), bad], [good_run(), good_run()]),
                               ([good_run(), good_run()], [bad, good_run()])):
            with self.subTest(), self.assertRaisesRegex(b.BadRun, "bad run"):
                self.summarize("t", a_runs, b_runs, "a", "b")
            self.assertEqual(self.printed, "")

    def test_a_run_that_was_never_checked_is_refused(self):
        unchecked = b.parse_wrk(WRK_NON2XX)
        with self.assertRaisesRegex(b.BadRun, "never checked"):
            self.summarize("t", [good_run()], [unchecked], "a", "b")
        self.assertEqual(self.printed, "")

    def test_a_run_with_no_requests_is_refused(self):
        empty = good_run()
        empty["requests"] = 0
        with self.assertRaisesRegex(b.BadRun, "no requests"):
            self.summarize("t", [good_run()], [empty], "a", "b")
        self.assertEqual(self.printed, "")

    def test_unpaired_or_missing_runs_are_refused(self):
        for a_runs, b_runs in (([good_run()], [good_run(), good_run()]), ([], [])):
            with self.subTest(n=(len(a_runs), len(b_runs))), self.assertRaises(b.BadRun):
                self.summarize("t", a_runs, b_runs, "a", "b")

    def test_pairs_print_no_table_if_any_run_is_bad(self):
        bad = good_run()
        bad["bad"] = "3 non-2xx responses"
        runs = {"uring": [good_run()], "epoll": [good_run()], "nginx": [bad]}
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(b.BadRun):
            b.summarize_pairs("t", runs, [("uring", "epoll"), ("uring", "nginx")])
        self.assertEqual(out.getvalue(), "", "the good uring/epoll table must not be printed either")

    def test_a_benchmark_ends_non_zero_with_the_reason(self):
        def main(argv):
            b.check_run(b.parse_wrk(WRK_SOCKET), "hit-1k round 1 varnish")
            print("ratio 1.23")

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                self.assertRaises(SystemExit) as e:
            b.run_main(main, [])
        self.assertNotEqual(e.exception.code, 0)
        self.assertEqual(out.getvalue(), "")
        self.assertIn("hit-1k round 1 varnish: socket errors: read 12, timeout 3", err.getvalue())


class Responses(unittest.TestCase):
    def test_hits_are_told_from_misses(self):
        def resp(*headers):
            return b.Response(200, [(k.lower(), v) for k, v in headers], b"")

        self.assertTrue(b.distilld_hit(resp(("Cache-Status", "distilld; hit; ttl=3599"))))
        self.assertTrue(b.distilld_hit(resp(("Cache-Status", "origin; fwd=miss, distilld; hit"))))
        self.assertFalse(b.distilld_hit(resp(("Cache-Status", "distilld; fwd=miss; fwd-status=200; stored"))))
        self.assertFalse(b.distilld_hit(resp(("Cache-Status", "other; hit"))))
        self.assertFalse(b.distilld_hit(resp()))
        self.assertTrue(b.nginx_hit(resp(("X-Cache-Status", "HIT"))))
        for status in ("MISS", "EXPIRED", "BYPASS", "STALE", "UPDATING", "REVALIDATED"):
            self.assertFalse(b.nginx_hit(resp(("X-Cache-Status", status))), status)
        self.assertTrue(b.varnish_hit(resp(("X-Varnish", "32770 3"), ("Age", "2"))))
        self.assertFalse(b.varnish_hit(resp(("X-Varnish", "32770"), ("Age", "0"))))
        self.assertFalse(b.varnish_hit(resp()))

    def test_responses_are_read_whole_or_refused(self):
        r = b.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Status: distilld; hit\r\n\r\nhello")
        self.assertEqual((r.status, r.body, r.header("cache-status")), (200, b"hello", "distilld; hit"))
        r = b.parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n")
        self.assertEqual(r.body, b"hello")
        for cut in (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Le", b"", b"SSH-2.0-OpenSSH\r\n\r\n"):
            with self.subTest(cut=cut), self.assertRaises(b.BadRun):
                b.parse_response(cut)


class Sample(unittest.TestCase):
    """sample() against a listener in this process on 127.0.0.1: the raw-socket client
    end to end, with no peer beyond the test."""

    def serve(self, response):
        return serve(self, response)

    def test_all_hits_pass(self):
        port = self.serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Status: distilld; hit\r\n\r\nok")
        b.sample(port, "/bytes/1024", n=5, hit=b.distilld_hit)

    def test_a_miss_fails(self):
        port = self.serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                          b"Cache-Status: distilld; fwd=miss; stored\r\n\r\nok")
        with self.assertRaisesRegex(b.BadRun, "not a cache hit.*fwd=miss"):
            b.sample(port, "/bytes/1024", n=5, hit=b.distilld_hit)
        b.sample(port, "/bytes/1024", n=2)  # without `hit`, a 2xx miss is fine

    def test_a_status_outside_2xx_fails(self):
        for head in (b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n", b"HTTP/1.1 502 Bad Gateway\r\n"):
            port = self.serve(head + b"Content-Length: 0\r\n\r\n")
            with self.subTest(head=head[:12]), self.assertRaisesRegex(b.BadRun, "answered"):
                b.sample(port, "/", n=3)

    def test_nothing_listening_fails(self):
        s = socket.create_server(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaisesRegex(b.BadRun, "failed"):
            b.sample(port, "/", n=1)


class Settings(unittest.TestCase):
    """Benchmarks run distilld as shipped: the access log stays on unless a server is
    named for turning it off."""

    def test_the_default_config_keeps_the_shipped_log(self):
        for config in (b.distilld_config(), b.NO_CACHE):
            self.assertNotIn("access_log", config)
            self.assertNotIn("level", config)
            self.assertIn("access log on", b.describe_config(config))

    def test_nolog_turns_off_only_the_access_log(self):
        on, off = b.distilld_config(), b.distilld_config(access_log=False)
        self.assertEqual(set(off.splitlines()) - set(on.splitlines()), {"[log]", "access_log = false"})
        self.assertIn("access log OFF", b.describe_config(off))

    def test_tables_merge(self):
        config = b.distilld_config(loopback=False, server={"pin_workers": True}, log={"stats_interval_ms": 500})
        self.assertEqual(config, "[server]\npin_workers = true\n[log]\nstats_interval_ms = 500\n")

    def test_loopback_destinations_are_allowed_explicitly(self):
        config = b.distilld_config()
        self.assertIn('[forward]\ndestinations_allowed = ["127.0.0.0/8"]\n', config)
        self.assertIn('forward.destinations_allowed = ["127.0.0.0/8"]', b.describe_config(config))
        self.assertNotIn("[forward]", b.distilld_config(loopback=False))


def gif(frames, lct=False):
    """A GIF89a of 1x1 frames whose LZW data holds the bytes 0x00 0x2C."""
    out = bytearray(b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 6)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for _ in range(frames):
        out += b"\x21\xf9\x04\x00\x0a\x00\x00\x00"
        out += b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00" + (b"\x80" + b"\x00" * 6 if lct else b"\x00")
        out += b"\x02\x04\x00\x2c\x00\x2c\x00"
    return bytes(out + b"\x3b")


class GifFrames(unittest.TestCase):
    def test_frames_are_counted_by_their_blocks(self):
        for n in (1, 2, 12):
            self.assertEqual(b.gif_frames(gif(n)), n)
            self.assertEqual(b.gif_frames(gif(n, lct=True)), n)

    def test_bytes_that_look_like_a_frame_inside_lzw_data_are_not_one(self):
        one = gif(1)
        self.assertGreater(one.count(b"\x00\x2c") + one.count(b"\x21\xf9\x04"), 2)
        self.assertEqual(b.gif_frames(one), 1)

    def test_a_cut_gif_counts_what_came_and_other_files_none(self):
        self.assertEqual(b.gif_frames(gif(3)[:-12]), 2)
        self.assertEqual(b.gif_frames(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), 0)


class HitInstructions(unittest.TestCase):
    """hit-instructions' client: responses read back to back on a keep-alive connection,
    and what it refuses to count."""

    def setUp(self):
        import hit_instructions
        self.hi = hit_instructions

    def test_responses_that_arrive_together_are_read_one_by_one(self):
        a, z = socket.socketpair()
        with a, z:
            z.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Status: distilld; hit\r\n\r\nok"
                      b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            first, rest = self.hi.read_response(a, b"")
            second, rest = self.hi.read_response(a, rest)
        self.assertEqual((first.status, first.body, second.status, rest), (200, b"ok", 204, b""))
        self.assertTrue(b.distilld_hit(first))

    def test_a_response_without_length_or_cut_short_is_refused(self):
        for data in (b"HTTP/1.1 200 OK\r\n\r\nbody", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"):
            a, z = socket.socketpair()
            with a:
                z.sendall(data)
                z.close()
                with self.assertRaises(b.BadRun):
                    self.hi.read_response(a, b"")


if __name__ == "__main__":
    unittest.main()
