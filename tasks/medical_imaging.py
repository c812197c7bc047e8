"""Medical imaging: an imbalance-aware image classifier with a validated decision threshold.

Builds on the image classifier that vision_classification is too (`tasks/image_classification.py`: the
same ResNet / keras.applications models, folders, TFDS and npz readers) and adds what clinical use needs:
class weights or focal loss for rare findings, a binary decision threshold chosen on the validation split
(Youden's J or a target sensitivity), sensitivity, specificity, calibration, and explanations of its most
confident hits and misses (`plots/explain/image.png`: Grad-CAM for the ResNet, integrated gradients through
keras.applications backbones).

Data sources:
    embedded              generated radiograph-like images (lungs, ribs, noise); about one in five has a
                          lesion (a faint bright blob). Synthetic, offline, seconds.
    PATH.npz              MedMNIST layout: train_images, train_labels, val_images, val_labels,
                          test_images, test_labels; 2D, grayscale or RGB, any size, single-label.
    PATH                  a folder with one subfolder per class (e.g. normal/, pneumonia/).
    tfds:patch_camelyon   (or any TFDS image/label dataset).

Binary tasks call the second class (label 1, or the later folder name) positive. The chosen
threshold is logged as the metric `test_threshold` (the runner logs params before training),
saved with the model and used by `predict`.

Predict: an image file, encoded bytes or a pixel array -> label, probability, positive_probability
and the threshold; `predict --explain` adds the evidence for the positive class (or the predicted one of
more) as a heatmap PNG, its path in the answer's `explanation` (it replaces the former `gradcam:IMAGE` prefix).
"""

import dataclasses

import numpy as np

from shared.constraints import BaseWidth, Choice, Count, Fraction, NonNegative, Size
from shared.data.sources import reader
from tasks import register
from tasks.image_classification import ImageClassificationConfig, ImageClassificationTask, ImageState, read_npz_images

IMBALANCE = ("class_weight", "focal", "none")
THRESHOLD_METHODS = ("youden", "sensitivity")
_MEDMNIST_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")


@dataclasses.dataclass
class MedicalImagingConfig(ImageClassificationConfig):
    epochs: Count = 20  # an upper bound: early stopping on val_auc usually ends sooner on small scan sets
    base_filters: BaseWidth = 16  # 28-64 px grayscale scans need little width; raise it for larger images
    crop_padding: Size = 2  # pad-and-crop shifts: patients are not centred alike on the detector
    rotation: float = 0.03  # about 10 degrees: patient positioning varies a little
    zoom: float = 0.1  # field-of-view and body-size variation
    contrast: float = 0.1  # exposure differs between machines
    class_names: str = ""  # comma-separated names in label order (e.g. normal,pneumonia); empty keeps the source's
    imbalance: Choice(*IMBALANCE) = "class_weight"  # balanced loss; focal: down-weights easy examples; or none
    focal_gamma: NonNegative = 2.0  # focal loss focusing strength; 2 is the value of the paper (Lin et al. 2017)
    threshold_method: Choice(*THRESHOLD_METHODS) = "youden"  # youden: max sensitivity + specificity; or a target
    target_sensitivity: Fraction = 0.9  # for threshold_method=sensitivity: screening rarely accepts more misses


def _radiographs(count, size, positive_share, seed):
    """Generates chest-radiograph-like images; label 1 marks a lesion (a faint bright blob in a lung).

    Returns:
        tuple[np.ndarray, np.ndarray]: images (count, size, size, 1) in [0, 1] and int64 labels.
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size].astype("float32") / size
    labels = (rng.random(count) < positive_share).astype("int64")
    pictures = np.empty((count, size, size, 1), "float32")
    for index in range(count):
        shift_row, shift_column = rng.normal(0, 0.03, 2)
        picture = 0.55 + 0.25 * rows + rng.normal(0, 0.02)  # brighter towards the abdomen
        lungs = []
        for side in (-1, 1):
            center = (0.45 + shift_row, 0.5 + side * 0.2 + shift_column)
            lung = ((rows - center[0]) / 0.3) ** 2 + ((columns - center[1]) / 0.13) ** 2 <= 1
            picture = picture - 0.3 * lung
            lungs.append((lung, center))
        ribs = 0.06 * (np.sin(2 * np.pi * (rows * rng.uniform(6, 8) + 0.3 * np.abs(columns - 0.5))) > 0.6)
        picture = picture + ribs * (lungs[0][0] | lungs[1][0])
        if labels[index]:
            lung, center = lungs[rng.integers(2)]
            spot_row = center[0] + rng.uniform(-0.15, 0.15)
            spot_column = center[1] + rng.uniform(-0.06, 0.06)
            radius = rng.uniform(0.05, 0.09)
            blob = np.exp(-((rows - spot_row) ** 2 + (columns - spot_column) ** 2) / (2 * radius**2))
            picture = picture + rng.uniform(0.18, 0.3) * blob
        picture = picture + rng.normal(0, 0.04, (size, size))
        pictures[index, ..., 0] = np.clip(picture, 0, 1)
    return pictures, labels


def _check_medmnist(path):
    """Validates a MedMNIST-style npz before reading it, naming the key at fault.

    Raises:
        ValueError: a missing key, labels that are not one class per image, or an empty split.
    """
    try:
        archive = np.load(path)
    except Exception as error:
        raise ValueError(f"cannot read '{path}' as .npz: {error}.") from None
    with archive:
        if not any(key in archive.files for key in _MEDMNIST_KEYS):
            return  # another layout (Keras x_train...): the shared reader checks it
        missing = [key for key in _MEDMNIST_KEYS if key not in archive.files]
        if missing:
            raise ValueError(
                f"'{path}' is missing key(s) {', '.join(missing)}; a MedMNIST npz holds {', '.join(_MEDMNIST_KEYS)}."
            )
        for split in ("train", "val", "test"):
            pictures, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
            if not len(pictures):
                raise ValueError(f"'{path}': {split}_images is empty; every split needs images.")
            if pictures.ndim not in (3, 4) or (pictures.ndim == 4 and pictures.shape[-1] not in (1, 3)):
                raise ValueError(
                    f"'{path}': {split}_images has shape {pictures.shape}; expected (n, h, w) "
                    "grayscale or (n, h, w, 1 or 3) images (3D volumes are not supported)."
                )
            if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] != 1) or len(labels) != len(pictures):
                raise ValueError(
                    f"'{path}': {split}_labels has shape {labels.shape}; expected ({len(pictures)},) "
                    f"or ({len(pictures)}, 1), one class per image (multi-label sets such as "
                    "ChestMNIST are not supported)."
                )


@reader(
    "medmnist_npz", ("npz",), "an .npz in MedMNIST's layout (train_images to test_labels) or Keras' (x_train to y_test)"
)
def _read_medmnist(task, argument, config):
    """The image classifiers' npz reader, after checking a MedMNIST layout key by key."""
    _check_medmnist(argument)
    return read_npz_images(task, argument, config)


@dataclasses.dataclass(kw_only=True)
class ScanState(ImageState):
    """An image classifier's state (`ImageState`) and a binary model's decision threshold.

    Attributes:
        threshold (float): the positive class is answered at or above it; chosen on validation (0.5 in models
            logged before it was kept).
    """

    threshold: float = 0.5


@register
class MedicalImaging(ImageClassificationTask):
    name = "medical_imaging"
    config_class = MedicalImagingConfig
    state_class = ScanState
    primary_metric = "roc_auc"
    tfds_name = "patch_camelyon"
    quick_overrides = {"epochs": 2, "max_examples": 400}
    monitor = "val_auc"  # threshold-free: the threshold is chosen after training, and losses swing with calibration
    readers = ("embedded", "tfds_images", "image_folder", "image_manifest", "idx_images", "medmnist_npz")

    def embedded(self, config):
        """Generated radiograph-like images, one in five with a lesion."""
        from shared.data import examples

        pictures, labels = _radiographs(1500, config.image_size or 32, 0.2, config.seed)
        return self.image_splits(
            config,
            examples.Examples(pictures, labels),
            pictures.shape[1:3],
            1,
            ["normal", "lesion"],
            "generated_radiographs",
            synthetic=True,
        )

    def load_data(self, config):
        splits = super().load_data(config)
        for split_name, split in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
            if not len(split):
                raise ValueError(
                    f"the {split_name} split of '{config.data}' is empty; add images or change "
                    "validation_fraction / test_fraction."
                )
        if config.class_names:
            names = [name.strip() for name in config.class_names.split(",")]
            if len(names) != len(splits.info.class_names):
                raise ValueError(
                    f"class_names lists {len(names)} names but '{config.data}' has "
                    f"{len(splits.info.class_names)} classes."
                )
            splits.info.class_names = names
        return splits

    def loss(self, config, info):
        import keras

        if config.imbalance == "focal":
            return keras.losses.CategoricalFocalCrossentropy(
                gamma=config.focal_gamma, label_smoothing=config.label_smoothing
            )
        return super().loss(config, info)

    def metrics(self, config, info):
        import keras

        # One ROC-AUC per class column, averaged: for two classes exactly the binary ROC-AUC of the positive
        # probability. Keras' default flattens the columns into one, which mixes calibration into the score.
        classes = len(info.class_names)
        return super().metrics(config, info) + [keras.metrics.AUC(name="auc", multi_label=True, num_labels=classes)]

    def class_weight(self, config, splits):
        return super().class_weight(config, splits) if config.imbalance == "class_weight" else None

    def scorers(self, config, info):
        from shared import baselines

        # Balanced accuracy decides whether the model learned anything; not ROC-AUC: an untrained network already
        # ranks scans by overall brightness (AUC 0.3-0.65 on the embedded set, by its random start) and early
        # stopping on val_auc keeps the luckiest epoch, so models trained on shuffled labels reached 0.59-0.66
        return [baselines.BALANCED_ACCURACY, baselines.ROC_AUC]

    def check_splits(self, splits, config):
        """Raises:
        ValueError: with two classes, a split lacks one (see `tasks.detection.require_both_classes`).
        """
        from tasks.detection import require_both_classes

        if len(splits.info.class_names) == 2:
            require_both_classes(splits)

    def evaluate(self, model, splits, config):
        from shared import evaluation

        names = splits.info.class_names
        labels, probabilities = self.outputs(model, splits, "test", config)
        if len(names) == 2:
            threshold, how = self._threshold(model, splits, config)
            scores = probabilities[:, 1]
            result = evaluation.binary_detection(labels, scores, threshold)
            predicted = (scores >= threshold).astype(int)
            negatives = labels == 0
            result.metrics.update(
                {
                    "accuracy": float(np.mean(predicted == labels)),
                    "sensitivity": result.metrics["recall"],
                    "specificity": float(np.mean(predicted[negatives] == 0)) if negatives.any() else 0.0,
                }
            )
            result.metrics["balanced_accuracy"] = (result.metrics["sensitivity"] + result.metrics["specificity"]) / 2
            result.serving["threshold"] = threshold  # saved with the model, so predict uses it
            result.texts["threshold.txt"] = f"threshold {threshold:.6f}: {how}, chosen on the validation split\n"
        else:
            result = evaluation.classification(labels, probabilities, names)
        result.outputs = labels, probabilities
        return result

    @staticmethod
    def _threshold(model, splits, config):
        """Chooses the decision threshold on the validation split (never on test); a trained model evaluated on
        new data (`splits.fitted`) keeps its own."""
        from shared import evaluation
        from shared.data import examples

        if splits.fitted:
            return splits.info.threshold, "the model's threshold"
        scores, labels = examples.predict(model, splits.validation, config.batch_size)
        scores = scores[:, 1]
        if config.threshold_method == "sensitivity":
            threshold, how = evaluation.choose_threshold(labels, scores, target_recall=config.target_sensitivity)
            return threshold, how.replace("recall", "sensitivity")
        positives = max(1, int(labels.sum()))
        # Youden's J = sensitivity + specificity - 1 is the minimum expected cost when a miss costs
        # 1/positives and a false alarm 1/negatives.
        threshold, _ = evaluation.choose_threshold(
            labels, scores, cost_false_negative=1 / positives, cost_false_positive=1 / max(1, len(labels) - positives)
        )
        return threshold, "maximum Youden's J (sensitivity + specificity - 1)"

    def explained_examples(self, info, labels, probabilities, count, seed):
        """The most confident true/false positives and negatives (two classes, decided by the model's threshold),
        or hits and misses (more), a share of `count` each."""
        names = info.class_names
        labels, probabilities = np.asarray(labels), np.asarray(probabilities)
        confidence = probabilities.max(axis=1)
        if len(names) == 2:
            predicted = (probabilities[:, 1] >= info.threshold).astype(int)
            groups = {
                "TP": (labels == 1) & (predicted == 1),
                "FP": (labels == 0) & (predicted == 1),
                "TN": (labels == 0) & (predicted == 0),
                "FN": (labels == 1) & (predicted == 0),
            }
        else:
            predicted = probabilities.argmax(axis=1)
            groups = {"correct": predicted == labels, "wrong": predicted != labels}
        chosen, titles = [], []
        for outcome, members in groups.items():
            indices = np.flatnonzero(members)
            for index in indices[np.argsort(-confidence[indices])][: max(1, count // len(groups))]:
                chosen.append(index)
                titles.append(
                    f"{outcome}: true {names[labels[index]]}\npred {names[predicted[index]]} "
                    f"p={probabilities[index, 1 if len(names) == 2 else predicted[index]]:.2f}"
                )
        return np.array(chosen, int), titles

    def predict_raw(self, model, info, inputs, explain=None):
        from shared import evaluation

        batch = self.prepare_inputs(info, inputs)
        probabilities = model.predict(batch, verbose=0)
        names = info.class_names
        if len(names) == 2:
            threshold = info.threshold
            answers = []
            for row in probabilities:
                label = int(row[1] >= threshold)
                answers.append(
                    {
                        "label": names[label],
                        "probability": round(float(row[label]), 6),
                        "positive_probability": round(float(row[1]), 6),
                        "threshold": round(threshold, 6),
                    }
                )
        else:
            answers = [dict(answer, threshold=None) for answer in evaluation.top_k(probabilities, names, k=info.top_k)]
        return self.explained(answers, model, info, batch, probabilities, explain, inputs)

    def serving_signature(self, model, info):
        serving = super().serving_signature(model, info)
        if len(info.class_names) == 2:
            serving.preprocessing["threshold"] = info.threshold
            serving.preprocessing["meaning"]["label"] = (
                f"{info.class_names[1]} when probabilities[:, 1] >= threshold, else {info.class_names[0]}"
            )
        return serving
