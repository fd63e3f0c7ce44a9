"""Benchmark: a burst of uploads to the submission service, the time until the last result.

    .venv/bin/python bench/bench_service.py [--students 50] [--each 2] [--jobs N] [--spread 60]
    .venv/bin/python bench/bench_service.py --executor both --students 150 --each 2 --spread 180

Starts `autograder serve` on the t5_decoding course of tests/serving.py (tiny profile), sends
``students x each`` notebooks through the JSON API within ``--spread`` seconds (a solution and a
wrong answer per student, in random order, from 8 client threads), then polls until every
acknowledged upload has its result. Prints the time to the last result, the upload latency and
the grading rate; fails if any upload is lost or ends other than graded. ``--executor ray`` grades
on a two-node Ray cluster started on this machine over loopback (one CPU each, as the tests' cluster);
``both`` runs local and then Ray in one run and prints Ray's cost per submission (the difference of
the bursts' times to their last result, per upload).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from raycluster import Cluster  # noqa: E402
from serving import burst  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--each", type=int, default=2, help="uploads per student")
    parser.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default 2)")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the uploads are sent")
    parser.add_argument("--executor", choices=["local", "ray", "both"], default="local")
    args = parser.parse_args()
    measured = {}
    for executor in (["local", "ray"] if args.executor == "both" else [args.executor]):
        with tempfile.TemporaryDirectory(prefix="bench-service-") as root:
            if executor == "local":
                measured[executor] = burst(Path(root), args.students, args.each, args.jobs, args.spread)
                continue
            cluster = Cluster(cpus_per_node=1).start(nodes=2)
            try:
                measured[executor] = burst(Path(root), args.students, args.each, args.jobs, args.spread,
                                           "--executor", "ray", "--ray-address", cluster.address)
            finally:
                cluster.stop()
    for executor, m in measured.items():
        print(f"{executor}: {m['uploads']} uploads from {m['students']} students sent in {m['sent_in']:.1f} s, graded "
              f"{m['jobs']} at a time: last result {m['last_result']:.1f} s after the first upload, "
              f"{m['after_last_upload']:.1f} s after the last one ({m['rate']:.1f} graded/min); upload answered in "
              f"{m['upload_median'] * 1000:.0f} ms median, {m['upload_max'] * 1000:.0f} ms max; statuses "
              f"{m['statuses']}, {m['graded_rows']} graded rows")
    if len(measured) == 2:
        cost = (measured["ray"]["last_result"] - measured["local"]["last_result"]) / measured["ray"]["uploads"]
        print(f"Ray's cost per submission: {cost * 1000:+.0f} ms (the burst's time to its last result, Ray minus "
              "local, per upload)")
    for m in measured.values():
        if m["statuses"] != {"graded": m["uploads"]} or m["graded_rows"] != m["uploads"]:
            sys.exit("not every upload ended as its own graded row")


if __name__ == "__main__":
    main()
