"""User-facing errors.

A ``DistillError`` is a problem with the user's input (a missing folder, a bad
wav, an over-budget model): the CLI prints its message, which names the file and
the fix, and exits with status 2 instead of showing a traceback.
"""


class DistillError(Exception):
    """An error the user can fix; its message says what and how."""


class BadAudioError(DistillError):
    """A wav file that cannot be used as a 1 s, 16 kHz, 16-bit mono clip."""

    def __init__(self, path, reason: str, hint: str = "pass --skip-bad to skip such files and list them in a report"):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason} ({hint})")
