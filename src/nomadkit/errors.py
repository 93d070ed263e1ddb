"""Expected failures: the CLI prints these as one clear message, never a traceback."""


class UserError(Exception):
    """Something the user can fix; the message says what, where and what to do."""

    exit_code = 1
