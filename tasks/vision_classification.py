"""Vision classification: a small ResNet (or a keras.applications backbone) on labelled images.

The models, readers and predictor are those of every image classifier (`tasks/image_classification.py`);
this task adds its embedded digits and a figure of sample predictions.

Data sources:
    embedded            scikit-learn's bundled 8x8 digits (1,797 real scans), offline in seconds.
    tfds:NAME[:SPLIT]   e.g. tfds:mnist, tfds:fashion_mnist, tfds:cifar10 (needs internet once).
    PATH                a folder with one subfolder per class, a folder holding an IDX images/labels
                        pair (MNIST's format), or an .npz (x_train/y_train/x_test/y_test or MedMNIST keys).
Corrupt image files in a folder are skipped with a warning naming each file.

Image size: `image_size` > 0 resizes every image to that square. With 0, arrays and TFDS sets keep their
size, and so does a folder whose images share one with a shorter side of at most 128 px (MNIST-style
scans); a folder of mixed-size or larger photos is resized to a square of the median shorter side, capped
at 128 (`shared.images.AUTO_IMAGE_SIDE`), with a warning naming the size chosen. Prediction resizes to the
same size.
"""

import dataclasses

from shared.constraints import Choice
from tasks import register
from tasks.image_classification import (
    STEM_STRIDES,
    ImageClassificationConfig,
    ImageClassificationTask,
    array_examples,
)


@dataclasses.dataclass
class VisionClassificationConfig(ImageClassificationConfig):
    """The shared image settings, the stem sized to the data: their defaults were chosen on this task's digits and
    small photos."""

    # stride 2 from 24 px and 4,000 examples: 2.4-4x the speed, validation accuracy kept on MNIST and PneumoniaMNIST
    stem_stride: Choice(*STEM_STRIDES) = 0  # fewer examples keep full resolution (docs/benchmarks.md)


@register
class VisionClassification(ImageClassificationTask):
    name = "vision_classification"
    config_class = VisionClassificationConfig
    tfds_name = "mnist"
    # bfloat16 on CPUs that have it: 1.47x the examples/s on 500 MNIST digits, accuracy 0.963 -> 0.966 over seeds 0-2
    # (benchmarks/precision.py; docs/benchmarks.md#bfloat16-on-cpus)
    cpu_bfloat16 = True

    def embedded(self, config):
        """scikit-learn's bundled 8x8 digits: 1,797 real scans, offline."""
        from sklearn import datasets

        digits = datasets.load_digits()
        pool, size, channels = array_examples(digits.images / 16.0, digits.target, config)
        return self.image_splits(config, pool, size, channels, [str(digit) for digit in range(10)], "sklearn_digits")

    def evaluate(self, model, splits, config):
        from shared import plots

        evaluation = super().evaluate(model, splits, config)
        images, labels = splits.test.sample(24)
        predicted = model.predict(images, verbose=0).argmax(axis=1)
        names = splits.info.class_names
        titles = [f"true {names[t]} / pred {names[p]}" for t, p in zip(labels, predicted)]
        evaluation.figures["sample_predictions"] = plots.image_grid(images, titles)
        return evaluation
