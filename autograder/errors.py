"""Errors a user can cause. The CLI prints their message as one sentence and exits non-zero."""


class UserError(Exception):
    """Something the user can fix (wrong path, unknown exercise, unprepared models, rubric typo)."""
