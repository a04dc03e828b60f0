"""Console-script entry point, kept import-free on purpose.

Worker processes started by multiprocessing (forkserver/spawn) re-import the
main script; if that script imported ``distill.cli`` each worker would pay
for TensorFlow's import (seconds) before doing any work.
"""


def main() -> None:
    from distill.cli import main as cli_main

    cli_main()
