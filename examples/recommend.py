"""Recommend items to users with the recommendation champion.

Run from the project root after `python -m pipelines run recommendation`:

    python examples/recommend.py 42 7
    python examples/recommend.py 42,318

A user id gets its top-K unseen items (an unknown user gets the most popular ones); a `user,item`
pair gets a predicted rating. Prints one JSON line per query.
"""

import sys

from champion import predict


def main(argv=None):
    """Args:
        argv (list[str] | None): user ids or `user,item` pairs; default the command line.

    Returns:
        list[dict]: one answer per query.
    """
    return predict("recommendation", "query", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
