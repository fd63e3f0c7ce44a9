"""Every exercise graded at the course's real model sizes on a CPU, before a GPU runner ever sees it.

Prepares the ``full`` profile (real dimensions, random weights) if needed, then grades each exercise's solution
and blank student notebook with ``autograder run --profile full --device cpu`` in the default (confined, warm)
runner, one notebook per run, and prints per notebook: the score, the wall time, and the peak memory (resident)
of the grader process and of the student's process. A solution must get full marks and a blank notebook zero;
the exit status says whether they did.

    .venv/bin/python bench/full_check.py                      # `make test-full`; under 20 minutes on 2 cores
    .venv/bin/python bench/full_check.py --exercises tokenizer
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ["t5_decoding", "tokenizer", "prompting", "sft_lora"]
AUTOGRADER = str(Path(sys.executable).parent / "autograder")
SANDBOX_UID_BASE = 2_000_000_000  # runners/confine.py: run uids (when the grader runs as root)


class PeakMemory(threading.Thread):
    """Samples a grading process tree: the grader (the `autograder` process itself) and the student's process (the
    largest process of the tree running under a sandbox uid, else the largest below the grader's own children)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.grader = self.student = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            try:
                self.grader = max(self.grader, self.root.memory_info().rss)
                children = self.root.children(recursive=True)
                direct = {p.pid for p in self.root.children()}
            except psutil.Error:
                continue
            for process in children:
                try:
                    caged = process.uids().real >= SANDBOX_UID_BASE
                    if caged or (os.geteuid() != 0 and process.pid not in direct):
                        self.student = max(self.student, process.memory_info().rss)
                except psutil.Error:
                    pass


def grade(exercise: str, notebook: Path, out: Path) -> dict:
    started = time.monotonic()
    process = subprocess.Popen([AUTOGRADER, "run", exercise, str(notebook), "--profile", "full", "--device", "cpu",
                                "--json", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peak = PeakMemory(process.pid)
    peak.start()
    output, _ = process.communicate()
    peak.done.set()
    peak.join()
    wall = time.monotonic() - started
    if not out.is_file():
        raise SystemExit(f"{exercise} {notebook.name}: no result ({process.returncode}):\n{output[-3000:]}")
    result = json.loads(out.read_text())
    tests = result["tests"]
    return {"exercise": exercise, "notebook": notebook.name, "score": result["score"],
            "max": sum(t["max_score"] for t in tests), "status": result["extra_data"]["status"],
            "failed": [t["number"] for t in tests if t.get("status") == "failed"],
            "wall_s": round(wall, 1), "grading_s": result["execution_time"],
            "grader_gib": round(peak.grader / 2**30, 2), "student_gib": round(peak.student / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercises", nargs="*", default=EXERCISES)
    args = parser.parse_args()
    started = time.monotonic()
    subprocess.run([AUTOGRADER, "models", "prepare", "--profile", "full"], cwd=ROOT, check=True)
    prepared = time.monotonic() - started
    rows, wrong = [], []
    with tempfile.TemporaryDirectory(prefix="full-check-") as scratch:
        for exercise in args.exercises:
            for kind, notebook in (("solution", ROOT / "solutions" / exercise / f"{exercise}.ipynb"),
                                   ("blank", ROOT / "assignments" / exercise / f"{exercise}.ipynb")):
                row = {"kind": kind, **grade(exercise, notebook, Path(scratch) / f"{exercise}-{kind}.json")}
                rows.append(row)
                print(json.dumps(row), flush=True)
                solution = kind == "solution"
                if row["score"] != (row["max"] if solution else 0) or (solution and row["status"] != "graded"):
                    wrong.append(f"{exercise} {kind}: {row['score']:g} / {row['max']:g} ({row['status']}), "
                                 f"failed {row['failed']}")
    print(f"\nfull profile prepared in {prepared:.0f} s; everything in {time.monotonic() - started:.0f} s\n")
    print("| exercise | notebook | score | wall time | grader peak | student peak |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['exercise']} | {r['kind']} | {r['score']:g} / {r['max']:g} | {r['wall_s']:.0f} s | "
              f"{r['grader_gib']:.1f} GiB | {r['student_gib']:.1f} GiB |")
    if wrong:
        raise SystemExit("full-size check failed:\n" + "\n".join(wrong))


if __name__ == "__main__":
    main()
