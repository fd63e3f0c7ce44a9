"""The harness's own words in Japanese and English: a complete catalog, and pages in the course's language."""

from __future__ import annotations

import re

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from typer.testing import CliRunner

from autograder.cli import app
from autograder.feedback import write_feedback
from autograder.gradebook import Gradebook
from autograder.i18n import LOCALES
from autograder.report import write_report
from cohort_data import EXERCISE, synthetic_gradebook
from conftest import ROOT

JAPANESE = re.compile("[\u3040-\u30ff\u4e00-\u9fff]")


def marked_messages() -> set[str]:
    """Every message the package marks for translation, as Babel extracts it."""
    found = extract_from_dir(str(ROOT / "autograder"), method_map=[("**.py", "python")], keywords={"_": None, "N_": None})
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
