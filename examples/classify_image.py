"""Classify image files with the vision_classification champion.

Run from the project root after `python -m pipelines run vision_classification`:

    python examples/classify_image.py some_digit.png another.jpg

Prints one JSON line per image: its label, probability and top-3 classes.
"""

import sys

from champion import predict


def main(argv=None):
    """Args:
        argv (list[str] | None): image paths; default the command line.

    Returns:
        list[dict]: one answer per image.
    """
    return predict("vision_classification", "image", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
