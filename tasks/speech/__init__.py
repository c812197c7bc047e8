"""Speech: spoken-word classification with a small CNN on librosa log-mel or MFCC features.

Data sources:
    embedded            generated "words" (8 pitch / formant / hiss contours) said by 6 synthetic speakers
                        with random pitch, speed, loudness, onset and background noise. Synthetic.
    tfds:NAME[:SPLIT]   e.g. tfds:speech_commands (12 keyword classes at 16 kHz; needs internet once).
    FOLDER              one subfolder of audio files per class; or, with `filename_pattern` set, flat files
                        labelled by a regular expression on the file name with a `label` group and an
                        optional `speaker` (or `group`) group, e.g. FSDD's `(?P<label>\\d)_(?P<speaker>[a-z]+)_\\d+`.
    FILE.csv            a manifest with columns `path,label[,group]` (or `word`/`class`, `speaker`); relative paths are
                        read from the CSV's folder.
Audio: WAV, FLAC, OGG or MP3 (whatever soundfile reads), any sample rate, mono or stereo (averaged).

Features: resample to `sample_rate`, trim leading and trailing silence, centre-pad or centre-crop to
`duration`, then a log-mel spectrogram or MFCCs (optionally with deltas), standardised per band with
training statistics. They are computed once per run, before training, with a progress bar; the logged
model runs the same `clip_features` on raw audio, so training and serving cannot drift apart. The
Keras model sees features only, so it trains on every backend.

Bad input: while reading a dataset, files that are not audio, empty, silent (peak below -80 dBFS),
shorter than one analysis window or with a sample rate of 0 are skipped with a warning naming each
(an error if nothing is left); at prediction time the same problems raise a one-line ValueError.
A `filename_pattern` without a `label` group and a class folder with no audio are errors.
"""

import dataclasses
import logging
import os
import re
from typing import Annotated

import numpy as np

from shared.constraints import BaseWidth, Choice, Count, Fraction, NonNegative, Positive, Range, Size
from shared.heads import softmax_head
from tasks import register
from tasks.base import ClassificationTask, Splits, TaskConfig, search_space
from tasks.speech import sources
from tasks.speech.audio import AUDIO_EXTENSIONS, prepare, read_audio, read_seconds, sample_window
from tasks.speech.cache import extract, feature_folder, memory_clip
from tasks.speech.features import (
    FEATURES,
    AudioState,
    band_statistics,
    clip_features,
    feature_settings,
    feature_step,
    mfcc_statistics,
    standardize,
)
from tasks.speech.generated import generated_words

logger = logging.getLogger(__name__)

# Telephone speech's 8 kHz is the least rate that holds a voice's formants; above a studio's 48 kHz only the
# frames and their memory grow.
SampleRate = Annotated[int, Range(8000, 48000)]


@dataclasses.dataclass
class SpeechConfig(TaskConfig):
    epochs: int = 25  # the embedded words are learned in ~15; the FSDD benchmark uses 20
    label_smoothing: float = 0.1  # few, similar-sounding classes: softened targets calibrate better
    sample_rate: SampleRate = 16000  # the speech standard (speech_commands); 8000 is enough for digits (FSDD)
    duration: Positive = 1.0  # seconds after centre pad/crop: one word fits in a second
    trim_db: NonNegative = 30.0  # drop leading/trailing audio this far below the peak so words are centred (0 = off)
    features: Choice(*FEATURES) = "logmel"  # log-mel spectrograms, or MFCCs (their cosine transform)
    n_mels: Count = 40  # mel bands: the usual keyword-spotting resolution
    n_mfcc: Count = 20  # cepstral coefficients kept when features=mfcc
    deltas: bool = False  # add first and second time derivatives as channels (classic for MFCCs)
    window_ms: Positive = 25.0  # analysis window: the standard speech frame
    hop_ms: Positive = 10.0  # frame step: 100 frames per second
    fmin: NonNegative = 20.0  # below any voice's pitch; drops hum and DC
    fmax: NonNegative = 0.0  # 0 means the Nyquist frequency (half of sample_rate)
    filename_pattern: str = ""  # regex on file names with a `label` group (and `speaker`/`group`) for flat folders
    split: Choice("random", "group") = "random"  # group keeps every speaker in a single split (measures new voices)
    test_groups: str = ""  # comma-separated speakers/groups held out as the test split (empty: carved)
    validation_groups: str = ""  # comma-separated speakers/groups held out for validation (empty: carved)
    augment_copies: Size = 2  # perturbed copies of each training clip, computed once (waveform changes)
    speed: Fraction = 0.1  # +-10% speed (tempo and pitch together): cheap speaker-like variation
    pitch_semitones: NonNegative = 0.0  # extra pitch shift at constant tempo; ~30 ms per clip, so off by default
    noise_snr_db: tuple = (15.0, 40.0)  # white-noise SNR range in dB for the copies; () adds none
    time_shift_ms: NonNegative = 100.0  # per-batch random circular shift: words are not always centred in real use
    time_masks: Size = 2  # SpecAugment time masks per example
    time_mask_ms: NonNegative = 80.0  # max width of each time mask (a short syllable)
    frequency_masks: Size = 2  # SpecAugment frequency masks per example
    frequency_mask_bins: Size = 5  # max bands per frequency mask (1/8 of 40 mel bands)
    base_filters: BaseWidth = 16  # width of the first block; doubles per block (16-32-64-128 is ~100k parameters)
    blocks: Count = 4  # conv blocks, each halving time and frequency: 100x40 frames -> 6x2
    separable: bool = False  # depthwise-separable convolutions: ~5x fewer multiply-adds for small devices
    dropout: Fraction = 0.3  # before the classifier: small speech sets overfit to their speakers
    embedded_repeats: Count = 8  # utterances per word and speaker in the generated set (8 x 6 x 8 = 384)
    top_k: Count = 3  # classes returned per prediction
    search_space: dict = search_space(  # speaker overfitting against network width
        dropout=["float", 0.1, 0.5], base_filters=["choice", 8, 16, 32]
    )

    def check(self):
        """Raises:
        ValueError: also for a frequency range outside the sample rate's, an analysis window under 8 samples or
            longer than the clip, a bad noise range or filename pattern.
        """
        super().check()
        # 8 samples give a 5-bin spectrum, the least a mel filterbank spreads over; a clip needs one whole window
        if self.sample_rate * self.window_ms / 1000 < 8 or self.window_ms > 1000 * self.duration:
            raise ValueError(
                f"window_ms={self.window_ms:g} must span at least 8 samples at sample_rate="
                f"{self.sample_rate} ({8000 / self.sample_rate:g} ms) and at most duration="
                f"{self.duration:g} s."
            )
        fmax = self.fmax or self.sample_rate / 2
        if not self.fmin < fmax <= self.sample_rate / 2:
            raise ValueError(
                f"need fmin < fmax <= sample_rate / 2 = {self.sample_rate / 2:g} Hz; got "
                f"fmin={self.fmin}, fmax={self.fmax} (0 means sample_rate / 2)."
            )
        snr = tuple(self.noise_snr_db)
        if snr and (len(snr) != 2 or snr[0] > snr[1]):
            raise ValueError(f"noise_snr_db must be [low_db, high_db] with low <= high, or [] for no noise; got {snr}.")
        if self.filename_pattern:
            try:
                compiled = re.compile(self.filename_pattern)
            except re.error as error:
                raise ValueError(
                    f"filename_pattern '{self.filename_pattern}' is not a valid regular expression: {error}."
                ) from None
            if "label" not in compiled.groupindex:
                raise ValueError(
                    f"filename_pattern '{self.filename_pattern}' has no named group `label`; write it "
                    r"like '(?P<label>\d)_(?P<speaker>[a-z]+)_\d+\.wav'."
                )


@register
class Speech(ClassificationTask):
    name = "speech"
    config_class = SpeechConfig
    state_class = AudioState
    tfds_name = "speech_commands"
    input_column = "audio"
    input_kind = "file"
    input_extensions = AUDIO_EXTENSIONS
    key_params = ClassificationTask.key_params + ("features",)
    predict_chunk = 256  # features of 10,000 one-second clips are 160 MB, of 256 clips 4 MB
    quick_overrides = {"epochs": 2, "max_examples": 400, "augment_copies": 0, "embedded_repeats": 6}
    readers = ("embedded", "tfds_audio", "audio_pattern_folder", "audio_folder", "audio_manifest")
    robustness_kind = "fgsm"  # decoded standardised spectrograms are the model's one float input
    explain_kind = "spectrogram"  # which frames and bins of the standardised features the word rests on
    # the feature family and the network's width
    candidates = (("default", {}), ("mfcc", {"features": "mfcc", "deltas": True}), ("wide", {"base_filters": 32}))
    remedies = (
        "Likely causes: too few epochs or clips per word, or labels that do not follow the audio. Try more "
        "epochs, more augment_copies, features=mfcc, or --preset balanced."
    )

    def load_data(self, config):
        from shared import augmentation
        from shared.data import examples

        settings = feature_settings(config)
        copies = max(0, config.augment_copies)
        perturbation = {
            "copies": copies,
            "speed": config.speed,
            "semitones": config.pitch_semitones,
            "snr_db": list(config.noise_snr_db),
            "seed": config.seed,
        }
        folder = feature_folder(settings, perturbation)
        perturb = augmentation.audio_waveform(
            speed=config.speed, semitones=config.pitch_semitones, snr_db=tuple(config.noise_snr_db), seed=config.seed
        )
        listed = self.read(config)
        found, failures, kept = {}, [], {}
        for role, (clips, labels, count) in listed.roles.items():
            results = extract(clips, settings, folder, perturb, f"audio features ({role})", count)
            failures += [result for result in results if isinstance(result, ValueError)]
            labels = np.asarray(labels, "int64")  # a stream's labels are complete once its clips are read
            usable = [index for index, result in enumerate(results) if not isinstance(result, ValueError)]
            kept[role] = usable
            found[role] = (
                [path for index in usable for path in results[index]],
                np.repeat(labels[usable], copies + 1 if role == "train" else 1),
            )
        for failure in failures:
            logger.warning("skipping %s", failure)
        if not len(found["train"][0]):
            first = f"; first problem: {failures[0]}" if failures else ""
            raise ValueError(f"no usable training audio in '{config.data}'{first}")
        if not len(found["test"][0]):
            raise ValueError(f"the test split of '{config.data}' is empty; raise test_fraction or name test_groups.")
        mean, std = band_statistics(found["train"][0][:: copies + 1])  # the clips themselves, not their copies
        info = AudioState(
            class_names=listed.class_names,
            top_k=config.top_k,
            features=settings,
            mean=mean.tolist(),
            std=np.maximum(std, 1e-3).tolist(),
            input_shape=list(np.load(found["train"][0][0]).shape),
        )
        step = feature_step(info)
        splits = [
            examples.Examples(np.array(found[role][0]), found[role][1], decode=step, origin="audio features")
            for role in ("train", "validation", "test")
        ]
        if listed.slice_keys is not None:  # the test clips are not copied: one key per usable clip
            splits[2].groups = listed.slice_keys["test"][kept["test"]]
        return Splits(*splits, info, config.data, listed.name, listed.synthetic)

    def embedded(self, config):
        """Generated spoken words, split by speaker as configured."""
        waveforms, labels, groups, class_names = generated_words(
            config.embedded_repeats, config.sample_rate, config.seed
        )
        generator = f"embedded:{config.embedded_repeats}:{config.sample_rate}:{config.seed}"
        makers = [
            memory_clip(f"{generator}:{index}", samples, config.sample_rate, f"generated clip {index}")
            for index, samples in enumerate(waveforms)
        ]
        keys = sources.slice_keys(config, None, "embedded", sources.named_columns("the embedded clips", speaker=groups))
        return sources.listed_clips(
            self, config, makers, labels, groups, class_names, "generated_words", True, keys=keys
        )

    def load_fitted(self, config, info):
        """`load_data` without perturbed copies (training's augmentation), with the model's class order and its
        band statistics standardising the features."""
        splits = super().load_fitted(dataclasses.replace(config, augment_copies=0), info)
        step = feature_step(info)  # one step for every split, so that they join into one index
        for role in ("train", "validation", "test"):
            setattr(splits, role, dataclasses.replace(getattr(splits, role), decode=step))
        return splits

    @staticmethod
    def _split(config, labels, groups, preset):
        """Train / validation / test clip indices and labels: preset splits, named groups, then carving."""
        from shared.data import examples
        from shared.data.splits import carve

        preset = np.full(len(labels), "", dtype=object) if preset is None else preset.astype(object)
        for role, named in (("test", config.test_groups), ("validation", config.validation_groups)):
            wanted = [group.strip() for group in named.split(",") if group.strip()]
            if not wanted:
                continue
            if groups is None:
                raise ValueError(
                    f"{role}_groups needs speaker/group ids: add a group column to the CSV manifest "
                    "or a (?P<speaker>...) group to filename_pattern."
                )
            unknown = sorted(set(wanted) - set(groups))
            if unknown:
                raise ValueError(f"{role}_groups {unknown} not found; the data has groups {sorted(set(groups))}.")
            preset[np.isin(groups, wanted)] = role
        if config.split == "group" and groups is None:
            raise ValueError(
                "split=group needs speaker/group ids: use a CSV manifest with a group column or a "
                "filename_pattern with a (?P<speaker>...) group."
            )
        everything = examples.Examples(np.arange(len(labels)), np.asarray(labels))
        fixed = {
            role: everything.subset(np.flatnonzero(preset == role)) if (preset == role).any() else None
            for role in ("validation", "test")
        }
        pool = preset == ""
        return carve(
            everything.subset(np.flatnonzero(pool)),
            config,
            validation=fixed["validation"],
            test=fixed["test"],
            groups=groups[pool] if config.split == "group" else None,
        )

    def build_model(self, config, info):
        import keras

        inputs = keras.Input(tuple(info.input_shape), name="features")
        x = inputs
        for block in range(config.blocks):
            filters = config.base_filters * 2**block
            # the first convolution sees 1-3 channels, where a depthwise split saves nothing
            if config.separable and block > 0:
                conv = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)
            else:
                conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)
            x = keras.layers.BatchNormalization(momentum=0.9)(conv(x))  # fast statistics for short trainings
            x = keras.layers.Activation("relu")(x)
            if min(x.shape[1], x.shape[2]) >= 2:
                x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = softmax_head(x, config.dropout, len(info.class_names))
        kind = "ds_cnn" if config.separable else "cnn"
        return keras.Model(inputs, outputs, name=f"{self.name}_{kind}")

    def train_map(self, config, info):
        from shared import augmentation

        frames_per_ms = 1 / (1000 * info.features["hop"] / info.features["sample_rate"])
        augment = augmentation.audio_spectrogram(
            time_shift=int(config.time_shift_ms * frames_per_ms),
            time_masks=config.time_masks,
            time_mask_width=int(config.time_mask_ms * frames_per_ms),
            frequency_masks=config.frequency_masks,
            frequency_mask_width=config.frequency_mask_bins,
            seed=config.seed,
        )
        return augmentation.chain(augment, self.eval_map(config, info))

    def folds(self, splits, count, seed):
        """None: training holds perturbed copies of each clip (and speakers may be grouped), which folds would split."""
        return []

    def baselines(self, splits, config):
        """The majority class, and a logistic regression on each clip's MFCC means and deviations over time."""
        from shared import baselines

        rows = {role: getattr(splits, role).features for role in ("train", "validation", "test")}
        train = np.random.default_rng(config.seed).permutation(len(rows["train"]))[: baselines.MAX_TRAINING_ROWS]
        table = {
            role: mfcc_statistics(paths[train] if role == "train" else paths, splits.info.features)
            for role, paths in rows.items()
        }
        mean, std = table["train"].mean(axis=0), table["train"].std(axis=0) + 1e-6
        found = baselines.logistic(
            (table["train"] - mean) / std,
            splits.train.targets[train],
            {role: (table[role] - mean) / std for role in ("validation", "test")},
            splits.validation.targets,
            len(splits.info.class_names),
        )
        return super().baselines(splits, config) + [baselines.Baseline("mfcc_logreg", **found)]

    def evaluate(self, model, splits, config):
        """Accuracy, macro F1, confusion matrix and report, per-class recall, sample spectrograms."""
        from sklearn import metrics

        from shared import evaluation, plots

        names = splits.info.class_names
        labels, probabilities = self.outputs(model, splits, "test", config)
        result = evaluation.classification(labels, probabilities, names)
        result.outputs = labels, probabilities
        predicted = probabilities.argmax(axis=1)
        recalls = metrics.recall_score(labels, predicted, labels=list(range(len(names))), average=None, zero_division=0)
        for index, (name, recall) in enumerate(zip(names, recalls)):
            if (labels == index).any():  # the recall of a class absent from the test split is undefined
                result.metrics[f"recall_{re.sub(r'[^0-9A-Za-z_.-]', '_', name)}"] = float(recall)
        shown = np.random.default_rng(config.seed).permutation(len(labels))[:12]
        titles = [f"true {names[labels[index]]} / pred {names[predicted[index]]}" for index in shown]
        result.figures["sample_spectrograms"] = plots.spectrogram_grid(splits.test.pick(shown)[0], titles)
        return result

    def input_example(self, splits):
        """The first test clip as a list of samples at the model's rate (its prepared waveform, cached)."""
        waveform = np.load(str(splits.test.features[0]).removesuffix("-0.npy") + "-clip.npy")
        return [np.round(waveform, 4).tolist()]

    def prepare_inputs(self, info, inputs):
        """Standardised features of raw inputs: file paths, encoded bytes, or sample lists at the model's rate."""
        settings = info.features
        batch = []
        for index, raw in enumerate(inputs):
            if isinstance(raw, (str, os.PathLike, bytes, bytearray)):
                samples, rate = read_audio(raw, read_seconds(settings))
                name = f"'{raw}'" if isinstance(raw, (str, os.PathLike)) else "audio bytes"
            else:
                name = f"input {index + 1}"
                samples, rate = sample_window(raw, name, settings), settings["sample_rate"]
            batch.append(clip_features(prepare(samples, rate, settings, name), settings))
        return standardize(np.stack(batch), info)

    def drift_view(self, model, info, batch):
        """Each clip's mean standardised level per frequency band."""
        from shared import drift

        return drift.band_view(batch)

    def serving_signature(self, model, info):
        """Exports take standardised features: resampling, trimming and the log-mel are librosa, not TensorFlow."""
        settings = info.features
        serving = super().serving_signature(model, info)
        serving.preprocessing.update(
            {
                "steps": [
                    "read the audio as float32 samples; average the channels of stereo audio",
                    f"resample to {settings['sample_rate']} Hz (librosa.resample, res_type='soxr_hq')",
                    *(
                        [
                            f"trim leading and trailing audio quieter than {settings['trim_db']:g} dB below the peak "
                            f"(librosa.effects.trim, frame_length={settings['n_fft']}, hop_length={settings['hop']})"
                        ]
                        if settings["trim_db"]
                        else []
                    ),
                    f"centre-crop or centre-pad with zeros to {settings['samples']} samples",
                    f"power spectrogram |librosa.stft(n_fft={settings['n_fft']}, hop_length={settings['hop']}, "
                    f"win_length={settings['window']})|**2; mel power = "
                    f"librosa.filters.mel(sr={settings['sample_rate']}, n_fft={settings['n_fft']}, "
                    f"n_mels={settings['n_mels']}, fmin={settings['fmin']:g}, "
                    f"fmax={settings['fmax']:g}) @ power",
                    "librosa.power_to_db(mel, ref=np.max, top_db=80.0)",
                    *(
                        [f"librosa.feature.mfcc(S=that, n_mfcc={settings['n_mfcc']})"]
                        if settings["kind"] == "mfcc"
                        else []
                    ),
                    *(
                        ["channels: the features, librosa.feature.delta(order=1) and delta(order=2)"]
                        if settings["deltas"]
                        else ["one channel: the features"]
                    ),
                    "transpose to (frames, bins, channels), then standardise: (features - mean) / std with the arrays "
                    "below",
                ],
                "features": settings,
                "mean": info.mean,
                "std": info.std,
                "input_shape": info.input_shape,
                "code": "tasks/speech/audio.py prepare() then tasks/speech/features.py clip_features(), the same "
                "functions the logged model runs",
            }
        )
        return serving
