"""Entry point of `python -m pipelines`."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal

from pipelines import cli  # noqa: E402

sys.exit(cli.main())
