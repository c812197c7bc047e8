"""Entry point of `python -m pipelines`."""

import sys

from pipelines import quiet

quiet.install()  # before TensorFlow is imported: its start-up chatter stays off the terminal

from pipelines import cli  # noqa: E402

sys.exit(cli.main())
