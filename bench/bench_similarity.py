"""Benchmark: the similarity report on the planted cohort (how well copies and independent solutions are told apart)
and on cohorts of 250, 500 and 1,000 notebooks (how long it takes, and how that grows).

    .venv/bin/python bench/bench_similarity.py
    .venv/bin/python bench/bench_similarity.py --dolos /path/with/node_modules    # also Dolos, on the same set

The planted cohort is tests/similarity_data.py's: 40 independent solutions (any two differ in at least four of
eight functions and share the rest word for word) and 8 of them copied with each disguise and with all four.
For each tool it prints the lowest score of a copied pair, the highest of an independent pair, and at the
tool's threshold the copies found (recall) and the independent pairs flagged. With --dolos, Dolos
(@dodona/dolos-lib, installed with npm in that folder, its tree-sitter parsers built) analyses the same
notebooks' code as .py files.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from autograder.similarity import THRESHOLD, Work, code_text, compare  # noqa: E402
from similarity_data import DISGUISES, STARTER, disguised, notebook_cells, planted  # noqa: E402

DOLOS = """
import { Dolos } from "@dodona/dolos-lib";
const files = process.argv.slice(2);
const report = await new Dolos({ language: "python" }).analyzePaths(files);
const out = report.allPairs().map(p => [p.leftFile.path, p.rightFile.path, p.similarity]);
console.log(JSON.stringify(out));
"""


def quality(scores: dict[frozenset, float], copies: set[frozenset], everyone: list[str], threshold: float) -> str:
    pairs = {frozenset((a, b)) for i, a in enumerate(everyone) for b in everyone[i + 1:]}
    copied = [scores.get(p, 0.0) for p in copies]
    independent = [scores.get(p, 0.0) for p in pairs - copies]
    def at(t: float) -> tuple[int, int]:
        return sum(s >= t for s in copied), sum(s >= t for s in independent)

    found, false = at(threshold)
    best = max(sorted(set(copied)), key=lambda t: at(t)[0] - at(t)[1])  # the threshold that does best on this set
    return (f"copied pairs score {min(copied):.2f} or more, independent pairs at most {max(independent):.2f}; at "
            f"{threshold:.2f}: {found}/{len(copied)} copies found, {false} of {len(independent)} independent pairs "
            f"flagged; at its best threshold here ({best:.2f}): {at(best)[0]} found, {at(best)[1]} flagged")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dolos", type=Path, help="a folder whose node_modules holds @dodona/dolos-lib")
    parser.add_argument("--dolos-threshold", type=float, default=0.75)
    args = parser.parse_args()
    cohort, copies = planted()
    works = [Work(who, code_text(cells)) for who, cells in cohort.items()]
    started = time.perf_counter()
    found = compare(STARTER, works, threshold=0.0)
    print(f"copydetect (this project's report), {len(works)} notebooks in {time.perf_counter() - started:.2f} s: "
          + quality({frozenset((p.first.who, p.second.who)): p.score for p in found}, copies, list(cohort),
                    THRESHOLD))
    if args.dolos:
        with tempfile.TemporaryDirectory(prefix="dolos-") as folder:
            paths = []
            for who, cells in cohort.items():  # the starter code left out, as this project's report leaves it out
                body = [c for c in cells if c not in STARTER]
                (Path(folder) / f"{who}.py").write_text(code_text(body))
                paths.append(str(Path(folder) / f"{who}.py"))
            script = args.dolos / "similarity.mjs"
            script.write_text(DOLOS)
            started = time.perf_counter()
            done = subprocess.run(["node", str(script), *paths], capture_output=True, text=True, cwd=args.dolos)
            if done.returncode:
                sys.exit(f"Dolos did not run: {done.stderr[-2000:]}")
            scores = {frozenset((Path(a).stem, Path(b).stem)): s for a, b, s in json.loads(done.stdout)}
            print(f"Dolos {len(paths)} files in {time.perf_counter() - started:.2f} s: "
                  + quality(scores, copies, list(cohort), args.dolos_threshold))
    rng = random.Random(1)
    for size in (250, 500, 1000):
        made = []
        for n in range(size):
            cells = notebook_cells(tuple(rng.randrange(3) for _ in range(8)))
            chosen = tuple(d for d in DISGUISES if rng.random() < 0.3)
            made.append(Work(f"s{n}", code_text(disguised(cells, chosen))))
        started = time.perf_counter()
        flagged = compare(STARTER, made)
        print(f"{size} notebooks: {time.perf_counter() - started:.1f} s, {len(flagged)} pairs flagged")


if __name__ == "__main__":
    main()
