"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class ProbeError(Exception):
    """Bad input or an unusable model: a message for the user, never a traceback."""
