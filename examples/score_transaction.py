"""Score transactions for fraud with the fraud_detection champion.

Run from the project root after `python -m pipelines run fraud_detection`, with a CSV file (one
transaction per row, the training columns as header) or one JSON record:

    python examples/score_transaction.py transactions.csv
    python examples/score_transaction.py '{"amount": 912.5, "merchant_category": "gift_cards", "hour": 3,
        "distance_km": 420.0, "card_present": 0, "customer_age": 31, "transactions_24h": 9}'

(the columns of the embedded demo data; a model trained on your CSV needs your columns).

Prints one JSON line per transaction: the fraud probability, the decision and its threshold.
"""

import json
import sys

import pandas as pd

from champion import predict


def records(argument):
    """Returns the transactions in a CSV file, or the one JSON record given inline, as dicts."""
    if argument.lower().endswith(".csv"):
        return pd.read_csv(argument).to_dict(orient="records")
    return [json.loads(argument)]


def main(argv=None):
    """Args:
        argv (list[str] | None): CSV paths or JSON records; default the command line.

    Returns:
        list[dict]: one answer per transaction.
    """
    return predict(
        "fraud_detection",
        "row",
        [record for argument in (sys.argv[1:] if argv is None else argv) for record in records(argument)],
    )


if __name__ == "__main__":
    main()
