#!/usr/bin/env python3
"""The cost of the admin listener and its metrics on the hit path: cache hits per server
CPU-second with the admin listener on (and scraped) vs off, in one run, A B A B.

Both run distilld's shipped defaults (access log on, to /dev/null), one shard on core 1,
distill-load (50 connections) and the origin on core 0, GET /bytes/1024 answered from
the cache (every sample before and after each run must be a hit). In the `on` runs a
scraper reads /metrics and /status.json every --scrape-every seconds (1 s by default:
fifteen times Prometheus' usual rate, so a worst case); the admin thread and the
scrapes are distilld's own CPU time, so they are in the figure. Target: within 2%.
"""

import argparse
import sys
import urllib.request

import benchlib as b

ORIGIN, ON, OFF, ADMIN = 18891, 18892, 18893, 18894
PATH = "/bytes/1024"


class Scraper(b.Background):
    """Reads /metrics and /status.json every `every` seconds while running."""

    def __init__(self, every):
        super().__init__()
        self.every, self.scrapes, self.failures = every, 0, 0

    def run(self):
        while not self.stop.wait(self.every):
            for page in ("/metrics", "/status.json"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}{page}", timeout=5) as r:
                        r.read()
                        self.scrapes += 1
                except OSError:
                    self.failures += 1



def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--scrape-every", type=float, default=1.0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    cfg = b.distilld_config()
    scrapes = failures = 0
    with b.Servers() as s:
        s.origin(ORIGIN)
        on = s.distilld(ON, ORIGIN, config=cfg, admin=f"127.0.0.1:{ADMIN}")
        off = s.distilld(OFF, ORIGIN, config=cfg)
        for port in (ON, OFF):
            b.sample(port, PATH, n=2, what="fill")

        def run(port, pids, name):
            b.sample(port, PATH, n=5, hit=b.distilld_hit, what=f"{name} before")
            url = f"http://127.0.0.1:{port}{PATH}"
            r = b.measured(lambda: b.distill_load(url, args.seconds, 50, what=name), pids)
            b.sample(port, PATH, n=5, hit=b.distilld_hit, what=f"{name} after")
            return r

        def run_on():
            nonlocal scrapes, failures
            with Scraper(args.scrape_every) as sc:
                r = run(ON, on, "admin on")
            scrapes, failures = scrapes + sc.scrapes, failures + sc.failures
            return r

        a_runs, b_runs = b.alternate(args.rounds, run_on, lambda: run(OFF, off, "admin off"), "hits")
    if failures or not scrapes:
        raise b.BadRun(f"the scraper failed {failures} times ({scrapes} scrapes)")
    b.check_runs(a_runs, b_runs)
    b.print_settings({"on": cfg + f"# --admin 127.0.0.1:{ADMIN}, scraped every {args.scrape_every} s\n",
                      "off": cfg + "# --admin off\n"})
    print(f"scrapes of /metrics and /status.json during the 'on' runs: {scrapes}, all answered")
    results = {"benchmark": "admin-cost", "args": vars(args), "scrapes": scrapes}
    results["hits"] = b.summarize("cache hits", a_runs, b_runs, "admin on", "admin off")
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
