"""What every example shares: load a task's champion model from MLflow and print its answers.

An application needs only MLflow and the libraries in requirements.txt: the logged model carries
its preprocessing, so raw inputs go in and JSON-friendly answers come out.
"""

import json
import os
import pathlib

import mlflow
import pandas as pd

# The project's store, as `python -m pipelines run` writes it; MLFLOW_TRACKING_URI points elsewhere.
DEFAULT_STORE = f"sqlite:///{pathlib.Path(__file__).resolve().parents[1] / 'mlruns' / 'mlflow.db'}"


def predict(task, column, inputs):
    """Loads `models:/TASK@champion` and predicts raw inputs, printing one JSON line per input.

    Args:
        task (str): the task name, which is also the registered model name.
        column (str): the model's input column (`image`, `text`, `audio`, `row`, `query`...).
        inputs (list): raw inputs (file paths, sentences, records, user ids).

    Returns:
        list[dict]: the model's answers, one per input.
    """
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE)
    model = mlflow.pyfunc.load_model(f"models:/{task}@champion")
    answers = model.predict(pd.DataFrame({column: inputs}))
    for raw, answer in zip(inputs, answers):
        print(json.dumps({"input": raw, **answer}))
    return answers
