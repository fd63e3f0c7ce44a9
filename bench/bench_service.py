"""Benchmark: a burst of uploads to the submission service, the time until the last result.

    .venv/bin/python bench/bench_service.py [--students 50] [--each 2] [--jobs N] [--spread 60]

Starts `autograder serve` on the t5_decoding course of tests/serving.py (tiny profile), sends
``students x each`` notebooks through the JSON API within ``--spread`` seconds (a solution and a
wrong answer per student, in random order, from 8 client threads), then polls until every
acknowledged upload has its result. Prints the time to the last result, the upload latency and
the grading rate; fails if any upload is lost or ends other than graded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from serving import burst  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--each", type=int, default=2, help="uploads per student")
    parser.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default 2)")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the uploads are sent")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-service-") as root:
        m = burst(Path(root), args.students, args.each, args.jobs, args.spread)
    print(f"{m['uploads']} uploads from {m['students']} students sent in {m['sent_in']:.1f} s, graded {m['jobs']} at "
          f"a time: last result {m['last_result']:.1f} s after the first upload ({m['rate']:.1f} graded/min); "
          f"upload answered in {m['upload_median'] * 1000:.0f} ms median, {m['upload_max'] * 1000:.0f} ms max; "
          f"statuses {m['statuses']}, {m['graded_rows']} graded rows")
    if m["statuses"] != {"graded": m["uploads"]} or m["graded_rows"] != m["uploads"]:
        sys.exit("not every upload ended as its own graded row")


if __name__ == "__main__":
    main()
