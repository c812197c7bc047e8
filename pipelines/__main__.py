"""Entry point of `python -m pipelines` and of the `keras-pipelines` command (pyproject.toml's console script)."""

import sys

from pipelines import quiet


def main(argv=None):
    """Runs the command line (`pipelines.cli`) with TensorFlow's start-up noise filtered.

    Returns:
        int: the exit status.
    """
    quiet.install()  # before TensorFlow is imported: its start-up chatter stays off the terminal
    from pipelines import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
