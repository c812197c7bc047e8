"""Predictive maintenance: remaining useful life (RUL) or imminent failure from sensor windows (1D-CNN / LSTM / GRU).

Data sources:
    embedded            generated run-to-failure engines: 3 operating settings, 10 sensors of which 8 drift
                        with exponential wear (unit-to-unit variation in baseline, wear rate and life) and 2
                        are constant; tagged synthetic. Test engines are cut short at random, like C-MAPSS.
    PATH (C-MAPSS)      NASA C-MAPSS: a folder holding `train_FD00x.txt`, `test_FD00x.txt`, `RUL_FD00x.txt`
                        (`subset` picks one when several are present) or the path of one of these files.
                        Space-separated: unit, cycle, 3 settings, 21 sensors. Each test engine is scored on
                        its last window against the RUL file.
    PATH (CSV/Parquet)  a table with `unit_column`, `time_column` and sensor columns (all numeric columns
                        by default, `sensor_columns` to choose). Without `target_column` every unit is
                        assumed to run to failure (RUL = last time - time). Test units are carved from the
                        units and cut short at a random point. With `unit_column=""` every row is an
                        independent observation (window 1), which suits AI4I 2020:
                        `--set mode=classification --set unit_column= --set time_column=
                        --set "target_column=Machine failure"
                        --set "drop_columns=[UDI,Product ID,TWF,HDF,PWF,OSF,RNF]"`.
    tfds:NAME           TFDS has no run-to-failure or machine-failure dataset, so this task raises a
                        ValueError naming the offline sources instead.

Modes: `regression` predicts RUL in cycles (targets capped at `rul_cap`); `classification` predicts the
probability of failure within `failure_horizon` cycles (or the 0/1 `target_column`), with the imbalance
handling and validation-chosen threshold of fraud_detection (class weights, focal loss, oversampling).

Preparation is fitted on training units only: per-feature median imputation and standardisation, constant
features dropped (standard deviation below 1e-4 of the feature's scale), one-hot text columns. Training
units shorter than `window` are skipped with a warning; test and predicted histories shorter than it are
padded at the front with their first row (a warning says so).

Metrics: regression RMSE (primary; truth capped at `rul_cap` as the literature does), RMSE against the
uncapped truth, MAE, the NASA asymmetric score (late predictions cost more), plots of predicted vs true RUL
per test unit and of one validation unit's predicted RUL over its whole life. Classification: PR-AUC and
the fraud_detection detector metrics.

Predict: each INPUT is a CSV/Parquet file, a C-MAPSS `.txt` file, a .json file or an inline JSON object or
list of objects. Every row gets an answer; rows of the same unit (in time order) form that unit's history,
so each row's RUL is estimated from the window ending at it and the last row of a unit is its current RUL.
A JSON list is one unit's history and gets one answer (at its last row).
"""

import dataclasses
import json
import os
import re
import warnings

import numpy as np

from shared import inputs as raw_inputs
from shared.constraints import Choice, Count, Fraction, Size, Width
from shared.data.sources import reader
from tasks import register
from tasks.base import Splits, Task, search_space
from tasks.detection import BinaryDetectionTask, DetectionConfig, DetectionState

MODES = ("regression", "classification")
MODELS = ("cnn", "lstm", "gru")
CMAPSS_COLUMNS = [
    "unit",
    "cycle",
    *(f"setting_{index}" for index in range(1, 4)),
    *(f"sensor_{index}" for index in range(1, 22)),
]
MAX_ONE_HOT = 50  # more distinct text values than this is an identifier, not a sensor state


@dataclasses.dataclass
class PredictiveMaintenanceConfig(DetectionConfig):
    epochs: int = 60  # windows are small: an epoch is seconds; early stopping ends sooner
    batch_size: int = 256  # ~70 steps per epoch on FD001's 17k windows: stable and quick
    learning_rate: float = 1e-3  # Adam's default; RUL nets are sensitive to larger rates
    early_stopping_patience: int = 10  # validation RMSE on a few engines is noisy; allow plateaus
    mode: Choice(*MODES) = "regression"  # regression (remaining useful life) or classification (failure soon)
    subset: str = ""  # C-MAPSS subset (FD001..FD004) when the folder holds several; empty: the only one
    unit_column: str = "unit"  # one machine's rows share this id (C-MAPSS's first column is named unit)
    time_column: str = "cycle"  # orders each unit's rows (C-MAPSS's second column is named cycle)
    sensor_columns: tuple = ()  # empty: every column except unit, time, target and dropped ones
    drop_columns: tuple = ()  # ids and leaking columns (AI4I's failure-type flags leak the label)
    target_column: str = ""  # regression: a RUL column; classification: a 0/1 column; empty: derived from time
    window: Count = 30  # cycles the model sees; 30 is the C-MAPSS literature's choice (FD001 tests have >= 31)
    rul_cap: Count = 125  # early life shows no wear, so RUL is flat-capped there (the literature's 125 cycles)
    failure_horizon: Size = 30  # classification without target_column: positive when RUL <= this many cycles
    model: Choice(*MODELS) = "cnn"  # ~5x faster than lstm, best on rows (AI4I); lstm (+noise 0.2) wins on FD001; or gru
    filters: Width = 32  # CNN filters per convolution
    kernel_size: Count = 5  # CNN kernel in cycles: short enough to track local trends
    conv_layers: Count = 3  # CNN depth; 3 layers of kernel 5 see 13 cycles
    recurrent_units: Width = 64  # LSTM/GRU width
    recurrent_layers: Count = 2  # stacked recurrent layers
    dense_units: Width = 64  # the head's hidden layer
    dropout: Fraction = 0.2  # before the head: 100 training engines are easy to memorise
    # the detection settings (class_weight, focal_gamma, oversample, costs, targets) apply to classification
    cost_false_negative: float = 10.0  # a missed failure means unplanned downtime: ~10 needless inspections
    cost_false_positive: float = 1.0  # a false alarm costs one inspection
    search_space: dict = search_space(  # 100 training engines: model size and dropout decide
        dropout=["float", 0.0, 0.5], filters=["choice", 16, 32, 64]
    )


@dataclasses.dataclass
class Histories:
    """What every reader of this task returns.

    Attributes:
        pool (pandas.DataFrame): unit histories to split into train, validation and test units.
        name (str): the dataset's short name for MLflow.
        test (pandas.DataFrame | None): held-out histories cut short, scored on their last window (C-MAPSS).
        truth (np.ndarray | None): the true remaining life of each `test` unit.
        cmapss_columns (bool): units are in `unit` and time in `cycle`, whatever unit_column and time_column say.
        synthetic (bool): True for generated engines.
    """

    pool: object
    name: str
    test: object = None
    truth: object = None
    cmapss_columns: bool = False
    synthetic: bool = False


@reader(
    "cmapss",
    ("folder", "file", "csv"),
    "a C-MAPSS folder or train_FDxxx.txt file (train_, test_ and RUL_ files)",
    accepts=lambda argument, config: bool(_cmapss_files(argument, config.subset)),
)
def _read_cmapss_histories(task, argument, config):
    pool, test, truth, name = _read_cmapss(argument, config.subset)
    return Histories(pool, name, test, truth, cmapss_columns=True)


@reader("unit_table", ("file", "csv"), "a CSV/Parquet table of unit, time, sensor and target columns")
def _read_unit_table(task, argument, config):
    from shared.data.sources import read_table

    pool = read_table(
        argument,
        [config.unit_column, config.time_column, config.target_column],
        hint="name the columns with --set unit_column=... time_column=... target_column=...",
    )
    return Histories(pool, f"table_{os.path.basename(argument)}")


@dataclasses.dataclass(kw_only=True)
class SeriesState(DetectionState):
    """A maintenance model's mode and threshold (`DetectionState`) and how a unit's history becomes windows.

    Attributes:
        preprocessing (dict): the sensors' statistics and vocabularies (`shared.data.sources.fit_tabular`).
        constant_columns (list[str]): columns constant in training, dropped.
        unit_column (str | None): the column naming each unit (None: independent rows).
        time_column (str | None): the column ordering a unit's rows.
        window (int): rows per window (1 for independent rows).
        rul_cap (float): remaining useful life is capped at it (the piecewise-linear target).
        failure_horizon (int): classification's positives fail within this many cycles.
        ignored_columns (list[str]): columns a row may hold that the model does not read.
        feature_count (int): encoded features per row.
        life_unit (list[int]): the first window and the window count of the longest validation unit (its life
            plot); [0, 0] for independent rows.
        example_history (list[dict]): one unit's last rows, the logged model's input example.
    """

    preprocessing: dict
    constant_columns: list
    unit_column: str | None
    time_column: str | None
    window: int
    rul_cap: float
    failure_horizon: int
    ignored_columns: list
    feature_count: int = 0
    life_unit: list = dataclasses.field(default_factory=lambda: [0, 0])
    example_history: list = dataclasses.field(default_factory=list)


@register
class PredictiveMaintenance(BinaryDetectionTask):
    """Remaining useful life by regression, or failure soon as a binary detector (`mode=classification`)."""

    name = "predictive_maintenance"
    answer_key = "rul"
    config_class = PredictiveMaintenanceConfig
    state_class = SeriesState
    primary_metric = "rmse"
    higher_is_better = False
    tfds_name = ""  # TFDS has no run-to-failure dataset; see the module docstring
    input_column = "history"
    input_kind = "record"
    key_params = Task.key_params + ("model", "mode")
    quick_overrides = {"epochs": 2, "max_examples": 3000}
    readers = ("embedded", "cmapss", "unit_table")
    explain_kind = "sequence"  # which sensors, and how long before the window's end, the estimate rests on
    # convolutions against recurrent nets over the window, the recurrent ones with input noise
    candidates = (
        ("default", {}),
        ("lstm", {"model": "lstm", "noise": 0.2}),
        ("gru", {"model": "gru", "noise": 0.2}),
        ("wide_cnn", {"filters": 64}),
    )
    remedies = (
        "Likely causes: too few units or epochs, or sensors that do not drift with wear. Try model=lstm with "
        "noise=0.2, another window, more epochs, or --preset balanced."
    )

    def load_data(self, config, fitted=None, strict=False):
        """Reads the units and cuts them into windows; with `fitted` (a trained model's info), with its
        preprocessing, refusing columns it does not know when `strict` (continued training; evaluation ignores them)."""
        found = self.read(config)
        if found.cmapss_columns:
            config = dataclasses.replace(config, unit_column="unit", time_column="cycle")
        if strict:
            from shared.data.sources import refuse_unknown_columns

            also = [config.unit_column, config.time_column, config.target_column, *config.drop_columns]
            refuse_unknown_columns(found.pool, fitted, config.data, also)
        splits = self._prepare(found.pool, found.test, found.truth, config, found.name, fitted)
        splits.source, splits.synthetic = config.data, found.synthetic
        return splits

    def embedded(self, config):
        """Generated run-to-failure engines, in C-MAPSS' columns."""
        return Histories(_engines(80, config.seed), "synthetic_engines", cmapss_columns=True, synthetic=True)

    def _prepare(self, pool, test, truth, config, name, fitted=None):
        """Splits units, fits preprocessing on training units (or takes `fitted`'s) and cuts every split into
        windows."""
        from shared import augmentation
        from shared.data.sources import require_columns
        from shared.data.splits import carve, split_indices
        from shared.data.tabular import fit_tabular, looks_numeric, numeric_values

        source = config.data
        unit, time = config.unit_column, config.time_column
        excluded = {unit, time, config.target_column, *config.drop_columns} - {""}
        require_columns(
            pool, [*config.drop_columns, *config.sensor_columns], source, hint="fix drop_columns / sensor_columns"
        )
        features = list(config.sensor_columns) or [column for column in pool.columns if column not in excluded]
        if not features:
            raise ValueError(f"{source}: no sensor columns left after excluding {sorted(excluded)}.")
        categorical = [column for column in features if not looks_numeric(pool[column])]
        for column in categorical:
            if pool[column].nunique() > MAX_ONE_HOT:
                raise ValueError(
                    f"{source}: text column '{column}' has {pool[column].nunique()} distinct values, "
                    "like an identifier; add it to drop_columns."
                )
        if unit and not time:
            raise ValueError(f"{source}: set time_column to order each unit's rows (unit_column is '{unit}').")
        for column in features:  # check every row up front, so an error names the row of the file
            if column not in categorical:
                numeric_values(pool[column], column, source)
        pool = _with_targets(pool, config, source)
        window = config.window if unit else 1
        generator = np.random.default_rng(config.seed)
        if not unit:  # independent rows: a stratified (classification) or plain row split
            rows = (np.arange(len(pool)), pool["_target"].to_numpy())
            parts = carve(rows, config, stratify=config.mode == "classification")
            train_rows, validation_rows, test_rows = (pool.iloc[part.features] for part in parts)
        else:
            units = pool[unit].unique()
            try:
                train_units, validation_units, test_units = split_indices(
                    len(units), config.seed, config.validation_fraction, 0 if test is not None else config.test_fraction
                )
            except ValueError as error:
                raise ValueError(f"{source}: splitting its {len(units)} unit(s): {error}") from None
            train_rows = pool[pool[unit].isin(units[train_units])]
            validation_rows = pool[pool[unit].isin(units[validation_units])]
            test_rows = pool[pool[unit].isin(units[test_units])]
            if test is None and config.mode == "regression":  # cut test units short at random, as C-MAPSS does
                test, truth = _truncate(test_rows, config, generator)
        numeric = [column for column in features if column not in categorical]
        if fitted:  # the model's statistics, columns and window: nothing is fitted on these units
            info = dataclasses.replace(fitted)
            window = info.window
        else:
            constant = _constant_columns(train_rows, numeric, source)
            spec = fit_tabular(
                train_rows, [column for column in numeric if column not in constant], categorical, source
            )
            info = SeriesState(
                mode=config.mode,
                preprocessing=spec,
                constant_columns=constant,
                unit_column=unit,
                time_column=time,
                window=window,
                rul_cap=config.rul_cap,
                failure_horizon=config.failure_horizon,
                ignored_columns=sorted(excluded | set(constant) | {"_target"}),
            )
            info.feature_count = int(encode(train_rows.iloc[:1], info, source).shape[1])
        train = _windowed(train_rows, info, source, pad=False)
        validation = _windowed(validation_rows, info, source, pad=False)
        if test is not None:
            test_pair = _last_windows(test, info, source), _truth(truth, config)
        else:  # independent rows, or every window of held-out units (failure soon is judged all along their life)
            test_pair = _windowed(test_rows, info, source, pad=True)[:2]
        if config.mode == "classification":
            test_pair = (test_pair[0], np.asarray(test_pair[1]).astype("int64"))
        if len(train[1]) == 0 or len(validation[1]) == 0:
            raise ValueError(
                f"{source}: no unit is at least window={window} rows long in the training or validation "
                "split; lower --set window=N."
            )
        if config.mode == "classification" and not fitted:  # evaluation scores every example, of any class
            for split_name, labels in (("training", train[1]), ("test", test_pair[1])):
                if len(np.unique(labels)) < 2:
                    raise ValueError(
                        f"{source}: the {split_name} split holds a single class; raise failure_horizon "
                        "or check target_column."
                    )
        info.life_unit = validation[2]
        train, validation = train[:2], validation[:2]
        if config.mode == "classification":
            train = augmentation.oversample((train[0], train[1].astype("int64")), config.oversample, config.seed)
            validation = (validation[0], validation[1].astype("int64"))
        history_columns = [column for column in (unit, time) if column] + numeric + categorical
        example = test_rows if test is None else test
        example = example[example[unit] == example[unit].iloc[0]] if unit else example
        info.example_history = json.loads(example[history_columns].tail(max(window, 1)).to_json(orient="records"))
        splits = Splits(train, validation, test_pair, info, config.data, name, False)
        if config.slice_by:
            _slice(splits, config, source, unit, (train_rows, validation_rows, test_rows))
        return splits

    def build_model(self, config, info):
        import keras

        inputs = keras.Input((info.window, info.feature_count), name="sensors")
        x = inputs
        if config.model == "cnn":
            for _ in range(config.conv_layers):
                x = keras.layers.Conv1D(config.filters, config.kernel_size, padding="same", activation="relu")(x)
            x = keras.layers.Flatten()(x)  # keeps where in the window a trend happens, which pooling would lose
        else:
            layer = keras.layers.LSTM if config.model == "lstm" else keras.layers.GRU
            for index in range(config.recurrent_layers):
                x = layer(config.recurrent_units, return_sequences=index < config.recurrent_layers - 1)(x)
        x = keras.layers.Dropout(config.dropout)(x)
        x = keras.layers.Dense(config.dense_units, activation="relu")(x)
        if info.mode == "classification":
            outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="failure_probability")(x)
        else:
            x = keras.layers.Dense(1, dtype="float32")(x)
            # the head learns RUL / cap (order 1), the output is in cycles
            outputs = keras.layers.Rescaling(float(info.rul_cap), dtype="float32", name="rul")(x)
        return keras.Model(inputs, outputs, name=f"maintenance_{config.model}")

    def loss(self, config, info):
        import keras

        return super().loss(config, info) if info.mode == "classification" else keras.losses.MeanSquaredError()

    def metrics(self, config, info):
        import keras

        if info.mode == "classification":
            return super().metrics(config, info)
        return [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")]

    def class_weight(self, config, splits):
        return super().class_weight(config, splits) if splits.info.mode == "classification" else None

    def scorers(self, config, info):
        from shared import baselines

        return super().scorers(config, info) if info.mode == "classification" else [baselines.RMSE, baselines.MAE]

    def outputs(self, model, splits, role, config):
        """Labels and failure scores, or RUL capped as the literature scores it and the predicted RUL."""
        if splits.info.mode == "classification":
            return super().outputs(model, splits, role, config)
        split = getattr(splits, role)
        predicted = model.predict(split.features, batch_size=1024, verbose=0).reshape(-1)
        return np.minimum(np.asarray(split.targets, "float64"), splits.info.rul_cap), predicted

    def baselines(self, splits, config):
        """The mean training RUL (or the failure rate), and gradient-boosted trees on each window's summary
        (every feature's last value, mean, spread and change over the window)."""
        from shared import baselines

        regression = splits.info.mode == "regression"
        trivial = (
            baselines.Baseline("mean", answer=baselines.constant(np.mean(splits.train.targets)), trivial=True)
            if regression
            else super().baselines(splits, config)[0]
        )
        rows = np.random.default_rng(config.seed).permutation(len(splits.train))[: baselines.MAX_TRAINING_ROWS]
        found = baselines.gradient_boosting(
            _summary(splits.train.features[rows]),
            np.asarray(splits.train.targets)[rows],
            {role: _summary(getattr(splits, role).features) for role in ("validation", "test")},
            regression=regression,
            seed=config.seed,
        )
        return [trivial, baselines.Baseline("hgb", **found)]

    def evaluate(self, model, splits, config):
        from shared import evaluation, plots

        if splits.info.mode == "classification":
            return super().evaluate(model, splits, config)
        truth = splits.test.targets
        capped, predicted = self.outputs(model, splits, "test", config)
        result = evaluation.regression(capped, predicted)
        result.outputs = capped, predicted
        result.metrics["rmse_uncapped"] = float(np.sqrt(np.mean((predicted - truth) ** 2)))
        result.metrics["nasa_score"] = nasa_score(capped, predicted)
        order = np.argsort(capped)
        ranks = np.arange(1, len(order) + 1)
        result.figures["rul_per_unit"] = plots.curves(
            [("true RUL (capped)", ranks, capped[order]), ("predicted RUL", ranks, predicted[order])],
            "test unit (sorted by true RUL)",
            "RUL (cycles)",
            "predicted vs true RUL per test unit",
        )
        start, count = splits.info.life_unit
        if count and len(splits.validation):  # a trained model on new data has no validation units beside it
            life = model.predict(splits.validation.features[start : start + count], batch_size=1024, verbose=0).reshape(
                -1
            )
            steps = np.arange(count)
            result.figures["unit_life"] = plots.curves(
                [
                    ("true RUL (capped)", steps, splits.validation.targets[start : start + count]),
                    ("predicted RUL", steps, life),
                ],
                "window index over the unit's life",
                "RUL (cycles)",
                "one validation unit over its life",
            )
        return result

    def input_example(self, splits):
        return [splits.info.example_history]

    def cli_inputs(self, inputs):
        """Rows as every "record" task reads them (see `Task.cli_inputs`), plus C-MAPSS text files (a row each)
        and JSON lists of rows (inline or a .json file), each one unit's history with one answer."""
        import pandas as pd

        pairs = []
        for argument in inputs:
            if os.path.isfile(argument) and _is_cmapss_text(argument):
                frame = pd.read_csv(argument, sep=r"\s+", header=None, names=CMAPSS_COLUMNS)
                records = json.loads(frame.to_json(orient="records"))
                pairs += [(f"{argument}:{row + 1}", record) for row, record in enumerate(records)]
            elif argument.lstrip().startswith("[") or (argument.endswith(".json") and os.path.isfile(argument)):
                text = open(argument, encoding="utf-8").read() if os.path.isfile(argument) else argument
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    raise ValueError(f"INPUT '{argument[:80]}' is not valid JSON.") from None
                pairs.append((argument[:200], parsed))  # a list: one unit's history, one answer
            else:
                pairs += super().cli_inputs([argument])
        return pairs

    def input_groups(self, info, inputs):
        """Loose rows of one unit form its history, so they go to the model together; histories stand alone."""
        unit = info.unit_column
        return [
            ("unit", _group_key(raw.get(unit))) if unit and isinstance(raw, dict) else ("input", position)
            for position, raw in enumerate(inputs)
        ]

    def output_names(self, info):
        """The failure probability or the RUL, by the model's mode."""
        return ["failure_probability" if info.mode == "classification" else "rul"]

    def explanation_names(self, info):
        """The encoded features: the numeric columns, then one per category of each text column (`=?` unseen)."""
        spec = info.preprocessing
        return [item["name"] for item in spec["numeric"]] + [
            f"{item['name']}={value}" for item in spec["categorical"] for value in ["?", *item["vocabulary"]]
        ]

    def predict_raw(self, model, info, inputs, explain=None):
        """Answers every row (dict) or history (list of rows); rows of one unit form its history in order. With
        `explain`, each answer explains the window it was estimated from."""
        unit, time = info.unit_column, info.time_column
        keep = [column for column in (unit, time) if column]
        batches, rows, owners = [], [], []  # histories first (one answer each), then loose rows
        for position, raw in enumerate(inputs):
            parsed = raw_inputs.parse_json(raw, position)
            if isinstance(parsed, dict):
                rows.append(parsed)
                owners.append(position)
            elif isinstance(parsed, (list, tuple)) and parsed:
                batches.append((position, parsed))
            else:
                raise ValueError(
                    f"predict input {position + 1} must be a row (JSON object) or a unit's history "
                    f"(a non-empty list of rows), got {str(raw)[:80]}."
                )
        answers = [None] * len(inputs)
        for position, history in batches:
            frame = self._frame(history, info, keep, history=True)
            key = unit if unit and history[0].get(unit) is not None else "_unit"
            frame[key] = frame[key].iloc[0] if key in frame else 0  # a list is one unit, whatever ids it carries
            answers[position] = self._answer(model, info, frame, key, explain, explained=[len(frame) - 1])[-1]
        if rows:
            frame = self._frame(rows, info, keep, history=False)
            if not unit:
                frame["_unit"] = np.arange(len(frame))  # independent observations
            for owner, answer in zip(owners, self._answer(model, info, frame, unit or "_unit", explain)):
                answers[owner] = answer
        return answers

    @staticmethod
    def _frame(records, info, keep, history):
        """Checks rows against the training columns; a history needs no unit column, rows without time keep their
        order."""
        import pandas as pd

        frame = pd.DataFrame(raw_inputs.check_records(records, info.preprocessing, info.ignored_columns + keep))
        for column in keep:
            present = [record.get(column) for record in records]
            if column == info.unit_column and not history and any(value is None for value in present):
                raise ValueError(
                    f"predict rows lack the unit column '{column}'; add it, or send one unit's history "
                    "as a JSON list of rows."
                )
            unit = column == info.unit_column
            for value in present:  # units are grouped (NaN would vanish, lists cannot), times are sorted
                finite = isinstance(value, (int, float)) and np.isfinite(value)
                if value is not None and not (finite or (unit and isinstance(value, str))):
                    kind = "a finite number or a string" if unit else "a finite number"
                    raise ValueError(f"predict rows: '{column}' must be {kind}, got {str(value)[:80]}.")
            frame[column] = np.arange(len(frame)) if any(value is None for value in present) else present
        return frame

    def _answer(self, model, info, frame, unit, explain=None, explained=None):
        """One answer per row, from the window ending at that row (shorter histories padded with the first row);
        with `explain` (see `Task.explained`), the rows at positions `explained` (None: every row) explain it."""
        time = info.time_column
        frame = frame.assign(_position=np.arange(len(frame)))
        frame = frame.sort_values([unit, time] if time else [unit], kind="stable")
        encoded = encode(frame, info, "predict input")
        window = info.window
        pieces, seen = [], []
        for _, group in frame.groupby(unit, sort=False).indices.items():
            pieces.append(_windows(encoded[group], window, every_row=True))
            seen.append(np.arange(1, len(group) + 1))
        if frame.groupby(unit).size().min() < window and window > 1:
            warnings.warn(f"a unit has fewer than window={window} rows; its first rows are padded", stacklevel=2)
        windows = np.concatenate(pieces)
        outputs = model.predict(windows, batch_size=1024, verbose=0).reshape(-1)
        seen = np.concatenate(seen)
        ordered = [None] * len(frame)
        positions = frame["_position"].to_numpy()
        for index, position in enumerate(positions):
            answer = {"unit": _plain(frame[unit].iloc[index])} if unit != "_unit" else {}
            if info.mode == "classification":
                answer.update(
                    failure_probability=round(float(outputs[index]), 6),
                    failure=bool(outputs[index] >= info.threshold),
                    threshold=round(info.threshold, 6),
                )
            else:
                answer.update(rul=round(float(max(outputs[index], 0.0)), 3), rows_seen=int(seen[index]))
            ordered[position] = answer
        if explain is not None:
            rows = np.arange(len(frame)) if explained is None else np.flatnonzero(np.isin(positions, explained))
            chosen = [ordered[positions[row]] for row in rows]
            self.explained(chosen, model, info, windows[rows], outputs[rows], explain, [None] * len(rows))
        return ordered

    def run_setting(self, params, info):
        model = str(params.get("model", ""))
        return f"classification-{model}" if params.get("mode") == "classification" else model

    def prepare_inputs(self, info, inputs):
        """The window ending at the last row of each history (a list of rows), as `predict_raw` feeds the model."""
        keep = [column for column in (info.unit_column, info.time_column) if column]
        windows = []
        for history in inputs:
            frame = self._frame(list(history), info, keep, history=True)
            if info.time_column:
                frame = frame.sort_values(info.time_column, kind="stable")
            windows.append(_windows(encode(frame, info, "export input"), info.window, every_row=True)[-1])
        return np.stack(windows).astype("float32")

    def drift_view(self, model, info, batch):
        """Each row's encoded features (a window's last step): the standardised numbers and one-hot categories."""
        from shared import drift

        return drift.table_view(np.asarray(batch)[:, -1, :], self.explanation_names(info))

    def drift_inputs(self, info, inputs):
        """Every row's encoded features as a window of one step, loose rows and the rows of histories alike: each is
        one reading of the sensors (windowing row by row would cost a table per row)."""
        keep = [column for column in (info.unit_column, info.time_column) if column]
        rows = [row for raw in inputs for row in (raw if isinstance(raw, (list, tuple)) else [raw])]
        return encode(self._frame(rows, info, keep, history=True), info, "monitor input")[:, None, :]

    def serving_signature(self, model, info):
        from shared import serving as graphs

        serving = super().serving_signature(model, info)
        order = f"sorted by {info.time_column}" if info.time_column else "in order"
        serving.preprocessing.update(
            graphs.tabular_contract(
                info.preprocessing,
                [
                    "each row's features: the standardised numeric columns, then each categorical column one-hot over "
                    "its vocabulary + 1 slots (slot 0: unseen)",
                    f"the window: the last {info.window} rows of one unit's history ({order}); a shorter history is "
                    "padded at the front with copies of its first row",
                    f"input `sensors` float32 (n, {info.window}, {info.feature_count})",
                ],
            )
        )
        serving.preprocessing["dropped_constant_columns"] = info.constant_columns
        if info.mode == "classification":
            serving.preprocessing.update(
                threshold=info.threshold,
                meaning={"failure_probability": f"failure within {info.failure_horizon} cycles when >= threshold"},
            )
        else:
            serving.preprocessing["meaning"] = {
                "rul": "remaining useful life in cycles at the window's last row (the predictor clips it at 0)"
            }
        return serving


def nasa_score(true, predicted):
    """The PHM08 / C-MAPSS asymmetric score: late predictions (d > 0) cost exp(d/10)-1, early exp(-d/13)-1.

    Returns:
        float: the sum over units (lower is better).
    """
    difference = np.asarray(predicted, dtype="float64") - np.asarray(true, dtype="float64")
    return float(np.sum(np.where(difference < 0, np.exp(-difference / 13) - 1, np.exp(difference / 10) - 1)))


def encode(frame, info, source):
    """Raw rows -> float32 (n, features): standardised numbers then one-hot categories (index 0 = unseen)."""
    from shared.data.tabular import apply_tabular

    encoded = apply_tabular(frame, info.preprocessing, source)
    parts = [encoded["numeric"]]
    for index, item in enumerate(info.preprocessing["categorical"]):
        parts.append(np.eye(len(item["vocabulary"]) + 1, dtype="float32")[encoded["categorical"][:, index]])
    return np.concatenate(parts, axis=1)


def _summary(windows):
    """Each window's features summarised for a tree model: last value, mean, standard deviation and change."""
    windows = np.asarray(windows, "float32")
    return np.concatenate(
        [windows[:, -1], windows.mean(axis=1), windows.std(axis=1), windows[:, -1] - windows[:, 0]], axis=1
    )


def _windows(matrix, window, every_row=False):
    """(rows, features) -> (windows, window, features) ending at each row from the `window`-th on.

    With `every_row`, the front is padded with the first row so every row ends a window.
    """
    if every_row or len(matrix) < window:
        padding = window - 1 if every_row else window - len(matrix)
        matrix = np.concatenate([np.repeat(matrix[:1], padding, axis=0), matrix])
    return np.lib.stride_tricks.sliding_window_view(matrix, window, axis=0).transpose(0, 2, 1)


def _windowed(rows, info, source, pad):
    """Every window of every unit with its target, and (start, count) of the longest unit's windows."""
    unit, time, window = info.unit_column, info.time_column, info.window
    encoded = encode(rows, info, source)
    targets = rows["_target"].to_numpy(dtype="float32")
    if not unit:
        return encoded[:, None, :].astype("float32"), targets, [0, 0]
    pieces, labels, skipped, longest, start = [], [], [], [0, 0], 0
    order = (
        np.lexsort((rows[time].to_numpy(), rows[unit].to_numpy()))
        if time
        else np.argsort(rows[unit].to_numpy(), kind="stable")
    )
    sorted_units = rows[unit].to_numpy()[order]
    for identifier in dict.fromkeys(sorted_units):
        group = order[sorted_units == identifier]
        if len(group) < window and not pad:
            skipped.append(_plain(identifier))
            continue
        windows = _windows(encoded[group], window)
        pieces.append(windows)
        labels.append(targets[group][-len(windows) :])
        if len(windows) > longest[1]:
            longest = [start, len(windows)]
        start += len(windows)
    if skipped:
        warnings.warn(f"{source}: skipped unit(s) {skipped[:10]} shorter than window={window}", stacklevel=2)
    if not pieces:
        return np.zeros((0, window, info.feature_count), "float32"), np.zeros(0, "float32"), [0, 0]
    return np.concatenate(pieces).astype("float32"), np.concatenate(labels), longest


def _last_windows(test, info, source):
    """The last window of each test unit (units ordered by id, as in the RUL file)."""
    unit, time, window = info.unit_column, info.time_column, info.window
    pieces, short = [], []
    for identifier, group in test.sort_values([unit, time]).groupby(unit, sort=True):
        if len(group) < window:
            short.append(_plain(identifier))
        pieces.append(_windows(encode(group.tail(window), info, source), window)[-1])
    if short:
        warnings.warn(f"{source}: test unit(s) {short[:10]} shorter than window={window} were padded", stacklevel=2)
    return np.stack(pieces).astype("float32")


def _truth(truth, config):
    """Test targets: true RUL (regression) or failure within the horizon (classification)."""
    truth = np.asarray(truth, dtype="float32")
    return (truth <= config.failure_horizon).astype("int64") if config.mode == "classification" else truth


def _with_targets(pool, config, source):
    """Adds `_target`: capped RUL, a 0/1 label, or the given target column, per row."""
    from shared.data.tabular import binary_target, numeric_values

    pool = pool.copy()
    unit, time = config.unit_column, config.time_column
    for column in (unit, time):
        if column and pool[column].isna().any():
            raise ValueError(f"{source}: column '{column}' has empty values; every row needs a {column}.")
    if time:
        pool[time] = numeric_values(pool[time], time, source)
    if unit and time:
        repeated = pool.duplicated([unit, time], keep="last")
        if repeated.any():  # a re-logged reading supersedes the earlier one, as a re-rating does in recommendation
            row = int(np.flatnonzero(repeated)[0])  # by column: a row of mixed types would be all floats
            warnings.warn(
                f"{source}: {int(repeated.sum())} row(s) repeat a ({unit}, {time}) pair, e.g. {unit} "
                f"{pool[unit].iloc[row]} at {time} {pool[time].iloc[row]:g}; keeping the last row of each "
                "pair.",
                stacklevel=3,
            )
            pool = pool[~repeated]
    if config.target_column:
        if config.mode == "classification":
            pool["_target"] = binary_target(pool[config.target_column], config.target_column, source)
        else:
            pool["_target"] = np.minimum(
                numeric_values(pool[config.target_column], config.target_column, source), config.rul_cap
            )
        return pool
    if not unit or not time:
        raise ValueError(f"{source}: without unit and time columns set target_column (the label or RUL column).")
    remaining = pool.groupby(unit)[time].transform("max") - pool[time]
    pool["_target"] = (
        (remaining <= config.failure_horizon).astype("int64")
        if config.mode == "classification"
        else np.minimum(remaining, config.rul_cap)
    )
    return pool


def _truncate(test_pool, config, generator):
    """Cuts each run-to-failure unit at a random point; returns the kept rows and each unit's true RUL."""
    import pandas as pd

    unit, time = config.unit_column, config.time_column
    kept, truth = [], []
    for _, group in test_pool.sort_values([unit, time]).groupby(unit, sort=True):
        cut = int(generator.integers(min(config.window, len(group)), len(group) + 1))
        kept.append(group.iloc[:cut])
        truth.append(float(group[time].max() - group[time].iloc[cut - 1]))
    return pd.concat(kept), np.array(truth)


def _constant_columns(rows, columns, source):
    """Numeric columns whose training spread is below 1e-4 of their scale (constant up to rounding)."""
    from shared.data.tabular import numeric_values

    constant = []
    for column in columns:
        values = numeric_values(rows[column], column, source)
        values = values[~np.isnan(values)]
        if values.size == 0 or values.std() <= 1e-4 * max(1.0, abs(values.mean())):
            constant.append(column)
    return constant


def _plain(value):
    """numpy scalars -> Python scalars, for JSON."""
    return value.item() if hasattr(value, "item") else value


def _cmapss_files(path, subset):
    """The (train, test, RUL) paths when `path` is a C-MAPSS folder or file, else None."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if not os.path.isdir(path):
        match = re.search(r"(FD\d{3})\.txt$", os.path.basename(path))
        if not match:
            return None
        subset = subset or match.group(1)
    found = sorted(re.findall(r"train_(FD\d{3})\.txt", " ".join(os.listdir(folder))))
    if not found:
        return None
    if not subset and len(found) > 1:
        raise ValueError(f"'{path}' holds C-MAPSS subsets {found}; choose one with --set subset=FD001.")
    subset = subset or found[0]
    files = [os.path.join(folder, f"{prefix}_{subset}.txt") for prefix in ("train", "test", "RUL")]
    missing = [os.path.basename(file) for file in files if not os.path.exists(file)]
    if missing:
        raise ValueError(f"C-MAPSS folder '{folder}' lacks {missing}; it needs train_, test_ and RUL_{subset}.txt.")
    return files


def _group_key(value):
    """A unit id as a grouping key: a list or an object (refused later, by `predict_raw`) by its text."""
    return value if isinstance(value, (str, int, float)) or value is None else repr(value)


def _is_cmapss_text(path):
    """True for a space-separated file of 26 numbers per row (C-MAPSS layout, no header)."""
    if not path.lower().endswith(".txt"):
        return False
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().split()
    return len(first) == len(CMAPSS_COLUMNS) and all(re.fullmatch(r"-?[\d.eE+-]+", value) for value in first)


def _read_cmapss(path, subset):
    """Reads a C-MAPSS subset: training pool, test rows, test true RUL and a dataset name."""
    import pandas as pd

    train_path, test_path, rul_path = _cmapss_files(path, subset)
    frames = []
    for file in (train_path, test_path):
        try:
            frame = pd.read_csv(file, sep=r"\s+", header=None)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read C-MAPSS file '{file}': {error}.") from None
        if frame.shape[1] != len(CMAPSS_COLUMNS):
            raise ValueError(
                f"C-MAPSS file '{file}' has {frame.shape[1]} columns per row; expected "
                f"{len(CMAPSS_COLUMNS)} (unit, cycle, 3 settings, 21 sensors)."
            )
        frame.columns = CMAPSS_COLUMNS
        frames.append(frame)
    truth = np.loadtxt(rul_path, ndmin=1)
    if len(truth) != frames[1]["unit"].nunique():
        raise ValueError(
            f"'{rul_path}' has {len(truth)} values but the test file has {frames[1]['unit'].nunique()} units."
        )
    return frames[0], frames[1], truth, f"cmapss_{os.path.basename(train_path)[6:11].lower()}"


def _engines(count, seed):
    """Generates run-to-failure engines whose sensors drift with exponential wear.

    Each engine has its own life (150-320 cycles), wear rate and sensor offsets; settings add operating
    noise; two sensors are constant (the preparation must drop them).
    """
    import pandas as pd

    design = np.random.default_rng(2024)  # one engine design for every seed, so models transfer between draws
    baselines = design.uniform(10, 2000, 8)
    directions = design.choice([-1.0, 1.0], 8)
    generator = np.random.default_rng(seed)
    frames = []
    for unit in range(1, count + 1):
        life = int(generator.integers(150, 321))
        cycles = np.arange(1, life + 1)
        rate = generator.uniform(3.0, 6.0)
        health = (np.exp(rate * cycles / life) - 1) / (np.exp(rate) - 1)  # 0 when new, 1 at failure
        settings = generator.normal(0, 1, (life, 2)) * [0.002, 0.0003]
        offsets = generator.normal(0, 0.002, 8)
        sensors = (
            baselines * (1 + offsets)
            + directions * baselines * 0.01 * health[:, None]
            + baselines * 0.0015 * generator.normal(0, 1, (life, 8))
            + 3 * baselines * settings[:, :1]
        )
        frame = pd.DataFrame(sensors.round(4), columns=[f"sensor_{index}" for index in range(1, 9)])
        frame.insert(0, "unit", unit)
        frame.insert(1, "cycle", cycles)
        frame.insert(2, "setting_1", settings[:, 0].round(5))
        frame.insert(3, "setting_2", settings[:, 1].round(5))
        frame.insert(4, "setting_3", 100.0)
        frame["sensor_9"], frame["sensor_10"] = 518.67, 1.3  # constant, like several C-MAPSS sensors
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _slice(splits, config, source, unit, frames):
    """Gives each split of independent rows its slice keys (`--set slice_by=COLUMN`, `shared.slices`).

    Raises:
        ValueError: the rows are windows of units, whose slice would be a unit's, not an example's.
    """
    from shared import slices

    if unit:
        raise ValueError(
            f"{source}: slice_by needs independent rows; windows of units ({unit}) are not sliced yet: drop slice_by."
        )
    for role, frame in zip(("train", "validation", "test"), frames):
        if len(getattr(splits, role)) == len(frame):  # oversampled training rows carry no keys
            getattr(splits, role).groups = slices.values(frame, config.slice_by, source)
