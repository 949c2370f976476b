#!/usr/bin/env python3
"""A/B of two running openset servers on the issue-5 queries.

Whole benchmark runs on this machine swing by up to 2x, so a change is
judged by alternating each query between two servers holding the same
data: the build under test and a baseline build, each on its own copy of
one data directory (a directory is locked by the server using it):

    ./target/release/openset serve --port 8099 --partitions 4 --data-dir /tmp/a &
    /path/to/baseline/openset serve --port 8098 --partitions 4 --data-dir /tmp/b &
    python3 bench/ab.py --load bench/out/events_10000000_1.ndjson.gz   # once
    python3 bench/ab.py [--new 8099] [--base 8098] [--queries q3,q6] [--passes 9]

(the NDJSON file is the one `compare.py` generates). Restarted servers
keep their data: later A/Bs need no `--load`.

Prints, per query, the median of the alternated runs on each server, the
ratio new / base, and whether both answered the same. Two copies of one
directory differ by a few percent even with the same build: swap the
ports once before believing a small ratio.
"""

import argparse
import http.client
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the runner's queries and HTTP client)


class Server(compare.Openset):
    """An already running server on a loopback port (no process of ours)."""

    def __init__(self, port):
        self.host, self.port = "127.0.0.1", port
        self.conn = http.client.HTTPConnection(self.host, port, timeout=600)
        # `load` reads a resident size from `proc.pid`; ours stands in (the
        # figure is not used here).
        self.proc = types.SimpleNamespace(pid=os.getpid())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new", type=int, default=8099, help="port of the build under test")
    ap.add_argument("--base", type=int, default=8098, help="port of the baseline build")
    ap.add_argument("--queries", default="q3,q5,q6,q7", help="comma list of q1..q7")
    ap.add_argument("--passes", type=int, default=9)
    ap.add_argument("--load", metavar="NDJSON_GZ", help="load this file into both servers and stop")
    a = ap.parse_args()
    if a.load:
        for port in (a.new, a.base):
            n, secs, _, _ = Server(port).load(a.load)
            print(f"port {port}: loaded {n} events in {secs:.1f} s")
        return
    # A server just started or loaded moves its rows onto huge pages first.
    for port in (a.new, a.base):
        Server(port).wait_for_maintenance()
    names = ["q1", "q2", "q3", "q4", "q5", "q6", "q7"]
    new = dict(zip(names, compare.openset_queries(Server(a.new))))
    base = dict(zip(names, compare.openset_queries(Server(a.base))))
    for q in a.queries.split(","):
        same = new[q]() == base[q]()  # also the warm-up run
        tn, tb = [], []
        for _ in range(a.passes):
            for f, times in ((new[q], tn), (base[q], tb)):
                t = time.perf_counter()
                f()
                times.append((time.perf_counter() - t) * 1000)
        mn, mb = statistics.median(tn), statistics.median(tb)
        print(f"{q} new {mn:7.1f} ms  base {mb:7.1f} ms  ratio {mn / mb:5.2f}  "
              f"answers {'same' if same else 'DIFFERENT'}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
