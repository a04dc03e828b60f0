"""Console-script entry point, kept import-free on purpose.

Worker processes started by multiprocessing (forkserver/spawn) re-import the
main script; if that script imported ``distill.cli`` each worker would pay
for TensorFlow's import (seconds) before doing any work.

It also keeps TensorFlow's start-up log lines off the terminal, unless the user
runs ``distill --verbose ...`` (or sets ``TF_CPP_MIN_LOG_LEVEL`` themselves,
which is then obeyed as given). Measured with TensorFlow 2.21:

* ``TF_CPP_MIN_LOG_LEVEL=2`` silences TensorFlow's C++ INFO and WARNING logs
  once its logging is set up: ``cpu_feature_guard``'s "This TensorFlow binary
  is optimized ..." notice at import, grappler's "Number of eligible GPUs" and
  "Starting new session" lines at export.
* It cannot silence what TensorFlow logs before it reads the variable: the
  oneDNN notice of ``port.cc``, and absl's "WARNING: All log messages before
  absl::InitializeLog() is called are written to STDERR" in front of it,
  printed by two libraries each during ``import tensorflow``. The only
  variable that stops those lines, ``TF_ENABLE_ONEDNN_OPTS=0``, switches
  oneDNN off (measured on an AVX-512 CPU: crnn and wavecnn teachers train
  40-70 % slower, and every architecture to different numbers). So the first ``import tensorflow`` runs with file descriptor 2
  captured, and what it wrote is written back without the log lines below
  ``TF_CPP_MIN_LOG_LEVEL`` (``_QuietTensorFlowImport``).
* Python side, at level 2 and above: the ``tensorflow`` and ``absl`` loggers
  are set to ERROR (TensorFlow's deprecation notices, Keras's absl warnings).
  distill's own warnings (``warnings.warn``) are untouched.

Worker processes (joblib/loky, dask, multiprocessing) inherit the environment,
so they get the log level. ``DISTILL_QUIET_TF`` carries the choice: ``1`` makes
a process that imports this module install the same import filter (the bottom
of this file: multiprocessing and dask workers re-import the console script);
``0`` (set by ``--verbose``, or by the user) keeps every distill command it
starts verbose. joblib/loky workers do not re-import the main script: the
first thing of distill they import is the ``distill`` package, so that is
where ``install_import_filter`` has to run for them (when ``DISTILL_QUIET_TF``
is ``1``); until then their TensorFlow import prints the oneDNN notice.
"""

import os
import sys

QUIET_ENV = "DISTILL_QUIET_TF"
LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "2"  # INFO and WARNING off, ERROR and FATAL kept
VERBOSE_FLAG = "--verbose"

# C++ log lines: absl's format (recent TensorFlow, "I0000 00:00:1796427352.077293   32167 port.cc:153] ...")
# and TensorFlow's older one ("2024-01-25 23:03:23.248680: I tensorflow/core/util/port.cc:110] ...")
_LOG_LINE = rb"^(?:([IWEF])\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\] |\d{4}-\d\d-\d\d \d\d:\d\d:[\d.]+: ([IWEF]) \S+:\d+\] )"
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
# lines that belong to an INFO message: absl's notice that it is not initialised yet, and the
# second line of cpu_feature_guard's notice
_INFO_LINES = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
               b"To enable the following instructions:")


def verbose_requested(argv: list[str]) -> bool:
    """Whether ``--verbose`` is among the root options, i.e. before the command name."""
    for arg in argv:
        if arg == VERBOSE_FLAG:
            return True
        if arg == "--" or not arg.startswith("-"):
            return False  # the command name: what follows are its own arguments
    return False


def min_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get(LEVEL_ENV, "0"))
    except ValueError:
        return 0


def drop_tensorflow_log_lines(data: bytes, min_level: int) -> bytes:
    """``data`` (what a process wrote to stderr) without TensorFlow's C++ log lines below ``min_level``.

    Everything else (Python warnings, tracebacks, progress bars) passes through byte for byte."""
    if min_level <= 0:
        return data
    import re

    pattern = re.compile(_LOG_LINE)
    kept = []
    for line in data.splitlines(keepends=True):
        match = pattern.match(line)
        if match:
            if _SEVERITY[match.group(1) or match.group(2)] < min_level:
                continue
        elif line.startswith(_INFO_LINES):
            continue
        kept.append(line)
    return b"".join(kept)


class _CapturedStderr:
    """File descriptor 2 redirected to a temporary file; on exit, written back through ``drop_tensorflow_log_lines``.

    A file descriptor, not ``sys.stderr``: TensorFlow's C++ code writes to it directly. Output of other
    threads in the meantime is delayed, never lost; a crash inside the import (no Python exception)
    loses what it printed, which ``distill --verbose`` shows."""

    def __enter__(self) -> "_CapturedStderr":
        import tempfile

        self.saved = None
        _flush_stderr()
        try:
            self.saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to filter
            return self
        self.sink = tempfile.TemporaryFile()
        os.dup2(self.sink.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is None:
            return
        _flush_stderr()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        with self.sink:
            self.sink.seek(0)
            data = drop_tensorflow_log_lines(self.sink.read(), min_log_level())
        while data:
            try:
                data = data[os.write(2, data):]
            except OSError:
                break


def _flush_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _QuietLoader:
    """Wraps TensorFlow's loader: runs the package's import with stderr captured, then quiets its Python loggers."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        if name == "loader":  # not set yet (a copy): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            with _CapturedStderr():
                self.loader.exec_module(module)
        finally:  # the module keeps the real loader, as if imported plainly; the finder's work is done
            module.__loader__ = self.loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self.loader
            remove_import_filter()
        if min_log_level() >= 2:
            _quiet_python_loggers()


def _quiet_python_loggers() -> None:
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:  # through absl (TensorFlow has imported it): a plain getLogger("absl") first would not be absl's logger class
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_logger().setLevel(logging.ERROR)


class _QuietTensorFlowImport:
    """A ``sys.meta_path`` finder for the first ``import tensorflow`` (directly, or through Keras): gives
    TensorFlow's own spec a ``_QuietLoader``, and steps out of the way for every other import."""

    searching = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.searching:
            return None
        import importlib.util

        self.searching = True  # the finders after this one find the real spec
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.searching = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install_import_filter() -> None:
    """Filter TensorFlow's import-time log lines in this process (no-op once TensorFlow is imported)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowImport())


def remove_import_filter() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]


def configure_tensorflow_logs(*, verbose: bool) -> None:
    """Set the environment (inherited by worker processes) and this process's import filter.

    ``verbose`` keeps all of TensorFlow's logs (and whatever ``TF_CPP_MIN_LOG_LEVEL`` the user set)."""
    if verbose:
        os.environ[QUIET_ENV] = "0"  # distill commands this one starts (``python -m distill ...``) stay verbose too
        remove_import_filter()
        return
    os.environ.setdefault(LEVEL_ENV, DEFAULT_LEVEL)  # a user's own level wins
    os.environ[QUIET_ENV] = "1"
    install_import_filter()


def main() -> None:
    # The environment must be set before anything imports TensorFlow, i.e. before typer has parsed
    # ``--verbose`` (importing distill.cli registers commands whose modules may import TensorFlow,
    # and TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, when it loads); so read it from sys.argv here.
    # The root callback in distill.cli declares the same option for --help and parsing.
    configure_tensorflow_logs(verbose=verbose_requested(sys.argv[1:]) or os.environ.get(QUIET_ENV) == "0")
    from distill.cli import main as cli_main

    cli_main()


if os.environ.get(QUIET_ENV) == "1":
    # a worker process re-importing the main script: the parent chose quiet, and left the level in the environment
    install_import_filter()
