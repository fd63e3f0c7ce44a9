"""Benchmark: grade the generated cohort (tests/cohort_data.py, 30+ submissions) and say where the time goes.

    .venv/bin/python bench/bench_cohort.py [--jobs N] [--runner warm|kernel] [--no-sandbox] [--device cpu|cuda]
    .venv/bin/python bench/bench_cohort.py --executor ray [--jobs N]

With ``--executor ray`` the same cohort is graded twice, by local worker processes and by the actors of a
two-node Ray cluster started on this machine over loopback (one CPU a node, tests/raycluster.py), and Ray's
own cost is the difference in what carrying a submission to its worker and its record back costs (the
time from handing a submission out to its record, beyond the grading the worker measured itself).

Prints submissions per minute and the share of time that is not the student code's own execution:
per submission (kernel start, parameter injection, the grader's checks, process teardown) and for the
whole batch (that plus worker start-up, idle slots and the gradebook). The cohort deliberately holds
hanging and sleeping notebooks, so the numbers are also given for the notebooks that ran cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cohort_data import EXERCISE, make_cohort  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None, help="parallel submissions (default: from the machine)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--runner", default=None, help="warm or kernel (default: warm)")
    parser.add_argument("--no-sandbox", action="store_true", help="grade unconfined")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="ray: compare the local executor with a two-node Ray cluster on this machine")
    args = parser.parse_args()
    if args.executor == "ray":
        return compare_with_ray(args)

    from autograder.cohort import grade_cohort, regrade
    from autograder.executors.capacity import default_jobs
    from autograder.exercise import Exercise
    from autograder.gradebook import Gradebook
    from autograder.grading import GradeOptions
    from autograder.intake import Roster

    with tempfile.TemporaryDirectory(prefix="bench-cohort-") as tmp:
        cohort = make_cohort(Path(tmp), datetime.now(timezone.utc) + timedelta(days=7))
        os.environ["AUTOGRADER_CACHE"] = str(ROOT / ".cache")  # the course copy has no model cache of its own
        jobs = args.jobs or default_jobs(args.profile, Exercise(EXERCISE, cohort.course))
        with Gradebook(Path(tmp) / "gradebook.sqlite") as book:
            summary = grade_cohort(Exercise(EXERCISE, cohort.course), cohort.folder, book,
                                   GradeOptions(profile=args.profile, device=args.device),
                                   roster=Roster.load(cohort.roster), jobs=jobs, runner=args.runner or "warm", confined=not args.no_sandbox)
            records = [r.run_record() for r in book.rows(EXERCISE) if r.record]
            started = time.perf_counter()
            regrade(book, EXERCISE, cohort.course / "rubrics" / f"{EXERCISE}.toml")
            regrade_s = time.perf_counter() - started

    ran = [rec for rec in records if rec.status in ("graded", "timeout", "crashed")]
    clean = [rec for rec in ran if rec.status == "graded" and not rec.diagnostics.problem_cells]
    print(f"cohort: {cohort.files} files, {len(summary.rows)} students; graded {summary.graded} "
          f"({len(ran)} notebooks ran, {len(clean)} cleanly) with {summary.jobs} jobs on "
          f"{len(os.sched_getaffinity(0))} cores, runner {ran[0].diagnostics.runner}, profile {args.profile}")
    print(f"batch: {summary.elapsed:.1f} s, {summary.graded / summary.elapsed * 60:.1f} submissions/min "
          f"({len(ran) / summary.elapsed * 60:.1f} notebooks run/min)")
    student_code = sum(rec.diagnostics.notebook_time for rec in ran)
    print(f"  not the student code, whole batch: {1 - student_code / (summary.elapsed * summary.jobs):.0%} "
          "of slot time (elapsed x jobs)")
    for label, group in (("every notebook that ran", ran), ("cleanly graded notebooks", clean)):
        wall = sum(r.diagnostics.wall_time for r in group)
        notebook = sum(r.diagnostics.notebook_time for r in group)
        checks = sum(r.diagnostics.checks_time for r in group)
        if not wall:
            continue
        print(f"{label} ({len(group)}): {wall / len(group):.1f} s each; student code {notebook / wall:.0%}, "
              f"checks {checks / wall:.0%}, kernel start/bootstrap/teardown {(wall - notebook - checks) / wall:.0%} "
              f"-> not the student code: {1 - notebook / wall:.0%}")
    print(f"regrade of {len(records)} stored submissions: {regrade_s * 1000:.0f} ms "
          f"({regrade_s / len(records) * 1000:.2f} ms each)")


def compare_with_ray(args: argparse.Namespace) -> None:
    from statistics import mean, median

    from autograder.cohort import grade_cohort
    from autograder.exercise import Exercise
    from autograder.gradebook import Gradebook
    from autograder.grading import GradeOptions
    from autograder.intake import Roster
    from raycluster import Cluster

    jobs = args.jobs or 2  # the cluster's two one-CPU nodes hold two actors
    cluster = Cluster(cpus_per_node=1).start(nodes=2)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            cohort = make_cohort(Path(tmp), datetime.now(timezone.utc) + timedelta(days=7))
            os.environ["AUTOGRADER_COURSE_DIR"] = str(cohort.course)
            os.environ["AUTOGRADER_CACHE"] = str(ROOT / ".cache")
            results = {}
            for executor in ("local", "ray"):
                with Gradebook(Path(tmp) / f"{executor}.sqlite") as book:
                    results[executor] = grade_cohort(
                        Exercise(EXERCISE, cohort.course), cohort.folder, book,
                        GradeOptions(profile=args.profile, device=args.device or "cpu"),
                        roster=Roster.load(cohort.roster), jobs=jobs, runner=args.runner or "warm",
                        confined=not args.no_sandbox, executor=executor,
                        ray_address=cluster.address if executor == "ray" else None)
    finally:
        cluster.stop()
    print(f"cohort: {cohort.files} files, {jobs} workers each way, profile {args.profile}, "
          f"{len(os.sched_getaffinity(0))} cores")
    for executor, summary in results.items():
        carried = summary.dispatch
        print(f"{executor:5}: {summary.elapsed:.1f} s, {summary.graded / summary.elapsed * 60:.1f} submissions/min; "
              f"carrying a submission and its record: median {median(carried) * 1000:.0f} ms, "
              f"mean {mean(carried) * 1000:.0f} ms ({len(carried)} graded by workers)"
              + (f"; per node {dict(summary.nodes)}" if executor == "ray" else ""))
    local, ray = (median(results[e].dispatch) for e in ("local", "ray"))
    print(f"Ray's overhead per submission beyond local: {(ray - local) * 1000:.0f} ms (median)")
    same = [(r.student_id, r.status, r.score) for r in results["local"].rows] == \
        [(r.student_id, r.status, r.score) for r in results["ray"].rows]
    print(f"same statuses and scores for every student: {same}")


if __name__ == "__main__":
    main()
