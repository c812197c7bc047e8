"""Score the sentiment of sentences with the nlp_sentiment champion.

Run from the project root after `python -m pipelines run nlp_sentiment`:

    python examples/sentiment.py "a wonderful, moving film" "not good at all"

Prints one JSON line per sentence: its label, probability and the ranked classes.
"""

import sys

from champion import predict


def main(argv=None):
    """Args:
        argv (list[str] | None): sentences; default the command line.

    Returns:
        list[dict]: one answer per sentence.
    """
    return predict("nlp_sentiment", "text", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
