"""Fraud detection: a tabular MLP (category embeddings + standardised numbers) for rare positives.

Data sources:
    embedded            generated card transactions (amount, merchant category, hour, distance from home,
                        card present, customer age, recent activity) with a rare (0.5%), learnable fraud
                        pattern and a few missing values; tagged synthetic.
    tfds:NAME           a TFDS table with a `features` vector and a binary `label`; the fitting catalogue
                        entry is german_credit_numeric (credit risk, not fraud: TFDS has no fraud dataset).
    PATH                a CSV (comma; .tsv for tabs) or Parquet file with a header. `target` names the 0/1
                        column, `drop_columns` the columns to ignore (ids, leaking fields such as Time in the
                        Kaggle subset). Numeric and categorical columns are detected (a column is numeric when
                        95% of its values parse as numbers) unless listed in `numeric_columns` /
                        `categorical_columns`. `time_column` switches to a time-ordered split: train on the
                        oldest rows, validate on the next, test on the newest (the column is not a feature).

Preprocessing is fitted on training rows only (median imputation and standardisation for numbers,
vocabularies for categories), stored in `Splits.info` and applied again by the predictor, so the logged
model takes raw rows. Missing numeric values are imputed, missing categories are a category of their own,
categories never seen in training share one index; infinite values, non-numeric text in a numeric column,
a missing target column and a single-class target are errors.

Imbalance: balanced class weights by default; `focal_gamma` (focal loss) and `oversample` (repeat frauds
in the training split) are options. The decision threshold is chosen on the validation split by expected
cost (`cost_false_negative` vs `cost_false_positive`) or by `target_precision` / `target_recall`; it is
logged as `test_threshold` and used by the predictor. A scikit-learn HistGradientBoosting model is trained
on the same split and its test PR-AUC is logged as `test_baseline_hgb_pr_auc` beside ours. With `blend` (the
default) the served score is `(1 - w) * MLP + w * trees`, w in 0, 0.25 ... 1 chosen on validation PR-AUC
(logged as `test_blend_weight`); the trees travel in the model's info as JSON (`shared/trees.py`), so
SavedModel / TFLite / ONNX exports hold the MLP alone and say so.

Predict: each INPUT is a CSV/Parquet file (one answer per row), a .json file (an object or a list of
objects) or an inline JSON object. Rows need every feature column; extra columns (the target, dropped
columns, anything else) are ignored, with a warning naming unexpected ones.
"""

import dataclasses
import json

import numpy as np

from shared import inputs as raw_inputs
from shared.constraints import Count, Fraction, Width, Widths
from shared.data.sources import Table, reader
from tasks import register
from tasks.base import Splits, search_space
from tasks.detection import BinaryDetectionTask, DetectionConfig, DetectionState

MERCHANT_CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "pharmacy",
    "clothing",
    "travel",
    "electronics",
    "gift_cards",
    "online_gaming",
)


@dataclasses.dataclass
class FraudDetectionConfig(DetectionConfig):
    epochs: int = 60  # small tables train in seconds per epoch; early stopping ends sooner
    batch_size: int = 256  # enough rare positives per batch for a stable gradient at 0.5-10% prevalence
    learning_rate: float = 1e-3  # the keras-io imbalanced-classification recipe's rate for this MLP size
    target: str = "Class"  # the 0/1 label column; "Class" is the Kaggle credit-card name, also used by embedded
    drop_columns: tuple = ()  # ids and leaking fields to ignore, e.g. [Time] for the Kaggle subset
    numeric_columns: tuple = ()  # empty: detected (every column that parses as numbers)
    categorical_columns: tuple = ()  # empty: detected (every column that does not)
    time_column: str = ""  # set to split by time (train past, test future) instead of a stratified shuffle
    max_categories: Count = 1000  # per-column vocabulary cap; rarer values share the unseen-category index
    hidden_units: Widths = (256, 256)  # two wide ReLU layers: the keras-io fraud recipe, enough for 30 features
    dropout: Fraction = 0.3  # after each hidden layer; frauds are few, so the net memorises them easily
    embedding_dim: Width = 8  # per categorical column; categories rarely need more on tables this size
    cost_false_negative: float = 25.0  # a missed fraud costs the amount plus fees: ~25 false-alarm calls
    cost_false_positive: float = 1.0  # a false alarm costs a customer call or a declined purchase
    baseline: bool = True  # also fit HistGradientBoosting, so every run shows if the deep model earns its place
    blend: bool = True  # serve a blend of the MLP and those trees when validation PR-AUC prefers one (weight 0-1)
    search_space: dict = search_space(  # few frauds are easy to memorise: dropout and input noise fight it
        dropout=["float", 0.1, 0.5], noise=["float", 0.0, 0.2]
    )

    def check(self):
        """Raises:
        ValueError: also when `blend` is on without the `baseline` whose trees it blends in.
        """
        super().check()
        if self.blend and not self.baseline:
            raise ValueError("blend=true blends in the baseline's trees; set baseline=true, or blend=false.")


@reader("tfds_features", ("tfds",), "tfds:NAME, a features/label dataset (e.g. tfds:german_credit_numeric)")
def _read_tfds_features(task, argument, config):
    """A TFDS features/label set as one table: `feature_0...` columns and the target column."""
    import pandas as pd

    from shared.data import tfds

    loaded, _ = tfds.load_arrays(
        argument, config.tfds_data_dir, ("features", "label"), alternatives="--data embedded or a CSV/Parquet file"
    )
    features = np.concatenate([split["features"] for split in loaded.values()]).reshape(
        sum(len(split["label"]) for split in loaded.values()), -1
    )
    frame = pd.DataFrame(features, columns=[f"feature_{index}" for index in range(features.shape[1])])
    frame[config.target] = np.concatenate([split["label"] for split in loaded.values()])
    return Table(frame, f"tfds_{argument.split(':')[0]}")


@dataclasses.dataclass(kw_only=True)
class TableState(DetectionState):
    """A detector of table rows (`DetectionState`) and how a row becomes the model's features.

    Attributes:
        preprocessing (dict): the columns' statistics and vocabularies (`shared.data.sources.fit_tabular`).
        target (str): the label column.
        ignored_columns (list[str]): columns a row may hold that the model does not read.
        train_prevalence (float): the training split's positive rate.
        example_rows (list[dict]): two test rows, the logged model's input example.
    """

    preprocessing: dict
    target: str
    ignored_columns: list
    train_prevalence: float
    example_rows: list


@register
class FraudDetection(BinaryDetectionTask):
    name = "fraud_detection"
    answer_key = "fraud_probability"
    config_class = FraudDetectionConfig
    state_class = TableState
    tfds_name = "german_credit_numeric"
    input_column = "row"
    input_kind = "record"
    quick_overrides = {"epochs": 2, "max_examples": 6000}
    readers = ("embedded", "tfds_features", "table")
    # rare positives are memorised: stronger regularisation, or a smaller net
    candidates = (
        ("default", {}),
        ("regularised", {"dropout": 0.5, "noise": 0.1}),
        ("small", {"hidden_units": (64, 64)}),
    )
    remedies = (
        "Likely causes: too few positives, or a target that the columns do not explain. Check target and "
        "drop_columns, try more epochs or noise, or --preset balanced."
    )
    noisy_input = "numeric"
    explain_kind = "table"  # a signed weight per numeric column: what pushed the model's score up or down
    # categories are held as they are: an embedding index has no straight path from a baseline to integrate along
    explain_input = "numeric"

    def load_data(self, config, fitted=None, strict=False):
        """Reads the table and encodes it; with `fitted` (a trained model's info), with the model's preprocessing,
        refusing columns it does not know when `strict` (continued training; evaluation ignores them)."""
        table = self.read(config)
        # the embedded timestamp only serves `time_column=timestamp` demos; as a feature it is noise
        extra_drop = ["timestamp"] if table.synthetic and config.time_column != "timestamp" else []
        if strict:
            from shared.data.sources import refuse_unknown_columns

            also = [config.target, *config.drop_columns, *extra_drop, config.time_column]
            refuse_unknown_columns(table.frame, fitted, config.data, also)
        return self._prepare(table.frame, config, config.data, table.name, table.synthetic, extra_drop, fitted)

    def embedded(self, config):
        """Generated card transactions, about 2% of them fraud."""
        return Table(_transactions(40_000, config.seed), "synthetic_transactions", synthetic=True)

    def _prepare(self, frame, config, source, name, synthetic, extra_drop=(), fitted=None):
        """Splits the rows, fits preprocessing on the training rows (or takes `fitted`'s) and encodes every split."""
        from shared import augmentation
        from shared.data.sources import require_columns
        from shared.data.splits import carve
        from shared.data.tabular import apply_tabular, binary_target, fit_tabular, looks_numeric, numeric_values

        require_columns(frame, [config.target], source, hint="set --set target=COLUMN")
        labels = binary_target(frame[config.target], config.target, source)
        ignored = [
            config.target,
            *config.drop_columns,
            *extra_drop,
            *([config.time_column] if config.time_column else []),
        ]
        require_columns(
            frame,
            [*config.drop_columns, config.time_column, *config.numeric_columns, *config.categorical_columns],
            source,
            hint="fix the column lists in the config",
        )
        candidates = [column for column in frame.columns if column not in ignored]
        categorical = list(config.categorical_columns) or [
            column for column in candidates if column not in config.numeric_columns and not looks_numeric(frame[column])
        ]
        numeric = list(config.numeric_columns) or [column for column in candidates if column not in categorical]
        if fitted:  # the model's feature columns, whatever else the table holds
            numeric, categorical = (
                [item["name"] for item in fitted.preprocessing[kind]] for kind in ("numeric", "categorical")
            )
            require_columns(frame, numeric + categorical, source, hint="the model was trained on these columns")
        if not numeric and not categorical:
            raise ValueError(f"{source}: no feature columns left after dropping {ignored}.")
        for column in numeric:  # check every row up front, so an error names the row of the file
            numeric_values(frame[column], column, source)
        if config.time_column:
            order = np.argsort(
                numeric_values(frame[config.time_column], config.time_column, source)
                if looks_numeric(frame[config.time_column])
                else frame[config.time_column].astype(str).to_numpy(),
                kind="stable",
            )
            test_start = int(len(order) * (1 - config.test_fraction))
            validation_start = int(len(order) * (1 - config.test_fraction - config.validation_fraction))
            indices = (order[:validation_start], order[validation_start:test_start], order[test_start:])
        else:
            indices = tuple(part.features for part in carve((np.arange(len(frame)), labels), config))
        train_rows = frame.iloc[indices[0]]
        if fitted is None and len(np.unique(labels[indices[0]])) < 2:
            raise ValueError(f"{source}: the training split has a single class; use more data or a random split.")
        spec = (
            fitted.preprocessing
            if fitted
            else fit_tabular(train_rows, numeric, categorical, source, config.max_categories)
        )
        train, validation, test = (
            (_features(apply_tabular(frame.iloc[part], spec, source)), labels[part]) for part in indices
        )
        train = augmentation.oversample(train, config.oversample, config.seed)
        examples = frame.iloc[indices[2][:2]][numeric + categorical]
        info = TableState(
            preprocessing=spec,
            target=config.target,
            ignored_columns=ignored,
            train_prevalence=float(labels[indices[0]].mean()),
            example_rows=json.loads(examples.to_json(orient="records")),
        )
        splits = Splits(train, validation, test, info, source, name, synthetic)
        if config.slice_by:
            from shared import slices

            for role, part in zip(("train", "validation", "test"), indices):
                if len(getattr(splits, role)) == len(part):  # oversampled training rows carry no keys
                    getattr(splits, role).groups = slices.values(frame.iloc[part], config.slice_by, source)
        return splits

    def build_model(self, config, info):
        import keras

        spec = info.preprocessing
        inputs = {"numeric": keras.Input((len(spec["numeric"]),), name="numeric")}
        parts = [inputs["numeric"]]
        for index, item in enumerate(spec["categorical"]):
            key = f"categorical_{index}"
            inputs[key] = keras.Input((1,), dtype="int32", name=key)
            embedded = keras.layers.Embedding(
                len(item["vocabulary"]) + 1, config.embedding_dim, name=f"embedding_{index}"
            )(inputs[key])
            parts.append(keras.layers.Flatten()(embedded))
        x = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
        for units in config.hidden_units:
            x = keras.layers.Dense(units, activation="relu")(x)
            x = keras.layers.Dropout(config.dropout)(x)
        outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="fraud_probability")(x)
        return keras.Model(inputs, outputs, name="fraud_mlp")

    def metrics(self, config, info):
        import keras

        return super().metrics(config, info) + [keras.metrics.AUC(name="roc_auc")]

    def baseline(self, splits, config):
        """HistGradientBoosting on the same (preprocessed) training rows (when `baseline` is on), as trees."""
        if not config.baseline:
            return None
        from sklearn import ensemble

        from shared import trees

        spec = splits.info.preprocessing
        categorical = [False] * len(spec["numeric"]) + [
            len(item["vocabulary"]) < 255 for item in spec["categorical"]
        ]  # HGB bins categories in <= 255 bins
        model = ensemble.HistGradientBoostingClassifier(
            categorical_features=np.array(categorical), random_state=config.seed
        )
        model.fit(self.baseline_table(splits.train.features), splits.train.targets)
        return trees.to_json(model)

    def baseline_table(self, features):
        columns = [features["numeric"]] + [features[key] for key in sorted(features) if key != "numeric"]
        return np.concatenate(
            [np.asarray(column).reshape(len(column), -1).astype("float32") for column in columns], axis=1
        )

    def serves_baseline(self, config):
        if config.blend:
            return "The served model blends the trees in with the weight validation chose (test_blend_weight)."
        return "Set --set blend=true to serve a validation-chosen blend of the model and these trees."

    def blend_weights(self, config):
        return (0.0, 0.25, 0.5, 0.75, 1.0) if config.blend else (0.0,)

    def input_example(self, splits):
        return splits.info.example_rows[:1]

    def explanation_names(self, info):
        """The numeric columns, in the model's order."""
        return [item["name"] for item in info.preprocessing["numeric"]]

    def drift_view(self, model, info, batch):
        """Every column: the standardised numbers and the category codes the model reads."""
        from shared import drift

        spec = info.preprocessing
        categories = {item["name"]: batch[f"categorical_{index}"] for index, item in enumerate(spec["categorical"])}
        return drift.table_view(batch["numeric"], self.explanation_names(info), categories)

    def predict_raw(self, model, info, inputs, explain=None):
        batch = self.prepare_inputs(info, inputs)
        scores = self.scores(model, info, batch)
        answers = [
            {
                "fraud_probability": round(float(score), 6),
                "fraud": bool(score >= info.threshold),
                "threshold": round(info.threshold, 6),
            }
            for score in scores
        ]
        return self.explained(answers, model, info, batch, scores, explain, inputs)

    def prepare_inputs(self, info, inputs):
        import pandas as pd

        from shared.data.tabular import apply_tabular

        spec = info.preprocessing
        records = raw_inputs.check_records(inputs, spec, info.ignored_columns)
        return _features(apply_tabular(pd.DataFrame(records), spec, "predict input"))

    def serving_signature(self, model, info):
        """The SavedModel takes one input per column (numbers, category strings) and encodes them in its graph."""
        from shared import serving as graphs

        spec = info.preprocessing
        serving = super().serving_signature(model, info)
        serving.preprocessing.update(
            graphs.tabular_contract(
                spec,
                [
                    "inputs: `numeric` float32 (n, numeric columns); `categorical_I` int32 (n, 1), the index of the "
                    "I-th categorical column (from 0)"
                ],
            )
        )
        serving.raw_inputs, graph, feed, serving.resources = graphs.table_graph(spec)
        serving.raw_graph = lambda raw: _features(graph(raw))
        serving.raw_feed = lambda inputs: feed(raw_inputs.check_records(inputs, spec, info.ignored_columns))
        serving.preprocessing["raw_input"] = (
            "one input per feature column, named as in `columns` (tensor name: column): numbers as float32 "
            "(NaN when missing), categories as strings (empty when missing)"
        )
        serving.preprocessing["columns"] = {
            graphs.tensor_name(item["name"]): item["name"] for item in spec["numeric"] + spec["categorical"]
        }
        categories = {item["name"] for item in spec["categorical"]}
        # the logged row, then one with every value missing (medians, <missing>) and one of unseen categories
        serving.examples = lambda example: [
            *example,
            dict.fromkeys(example[0]),
            {
                key: "a category never seen in training" if key in categories else value
                for key, value in example[0].items()
            },
        ]
        serving.preprocessing.update(
            {
                "threshold": info.threshold,
                "threshold_rule": info.threshold_rule,
                "meaning": {"fraud_probability": "the probability that the row is a fraud; flag it when >= threshold"},
            }
        )
        return serving


def _features(encoded):
    """Splits the categorical matrix into one `(n, 1)` input per column, the model's input layout."""
    features = {"numeric": encoded["numeric"]}
    for index in range(encoded["categorical"].shape[1] if "categorical" in encoded else 0):
        features[f"categorical_{index}"] = encoded["categorical"][:, index : index + 1]
    return features


def _transactions(count, seed, fraud_rate=0.005):
    """Generates card transactions where fraud is rare and shows as a learnable mix of signals.

    Frauds lean towards night hours, electronics / gift cards / gaming, large amounts, card-not-present,
    far-from-home purchases and bursts of activity; each signal alone overlaps with normal traffic.
    """
    import pandas as pd

    generator = np.random.default_rng(seed)
    fraud = np.zeros(count, dtype=bool)
    fraud[generator.choice(count, max(2, round(count * fraud_rate)), replace=False)] = True  # exact prevalence
    normal_hours = np.clip(generator.normal(14, 4, count), 0, 23.99)
    fraud_hours = np.where(
        generator.random(count) < 0.6, generator.uniform(0, 5, count), generator.uniform(0, 24, count)
    )
    normal_weights = np.array([30, 20, 15, 8, 12, 5, 6, 2, 2], dtype=float)
    fraud_weights = np.array([4, 3, 3, 2, 8, 10, 30, 25, 15], dtype=float)
    categories = np.where(
        fraud,
        generator.choice(len(MERCHANT_CATEGORIES), count, p=fraud_weights / fraud_weights.sum()),
        generator.choice(len(MERCHANT_CATEGORIES), count, p=normal_weights / normal_weights.sum()),
    )
    frame = pd.DataFrame(
        {
            "timestamp": np.sort(generator.uniform(0, 30 * 86_400, count)).round(),
            "amount": np.round(
                np.where(fraud, generator.lognormal(5.0, 1.1, count), generator.lognormal(3.6, 1.0, count)), 2
            ),
            "merchant_category": np.array(MERCHANT_CATEGORIES)[categories],
            "hour": np.floor(np.where(fraud, fraud_hours, normal_hours)).astype(int),
            "distance_km": np.round(
                np.where(fraud, generator.exponential(150, count), generator.exponential(12, count)), 1
            ),
            "card_present": np.where(fraud, generator.random(count) < 0.25, generator.random(count) < 0.7).astype(int),
            "customer_age": np.clip(generator.normal(45, 15, count), 18, 95).astype(int),
            "transactions_24h": np.where(fraud, generator.poisson(7, count), generator.poisson(3, count)),
            "Class": fraud.astype(int),
        }
    )
    frame.loc[generator.random(count) < 0.02, "distance_km"] = np.nan  # GPS sometimes unavailable
    return frame
