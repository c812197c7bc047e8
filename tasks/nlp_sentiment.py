"""NLP sentiment: a Kim-style CNN, BiLSTM, BiGRU or small Transformer encoder classifying raw sentences,
or a pretrained keras-hub encoder (BERT family) fine-tuned on them.

From scratch, text is standardised and tokenised by a `keras.layers.TextVectorization` adapted on the
training text. Tokenisation runs in the tf.data batch maps and in the predictor, never inside the model,
so the model takes token ids and trains on every Keras backend; the vocabulary is saved in `Splits.info`
so the logged model takes raw strings. With `embeddings`, the vector file's most frequent words that
training lacks join the vocabulary at their vectors, frozen, so words first met at predict time are
not [UNK]. Batches group sentences of similar length and pad to their own longest. With `backbone`
set to a keras-hub preset name (e.g. `bert_tiny_en_uncased`, downloaded once into kagglehub's cache)
or a local preset folder, the preset's own tokenizer is saved inside the model and runs in the tf.data
pipeline of `fit` and `predict`; without a network a preset that is not cached stops the run at once,
naming the offline alternatives.

Data sources:
    embedded               generated short reviews with negation, intensifiers and contrastive clauses
                           ("the plot was not very clever, but the acting was superb"): a bag of words
                           cannot solve them. Synthetic.
    tfds:imdb_reviews      or tfds:glue/sst2 (needs internet once); unlabelled rows (label -1) are dropped.
    FILE.csv | FILE.tsv    a header row with a text column and a label column (`text_column`,
                           `label_column`; each accepts a comma-separated list of names, the first the
                           file has wins). Any label values (strings or numbers), two or more classes.
    FOLDER                 either train.{csv,tsv} with optional dev/validation/val and test files (used as
                           the validation and test splits), or one subfolder of .txt files per class.
Files and folders stream: the splits are an index (record byte offsets or file paths, and labels) whose
texts the tf.data map reads (`shared.data.text_files`); TFDS sets and the generated reviews are small
enough to stay in memory as strings.
Bad input: a missing column names the columns found; a non-UTF-8 file names the line (or file);
rows with empty text are dropped with a warning; dev/test labels absent from training are an error;
at predict time an empty sentence is an error and a sentence longer than `sequence_length` tokens is
truncated with a warning (the answer carries `"truncated": true`).
"""

import dataclasses
import os
import pathlib
import sys
import warnings

import numpy as np

from shared import network
from shared.constraints import Choice, Count, Fraction, Length, Size, Width
from shared.data import sources
from shared.data.sources import reader
from shared.data.text import check_sentences, extend_vocabulary, strings
from shared.fitted_state import LabelledState
from shared.heads import softmax_head
from tasks import register
from tasks.base import ClassificationTask, Splits, TaskConfig, search_space

ARCHITECTURES = ("cnn", "bilstm", "bigru", "transformer")
_TFDS_TEXT_KEYS = {"imdb_reviews": "text", "glue": "sentence"}  # TFDS names the text feature per dataset
# where benchmarks/word_vectors.py writes GloVe 6B 100-d vectors; a portfolio tries them when they are there
WORD_VECTORS = pathlib.Path.home() / ".cache" / "keras-pipelines" / "glove.6B.100d.txt"
EVALUATION_CHUNK = 4096  # test texts decoded and scored at once: memory stays flat however long the split
_SPLIT_FILES = {"train": ("train",), "validation": ("dev", "validation", "val"), "test": ("test",)}


@dataclasses.dataclass
class NlpSentimentConfig(TaskConfig):
    epochs: int = 15  # text models overfit in a few epochs; early stopping picks the best one
    # 3e-3, not 1e-3: from scratch on 2,000 SST-2 sentences 1e-3 stayed near chance within 15 epochs (validation
    # 0.677 / 0.536 at seeds 0 / 1 against 0.729 / 0.720); a tie on 10,000 (0.786 / 0.778) and the embedded reviews
    learning_rate: float = 3e-3  # the edge: recurrent nets and Transformers diverge above ~3e-3 with AdamW
    weight_decay: float = 1e-2  # embeddings of rare words overfit; stronger decay than for images
    architecture: Choice(*ARCHITECTURES) = "bilstm"  # BiLSTM reads word order (negation, "but")
    backbone: str = "none"  # none trains `architecture` from scratch; a keras-hub preset or preset folder fine-tunes it
    text_column: str = "text,sentence,review,content"  # CSV/TSV text column names accepted, first found wins
    label_column: str = "label,sentiment"  # CSV/TSV label column names accepted, first found wins
    vocabulary_size: Count = 20000  # covers SST-2's 15k words; rarer words become [UNK]
    # word counts settle long before 200k texts, and SST-2 (67k) and IMDB (25k) are still counted whole
    vocabulary_sample: Count = 200_000  # training texts the vocabulary is counted on (a seeded sample of more)
    sequence_length: Length = 64  # tokens kept per text: SST-2 sentences are < 60; raise for IMDB (~300)
    embedding_dim: Width = 128  # enough for 20k words trained from scratch; with `embeddings`, the file's size
    # pretrained vectors carry what 67k phrases cannot teach about rare words; none keeps the run offline
    embeddings: str = "none"  # a GloVe .txt or word2vec/fastText .vec file (or .gz) to start embeddings from
    # test sentences hold words training never saw (6% of SST-2 dev's tokens): with their vectors they are not [UNK]
    embeddings_words: Size = 100_000  # the vector file's most frequent words added to the vocabulary (0: none)
    units: Width = 64  # recurrent units per direction (Transformer: feed-forward width is 2x embedding_dim)
    filters: Width = 100  # cnn: feature maps per convolution width, Kim (2014)'s 100
    widths: tuple = (3, 4, 5)  # cnn: convolution widths in tokens, Kim (2014)'s n-gram sizes
    layers: Count = 1  # stacked recurrent layers or Transformer blocks; 1 suffices for sentences
    heads: Count = 4  # Transformer attention heads (embedding_dim must divide by it)
    # pretrained `embeddings` overfit less: 0.1 was best with GloVe on SST-2's validation split
    dropout: Fraction = 0.4  # on embeddings and before the classifier: small text sets overfit fast
    token_dropout: Fraction = 0.1  # word dropout: replace 10% of tokens by [UNK] during training
    # members differ only by their random start; each adds up to one model's compute (4 CNNs: 2-3x the time)
    ensemble: Count = 1  # from-scratch models trained side by side, their logits averaged (1: a single model)
    embedded_examples: Count = 8000  # generated reviews: 8,000 reach test accuracy 1.0 in about half a minute
    top_k: Count = 2  # classes returned per prediction
    search_space: dict = search_space(  # text nets overfit fast: dropout and width matter most
        dropout=["float", 0.2, 0.6], units=["choice", 32, 64, 128]
    )

    def check(self):
        super().check()
        if self.backbone != "none" and self.ensemble > 1:
            raise ValueError(
                f"ensemble={self.ensemble} averages from-scratch models; a pretrained backbone "
                "fine-tunes one: set --set ensemble=1 or --set backbone=none."
            )
        if self.architecture == "transformer" and self.embedding_dim % self.heads:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be divisible by heads ({self.heads}).")
        if self.embeddings != "none":
            from shared.data.text import word_vector_size

            if self.backbone != "none" or self.architecture == "transformer":
                raise ValueError(
                    "embeddings start the Embedding of architecture cnn, bilstm or bigru; set "
                    "--set embeddings=none with a backbone or the transformer."
                )
            size = word_vector_size(self.embeddings)
            if size != self.embedding_dim:
                raise ValueError(
                    f"embeddings file '{self.embeddings}' holds {size}-d vectors but embedding_dim is "
                    f"{self.embedding_dim}; set --set embedding_dim={size}."
                )


def _generated_reviews(count, seed):
    """Short reviews whose label needs word order: negation flips, "but"/"although" pick a clause.

    Returns:
        tuple[np.ndarray, np.ndarray]: texts (object array) and labels (0 negative, 1 positive).
    """
    rng = np.random.default_rng(seed)
    aspects = [
        "the plot",
        "the acting",
        "the music",
        "the ending",
        "the dialogue",
        "the cast",
        "the story",
        "the pacing",
        "the soundtrack",
        "the camera work",
        "the script",
        "the humour",
    ]
    adjectives = {
        1: [
            "good",
            "great",
            "brilliant",
            "wonderful",
            "charming",
            "moving",
            "clever",
            "delightful",
            "funny",
            "superb",
            "gripping",
            "beautiful",
        ],
        0: [
            "bad",
            "dull",
            "boring",
            "awful",
            "clumsy",
            "tedious",
            "weak",
            "terrible",
            "bland",
            "predictable",
            "messy",
            "forgettable",
        ],
    }
    intensifiers = ["", "", "very ", "really ", "extremely ", "quite ", "truly ", "incredibly ", "rather "]
    negations = ["was not ", "was never ", "was hardly ", "was not at all ", "wasn't "]

    def clause():
        polarity = int(rng.integers(2))
        text = f"{aspects[rng.integers(len(aspects))]} "
        adjective = f"{intensifiers[rng.integers(len(intensifiers))]}{rng.choice(adjectives[polarity])}"
        if rng.random() < 0.35:
            return text + negations[rng.integers(len(negations))] + adjective, 1 - polarity
        return text + "was " + adjective, polarity

    texts, labels = [], []
    for _ in range(count):
        (first, first_label), (second, second_label) = clause(), clause()
        form = rng.integers(5)
        if form == 0:
            text, label = first, first_label
        elif form == 1:
            text, label = f"{first} but {second}", second_label
        elif form == 2:
            text, label = f"although {first}, {second}", second_label
        elif form == 3:
            text, label = f"{first}, although {second}", first_label
        else:
            text, label = f"i did not think {first}", 1 - first_label
        texts.append(text.capitalize() + rng.choice([".", "!", ""]))
        labels.append(label)
    return np.array(texts, dtype=object), np.array(labels, dtype="int64")


def _clean(texts, labels, source):
    """Drops rows whose text is empty (see `_drop_empty`); returns str texts, labels."""
    texts = np.array(
        [text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text) for text in texts], dtype=object
    )
    empty = np.array([not text.strip() for text in texts], dtype=bool)
    _drop_empty(source, int(empty.sum()), int((~empty).sum()))
    return texts[~empty], labels[~empty]


def _drop_empty(source, dropped, kept):
    """Warns that `dropped` rows of `source` had an empty text and were left out.

    Raises:
        ValueError: no row is left: every text is empty, or there is no row (the label check would otherwise
            report no classes).
    """
    if dropped and not kept:
        raise ValueError(f"{source}: every text is empty ({dropped} row(s)); fill the text column.")
    if not kept:
        raise ValueError(f"{source} has no rows; expected a header row, then one row per example.")
    if dropped:
        warnings.warn(f"{source}: dropped {dropped} row(s) with empty text.", stacklevel=3)


def _encode_labels(splits, source):
    """Maps raw label values of train / validation / test to class indices learned from training.

    Args:
        splits (dict[str, tuple]): split name -> (texts, raw labels); validation and test optional.
        source (str): the file or folder, for messages.

    Returns:
        tuple[dict[str, tuple], list[str]]: split name -> (texts, int64 labels), and the class names.

    Raises:
        ValueError: fewer than two classes, or dev/test labels that training never saw.
    """
    raw = [str(label).strip() for label in splits["train"][1]]
    if "" in raw:
        raise ValueError(f"{source}: {raw.count('')} training row(s) have an empty label; every row needs a label.")
    names = sources.class_names(raw, source)
    index = {name: position for position, name in enumerate(names)}
    encoded = {}
    for split, (texts, labels) in splits.items():
        labels = [str(label).strip() for label in labels]
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise ValueError(
                f"{source}: {split} labels {unknown[:10]} are not in the training labels {names}; "
                "fix the labels or add examples of those classes to the training data."
            )
        encoded[split] = (texts, np.array([index[label] for label in labels], dtype="int64"))
    return encoded, names


def _split_files(folder):
    """Returns split name -> path for a folder holding train.{csv,tsv} (and dev / test files), else {}."""
    found = {}
    for name in sorted(os.listdir(folder)):
        stem, extension = os.path.splitext(name)
        if extension.lower() in (".csv", ".tsv", ".tab"):
            for split, stems in _SPLIT_FILES.items():
                if stem.lower() in stems and split not in found:
                    found[split] = os.path.join(folder, name)
    return found if "train" in found else {}


def _table_examples(files, columns, source):
    """Scans CSV/TSV files (train, and validation / test when given) into indexes of record offsets.

    Args:
        files (dict[str, str]): split name -> file; "train" first.
        columns (dict[str, str]): the accepted text and label column names.
        source (str): the file or folder, for messages.

    Returns:
        tuple[dict[str, Examples], list[str]]: split name -> offsets with class indices learned from
        training (decoded into `(text, label)` in tf.data), and the class names.
    """
    from shared import slices
    from shared.data import examples, text_files

    scans, raw = {}, {}
    keep = tuple(role for role in ("label", "slice_by") if role in columns)
    for split, path in files.items():
        scans[split] = text_files.scan_table(path, columns, keep=keep, hint={"slice_by": slices.HINT})
        if split != "train" and not len(scans[split].offsets):
            raise ValueError(
                f"'{path}' has no row with a text, so the {split} split would be empty; add rows or "
                "remove the file (the split is then carved from training)."
            )
        _drop_empty(f"'{path}'", scans[split].dropped, len(scans[split].offsets))
        raw[split] = (scans[split].offsets, scans[split].values["label"])
    encoded, class_names = _encode_labels(raw, source)
    found = {}
    for split, (offsets, labels) in encoded.items():
        scan = scans[split]
        read = text_files.table_reader(scan.path, scan.positions["text"])
        found[split] = examples.Examples(
            offsets,
            labels,
            decode=text_files.record_step(scan.path, read),
            element_bytes=scan.record_bytes + 48,
            origin="text file",
            groups=np.asarray(scan.values["slice_by"], dtype=object) if "slice_by" in keep else None,
        )
    return found, class_names


def _class_folders(folder):
    """Lists one subfolder of .txt files per class, in the order keras.utils.text_dataset_from_directory
    reads them (its own `index_directory`, so the same seed carves the same split as when texts were loaded).

    Each file is read once here, one at a time, to check that it is UTF-8 and not empty (empty ones are
    dropped with a warning); tf.data reads it again when the split is decoded.

    Returns:
        tuple[Examples, list[str]]: the file paths with their labels (decoded into `(text, label)` in
        tf.data) and the class names (the subfolder names).
    """
    from keras.src.utils import dataset_utils

    from shared.data import examples, text_files
    from shared.data.sources import progress

    files, found, class_names = dataset_utils.index_directory(folder, "inferred", formats=(".txt",), shuffle=False)
    if not len(files):
        raise ValueError(
            f"'{folder}' is neither a folder with train.csv/train.tsv nor one subfolder of .txt files "
            "per class (no .txt files found)."
        )
    paths, labels, empty, total = [], [], 0, 0
    for path, label in progress(list(zip(files, found)), "checking text files"):
        content = pathlib.Path(path).read_bytes()
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = content[: error.start].count(b"\n") + 1
            raise ValueError(
                f"'{path}' is not valid UTF-8 (line {line}, byte 0x{content[error.start]:02x}); re-save it as UTF-8."
            ) from None
        if not text.strip():
            empty += 1
            continue
        paths.append(path)
        labels.append(int(label))
        total += len(content)
    _drop_empty(folder, empty, len(paths))
    pool = examples.Examples(
        np.asarray(paths, dtype=str),
        np.asarray(labels, dtype="int64"),
        decode=text_files.file_step(),
        element_bytes=total // max(1, len(paths)) + 48,
        origin="text files",
    )
    return pool, list(class_names)


@dataclasses.dataclass
class LabelledTexts:
    """What every reader of this task returns: texts and labels to carve, and the splits the source holds.

    Attributes:
        pool (tuple | Examples): texts and integer labels (arrays, or an index of lines decoded in tf.data).
        class_names (list[str]): names in label order.
        name (str): the dataset's short name for MLflow.
        synthetic (bool): True for generated reviews.
        validation (tuple | Examples | None): a validation split the source holds.
        test (tuple | Examples | None): a test split the source holds.
    """

    pool: object
    class_names: list
    name: str
    synthetic: bool = False
    validation: object = None
    test: object = None


@reader("tfds_texts", ("tfds",), "tfds:NAME[:SPLIT], a text/label dataset (imdb_reviews, glue/sst2)")
def _read_tfds_texts(task, argument, config):
    """A TFDS text set's labelled splits; its test and validation splits are kept where it has other ones."""
    from shared.data import tfds

    dataset_name = argument.split(":")[0]
    text_key = _TFDS_TEXT_KEYS.get(dataset_name.split("/")[0], "text")
    loaded, info = tfds.load_arrays(
        argument,
        config.tfds_data_dir,
        (text_key, "label"),
        alternatives="--data embedded or a CSV/TSV file of your own",
    )
    labelled = {}
    for split, arrays in loaded.items():
        keep = arrays["label"] >= 0  # glue/sst2 test and imdb unsupervised carry label -1
        if keep.any():
            labelled[split] = _clean(
                arrays[text_key][keep], arrays["label"][keep].astype("int64"), f"tfds:{dataset_name}"
            )
    parts = [split for split in labelled if split not in ("test", "validation")] or list(labelled)
    pool = tuple(np.concatenate([labelled[split][column] for split in parts]) for column in (0, 1))
    return LabelledTexts(
        pool,
        list(info.features["label"].names),
        f"tfds_{dataset_name.replace('/', '_')}",
        validation=labelled["validation"] if "validation" in labelled and "validation" not in parts else None,
        test=labelled["test"] if "test" in labelled and "test" not in parts else None,
    )


@reader("text_table", ("file", "csv"), "a CSV/TSV file of text and label columns")
def _read_text_table(task, argument, config):
    found, class_names = _table_examples({"train": argument}, _columns(config), argument)
    return LabelledTexts(found["train"], class_names, f"file_{os.path.basename(argument)}")


@reader("text_folder", ("folder",), "a folder of train/dev/test CSV/TSV files, or of one subfolder of .txt per class")
def _read_text_folder(task, argument, config):
    name = f"folder_{os.path.basename(argument.rstrip('/'))}"
    files = _split_files(argument)
    if not files:
        pool, class_names = _class_folders(argument)
        if config.slice_by:
            from shared import slices

            pool.groups = slices.from_paths(pool.features, config.slice_by, argument, argument)
        return LabelledTexts(pool, class_names, name)
    found, class_names = _table_examples(files, _columns(config), argument)
    return LabelledTexts(found["train"], class_names, name, validation=found.get("validation"), test=found.get("test"))


def _columns(config):
    """The roles a text table's columns play: text, label, and the slice key (`--set slice_by=COLUMN`)."""
    from shared import slices

    columns = {"text": config.text_column, "label": config.label_column}
    if config.slice_by and not slices.path_pattern(config.slice_by):
        columns["slice_by"] = config.slice_by
    return columns


@dataclasses.dataclass(kw_only=True)
class TextState(LabelledState):
    """A text classifier's classes (`LabelledState`) and how its texts become ids.

    Attributes:
        sequence_length (int): tokens kept per text.
        vocabulary (list[str] | None): the adapted vocabulary (padding and unknown first); None with a keras-hub
            `backbone`, whose tokenizer travels inside the saved model.
        added_words (int): words the pretrained `embeddings` added to the vocabulary beyond the trained ones.
        backbone (str | None): the keras-hub preset, or None for the model trained from scratch.
    """

    sequence_length: int
    vocabulary: list | None = None
    added_words: int = 0
    backbone: str | None = None


@register
class NlpSentiment(ClassificationTask):
    name = "nlp_sentiment"
    config_class = NlpSentimentConfig
    state_class = TextState
    tfds_name = "imdb_reviews"
    input_column = "text"
    table_columns = NlpSentimentConfig.text_column
    key_params = ClassificationTask.key_params + ("architecture",)
    quick_overrides = {"epochs": 2, "max_examples": 1500, "embedded_examples": 2000}
    readers = ("embedded", "tfds_texts", "text_table", "text_folder")
    robustness_kind = "text"  # decoded test features are the raw reviews, which `outputs` scores
    explain_kind = "tokens"  # a signed weight per word (sub-word with a backbone): what pushed the class up or down
    # word order (BiLSTM) against n-grams (Kim's CNN), alone and four side by side
    candidates = (  # the CNNs and GloVe at the rate they were measured with on SST-2
        ("default", {}),
        ("cnn", {"architecture": "cnn", "learning_rate": 1e-3}),
        ("cnn_ensemble", {"architecture": "cnn", "ensemble": 4, "learning_rate": 1e-3}),
    )
    remedies = (
        "Likely causes: too few epochs or texts for a model trained from scratch. Try more epochs, the cnn "
        "architecture, pretrained word vectors (--set embeddings=FILE), or --preset balanced."
    )

    def portfolio(self, config):
        """The candidates, and GloVe vectors in the BiLSTM (the settings chosen with them on SST-2) when present."""
        found = super().portfolio(config)
        if WORD_VECTORS.is_file():
            found.append(
                (
                    "glove",
                    {
                        "embeddings": str(WORD_VECTORS),
                        "embedding_dim": 100,
                        "dropout": 0.1,
                        "units": 128,
                        "learning_rate": 1e-3,
                    },
                )
            )
        return found

    def load_data(self, config):
        from shared.data.splits import carve
        from shared.data.text import adapt_vocabulary

        if config.backbone != "none":
            _check_preset(config.backbone)  # before reading any data: offline runs stop at once
            if config.learning_rate > 1e-4:
                warnings.warn(
                    f"fine-tuning backbone '{config.backbone}' at learning_rate {config.learning_rate} "
                    "usually erases its pretraining; pretrained encoders want about 5e-5 "
                    "(--set learning_rate=5e-5).",
                    stacklevel=2,
                )
        texts = self.read(config)
        pool, class_names, validation, test = texts.pool, texts.class_names, texts.validation, texts.test
        train, validation, test = carve(pool, config, validation=validation, test=test)
        info = TextState(class_names=class_names, top_k=config.top_k, sequence_length=config.sequence_length)
        if config.backbone == "none":
            info.vocabulary = adapt_vocabulary(
                train, config.vocabulary_size, "strip", config.vocabulary_sample, config.seed
            )
            if config.embeddings != "none":
                trained = len(info.vocabulary)
                info.vocabulary = extend_vocabulary(
                    info.vocabulary, config.embeddings, config.embeddings_words, "strip"
                )
                info.added_words = len(info.vocabulary) - trained
        else:  # the preset's own tokenizer and vocabulary travel inside the saved model
            info.backbone = config.backbone
        return Splits(train, validation, test, info, config.data, texts.name, texts.synthetic)

    def embedded(self, config):
        """Generated movie reviews with negation and contrast."""
        pool = _generated_reviews(config.embedded_examples, config.seed)
        return LabelledTexts(pool, ["negative", "positive"], "generated_reviews", synthetic=True)

    def build_model(self, config, info):
        import keras

        if config.backbone != "none":
            return _pretrained_classifier(config, len(info.class_names))

        inputs = keras.Input((None,), dtype="int64", name="token_ids")
        matrix = _vectors(config, info)
        members = [_encoder(config, info, inputs, matrix) for _ in range(config.ensemble)]
        outputs = softmax_head(members, config.dropout, len(info.class_names))
        return keras.Model(inputs, outputs, name=f"{self.name}_{config.architecture}")

    def eval_map(self, config, info):
        import tensorflow as tf

        from shared.data.text import standardize_text, text_vectorizer

        num_classes = len(info.class_names)
        if info.backbone is not None:  # raw strings: the keras-hub model tokenises them in its own tf.data map
            return lambda texts, labels: (texts, tf.one_hot(labels, num_classes))
        # Batches are padded to their longest text, not to sequence_length: most sentences are short,
        # and a recurrent net pays for every padded step.
        layer = text_vectorizer(info.vocabulary, None)

        def encode(texts, labels):
            token_ids = layer(standardize_text(texts, "strip"))[:, : info.sequence_length]
            return _nonempty(token_ids), tf.one_hot(labels, num_classes)

        return encode

    def train_map(self, config, info):
        from shared import augmentation

        if info.backbone is not None:  # token dropout works on ids, which only the preset's preprocessor makes
            return self.eval_map(config, info)
        return augmentation.chain(
            self.eval_map(config, info), augmentation.token_dropout(config.token_dropout, seed=config.seed)
        )

    def length_buckets(self, config, info):
        import tensorflow as tf

        if info.backbone is not None:  # keras-hub preprocessors pad every batch to sequence_length
            return None
        return (lambda texts, labels: tf.size(tf.strings.split(texts), out_type=tf.int32)), info.sequence_length

    def custom_objects(self):
        import keras_hub  # noqa: F401  registers the keras-hub classes a fine-tuned backbone's file names

        from shared import text_layers

        return text_layers.layers()

    def outputs(self, model, splits, role, config):
        # The split streams in chunks: probabilities are kept, texts are not.
        chunks, labels = [], []
        for texts, targets in getattr(splits, role).elements().batch(EVALUATION_CHUNK).as_numpy_iterator():
            chunks.append(_probabilities(model, splits.info, strings(texts), check=False)[0])
            labels.append(targets)
        return np.concatenate(labels), np.concatenate(chunks)

    def baselines(self, splits, config):
        """The majority class, and TF-IDF word and bigram features with a logistic regression."""
        from shared import baselines

        texts = {role: _texts(getattr(splits, role)) for role in ("train", "validation", "test")}
        rows = np.random.default_rng(config.seed).permutation(len(texts["train"][0]))[: baselines.MAX_TRAINING_ROWS]
        found = baselines.tfidf_logistic(
            [texts["train"][0][row] for row in rows],
            texts["train"][1][rows],
            {role: texts[role][0] for role in ("validation", "test")},
            texts["validation"][1],
            len(splits.info.class_names),
        )
        return super().baselines(splits, config) + [baselines.Baseline("tfidf_logreg", **found)]

    def evaluate(self, model, splits, config):
        from shared import evaluation

        labels, probabilities = self.outputs(model, splits, "test", config)
        names = splits.info.class_names
        result = evaluation.classification(labels, probabilities, names)
        result.outputs = labels, probabilities
        if len(names) == 2:
            from sklearn import metrics

            result.metrics["f1"] = float(metrics.f1_score(labels, probabilities.argmax(axis=1)))
        shown = evaluation.mistake_positions(labels, probabilities)
        texts = dict(zip(shown.tolist(), strings(splits.test.pick(shown)[0]))) if len(shown) else {}
        result.texts["confident_mistakes.md"] = evaluation.confident_mistakes(texts, labels, probabilities, names)
        return result

    def input_example(self, splits):
        return strings(splits.test.sample(2)[0])

    def predict_raw(self, model, info, inputs, explain=None):
        from shared import evaluation

        probabilities, truncated = _probabilities(model, info, list(inputs), check=True)
        answers = evaluation.top_k(probabilities, info.class_names, k=info.top_k)
        for answer, cut in zip(answers, truncated):
            if cut:
                answer["truncated"] = True
        return self.explained(answers, model, info, list(inputs), probabilities, explain, inputs)

    def explanation(self, model, info, examples, outputs):
        """Explains the predicted class (the positive one of two) over the tokens of raw texts, tokenised as the model
        reads them: the saved vocabulary's ids, cut after the longest text (padding changes no answer), or a
        backbone's own sub-word ids, whose token embedding `shared.explain.token_embeddings` reaches inside it."""
        from shared import explain

        texts, columns = strings(examples), explain.explained_outputs(outputs)
        if info.backbone is not None:
            inputs = {name: np.asarray(value) for name, value in model.preprocessor(texts).items()}
            vocabulary = model.preprocessor.tokenizer.get_vocabulary()
            return explain.explain("tokens", model, inputs, columns, key="token_ids", vocabulary=vocabulary), inputs
        ids = _token_ids(info, texts, check=False)[0]
        ids = ids[:, : max(1, int((ids != 0).sum(axis=1).max()))]
        return explain.explain("tokens", model, ids, columns, vocabulary=info.vocabulary), ids

    def prepare_inputs(self, info, inputs):
        if info.backbone is not None:  # a keras-hub classifier tokenises raw strings itself
            return np.array(list(inputs), dtype=object)
        return _token_ids(info, inputs, check=True)[0]

    def drift_view(self, model, info, batch):
        """Each text's token count and its unknown ([UNK]) tokens; None for a keras-hub backbone, whose tokeniser
        lives inside the model."""
        from shared import drift

        return None if info.backbone is not None else drift.token_view(batch)

    def serving_signature(self, model, info):
        """The SavedModel takes raw strings and standardises and vectorises them in its graph."""
        from shared import serving as graphs
        from shared.data.text import standardize_text, text_vectorizer

        serving = super().serving_signature(model, info)
        if info.backbone is not None:
            return serving
        layer = text_vectorizer(info.vocabulary, info.sequence_length)
        layer.build(None)  # a SavedModel keeps only built layers (and so the vocabulary's lookup table)
        serving.preprocessing.update(graphs.text_contract("vocabulary.txt", info.sequence_length, "strip"))
        serving.preprocessing["steps"].append("a text with no token at all gets id 1 ([UNK]) first, as in training")
        serving.files["vocabulary.txt"] = info.vocabulary
        serving.tensor_shapes = {"token_ids": (None, info.sequence_length)}
        serving.preprocessing["raw_input"] = "a UTF-8 string per row"
        serving.raw_inputs = {"text": ((None,), "string")}
        serving.raw_graph = lambda raw: _nonempty(layer(standardize_text(raw["text"], "strip")))
        serving.raw_feed = lambda inputs: {"text": np.array(inputs, dtype=object)}
        serving.resources = [layer]
        return serving


def _texts(split):
    """Returns:
    tuple[list[str], np.ndarray]: every text of a split, in order, and its labels.
    """
    texts, labels = [], []
    for chunk, targets in split.elements().batch(EVALUATION_CHUNK).as_numpy_iterator():
        texts += strings(chunk)
        labels.append(targets)
    return texts, np.concatenate(labels) if labels else np.zeros(0, "int64")


def _probabilities(model, info, texts, check):
    """Class probabilities of raw texts, tokenised as in training (the saved vocabulary, or the preset's own).

    Args:
        model (keras.Model): the trained classifier.
        info (FittedState): `Splits.info` of the run.
        texts (list[str]): raw sentences.
        check (bool): predictor mode: raise on empty texts and warn about truncated ones.

    Returns:
        tuple[np.ndarray, np.ndarray]: probabilities (n, classes) and, per text, whether it was truncated.
    """

    if info.backbone is None:
        token_ids, truncated = _token_ids(info, texts, check)
        return model.predict(token_ids, batch_size=256, verbose=0), truncated
    if check:
        check_sentences(texts)
    # The preprocessor adds two markers ([CLS] and [SEP] or the like) to the sub-word ids.
    lengths = np.array([len(ids) for ids in model.preprocessor.tokenizer(texts)]) + 2
    truncated = lengths > info.sequence_length
    if check and truncated.any():
        warnings.warn(
            f"{int(truncated.sum())} input(s) longer than the model's {info.sequence_length} tokens "
            f"were truncated (inputs {', '.join(str(i + 1) for i in np.flatnonzero(truncated)[:10])}).",
            stacklevel=3,
        )
    return np.asarray(model.predict(texts, batch_size=64, verbose=0)), truncated


def _check_preset(backbone):
    """Fails at once, with the offline alternatives, when a keras-hub preset cannot be had here.

    A local folder must hold a saved preset (`config.json`); a preset name or a `kaggle://` / `hf://`
    handle needs the hub reachable unless kagglehub already cached it (presets download once).

    Raises:
        ValueError: an unknown name, a folder without a preset, or a download with no network.
    """
    if os.path.isdir(backbone):
        if not os.path.isfile(os.path.join(backbone, "config.json")):
            raise ValueError(
                f"backbone folder '{backbone}' holds no keras-hub preset (config.json); save one with "
                "`backbone.save_to_preset(folder)` and `tokenizer.save_to_preset(folder)`."
            )
        return
    import keras_hub

    presets = keras_hub.models.TextClassifier.presets
    if "://" not in backbone and backbone not in presets:
        raise ValueError(
            f"backbone '{backbone}' is neither a folder nor a keras-hub text preset; try "
            "bert_tiny_en_uncased, distil_bert_base_en_uncased or a kaggle:// or hf:// handle."
        )
    handle = presets.get(backbone, {}).get("kaggle_handle", backbone)
    host = "huggingface.co" if handle.startswith("hf://") else "www.kaggle.com"
    if _preset_cached(handle) or network.reachable(host):
        return
    raise ValueError(
        f"backbone '{backbone}' is not downloaded and this machine cannot reach {host}; run once "
        "with network access, set backbone to a local keras-hub preset folder, or train from scratch "
        "with --set backbone=none (architecture cnn, bilstm, bigru or transformer)."
    )


def _preset_cached(handle):
    """Whether kagglehub's cache already holds this versioned `kaggle://` preset."""
    if not handle.startswith("kaggle://"):
        return False
    from kagglehub import cache, handle as handles

    return (
        cache.Cache().load_from_cache(handles.parse_model_handle(handle.removeprefix("kaggle://")), "config.json")
        is not None
    )


def _pretrained_classifier(config, num_classes):
    """A keras-hub TextClassifier from `config.backbone` with its own preprocessor, ready to fine-tune.

    The preprocessor (tokenizer and vocabulary) is saved inside the model, so the logged model takes raw
    strings; keras-hub runs it in the tf.data input pipeline of `fit` and `predict`.
    """
    import keras_hub

    preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
        config.backbone, sequence_length=config.sequence_length
    )
    return keras_hub.models.TextClassifier.from_preset(
        config.backbone, num_classes=num_classes, preprocessor=preprocessor, activation="softmax"
    )


def _encoder(config, info, inputs, matrix):
    """One from-scratch `config.architecture` encoder of token ids (embedding started from `matrix`, see
    `_vectors`): sentence features before the classifier."""
    import keras

    from shared import text_layers

    layers = text_layers.layers()
    if config.architecture == "transformer":
        x = layers["PositionalEmbedding"](info.sequence_length, len(info.vocabulary), config.embedding_dim)(inputs)
        x = keras.layers.Dropout(config.dropout)(x)
        for _ in range(config.layers):
            x = layers["TransformerEncoder"](
                config.embedding_dim, 2 * config.embedding_dim, config.heads, config.dropout / 2
            )(x)
        return keras.layers.GlobalAveragePooling1D()(x)
    x = _embedding(config, info, matrix)(inputs)
    x = keras.layers.SpatialDropout1D(config.dropout / 2)(x)
    if config.architecture == "cnn":
        return layers["ConvMaxPooling"](config.filters, config.widths)(x)
    recurrent = keras.layers.LSTM if config.architecture == "bilstm" else keras.layers.GRU
    for _ in range(config.layers - 1):
        x = keras.layers.Bidirectional(recurrent(config.units, return_sequences=True))(x)
    sequence, *states = keras.layers.Bidirectional(recurrent(config.units, return_sequences=True, return_state=True))(x)
    # The last states read the whole sentence both ways (the mask skips padding); the max over every
    # step's states (BiLSTM-max, Conneau et al. 2017) keeps a strong phrase anywhere in it: with GloVe
    # on SST-2, dev 0.834 -> 0.840 over three seeds.
    half = len(states) // 2  # an LSTM returns (h, c) per direction, a GRU h
    return keras.layers.Concatenate()([layers["MaskedMaxPooling"]()(sequence), states[0], states[half]])


def _vectors(config, info):
    """The embedding matrix `config.embeddings` gives the vocabulary (None without a file), read once for
    every ensemble member."""
    if config.embeddings == "none":
        return None
    from shared.data.text import word_vectors

    matrix, share = word_vectors(config.embeddings, info.vocabulary, config.seed)
    print(
        f"embeddings: {share:.0%} of the {len(matrix) - 2} vocabulary words found in {config.embeddings}",
        file=sys.stderr,
    )
    return matrix


def _embedding(config, info, matrix):
    """The token embedding: learned from scratch, or started from `matrix` (see `_vectors`) and fine-tuned,
    the words the file added to the vocabulary (`Splits.info.added_words`) kept at their vectors."""
    import keras

    from shared import text_layers

    size = len(info.vocabulary)
    if matrix is None:
        return keras.layers.Embedding(size, config.embedding_dim, mask_zero=True)
    added = info.added_words
    if not added:
        return keras.layers.Embedding(size, config.embedding_dim, mask_zero=True, weights=[matrix])
    layer = text_layers.layers()["ExtendedEmbedding"](size - added, added, config.embedding_dim)
    layer.build(None)
    layer.set_weights([matrix[:-added], matrix[-added:]])
    return layer


def _token_ids(info, texts, check):
    """Token id rows of raw texts as in training (see `shared.data.text.tokenize_text`), and which were truncated."""
    from shared.data.text import tokenize_text

    token_ids, truncated = tokenize_text(list(texts), info.vocabulary, info.sequence_length, "strip", check=check)
    token_ids[token_ids[:, 0] == 0, 0] = 1  # punctuation-only text: [UNK], as in training (see `_nonempty`)
    return token_ids, truncated


def _nonempty(token_ids):
    """Token id rows in TensorFlow with [UNK] first where a text has no token: masked pooling then never
    divides by zero."""
    import tensorflow as tf

    first = tf.where(token_ids[:, :1] == 0, tf.ones_like(token_ids[:, :1]), token_ids[:, :1])
    return tf.concat([first, token_ids[:, 1:]], axis=1)
