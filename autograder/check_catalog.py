"""An exercise's catalog of check sentences: what ``autograder catalog`` writes and ``validate`` holds checks to.

A check file marks each sentence a student reads with ``_("...")`` (``autograder.testing``); each check's title is
its docstring's first paragraph. Both are message ids of ``<hidden checks>/locales/<lang>/LC_MESSAGES/checks.po``,
one catalog per exercise, kept beside the hidden checks because it holds their sentences too. A sentence passed
as a plain string is shown in English whatever the page's language, so ``validate`` reports it.
"""

from __future__ import annotations

import ast
import io
import re
import string
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

from .paths import write_atomic
from .checking import check_title
from .exercise import Exercise
from .i18n import CHECKS_DOMAIN, LANGUAGES, catalog_path
from .paths import course_relative

# Callables whose string arguments are sentences for the student (autograder.testing's and the exceptions a
# check raises), so a plain string there is an untranslated sentence.
SENTENCE_TAKERS = {"expect", "expect_shape", "expect_close", "expect_equal", "expect_by_hand", "expect_derived",
                   "expect_fed_once", "as_int", "as_int_list", "StudentFailure", "Missing", "AssertionError"}
MAX_LISTED = 12  # problems listed one by one; the rest are counted


@dataclass(frozen=True)
class Sentence:
    text: str
    where: str  # file:line, relative to the course


def marked_sentences(exercise: Exercise) -> list[Sentence]:
    """Every ``_()`` sentence and check title of the exercise's check files, in file order (first place kept)."""
    found: dict[str, Sentence] = {}
    for path in exercise.check_files():
        where = course_relative(path)
        for line, text, _comments, _context in extract_from_file("python", str(path), keywords={"_": None}):
            if isinstance(text, str):
                found.setdefault(text, Sentence(text, f"{where}:{line}"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                title = check_title(ast.get_docstring(node), node.name)
                found.setdefault(title, Sentence(title, f"{where}:{node.lineno}"))
    return list(found.values())


def _is_prose(text: str) -> bool:
    """Words a student reads, not a code name: two plain words once `code` and {fields} are taken out."""
    bare = re.sub(r"`[^`]*`|\{[^}]*\}", " ", text)
    return sum(1 for token in bare.split() if re.fullmatch(r"\(?[^\W\d_]+[,;:.!?)]*", token)) >= 2


def _plain_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " {} ".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "..." + "..." or f"..." + "..."
        parts = [_plain_text(node.left), _plain_text(node.right)]
        return " ".join(p for p in parts if p is not None) if any(p is not None for p in parts) else None
    return None


def unmarked_sentences(exercise: Exercise) -> list[Sentence]:
    """Sentences given to a check assertion as plain strings (or f-strings), so never translated."""
    found = []
    for path in exercise.check_files():
        where = course_relative(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                values = [*node.args, *(k.value for k in node.keywords)] if name in SENTENCE_TAKERS else []
            elif isinstance(node, ast.Assert) and node.msg is not None:
                values = [node.msg]
            else:
                continue
            for value in values:
                text = _plain_text(value)
                if text is not None and _is_prose(text):
                    found.append(Sentence(" ".join(text.split()), f"{where}:{value.lineno}"))
    return found


def _read(path: Path, language: str) -> Catalog:
    if not path.is_file():
        return Catalog(locale=language, domain=CHECKS_DOMAIN)
    with path.open("rb") as po:
        return read_po(po, locale=language, domain=CHECKS_DOMAIN)


def _fields(text: str) -> set[str]:
    try:
        return {name for _literal, name, _spec, _conversion in string.Formatter().parse(text) if name is not None}
    except ValueError:  # an unbalanced brace
        return {"(unbalanced braces)"}


def write_catalogs(exercise: Exercise) -> dict[str, tuple[Path, int]]:
    """Bring each language's catalog up to the check files: new sentences added untranslated, translations kept,
    sentences no longer used dropped. Returns, per language, the file and how many entries need translating."""
    sentences = marked_sentences(exercise)
    template = Catalog(domain=CHECKS_DOMAIN)
    for s in sentences:
        file, line = s.where.rsplit(":", 1)
        template.add(s.text, locations=[(file, int(line))])
    written = {}
    for language in LANGUAGES:
        if language == "en":  # the message ids are the English
            continue
        path = catalog_path(exercise.catalog_dir, language, CHECKS_DOMAIN)
        catalog = _read(path, language)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        out = _po_bytes(catalog)
        write_atomic(path, out.decode("utf-8"))
        written[language] = (path, sum(1 for m in catalog if m.id and (not m.string or m.fuzzy)))
    return written


def _po_bytes(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, omit_header=True, ignore_obsolete=True)  # no header: no date churn
    return buffer.getvalue()


def catalog_problems(exercise: Exercise) -> list[str]:
    """Every check sentence that some language of the harness cannot show: not marked for translation, not in the
    catalog, untranslated, fuzzy, or translated with other {fields}."""
    problems = [f"{s.where}: the sentence {s.text[:80]!r} is a plain string, so it is never translated; "
                "mark it with _(...) from autograder.testing" for s in unmarked_sentences(exercise)]
    sentences = marked_sentences(exercise)
    for language in LANGUAGES:
        if language == "en" or not sentences:
            continue
        path = catalog_path(exercise.catalog_dir, language, CHECKS_DOMAIN)
        catalog = _read(path, language)
        fix = f"run `autograder catalog {exercise.name}` and translate it in {course_relative(path)}"
        for s in sentences:
            entry = catalog.get(s.text)
            if entry is None or not entry.string:
                problems.append(f"{s.where}: {s.text[:80]!r} has no {language} translation; {fix}")
            elif entry.fuzzy:
                problems.append(f"{s.where}: the {language} translation of {s.text[:80]!r} is marked fuzzy; check it "
                                f"and remove the mark in {course_relative(path)}")
            elif _fields(entry.string) != _fields(s.text):
                problems.append(f"{s.where}: the {language} translation of {s.text[:80]!r} has the fields "
                                f"{sorted(_fields(entry.string))}, the sentence {sorted(_fields(s.text))}; "
                                f"fix it in {course_relative(path)}")
    if len(problems) > MAX_LISTED:
        problems[MAX_LISTED:] = [f"... and {len(problems) - MAX_LISTED} more sentences like these"]
    return problems
