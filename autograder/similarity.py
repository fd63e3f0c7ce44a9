"""Copying between students: a similarity report over a cohort's code, a lead for a person to judge.

Every current submission of an exercise is compared with every other (and with earlier cohorts' submissions,
which are never compared with each other), on the code cells the grader stored with its outcomes
(``RunRecord.code``), minus the starter notebook's own code (what every student was given). The comparison is
copydetect's (winnowing over Pygments tokens, identifiers, strings and comments normalised away: renamed
variables, changed comments and whitespace, reordered cells and functions and added dead code leave most of a
copy's fingerprints in place), all on this machine: no student code leaves it. To stay fast on a large cohort,
which pairs are worth comparing in full is decided first from the fingerprints every notebook shares with every
other, counted at once as a product of sparse matrices; only those pairs are compared and highlighted.

A pair is a lead, never a verdict: the pages say so, and nothing here touches a score.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError
from .exercise import Exercise
from .gradebook import Gradebook
from .i18n import L_, Language, translations
from .notebook import InvalidNotebook, code_cells, read_notebook
from .paths import write_atomic
from .text import spreadsheet_cell

NOISE = 12  # copydetect's k: matches shorter than this many normalised characters are noise
GUARANTEE = 24  # a match at least this long is always found (winnowing window = GUARANTEE - NOISE + 1)
# A pair is flagged when this share of either notebook's code is found in the other. On the planted cohort of
# tests/similarity_data.py every disguised copy scores 0.88 or more, and independent solutions that share up to half
# their functions word for word at most 0.78 (0.86 and 0.80 at worst over a dozen other k-gram hashes; see the
# README): students of one lecture write alike, and the threshold sits in the middle of the gap.
THRESHOLD = 0.83
CANDIDATE = 0.5  # pairs sharing less than this share of fingerprints (either way) are not compared in full
SHOWN = 100  # flagged pairs with a page of their own, best first
KGRAM_BASE = 0x9E3779B97F4A7C15  # odd: the polynomial hash below is a bijection of each k-gram's last character


@dataclass
class Work:
    """One notebook's code: whose, from which cohort (``""``: this one), and the text compared."""

    who: str
    code: str
    cohort: str = ""
    fingerprint: object = None  # copydetect.CodeFingerprint


@dataclass
class Pair:
    score: float  # the larger of the two shares
    first: Work
    second: Work
    shares: tuple[float, float]  # of each notebook's code, the share found in the other
    slices: tuple = ()  # where, in each notebook's code: copydetect's slices


@dataclass
class Report:
    exercise: str
    compared: int  # notebooks of this cohort with code
    references: int  # notebooks of earlier cohorts
    threshold: float
    pairs: list[Pair] = field(default_factory=list)  # flagged, best first
    left_out: list[str] = field(default_factory=list)  # students whose stored record has no code (graded before)


def code_text(cells: Iterable[str]) -> str:
    """A notebook's code cells as the one text that is fingerprinted."""
    # IPython's magics and shell escapes are not Python: commented out, so the tokenizer reads the rest as Python
    lines = []
    for cell in cells:
        lines += [f"# {line}" if line.lstrip().startswith(("%", "!")) else line for line in cell.splitlines()]
        lines.append("")
    return "\n".join(lines)


def cohort_code(book: Gradebook, exercise: str) -> tuple[list[Work], list[str]]:
    """Each current submission's code, and the students whose stored record has none."""
    works, left_out = [], []
    for row in book.rows(exercise):
        record = book.record_of(row)
        if record is None:
            continue  # missing, pending, or damaged: nothing to compare
        if record.code:
            works.append(Work(row.student_id, code_text(record.code)))
        elif record.status != "invalid":
            left_out.append(row.student_id)
    return works, left_out


def earlier_code(place: Path, exercise: str) -> list[Work]:
    """An earlier cohort's code: a gradebook (its current rows of the exercise) or a folder of notebooks."""
    cohort = place.name
    if place.is_file():
        try:
            with Gradebook(place) as book:
                works, _ = cohort_code(book, exercise)
        except (UserError, sqlite3.DatabaseError) as exc:
            raise UserError(L_("--against {path} is neither a folder of notebooks nor a gradebook this tool can open "
                               "({problem}).").format(path=str(place), problem=str(exc))) from None
        return [Work(w.who, w.code, cohort) for w in works]
    if not place.is_dir():
        raise UserError(L_("--against {path} does not exist; give a folder of notebooks or a gradebook.").format(
            path=str(place)))
    works = []
    for path in sorted(place.rglob("*.ipynb")):
        try:
            cells = code_cells(read_notebook(path.read_bytes()))
        except (InvalidNotebook, OSError):
            continue  # an earlier year's broken file has nothing to match
        works.append(Work(str(path.relative_to(place)), code_text(cells), cohort))
    return works


def stable_kgram_hashes(string: str, k: int) -> np.ndarray:
    """Every k-gram's hash, the same in every process. (copydetect hashes k-grams with Python's ``hash()``, which is
    salted per process: the same cohort would give other fingerprints, so other scores, on every run.) A polynomial
    hash of the code points modulo 2**64, mixed by splitmix64's finaliser so that winnowing's minima are spread."""
    codes = np.frombuffer(string.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = len(codes) - k + 1
    if count <= 0:
        return np.array([], dtype=np.int64)
    hashes = np.zeros(count, dtype=np.uint64)
    for j in range(k):
        hashes = hashes * np.uint64(KGRAM_BASE) + codes[j:j + count]
    hashes ^= hashes >> np.uint64(30)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(27)
    hashes *= np.uint64(0x94D049BB133111EB)
    hashes ^= hashes >> np.uint64(31)
    return hashes.view(np.int64)


def compare(starter: list[str], works: list[Work], references: list[Work] = (),
            threshold: float = THRESHOLD) -> list[Pair]:
    """The pairs (this cohort with itself, and with the references) of which a share of at least ``threshold`` of
    either notebook's code is found in the other, best first. The starter notebook's code cells (``starter``) are
    boilerplate: what every student was given is no one's to share."""
    import copydetect.utils
    from copydetect.detector import CodeFingerprint, compare_files

    copydetect.utils.hashed_kgrams = stable_kgram_hashes  # the one function it looks up there; see its docstring
    window = GUARANTEE - NOISE + 1
    starter = code_text(starter)
    boilerplate = list(CodeFingerprint("starter.py", NOISE, window, fp=io.StringIO(starter)).hashes)
    everyone = [*works, *references]
    for work in everyone:
        work.fingerprint = CodeFingerprint("notebook.py", NOISE, window, boilerplate, fp=io.StringIO(work.code))
    pairs = []
    for i, j in _candidates(everyone, len(works)):
        first, second = everyone[i], everyone[j]
        overlap, shares, slices = compare_files(first.fingerprint, second.fingerprint)
        if overlap and max(shares) >= threshold:
            pairs.append(Pair(round(float(max(shares)), 4), first, second,
                              (round(float(shares[0]), 4), round(float(shares[1]), 4)), slices))
    pairs.sort(key=lambda p: (-p.score, p.first.who, p.second.who))
    return pairs


def _candidates(everyone: list[Work], current: int) -> list[tuple[int, int]]:
    """Pairs (i < j, i of this cohort) whose shared fingerprints reach CANDIDATE of either one's: every pair's count
    at once, as the product of a sparse notebooks-by-fingerprints matrix with its transpose."""
    from scipy.sparse import csr_matrix

    ids: dict[int, int] = {}
    rows, cols = [], []
    for i, work in enumerate(everyone):
        for h in work.fingerprint.hashes:
            rows.append(i)
            cols.append(ids.setdefault(h, len(ids)))
    if not ids:
        return []
    matrix = csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(everyone), len(ids)))
    shared = (matrix[:current] @ matrix.T).tocoo()
    sizes = np.maximum(np.asarray(matrix.sum(axis=1)).ravel(), 1)
    keep = (shared.row < shared.col) & (np.maximum(shared.data / sizes[shared.row], shared.data / sizes[shared.col])
                                        >= CANDIDATE)
    return sorted(zip(shared.row[keep].tolist(), shared.col[keep].tolist()))


def similarity(book: Gradebook, exercise: Exercise, against: list[Path] = (),
               threshold: float | None = None) -> Report:
    threshold = THRESHOLD if threshold is None else threshold
    works, left_out = cohort_code(book, exercise.name)
    references = [w for place in against for w in earlier_code(place, exercise.name)]
    starter = code_cells(read_notebook(exercise.student_notebook.read_bytes()))
    return Report(exercise.name, len(works), len(references), threshold,
                  compare(starter, works, references, threshold), left_out)


# --- what a TA opens ---------------------------------------------------------------------------------------------

def pair_name(pair: Pair) -> str:
    """A pair's page: a name made from the two students, never from their text."""
    key = f"{pair.first.cohort}/{pair.first.who}\0{pair.second.cohort}/{pair.second.who}"
    return f"pair-{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}.html"


def label(work: Work) -> str:
    return f"{work.who} ({work.cohort})" if work.cohort else work.who


def write_report(report: Report, out: Path, language: Language) -> list[Path]:
    """``out/similarity.csv``, ``out/index.html`` and one page per flagged pair (the first SHOWN); returns them."""
    from .feedback import render_page

    _ = translations(language).gettext
    lead = _("A pair is a lead for a person to judge, never proof of copying: students who follow the same lecture "
             "write similar code. Read both notebooks before you decide anything.")
    written = []
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["score", "student", "other", "other_cohort", "share_student", "share_other", "page"])
    for n, pair in enumerate(report.pairs):
        writer.writerow([f"{pair.score:.3f}", spreadsheet_cell(pair.first.who), spreadsheet_cell(pair.second.who),
                         spreadsheet_cell(pair.second.cohort), f"{pair.shares[0]:.3f}", f"{pair.shares[1]:.3f}",
                         pair_name(pair) if n < SHOWN else ""])
    write_atomic(out / "similarity.csv", table.getvalue())
    written.append(out / "similarity.csv")
    e = html.escape
    heads = [_("similarity"), _("student"), _("other"), _("share of each"), _("side by side")]

    def cells(n: int, pair: Pair) -> str:  # each under its column's name, for the card a phone shows per row
        values = [(f"{pair.score:.0%}", "num"), (e(label(pair.first)), ""), (e(label(pair.second)), ""),
                  (f"{pair.shares[0]:.0%} / {pair.shares[1]:.0%}", "num"),
                  (f'<a href="{pair_name(pair)}">{e(heads[-1])}</a>' if n < SHOWN else "", "")]
        return "".join(f'<td data-label="{e(head)}"' + (f' class="{kind}"' if kind else "") + f">{value}</td>"
                       for head, (value, kind) in zip(heads, values))

    rows = "".join(f"<tr>{cells(n, pair)}</tr>" for n, pair in enumerate(report.pairs))
    summary = _("{compared} notebooks of this cohort compared with each other and with {references} of earlier "
                "cohorts; {pairs} pairs share at least {threshold} of one notebook's code beyond the starter "
                "notebook.").format(compared=report.compared, references=report.references,
                                    pairs=len(report.pairs), threshold=f"{report.threshold:.0%}")
    title = _("Similar code: {exercise}").format(exercise=report.exercise)
    body = [f"<h1>{e(title)}</h1>",
            f'<p class="note">{e(lead)}</p>', f"<p>{e(summary)}</p>"]
    if report.left_out:
        body.append("<p>" + e(_("Graded before their code was kept, so not compared (grade them again with --force "
                                "to include them): {students}").format(students=", ".join(report.left_out))) + "</p>")
    body.append('<div class="table"><table class="stack"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in heads)
                + f"</tr></thead><tbody>{rows}</tbody></table></div>" if report.pairs
                else "<p>" + e(_("No pair.")) + "</p>")
    write_atomic(out / "index.html", render_page(_("Similar code"), "\n".join(body), language))
    written.append(out / "index.html")
    for pair in report.pairs[:SHOWN]:
        write_atomic(out / pair_name(pair), render_page(_("Similar code"), pair_page(pair, lead, _), language))
        written.append(out / pair_name(pair))
    return written


def pair_page(pair: Pair, lead: str, _) -> str:
    """Both notebooks' code side by side, what each shares with the other marked (every text escaped)."""
    from copydetect.utils import highlight_overlap

    e = html.escape
    sides = []
    for work, slices, share in ((pair.first, pair.slices[0], pair.shares[0]),
                                (pair.second, pair.slices[1], pair.shares[1])):
        marked, _share = highlight_overlap(work.code, slices, "<mark>", "</mark>", escape_html=True)
        sides.append(f'<div class="side"><h2>{e(label(work))} · {share:.0%}</h2><pre class="code">{marked}</pre>'
                     "</div>")
    return (f"<h1>{e(label(pair.first))} · {e(label(pair.second))}</h1><p class=\"note\">{e(lead)}</p>"
            '<p><a href="index.html">' + e(_("All pairs")) + "</a></p>"
            '<div class="pair">' + "".join(sides) + "</div>")
