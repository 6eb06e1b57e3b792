"""The exception and warning types users see: short messages that say what to do."""


class VaelabError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""


class VaelabWarning(UserWarning):
    """Something the user should know that does not stop the work (skipped files, resized images).

    One line; the CLI shows it as `vaelab CMD: warning: ...`.
    """


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint; `exit_code` is 128 + signal.

    A KeyboardInterrupt, so code that does not expect it stops as it would on Ctrl-C.
    """

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code

