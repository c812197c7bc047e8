"""The typed fitted state (`shared.fitted_state`): every task declares one, every field is documented, JSON keeps
the keys models were logged with, and an info.json written before the classes existed still loads and predicts."""

import dataclasses
import json
import types

import numpy as np
import pandas as pd
import pytest

import tasks
from pipelines import serving_model
from shared.fitted_state import FittedState
from tests.conftest import resolve

# a vision_classification model's info.json as the code of 2026-12-05 logged it (before `stem_stride` was kept)
OLD_IMAGE_INFO = {
    "class_names": ["0", "1"],
    "image_size": [28, 28],
    "channels": 1,
    "top_k": 3,
    "temperature": 1.5771946373109518,
    "task": "vision_classification",
}


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_declares_a_documented_state_of_its_own(name):
    state = tasks.get(name).state_class
    assert issubclass(state, FittedState) and state is not FittedState, name
    for field in dataclasses.fields(state):  # the docstrings (the class's or a base's) list every field
        assert any(f"{field.name} (" in (cls.__doc__ or "") for cls in state.__mro__), f"{state.__name__}.{field.name}"


def test_json_keeps_the_field_names_and_round_trips_unset_fields():
    from tasks.nlp_sentiment import TextState
    from tasks.predictive_maintenance import SeriesState

    state = TextState(class_names=["neg", "pos"], sequence_length=8, vocabulary=["", "[UNK]", "good"])
    saved = json.loads(json.dumps(state.to_json()))
    assert saved["backbone"] is None and saved["vocabulary"][2] == "good"
    assert TextState.from_json(dict(saved, task="nlp_sentiment")) == state  # the logged `task` key is ignored
    rows = SeriesState(  # independent rows (AI4I): no unit or time column
        preprocessing={},
        constant_columns=[],
        unit_column=None,
        time_column=None,
        window=1,
        rul_cap=125,
        failure_horizon=30,
        ignored_columns=[],
    )
    assert SeriesState.from_json(json.loads(json.dumps(rows.to_json()))) == rows


def test_a_state_missing_a_field_it_needs_is_one_named_line():
    with pytest.raises(ValueError, match=r"^x\.json lacks channels, image_size, which a ImageState needs") as error:
        tasks.get("vision_classification").state_class.from_json({"class_names": ["a"]}, "x.json")
    assert "\n" not in str(error.value)


def test_an_info_json_logged_before_the_typed_state_loads_and_predicts(tmp_path):
    """The logged model's own loading path (`ServingModel.load_context`) on an old info.json: the missing
    `stem_stride` falls back to the config's stride, the temperature is kept, and the model answers."""
    task, config = resolve("vision_classification", "base_filters=8", "stages=1")
    info = task.state_class.from_json(OLD_IMAGE_INFO)
    assert info.stem_stride is None and info.temperature == pytest.approx(1.5771946373109518)
    model = task.build_model(config, info)
    model.save(tmp_path / "model.keras")
    (tmp_path / "info.json").write_text(json.dumps(OLD_IMAGE_INFO))
    served = serving_model.ServingModel()
    served.load_context(
        types.SimpleNamespace(
            artifacts={"info": str(tmp_path / "info.json"), "keras_model": str(tmp_path / "model.keras")}
        )
    )
    assert served.info == info
    answers = served.predict(None, pd.DataFrame({"image": [np.zeros((28, 28), "float32").tolist()]}))
    assert answers[0]["label"] in ("0", "1")
