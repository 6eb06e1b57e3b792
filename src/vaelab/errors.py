"""The one exception type users see: a short message that says what to do."""


class VaelabError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""
