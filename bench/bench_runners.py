"""Benchmark: this project's default grading against the usual way and otter-grader, on one cohort.

    .venv/bin/python bench/bench_runners.py [--exercises t5_decoding tokenizer] [--per-exercise 32]
                                            [--slow-sample N] [--threads N] [--quick]
                                            [--profile full --device cuda]   # on a GPU runner

One run, one machine, one cohort per exercise (3 of 4 submissions are the solution, each made
unique by a comment; 1 of 4 is the blank student notebook), tiny profile, one submission at a
time. Measured:

- project: ``Grader(exercise)`` with default options (the confined warm runner) grades the cohort, in a
  fresh process per exercise: the time includes that process's start, its imports and the
  zygote's start;
- usual: the way nbconvert / nbgrader / otter-grader grade, a fresh process per submission: a
  fresh Jupyter kernel executes the notebook (nbclient) and pytest runs the same checks (the
  project's kernel runner, started from scratch for each submission);
- otter: ``otter run`` per submission, with an autograder zip converted from the exercise's
  checks (see ``otter_zip``: only which variables and functions the checks read survive the
  conversion, so otter's tests are cheaper than the project's and its number is flattering).

On a GPU (``--device cuda``) it also reports the GPU memory one submission takes while graded: the
peak that nvidia-smi shows during the project's run, above what was in use before.

The student code's own time is the injected solution run in a process that has already
imported everything and run it once, plus the time the student functions the checks call spend
running (timed inside the student process); the project's overhead per submission is its time
per submission (steady state) minus that. The machine's load is sampled from /proc/stat so that the
CPU used by other processes during the run can be reported with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PYTHON = sys.executable


# --- the cohort -----------------------------------------------------------------------


def build_cohort(exercise: str, count: int, folder: Path) -> list[Path]:
    import nbformat

    from autograder.exercise import Exercise

    ex = Exercise(exercise)
    solution = nbformat.read(ex.solution_notebook, as_version=4)
    blank = nbformat.read(ex.student_notebook, as_version=4)
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        nb = blank if i % 4 == 3 else solution
        copy = nbformat.from_dict(json.loads(json.dumps(nb)))
        copy.cells.append(nbformat.v4.new_code_cell(f"# submission {i}"))
        path = folder / f"{exercise}-{i:03d}.ipynb"
        nbformat.write(copy, path)
        paths.append(path)
    return paths


def injected(grader, path: Path, out: Path) -> Path:
    """The notebook with the grading parameters written in, as the grader runs it (for otter, and
    for the student code's own time)."""
    import nbformat

    from autograder.notebook import inject_parameters

    nbformat.write(inject_parameters(nbformat.read(path, as_version=4), grader.parameters()), out)
    return out


# --- work done in child processes (so that each method pays its own start-up) --------


def child_project_batch(profile: str, device: str, exercise: str, *paths: str) -> None:
    """This project, default settings: one grader for the batch."""
    from autograder.exercise import Exercise
    from autograder.grading import GradeOptions, Grader

    with Grader(Exercise(exercise), GradeOptions(profile=profile, device=device)) as grader:
        print(json.dumps({"runner": grader.options.runner.label}), flush=True)
        for path in paths:
            result = grader.grade_file(Path(path))
            print(json.dumps(_summary(result)), flush=True)
        print(json.dumps({"zygote": getattr(grader.options.runner, "zygote_info", None)}), flush=True)


def child_usual_one(profile: str, device: str, exercise: str, path: str) -> None:
    """The usual way: a fresh process and a fresh kernel for one submission, then pytest."""
    from autograder.exercise import Exercise
    from autograder.grading import GradeOptions, Grader
    from autograder.runners.kernel import KernelRunner

    grader = Grader(Exercise(exercise), GradeOptions(profile=profile, device=device, runner=KernelRunner()))
    print(json.dumps(_summary(grader.grade_file(Path(path)))), flush=True)


def child_own_time(profile: str, notebook: str) -> None:
    """The solution's own execution time, in a process that has imported everything and run it once, on the
    threads the grader gives a student process."""
    from autograder.grading import default_threads
    from autograder.models.provision import store_for

    os.environ.update(store_for(profile).require().env())  # before transformers reads it
    import torch

    torch.set_num_threads(default_threads(profile))
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    cells = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    os.chdir(tempfile.mkdtemp(prefix="bench-own-"))
    shell = InteractiveShell.instance()
    times = []
    for _ in range(4):  # the first run warms the process up and is not counted
        shell.reset(new_session=False)
        started = time.perf_counter()
        for source in cells:
            result = shell.run_cell(source, silent=True)
            if not result.success:
                raise SystemExit(f"the solution failed in a warm process: {result.error_in_exec!r}")
        times.append(time.perf_counter() - started)
    print(json.dumps({"seconds": times[1:]}))


def _summary(result) -> dict:
    d = result.diagnostics
    return {
        "submission": Path(result.submission).name, "status": result.status, "score": result.score,
        "checks": [[c.id, c.outcome, c.message] for c in result.checks],
        "wall": d.wall_time, "notebook": d.notebook_time, "checks_time": d.checks_time,
        "student_calls": d.student_call_time, "runner": d.runner,
    }


# --- otter ----------------------------------------------------------------------------


def otter_zip(exercise: str, folder: Path) -> Path:
    """An otter autograder zip whose tests check that what the exercise's checks read exists.

    The project's checks are pytest functions with fixtures (values and calls from a live student
    process, expected values from the grader's own model); otter's tests are doctests run in the
    student's namespace. What converts mechanically is the set of names the checks read."""
    from autograder.exercise import Exercise

    pattern = re.compile(r"submission\.(?:value|tensor|has|call)\(\s*[\"'](\w+)[\"']")
    names = sorted({m for f in Exercise(exercise).check_files() for m in pattern.findall(f.read_text())})
    source = folder / f"otter-{exercise}"
    (source / "tests").mkdir(parents=True)
    (source / "otter_config.json").write_text("{}")
    for name in names or ["__name__"]:
        case = {"code": f">>> {name!r} in globals()\nTrue", "hidden": False, "locked": False}
        test = {"name": name, "points": 1,
                "suites": [{"cases": [case], "scored": True, "setup": "", "teardown": "", "type": "doctest"}]}
        (source / "tests" / f"{name}.py").write_text(f"OK_FORMAT = True\ntest = {test!r}\n")
    target = folder / f"otter-{exercise}.zip"
    with zipfile.ZipFile(target, "w") as z:
        for file in source.rglob("*"):
            z.write(file, file.relative_to(source))
    return target


# --- measuring ------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by the whole machine and by this benchmark (itself and its children)."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        return time.monotonic(), busy, own

    def report(self) -> dict:
        t1, busy1, own1 = self._sample()
        t0, busy0, own0 = self.start
        wall, busy, own = t1 - t0, busy1 - busy0, own1 - own0
        cores = os.cpu_count() or 1
        return {"wall": wall, "machine_busy": busy / (wall * cores), "ours": own / (wall * cores),
                "others": max(0.0, busy - own) / (wall * cores)}


class GpuMemoryMeter:
    """Peak GPU memory in use on the machine (nvidia-smi, every 0.2 s) while a method runs, above what was
    in use before: with one submission at a time, the memory one graded submission takes (grader and
    student process together)."""

    def __init__(self) -> None:
        self.baseline = self._used()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _used() -> int:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=True).stdout
        return sum(int(line) for line in out.split())  # MiB, all GPUs

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> GpuMemoryMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def per_submission_mib(self) -> int:
        return self.peak - self.baseline


def run_child(args: list[str], env: dict | None = None) -> tuple[float, list[dict]]:
    started = time.monotonic()
    proc = subprocess.run([PYTHON, __file__, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return elapsed, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def timed_each(commands: list[list[str]], env: dict | None = None) -> tuple[float, list[dict]]:
    total, results = 0.0, []
    for command in commands:
        started = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        total += time.monotonic() - started
        if proc.returncode:
            raise SystemExit(f"{command[:3]} failed:\n{proc.stderr[-3000:]}")
        results += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return total, results


def per_minute(count: int, seconds: float) -> float:
    return count / seconds * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercises", nargs="+", default=None, help="default: t5_decoding and tokenizer (if present)")
    parser.add_argument("--per-exercise", type=int, default=32, help="submissions per exercise (default 32)")
    parser.add_argument("--slow-sample", type=int, default=None,
                        help="grade only this many submissions per exercise the usual way and with otter "
                             "(their rate is per submission; default: all)")
    parser.add_argument("--no-otter", action="store_true")
    parser.add_argument("--profile", default="tiny", help="model profile (full: real sizes, for a GPU machine)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for every process of every method (default: the grader's default_threads "
                             "for the project and the usual way, the libraries' own for otter)")
    parser.add_argument("--quick", action="store_true", help="4 submissions per exercise, 2 for the slow methods")
    args = parser.parse_args()
    if args.quick:
        args.per_exercise, args.slow_sample = 4, 2

    from autograder.exercise import Exercise, available
    from autograder.grading import GradeOptions, Grader, default_threads
    from autograder.models.provision import store_for
    from autograder.runners.kernel import KernelRunner

    exercises = args.exercises or [e for e in ("t5_decoding", "tokenizer") if e in available()]
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every child, kernel and zygote
    store_env = store_for(args.profile).require().env()
    setting = [args.profile, args.device]
    slow = args.slow_sample or args.per_exercise
    meter = CpuMeter()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-runners-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average before: {load_before[0]:.2f}; "
          f"threads per process: {default_threads(args.profile)} (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print(f"cohort: {args.per_exercise} submissions per exercise ({', '.join(exercises)}), profile {args.profile}, "
          f"device {args.device}; "
          f"usual way and otter on the first {slow} of each\n")

    rows = {}
    for exercise in exercises:
        paths = build_cohort(exercise, args.per_exercise, work / exercise)
        sample = paths[:slow]
        # Only for parameters(): this grader's runner never starts.
        params = Grader(Exercise(exercise), GradeOptions(profile=args.profile, device=args.device, runner=KernelRunner()))
        solution = injected(params, Exercise(exercise).solution_notebook, work / f"{exercise}-solution.ipynb")
        own_runs = run_child(["--own-time", args.profile, str(solution)])[1][0]["seconds"]

        if args.device.startswith("cuda"):
            with GpuMemoryMeter() as gpu:
                project_s, lines = run_child(["--project-batch", *setting, exercise, *map(str, paths)])
        else:
            gpu, (project_s, lines) = None, run_child(["--project-batch", *setting, exercise, *map(str, paths)])
        runner_name, project, zygote = lines[0]["runner"], lines[1:-1], lines[-1]["zygote"]
        own_runs += run_child(["--own-time", args.profile, str(solution)])[1][0]["seconds"]  # before and after
        own = statistics.median(own_runs)
        usual_s, usual = timed_each([[PYTHON, __file__, "--usual-one", *setting, exercise, str(p)] for p in sample])
        otter_s = None
        if not args.no_otter:
            archive = otter_zip(exercise, work)
            (work / "otter-subs").mkdir(exist_ok=True)
            subs = [injected(params, p, work / "otter-subs" / p.name) for p in sample]
            otter_s, _ = timed_each([[str(Path(PYTHON).with_name("otter")), "run", "-a", str(archive), "-o",
                                      str(work / "otter-subs"), "--no-logo", str(sub)] for sub in subs],
                                    env={**os.environ, **store_env})
        same = sum(project[i]["checks"] == usual[i]["checks"] and project[i]["status"] == usual[i]["status"]
                   for i in range(len(usual)))
        # Steady state: the solution submissions after the first (which also starts the zygote).
        steady = [r for i, r in enumerate(project) if i % 4 != 3 and i > 0] or project[:1]
        rows[exercise] = r = dict(
            own=own, n=len(paths), n_slow=len(sample), project_s=project_s, usual_s=usual_s, otter_s=otter_s,
            wall=statistics.median(x["wall"] for x in steady),
            notebook=statistics.median(x["notebook"] for x in steady),
            checks=statistics.median(x["checks_time"] for x in steady),
            student_calls=statistics.median(x["student_calls"] for x in steady),
            overhead=statistics.median(x["wall"] - own - x["student_calls"] for x in steady),
            runner_overhead=statistics.median(x["wall"] - x["checks_time"] - own for x in steady),
        )
        print(f"== {exercise}: the solution's own time in a warm process {own:.3f} s "
              f"(median of {len(own_runs)} runs, {min(own_runs):.3f}-{max(own_runs):.3f} s)")
        print(f"   project ({runner_name}): {r['n']} in {project_s:.1f} s = {per_minute(r['n'], project_s):.1f}/min; "
              f"first submission {project[0]['wall']:.1f} s" + (
                  f" (zygote: imports {zygote['import_seconds']:.1f} s, warm-up {zygote['warm_up_seconds']:.1f} s, "
                  f"learning which pages children prefault {zygote['prefault_seconds']:.1f} s, "
                  f"{zygote['prefault_bytes'] / 2**20:.0f} MiB)"
                  if zygote else "") + (f"; GPU memory per submission {gpu.per_submission_mib} MiB" if gpu else ""))
        print(f"   usual way (fresh kernel + pytest per submission): {len(sample)} in {usual_s:.1f} s = "
              f"{per_minute(len(sample), usual_s):.1f}/min; same outcomes as the project on {same}/{len(usual)}")
        if otter_s is not None:
            print(f"   otter run: {len(sample)} in {otter_s:.1f} s = {per_minute(len(sample), otter_s):.1f}/min")
        print(f"   a solution submission, steady state: {r['wall']:.2f} s (notebook {r['notebook']:.2f} s, grader's "
              f"checks {r['checks']:.2f} s, of which {r['student_calls']:.2f} s in the student functions they call); "
              f"beyond the student code's own time: {r['overhead']:.2f} s, of which {r['runner_overhead']:.2f} s "
              "outside the checks\n", flush=True)

    n = sum(r["n"] for r in rows.values())
    n_slow = sum(r["n_slow"] for r in rows.values())
    project_rate = per_minute(n, sum(r["project_s"] for r in rows.values()))
    usual_rate = per_minute(n_slow, sum(r["usual_s"] for r in rows.values()))
    print("== all exercises")
    print(f"   project: {project_rate:.1f} submissions/min; usual way: {usual_rate:.1f}/min; "
          f"ratio {project_rate / usual_rate:.1f}x (target >= 10x)")
    if not args.no_otter:
        otter_rate = per_minute(n_slow, sum(r["otter_s"] for r in rows.values()))
        print(f"   otter run: {otter_rate:.1f}/min; project / otter {project_rate / otter_rate:.1f}x")
    for exercise, r in rows.items():
        print(f"   {exercise}: overhead per submission beyond the student code {r['overhead']:.2f} s (target < 0.3 s); "
              f"leaving out the grader's checks {r['runner_overhead']:.2f} s")
    cpu = meter.report()
    print(f"   conditions: {cpu['wall'] / 60:.1f} min; machine CPU busy {cpu['machine_busy']:.0%} "
          f"(this benchmark {cpu['ours']:.0%}, other processes {cpu['others']:.0%}); load average "
          f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")


CHILDREN = {"--project-batch": child_project_batch, "--usual-one": child_usual_one, "--own-time": child_own_time}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        CHILDREN[sys.argv[1]](*sys.argv[2:])
    else:
        main()
