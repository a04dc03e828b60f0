"""User-facing errors.

A ``DistillError`` is a problem with the user's input (a missing folder, a bad
wav, an over-budget model): the CLI prints its message, which names the file and
the fix, and exits with status 2 instead of showing a traceback.
"""


class DistillError(Exception):
    """An error the user can fix; its message says what and how."""


class DamagedFileError(DistillError, ValueError):
    """An artefact that is there but cannot be read: a truncated array or archive, a file that is not valid JSON.

    Also a ``ValueError``, which is what such a file raised before, so code that treats an unreadable
    file as absent (a cache to rebuild) keeps doing so."""


class BadAudioError(DistillError):
    """A wav file that cannot be used as a 1 s, 16 kHz, 16-bit mono clip."""

    def __init__(self, path, reason: str, hint: str = "pass --skip-bad to skip such files and list them in a report"):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason} ({hint})")
