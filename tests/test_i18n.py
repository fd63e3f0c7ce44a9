"""The harness's own words in Japanese and English: a complete catalog, and pages in the course's language."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po
from typer.testing import CliRunner

from autograder.check_catalog import catalog_problems, marked_sentences
from autograder.cli import app
from autograder.exercise import Exercise, available
from autograder.feedback import write_feedback
from autograder.gradebook import Gradebook
from autograder.i18n import CHECKS_DOMAIN, L_, LOCALES, catalog_path, check_translations, joined
from autograder.report import write_report
from autograder.testing import _ as check_sentence
from cohort_data import EXERCISE, synthetic_gradebook
from conftest import ROOT, mutate

JAPANESE = re.compile("[\u3040-\u30ff\u4e00-\u9fff]")


def marked_messages() -> set[str]:
    """Every message the package marks for translation, as Babel extracts it."""
    found = extract_from_dir(str(ROOT / "autograder"), method_map=[("checks/**", "ignore"), ("**.py", "python"),
                                                                          ("templates/service/**.html", "jinja2")],
                             keywords={"_": None, "N_": None, "L_": None})
    return {message for _, _, message, _, _ in found if isinstance(message, str)}


def test_every_marked_message_has_a_japanese_translation_and_nothing_is_stale():
    with (LOCALES / "ja" / "LC_MESSAGES" / "autograder.po").open("rb") as po:
        catalog = read_po(po, locale="ja")
    translated = {m.id: m.string for m in catalog if m.id}
    marked = marked_messages()
    assert marked, "nothing is marked: the extraction found no messages"
    assert sorted(marked - set(translated)) == [], "marked but not in the catalog: run pybabel extract / update"
    assert sorted(m for m in marked if not translated[m]) == [], "in the catalog without a translation"
    assert sorted(set(translated) - marked) == [], "in the catalog but no longer in the code"
    assert not [m.id for m in catalog if m.id and m.fuzzy], "fuzzy translations are not used: check them"
    for message, japanese in translated.items():  # placeholders survive translation
        assert set(re.findall(r"\{\w+\}", message)) == set(re.findall(r"\{\w+\}", japanese)), message


def test_every_message_the_code_translates_is_one_babel_extracts():
    """A message Babel cannot see (e.g. written inside an f-string) would stay English on every Japanese page."""
    called = set()
    for path in (ROOT / "autograder").rglob("*.py"):
        if "checks" in path.relative_to(ROOT / "autograder").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"_", "N_", "L_"}
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                called.add(node.args[0].value)
    assert sorted(called - marked_messages()) == []


def test_pages_in_japanese_and_in_english(tmp_path):
    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=6)
    with Gradebook(book_path) as book:
        ja_pages = write_feedback(book, EXERCISE, tmp_path / "ja", release=True, lang="ja")
        en_pages = write_feedback(book, EXERCISE, tmp_path / "en", release=True, lang="en")
        ja_report = write_report(book, EXERCISE, tmp_path / "ja-report", lang="ja")
        en_report = write_report(book, EXERCISE, tmp_path / "en-report", lang="en")
    ja, en = (next(p for p in pages if p.name == "u001.html").read_text() for pages in (ja_pages, en_pages))
    assert '<html lang="ja">' in ja and "チェック結果" in ja and "得点" in ja
    assert '<html lang="en">' in en and "Checks" in en and "得点" not in en
    missing = ja_pages[0].with_suffix(".md").read_text()  # u000: in the roster, nothing submitted
    assert "確認してほしいこと" in missing and "提出がありません" in missing and "No submission" not in missing
    assert "得点分布" in ja_report.read_text() and "Score distribution" not in ja_report.read_text()
    assert "Score distribution" in en_report.read_text()


def test_the_course_or_exercise_setting_chooses_the_language(course_copy, tmp_path):
    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=2)
    (course_copy / "course.toml").write_text('language = "ja"\n')
    runner = CliRunner()
    out = tmp_path / "pages"
    assert runner.invoke(app, ["feedback", EXERCISE, "--out", str(out), "--gradebook", str(book_path)]).exit_code == 0
    assert "チェック結果" in (out / "u001.html").read_text()
    assert runner.invoke(app, ["feedback", EXERCISE, "--out", str(out), "--gradebook", str(book_path),
                               "--lang", "en"]).exit_code == 0
    assert not JAPANESE.search(next(out.glob("u001.md")).read_text().split("\n", 2)[2].replace("生徒", ""))
    spec = course_copy / "assignments" / EXERCISE / "exercise.toml"
    (course_copy / "course.toml").write_text('language = "en"\n')
    spec.write_text('language = "ja"\n' + spec.read_text())
    assert runner.invoke(app, ["report", EXERCISE, "--out", str(out), "--gradebook", str(book_path)]).exit_code == 0
    assert "得点分布" in (out / "report.html").read_text()
    (course_copy / "course.toml").write_text('language = "fr"\n')
    spec.write_text(spec.read_text().replace('language = "ja"\n', ""))
    result = runner.invoke(app, ["report", EXERCISE, "--out", str(out), "--gradebook", str(book_path)])
    assert result.exit_code == 2 and "use one of en, ja" in result.output


def test_the_command_line_speaks_the_course_language_its_errors_included(course_copy, tmp_path):
    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=2)
    (course_copy / "course.toml").write_text('language = "ja"\n')
    runner = CliRunner()

    def says(args: list[str], sentence: str, exit_code: int) -> str:
        result = runner.invoke(app, args)
        squashed = re.sub(r"\s+", "", result.output)  # the terminal wraps lines where it likes
        assert result.exit_code == exit_code and re.sub(r"\s+", "", sentence) in squashed, result.output
        return result.output

    # The command's own refusal, one raised deep in the package, one from the setting of the exercise asked for.
    says(["export", EXERCISE, "--gradebook", str(book_path)], "エラー: 出力するものを指定してください", 2)
    says(["regrade", EXERCISE, "--rubric", str(tmp_path / "none.toml"), "--gradebook", str(book_path)],
         "採点基準がありません。パスを確認してください。", 2)
    says(["grade", "no_such_exercise", str(tmp_path)], "'no_such_exercise' という課題はありません", 2)
    # What a command reports when it has done its work, and the same in English when asked.
    says(["export", EXERCISE, "--csv", str(tmp_path / "g.csv"), "--gradebook", str(book_path)],
         "人分を書き出しました", 0)
    english = says(["export", EXERCISE, "--csv", str(tmp_path / "g.csv"), "--gradebook", str(book_path), "--lang",
                    "en"], "students written to", 0)
    assert not JAPANESE.search(english)


# --- check sentences: the exercise's own catalog ---------------------------------------------------------------------

def _new_exercise(name: str, course: Path, monkeypatch) -> Exercise:
    monkeypatch.setenv("AUTOGRADER_COURSE_DIR", str(course))
    monkeypatch.setenv("AUTOGRADER_CACHE", str(ROOT / ".cache"))
    assert CliRunner().invoke(app, ["new", name]).exit_code == 0
    return Exercise(name)


def _write_catalog(path: Path, entries: dict[str, str], fuzzy: frozenset[str] = frozenset()) -> None:
    catalog = Catalog(locale="ja", domain=CHECKS_DOMAIN)
    for message, japanese in entries.items():
        catalog.add(message, japanese, flags=["fuzzy"] if message in fuzzy else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as po:
        write_po(po, catalog, omit_header=True)


def test_a_sentence_is_filled_after_it_is_translated_each_part_from_its_own_catalog(tmp_path):
    locales = tmp_path / "locales"
    _write_catalog(catalog_path(locales, "ja", CHECKS_DOMAIN), {"`{name}` is {got!r}.": "`{name}` は {got!r} です。"})
    checks = check_translations(locales, "ja")
    sentence = check_sentence("`{name}` is {got!r}.").format(name="x", got="a")
    assert sentence.render("ja", checks) == "`x` は 'a' です。" and str(sentence) == "`x` is 'a'."
    # A harness sentence around a check sentence, then one the catalog lacks (shown in English, its braces undone).
    outer = joined(L_("{what} contains NaN or infinite values.").format(what=sentence),
                   check_sentence("Not translated {{yet}}."))
    assert outer.render("ja", checks) == "`x` は 'a' です。 に NaN または無限大の値が含まれています。 Not translated {yet}."
    assert str(outer) == "`x` is 'a'. contains NaN or infinite values. Not translated {yet}."


def test_check_outcomes_are_stored_in_both_languages_and_shown_in_the_one_asked_for(tmp_path, monkeypatch):
    from autograder.grading import GradeOptions, Grader

    exercise = _new_exercise("squares_words", tmp_path, monkeypatch)
    wrong = mutate(exercise.solution_notebook, ("torch.arange(N) ** 2", "torch.arange(5) ** 2"))
    with Grader(exercise, GradeOptions(profile="tiny")) as grader:
        result = grader.rubric.score(grader.run(wrong, "wrong"))
    checks = {c.id: c for c in result.checks}
    shape, values = checks["test_squares_shape"], checks["test_squares_values"]
    # A sentence of the harness (expect_shape) and one of the check file, each translated by its own catalog.
    assert shape.message == "`squares` has shape (5,), expected (7,)."
    assert shape.words("ja").message == "`squares` の形が (5,) になっています。正しくは (7,) です。"
    assert values.words("ja").message == "`squares` には N 未満の k について k**2 を入れてください。"
    assert values.words("ja").title == "`squares` が 0², 1², ..., (N-1)² を持っている。"
    assert values.words("en").title == values.title == "`squares` holds 0², 1², ..., (N-1)²."
    japanese, english = result.gradescope("ja"), result.gradescope("en")
    assert all(JAPANESE.search(t["name"]) for t in japanese["tests"])
    assert "不合格: `squares` には N 未満の k" in next(t["output"] for t in japanese["tests"]
                                                     if t["number"] == "test_squares_values")
    assert not any(JAPANESE.search(t["name"] + t["output"]) for t in english["tests"])


def test_a_submissions_own_sentence_is_stored_in_both_languages_and_shown_in_the_one_asked_for(tmp_path, monkeypatch):
    from autograder.feedback import hints
    from autograder.grading import GradeOptions, Grader

    exercise = _new_exercise("squares_rows", tmp_path, monkeypatch)
    with Grader(exercise, GradeOptions(profile="tiny")) as grader:
        result = grader.rubric.score(grader.run(b"[" * 150 + b"]" * 150, "deep.ipynb"))
    assert result.status == "invalid" and result.message.startswith("The file's JSON is nested more than 100 levels")
    japanese = result.message_in("ja")
    assert japanese.startswith("ファイルの JSON の入れ子が 100 段を超えて")
    # Every check it could not run says why, in each language.
    failed = [c for c in result.checks if c.outcome == "failed"]
    assert failed and {(c.message, c.words("ja").message) for c in failed} == {(result.message, japanese)}
    assert JAPANESE.search(failed[0].words("ja").title)
    assert result.gradescope("ja")["output"] == f"状態: 採点できません。 {japanese}"
    with Gradebook(synthetic_gradebook(tmp_path / "book.sqlite", students=1)) as book:
        row = replace(book.rows(EXERCISE)[0], status="invalid", message=result.message)
    assert hints(row, result, "ja") == [japanese] and hints(row, result, "en") == [result.message]


def test_validate_reports_every_check_sentence_a_student_could_not_read_in_japanese(tmp_path, monkeypatch):
    exercise = _new_exercise("squares_catalog", tmp_path, monkeypatch)
    assert catalog_problems(exercise) == []  # what `new` writes is translated
    hidden = exercise.hidden_check_files[0]
    hidden.write_text(hidden.read_text() + textwrap.dedent('''

        def test_defined(submission):
            """`squares` is defined before the rest."""
            expect(submission.has("squares"), f"Define squares in the {'first'} cell.")
            expect(submission.has("scale"), _("Define {name} too.").format(name="`scale`"))
            assert submission.has("N"), "Keep the parameters cell."
        '''))
    problems = catalog_problems(exercise)
    assert len(problems) == 4, problems
    assert sum("is a plain string, so it is never translated" in p for p in problems) == 2  # the f-string, the assert
    assert any("'Define {name} too.' has no ja translation" in p for p in problems)
    assert any("'`squares` is defined before the rest.' has no ja translation" in p for p in problems)  # its title
    result = CliRunner().invoke(app, ["catalog", exercise.name])
    assert result.exit_code == 0 and "(ja): 2 to translate" in result.output.replace("\n", "")
    po = catalog_path(exercise.catalog_dir, "ja", CHECKS_DOMAIN)
    with po.open("rb") as f:
        kept = {m.id: m.string for m in read_po(f) if m.id}
    assert kept["`squares` should hold k**2 for k below N."]  # translations survive a refresh
    kept |= {"Define {name} too.": "{名前} も定義してください。", "`squares` is defined before the rest.": "先に定義している。"}
    _write_catalog(po, kept, fuzzy=frozenset({"`squares` is defined before the rest."}))
    problems = catalog_problems(exercise)
    assert any("'Define {name} too.' has the fields ['名前'], the sentence ['name']" in p for p in problems)
    assert any("translation of '`squares` is defined before the rest.' is marked fuzzy" in p for p in problems)


@pytest.mark.parametrize("name", available())
def test_every_bundled_check_sentence_and_title_is_translated_and_nothing_is_stale(name):
    exercise = Exercise(name)
    assert catalog_problems(exercise) == []
    with catalog_path(exercise.catalog_dir, "ja", CHECKS_DOMAIN).open("rb") as po:
        in_catalog = {m.id for m in read_po(po) if m.id}
    assert in_catalog == {s.text for s in marked_sentences(exercise)}, f"run `autograder catalog {name}`"
