"""The harness's own words in the course's language: gettext catalogs managed with Babel.

The English text in the code is the message id (marked ``_("...")``, or ``N_("...")`` where it is
defined before a language is known); ``locales/<lang>/LC_MESSAGES/autograder.po`` holds each
translation. The catalogs are compiled in memory when first used, so nothing generated is kept.
After changing a marked message, refresh the catalog and translate what is new::

    pybabel extract -F autograder/locales/babel.cfg -k N_ -o autograder/locales/autograder.pot autograder
    pybabel update -i autograder/locales/autograder.pot -d autograder/locales -D autograder

``tests/test_i18n.py`` fails while a marked message has no translation.
"""

from __future__ import annotations

import functools
import gettext
import io
import tomllib
from pathlib import Path
from typing import Literal

from .errors import UserError

LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "autograder"
Language = Literal["en", "ja"]
LANGUAGES: tuple[Language, ...] = ("en", "ja")


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark for translation, translate later"
    return message


@functools.cache
def translations(language: Language) -> gettext.NullTranslations:
    """The catalog of a language (English: the message ids themselves)."""
    if language == "en":
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def course_language(root: Path) -> Language | None:
    """``language`` in the course folder's ``course.toml``, if it sets one."""
    settings = root / "course.toml"
    if not settings.is_file():
        return None
    try:
        value = tomllib.loads(settings.read_text(encoding="utf-8")).get("language")
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{settings} is not valid TOML ({exc}); fix it and run again.") from None
    if value is not None and value not in LANGUAGES:
        raise UserError(f"{settings} sets language = {value!r}; use one of {', '.join(LANGUAGES)}.")
    return value


def language_of(exercise: str, chosen: Language | None = None) -> Language:
    """The language pages of an exercise are written in: ``--lang``, else the exercise's ``language``, else the
    course's, else English."""
    if chosen:
        return chosen
    from .exercise import Exercise
    from .paths import course_dir

    try:
        spec_language = Exercise(exercise).spec.language
    except UserError:  # graded earlier, no longer in this course folder
        spec_language = None
    return spec_language or course_language(course_dir()) or "en"
