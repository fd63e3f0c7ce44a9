"""The harness's own words in the course's language: gettext catalogs managed with Babel.

The English text in the code is the message id (marked ``_("...")``, or ``N_("...")`` where it is
defined before a language is known); ``locales/<lang>/LC_MESSAGES/autograder.po`` holds each
translation. The catalogs are compiled in memory when first used, so nothing generated is kept.
After changing a marked message, refresh the catalog and translate what is new::

    pybabel extract -F autograder/locales/babel.cfg -k N_ -k L_ -o autograder/locales/autograder.pot autograder
    pybabel update -i autograder/locales/autograder.pot -d autograder/locales -D autograder

``tests/test_i18n.py`` fails while a marked message has no translation.

Check files speak to students too: ``_("...")`` from ``autograder.testing`` makes a :class:`Text` looked up in the
exercise's own catalog (``<hidden checks>/locales/<lang>/LC_MESSAGES/checks.po``, written by ``autograder
catalog EXERCISE``), and the harness's sentences about a check (``L_("...")``) are Texts of this package's
catalog. A Text is rendered in every language when its outcome is stored, so feedback can be written in any of
them later.
"""

from __future__ import annotations

import functools
import gettext
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal


LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "autograder"
CHECKS_DOMAIN = "checks"  # an exercise's catalog of its check messages and titles
Language = Literal["en", "ja"]
LANGUAGES: tuple[Language, ...] = ("en", "ja")


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark for translation, translate later"
    return message


def catalog_path(locales: Path, language: Language, domain: str = DOMAIN) -> Path:
    return locales / language / "LC_MESSAGES" / f"{domain}.po"


@functools.cache
def _compiled(path: Path, language: Language) -> gettext.NullTranslations:
    if language == "en" or not path.is_file():
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def translations(language: Language) -> gettext.NullTranslations:
    """The harness's catalog of a language (English: the message ids themselves)."""
    return _compiled(catalog_path(LOCALES, language), language)


def check_translations(locales: Path | None, language: Language) -> gettext.NullTranslations:
    """An exercise's catalog of check messages (none yet: the English message ids)."""
    return _compiled(catalog_path(locales, language, CHECKS_DOMAIN), language) if locales else gettext.NullTranslations()


@dataclass(frozen=True)
class Text:
    """A sentence for a student, in any language: an English message id looked up in its domain's catalog when
    rendered, then filled with its fields (which may be Texts themselves) by ``str.format``, so a literal brace
    is written ``{{``. ``str()`` gives the English."""

    msgid: str
    domain: str | None = DOMAIN  # None: a layout of other Texts (see `joined`), not itself translated
    fields: tuple[tuple[str, Any], ...] = ()

    def format(self, **fields: Any) -> Text:
        return replace(self, fields=self.fields + tuple(fields.items()))

    def render(self, language: Language, checks: gettext.NullTranslations | None = None) -> str:
        """The sentence in ``language``; ``checks`` is the exercise's catalog for Texts of check files."""
        catalog = {DOMAIN: translations(language), CHECKS_DOMAIN: checks}.get(self.domain) if self.domain else None
        template = catalog.gettext(self.msgid) if catalog else self.msgid
        return template.format(**{k: render(v, language, checks) for k, v in self.fields})  # "{{" is a brace

    def __str__(self) -> str:
        return self.render("en")


def L_(message: str) -> Text:  # noqa: N802 - marks a harness sentence rendered later, in each language
    return Text(message)


def render(value: Any, language: Language, checks: gettext.NullTranslations | None = None) -> Any:
    return value.render(language, checks) if isinstance(value, Text) else value


def sentence_of(exc: BaseException) -> Text | str:
    """What an exception says: its Text (rendered later, in each language), else its English string."""
    return exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], Text) else str(exc)


def joined(*parts: Text | str, sep: str = " ") -> Text:
    """Sentences (or list items, with ``sep="; "``) shown one after another, empty parts left out."""
    kept = [p for p in parts if p]
    return Text(sep.replace("{", "{{").replace("}", "}}").join(f"{{p{i}}}" for i in range(len(kept))), None,
                tuple((f"p{i}", p) for i, p in enumerate(kept)))
