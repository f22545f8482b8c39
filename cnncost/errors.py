"""The one error type a user sees: a single line, exit status 2."""


class CnnCostError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
