"""Entry point of `python -m pipelines` and of the `keras-pipelines` command (pyproject.toml's console script)."""

import os
import sys

from pipelines import quiet


def main(argv=None):
    """Runs the command line (`pipelines.cli`) with TensorFlow's start-up noise filtered.

    Returns:
        int: the exit status.
    """
    quiet.install()  # before TensorFlow is imported: its start-up chatter stays off the terminal
    from pipelines import cli

    try:
        return cli.main(argv)
    except BrokenPipeError:  # `keras-pipelines list | head`: the reader left; Python's documented way out
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
