"""NLP translation: a Transformer encoder-decoder trained from scratch, decoding greedily or by beam search.

Both languages are lower-cased with punctuation split into tokens (so outputs can be punctuated),
tokenised by `keras.layers.TextVectorization` vocabularies adapted on the training pairs and saved in
`Splits.info`. Tokenisation runs in tf.data batch maps and in the predictor; the model takes token
ids, so it trains on every Keras backend. The logged model runs the whole decode loop on raw strings.
Training batches group pairs of similar length and pad to their own longest sentence (on the Anki
pairs about 2.4x fewer positions than padding to 20); the output layer reuses the target embedding
and the loss smooths labels by 0.1, as in the original Transformer.

Data sources:
    embedded                       generated English -> Spanish sentences about counted things
                                   ("They sell three hundred twenty-one red houses." -> "Venden trescientas
                                   veintiuna casas rojas."): number words, gender agreement (un/una,
                                   doscientos/doscientas), plural adjectives after the noun. Synthetic.
    tfds:ted_hrlr_translate/pt_to_en   (or any TFDS translation set named X_to_Y; needs internet once).
    FILE (TSV)                     `source<TAB>target[<TAB>anything]` per line, the Anki / Tatoeba format;
                                   `direction=reverse` translates the second column into the first.
                                   Streams: the splits are line offsets whose pairs the tf.data map reads
                                   (TFDS sets and the generated pairs stay in memory as strings).
Bad input: a line with one field is an error naming the line number; non-UTF-8 bytes name the line;
empty sentences are dropped from training with a warning and are an error at predict time; a sentence
longer than `sequence_length` tokens is truncated with a warning (the answer carries `"truncated": true`).
"""

import dataclasses
import re
import warnings

import numpy as np

from shared.constraints import Choice, Count, Fraction, Length, NonNegative, Size, Width
from shared.data.sources import reader
from shared.fitted_state import FittedState
from tasks import register
from tasks.base import ServingSignature, Splits, Task, TaskConfig, search_space

START, END = "[start]", "[end]"  # target sentence markers, ids 2 and 3 of the target vocabulary
PADDING_ID, UNKNOWN_ID, START_ID, END_ID = 0, 1, 2, 3
EVALUATION_CHUNK = 1024  # test pairs decoded and translated at once (each chunk is decoded in passes of 256 rows)
# validation pairs translated to tell the model from copying the source: a BLEU point's bootstrap interval is
# already narrow on 500 sentences, and decoding them all would cost a second test pass
GATE_SENTENCES = 500


@dataclasses.dataclass
class NlpTranslationConfig(TaskConfig):
    epochs: int = 10  # the embedded pairs converge in ~8 on a CPU; real corpora want more (keras-io: 30)
    learning_rate: float = 1e-3  # Transformers trained from scratch diverge above ~2e-3 without warm-up
    weight_decay: float = 1e-4  # mild: dropout does most of the regularising
    early_stopping_patience: int = 5  # val_loss of a seq2seq model plateaus smoothly
    direction: Choice("forward", "reverse") = "forward"  # forward: a TSV's column 1 -> column 2; reverse: 2 -> 1
    vocabulary_size: Count = 15000  # per language, the keras-io recipe's size for the Anki data
    # word counts settle long before 200k sentences, and the Anki set (119k pairs) is still counted whole
    vocabulary_sample: Count = 200_000  # sentences each vocabulary is counted on (a seeded sample of more)
    sequence_length: Length = 20  # tokens per sentence (source and target); Anki sentences rarely exceed it
    embedding_dim: Width = 128  # keras-io uses 256; 128 trains twice as fast on a CPU for a small BLEU cost
    dense_dim: Width = 512  # feed-forward width, 4x embedding_dim as in the original Transformer
    heads: Count = 4  # attention heads; embedding_dim must divide by it
    layers: Count = 1  # encoder and decoder blocks each; one suffices for short sentences
    dropout: Fraction = 0.2  # keras-io uses 0.5 with a wider model; 0.2 suits 128 dimensions
    # off: on 8k-pair files and the embedded pairs, 0.1 with tied embeddings cost 0.9-1.5 validation BLEU
    label_smoothing: Fraction = 0.0  # 0.1 (the Transformer paper's) helps corpora of 100k pairs and more
    tie_embeddings: bool = False  # True reuses the target embedding as the output layer (1M fewer weights)
    token_dropout: Fraction = 0.0  # source word dropout; off because rare words carry the meaning
    decoding: Choice("greedy", "beam") = "greedy"  # beam costs beam_width times the compute
    beam_width: Count = 4  # hypotheses kept per sentence when decoding == beam
    length_penalty: NonNegative = 0.6  # beam scores divide by length**penalty, so short outputs do not win
    embedded_examples: Count = 6000  # generated pairs; enough for the number grammar to be learned
    sample_translations: Size = 30  # rows of the logged sample translations table
    search_space: dict = search_space(  # rates stop at 2e-3, above which Transformers diverge
        learning_rate=["log", 2e-4, 2e-3], dropout=["float", 0.1, 0.4]
    )

    def check(self):
        super().check()
        if self.embedding_dim % self.heads:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be divisible by heads ({self.heads}).")


# ---------------------------------------------------------------------------------------------------
# Embedded data: English -> Spanish counted nouns with agreement.
_EN_UNITS = [
    "",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ES_UNITS = [
    "",
    "uno",
    "dos",
    "tres",
    "cuatro",
    "cinco",
    "seis",
    "siete",
    "ocho",
    "nueve",
    "diez",
    "once",
    "doce",
    "trece",
    "catorce",
    "quince",
    "dieciséis",
    "diecisiete",
    "dieciocho",
    "diecinueve",
    "veinte",
    "veintiuno",
    "veintidós",
    "veintitrés",
    "veinticuatro",
    "veinticinco",
    "veintiséis",
    "veintisiete",
    "veintiocho",
    "veintinueve",
]
_ES_TENS = ["", "", "", "treinta", "cuarenta", "cincuenta", "sesenta", "setenta", "ochenta", "noventa"]
_ES_HUNDREDS = [
    "",
    "ciento",
    "doscientos",
    "trescientos",
    "cuatrocientos",
    "quinientos",
    "seiscientos",
    "setecientos",
    "ochocientos",
    "novecientos",
]
# (English singular, English plural, Spanish singular, Spanish plural, feminine)
_NOUNS = [
    ("book", "books", "libro", "libros", False),
    ("house", "houses", "casa", "casas", True),
    ("cat", "cats", "gato", "gatos", False),
    ("table", "tables", "mesa", "mesas", True),
    ("dog", "dogs", "perro", "perros", False),
    ("car", "cars", "coche", "coches", False),
    ("window", "windows", "ventana", "ventanas", True),
    ("apple", "apples", "manzana", "manzanas", True),
    ("chair", "chairs", "silla", "sillas", True),
    ("tree", "trees", "árbol", "árboles", False),
    ("flower", "flowers", "flor", "flores", True),
    ("letter", "letters", "carta", "cartas", True),
]
# (English, Spanish masculine singular, feminine singular); plurals add -s / -es by rule below
_ADJECTIVES = [
    ("red", "rojo", "roja"),
    ("white", "blanco", "blanca"),
    ("small", "pequeño", "pequeña"),
    ("new", "nuevo", "nueva"),
    ("old", "viejo", "vieja"),
    ("big", "grande", "grande"),
    ("green", "verde", "verde"),
    ("beautiful", "bonito", "bonita"),
    ("blue", "azul", "azul"),
]
_SUBJECTS = [
    ("I have", "Tengo"),
    ("We have", "Tenemos"),
    ("They sell", "Venden"),
    ("She buys", "Compra"),
    ("You see", "Ves"),
    ("He wants", "Quiere"),
    ("We need", "Necesitamos"),
    ("They paint", "Pintan"),
]


def english_number(number):
    """1-999 in English words ("three hundred twenty-one")."""
    hundreds, rest = divmod(number, 100)
    words = [f"{_EN_UNITS[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        words.append(_EN_TENS[rest // 10] + (f"-{_EN_UNITS[rest % 10]}" if rest % 10 else ""))
    elif rest:
        words.append(_EN_UNITS[rest])
    return " ".join(words)


def spanish_number(number, feminine):
    """1-999 in Spanish words as used before a noun: apocope (un, veintiún) and gender (doscientas, una)."""
    hundreds, rest = divmod(number, 100)
    words = []
    if hundreds:
        word = "cien" if number == 100 else _ES_HUNDREDS[hundreds]
        words.append(word[:-2] + "as" if feminine and hundreds > 1 else word)
    if rest < 30:
        words.append(_ES_UNITS[rest])
    else:
        words.append(_ES_TENS[rest // 10] + (f" y {_ES_UNITS[rest % 10]}" if rest % 10 else ""))
    text = " ".join(word for word in words if word)
    if rest % 10 == 1 and rest != 11:  # "uno" before a noun: un / una, veintiún / veintiuna
        text = text[:-3] + ("una" if feminine else ("ún" if text.endswith("veintiuno") else "un"))
    return text


def _spanish_plural(word):
    return word + ("s" if word[-1] in "aeiou" else "es")


def generated_pairs(count, seed):
    """English -> Spanish sentences about a number of things, with agreement and adjective reordering.

    Returns:
        tuple[np.ndarray, np.ndarray]: English and Spanish sentences (object arrays).
    """
    rng = np.random.default_rng(seed)
    sources, targets = [], []
    for _ in range(count):
        band = rng.integers(3)  # small numbers, two-digit, three-digit: all three grammars appear often
        low, high = ((1, 21), (21, 100), (100, 1000))[band]
        number = int(rng.integers(low, high))
        english_noun, english_plural, spanish_noun, spanish_plural, feminine = _NOUNS[rng.integers(len(_NOUNS))]
        subject, verb = _SUBJECTS[rng.integers(len(_SUBJECTS))]
        plural = number != 1
        english = f"{subject} {english_number(number)}"
        spanish = f"{verb} {spanish_number(number, feminine)} {spanish_plural if plural else spanish_noun}"
        if rng.random() < 0.6:
            adjective, masculine_form, feminine_form = _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
            english += f" {adjective}"
            form = feminine_form if feminine else masculine_form
            spanish += f" {_spanish_plural(form) if plural else form}"
        english += f" {english_plural if plural else english_noun}."
        sources.append(english)
        targets.append(spanish + ".")
    return np.array(sources, dtype=object), np.array(targets, dtype=object)


def read_pairs(path, direction):
    """Reads `source<TAB>target[<TAB>anything]` lines (the Anki / Tatoeba format).

    Args:
        path (str): the TSV file (UTF-8).
        direction (str): "forward" (column 1 -> 2) or "reverse" (column 2 -> 1).

    Returns:
        tuple[np.ndarray, np.ndarray]: source and target sentences.

    Raises:
        ValueError: not UTF-8, or a non-empty line without a tab (the message gives the line number).
    """
    from shared.data.sources import read_text

    sources, targets = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(
                f"'{path}' line {number} has one field ({line[:60]!r}); expected source<TAB>target per line."
            )
        sources.append(fields[0].strip())
        targets.append(fields[1].strip())
    if not sources:
        raise ValueError(f"'{path}' has no sentence pairs; expected source<TAB>target per line.")
    pairs = (np.array(sources, dtype=object), np.array(targets, dtype=object))
    return pairs if direction == "forward" else pairs[::-1]


def pair_examples(path, direction):
    """Scans a `source<TAB>target[<TAB>anything]` file into an index of line offsets that tf.data decodes.

    Lines are what `read_pairs` reads (`str.splitlines`, so the same seed carves the same split); the scan
    reads one line at a time and keeps only the offsets of the pairs with both sentences non-empty.

    Args:
        path (str): the TSV file (UTF-8).
        direction (str): "forward" (column 1 -> 2) or "reverse" (column 2 -> 1).

    Returns:
        Examples: byte offsets (int64) as features and targets, decoded into `(source, target)` strings.

    Raises:
        ValueError: not UTF-8, a non-empty line without a tab (naming the line), or no pair at all.
    """
    import array

    from shared.data import examples, text_files

    offsets, number, pairs, empty, used = array.array("q"), 0, 0, 0, 0  # 8 bytes per pair
    with open(path, "rb") as handle:
        lines = text_files.Lines(handle, path)
        for line in lines:
            start = lines.offset - len(line.encode("utf-8"))
            for piece in line.splitlines(keepends=True):  # what `read_pairs` calls lines
                number += 1
                size = len(piece.encode("utf-8"))
                offset, start = start, start + size
                text = piece.splitlines()[0]
                if not text.strip():
                    continue
                fields = text.split("\t")
                if len(fields) < 2:
                    raise ValueError(
                        f"'{path}' line {number} has one field ({text[:60]!r}); expected source<TAB>target per line."
                    )
                pairs += 1
                if not fields[0].strip() or not fields[1].strip():
                    empty += 1
                    continue
                offsets.append(offset)
                used += size
    if not pairs:
        raise ValueError(f"'{path}' has no sentence pairs; expected source<TAB>target per line.")
    if empty:
        warnings.warn(f"{path}: dropped {empty} pair(s) with an empty sentence.", stacklevel=2)
    if not offsets:
        raise ValueError(f"'{path}' has no pair with both sentences non-empty; expected source<TAB>target per line.")
    swap = direction != "forward"

    def read(handle, offset):
        handle.seek(offset)
        fields = handle.readline().decode("utf-8", "replace").splitlines()[0].split("\t")
        source, target = fields[0].strip(), fields[1].strip() if len(fields) > 1 else ""
        return (target, source) if swap else (source, target)

    offsets = np.frombuffer(offsets, dtype="int64").copy()
    return examples.Examples(
        offsets,
        offsets,
        decode=text_files.record_step(str(path), read, fields=2),
        element_bytes=used // len(offsets) + 96,
        origin="text file",
    )


def _drop_empty(sources, targets, origin):
    """Removes pairs with an empty side, warning with the count."""
    from shared.data.text import strings

    sources, targets = (np.array(strings(side), dtype=object) for side in (sources, targets))
    empty = np.array([not source.strip() or not target.strip() for source, target in zip(sources, targets)], dtype=bool)
    if empty.any():
        warnings.warn(f"{origin}: dropped {int(empty.sum())} pair(s) with an empty sentence.", stacklevel=2)
    return sources[~empty], targets[~empty]


def detokenize(tokens):
    """Joins target tokens into a sentence: no space before closing marks or after opening ones, capitalised."""
    text = " ".join(tokens)
    text = re.sub(r" ([.,!?;:%)\]}»”…])", r"\1", text)
    text = re.sub(r"([¿¡(\[{«“]) ", r"\1", text)
    letter = re.search(r"\w", text)
    return (
        text if letter is None else text[: letter.start()] + text[letter.start()].upper() + text[letter.start() + 1 :]
    )


@dataclasses.dataclass
class SentencePairs:
    """What every reader of this task returns: sentence pairs to carve, and the splits the source holds.

    Attributes:
        pool (tuple | Examples): source and target sentences (arrays, or an index of lines decoded in tf.data).
        languages (list[str]): the source and target languages, as `info` records them.
        name (str): the dataset's short name for MLflow.
        synthetic (bool): True for generated pairs.
        validation (tuple | None): a validation split the source holds.
        test (tuple | None): a test split the source holds.
    """

    pool: object
    languages: list
    name: str
    synthetic: bool = False
    validation: object = None
    test: object = None


@reader("tfds_pairs", ("tfds",), "tfds:NAME/X_to_Y, a translation dataset (e.g. tfds:ted_hrlr_translate/pt_to_en)")
def _read_tfds_pairs(task, argument, config):
    """A TFDS translation set, X_to_Y in its name telling the languages; `direction=reverse` swaps them."""
    from shared.data import tfds

    dataset_name = argument.split(":")[0]
    languages = dataset_name.split("/")[-1].split("_to_")
    if len(languages) != 2:
        raise ValueError(
            f"tfds:{dataset_name} is not named X_to_Y, so the languages are unknown; "
            "use e.g. tfds:ted_hrlr_translate/pt_to_en."
        )
    loaded, _ = tfds.load_arrays(
        argument,
        config.tfds_data_dir,
        tuple(languages),
        alternatives="--data embedded or a TSV file of sentence pairs",
    )
    if config.direction == "reverse":
        languages = languages[::-1]
    splits = {
        split: _drop_empty(arrays[languages[0]], arrays[languages[1]], f"tfds:{dataset_name}")
        for split, arrays in loaded.items()
    }
    pool = [split for split in splits if split not in ("test", "validation")] or list(splits)
    return SentencePairs(
        tuple(np.concatenate([splits[split][side] for split in pool]) for side in (0, 1)),
        languages,
        f"tfds_{dataset_name.replace('/', '_')}",
        validation=splits["validation"] if "validation" in splits and "validation" not in pool else None,
        test=splits["test"] if "test" in splits and "test" not in pool else None,
    )


@reader("pair_file", ("file", "csv"), "a TSV file of sentence pairs (source, tab, target per line)")
def _read_pair_file(task, argument, config):
    pool = pair_examples(argument, config.direction)  # streams: an index of line offsets
    return SentencePairs(pool, ["source", "target"], f"file_{argument.rstrip('/').split('/')[-1]}")


@dataclasses.dataclass(kw_only=True)
class TranslationState(FittedState):
    """A translator's vocabularies and decoding settings.

    Attributes:
        source_vocabulary (list[str]): the source language's tokens (padding and unknown first).
        target_vocabulary (list[str]): the target language's, with the start and end markers after those two.
        sequence_length (int): tokens kept per sentence.
        languages (list[str]): the source and target languages.
        decoding (str): greedy or beam.
        beam_width (int): hypotheses kept when decoding by beam.
        length_penalty (float): beam scores divide by length**penalty.
    """

    source_vocabulary: list
    target_vocabulary: list
    sequence_length: int
    languages: list
    decoding: str = "greedy"
    beam_width: int = 4
    length_penalty: float = 0.6


@register
class NlpTranslation(Task):
    name = "nlp_translation"
    answer_key = "translation"
    config_class = NlpTranslationConfig
    state_class = TranslationState
    primary_metric = "bleu"
    tfds_name = "ted_hrlr_translate/pt_to_en"
    input_column = "text"
    table_columns = "text,source,sentence"
    key_params = Task.key_params + ("decoding",)
    quick_overrides = {"epochs": 2, "max_examples": 1500, "embedded_examples": 2000}
    readers = ("embedded", "tfds_pairs", "pair_file")
    explain_kind = "tokens"  # which source words the translation rests on, and which way
    # width against depth of the Transformer
    candidates = (("default", {}), ("wide", {"embedding_dim": 256, "dense_dim": 1024}), ("deep", {"layers": 2}))
    remedies = (
        "Likely causes: too few epochs or sentence pairs (translation needs thousands). Try more epochs, "
        "more pairs, or --preset balanced."
    )

    def load_data(self, config):
        from shared.data.splits import carve
        from shared.data.text import adapt_vocabulary

        pairs = self.read(config)
        train, validation, test = carve(
            pairs.pool, config, validation=pairs.validation, test=pairs.test, stratify=False
        )
        target_vocabulary = adapt_vocabulary(
            train, config.vocabulary_size - 2, "split", config.vocabulary_sample, config.seed, part=1
        )
        info = TranslationState(
            source_vocabulary=adapt_vocabulary(
                train, config.vocabulary_size, "split", config.vocabulary_sample, config.seed
            ),
            target_vocabulary=target_vocabulary[:2] + [START, END] + target_vocabulary[2:],
            sequence_length=config.sequence_length,
            languages=pairs.languages,
            decoding=config.decoding,
            beam_width=config.beam_width,
            length_penalty=config.length_penalty,
        )
        return Splits(train, validation, test, info, config.data, pairs.name, pairs.synthetic)

    def embedded(self, config):
        """Generated English number phrases and their Spanish translations."""
        pool = _drop_empty(*generated_pairs(config.embedded_examples, config.seed), config.data)
        return SentencePairs(pool, ["en", "es"], "generated_numbers_en_es", synthetic=True)

    def build_model(self, config, info):
        import keras

        from shared import text_layers

        layers = text_layers.layers()
        length = info.sequence_length
        # Any length up to `length`: training batches are padded to their own longest sentence.
        encoder_inputs = keras.Input((None,), dtype="int64", name="encoder_inputs")
        x = layers["PositionalEmbedding"](length, len(info.source_vocabulary), config.embedding_dim)(encoder_inputs)
        x = keras.layers.Dropout(config.dropout)(x)
        for _ in range(config.layers):
            x = layers["TransformerEncoder"](config.embedding_dim, config.dense_dim, config.heads, config.dropout)(x)
        decoder_inputs = keras.Input((None,), dtype="int64", name="decoder_inputs")
        target_embedding = layers["PositionalEmbedding"](length, len(info.target_vocabulary), config.embedding_dim)
        y = keras.layers.Dropout(config.dropout)(target_embedding(decoder_inputs))
        for _ in range(config.layers):
            y = layers["TransformerDecoder"](config.embedding_dim, config.dense_dim, config.heads, config.dropout)(y, x)
        y = keras.layers.Dropout(config.dropout)(y)
        if config.tie_embeddings:
            y = target_embedding(y, reverse=True)
        else:
            y = keras.layers.Dense(len(info.target_vocabulary))(y)
        outputs = keras.layers.Activation("softmax", dtype="float32", name="next_token")(y)
        return keras.Model(
            {"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs},
            outputs,
            name="transformer_translation",
        )

    def loss(self, config, info):
        import keras
        from keras import ops

        if not config.label_smoothing:
            return keras.losses.SparseCategoricalCrossentropy(ignore_class=PADDING_ID)
        smoothing = config.label_smoothing

        def smoothed_cross_entropy(labels, probabilities):
            # Padding carries sample weight 0 (see eval_map); the vocabulary average spreads `smoothing`.
            log_probabilities = ops.log(ops.clip(probabilities, 1e-7, 1.0))
            chosen = ops.take_along_axis(log_probabilities, ops.expand_dims(ops.cast(labels, "int32"), -1), axis=-1)
            return -(1 - smoothing) * chosen[..., 0] - smoothing * ops.mean(log_probabilities, axis=-1)

        return smoothed_cross_entropy

    def metrics(self, config, info):
        import keras

        # Weighted by the non-padding mask the batch map yields, so padding does not inflate it.
        return [keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")]

    def eval_map(self, config, info):
        import tensorflow as tf

        from shared.data.text import standardize_text, text_vectorizer

        length = info.sequence_length
        # Batches are padded to their longest sentence (cut at sequence_length), not to sequence_length.
        source_layer = text_vectorizer(info.source_vocabulary, None)
        target_layer = text_vectorizer(info.target_vocabulary, None)

        def encode(sources, targets):
            marked = tf.strings.join([START, standardize_text(targets, "split"), END], separator=" ")
            target_ids = target_layer(marked)[:, : length + 1]
            labels = target_ids[:, 1:]
            features = {
                "encoder_inputs": source_layer(standardize_text(sources, "split"))[:, :length],
                "decoder_inputs": target_ids[:, :-1],
            }
            return features, labels, tf.cast(labels != PADDING_ID, "float32")

        return encode

    def train_map(self, config, info):
        from shared import augmentation

        encode = self.eval_map(config, info)
        drop = augmentation.token_dropout(config.token_dropout, config.seed, key="encoder_inputs")
        if drop is None:
            return encode
        return lambda sources, targets: drop(*encode(sources, targets))  # keeps the sample weights

    def length_buckets(self, config, info):
        import tensorflow as tf

        def length(sources, targets):
            return tf.maximum(tf.size(tf.strings.split(sources)), tf.size(tf.strings.split(targets)))

        return length, info.sequence_length

    def custom_objects(self):
        from shared import text_layers

        return text_layers.layers()

    def scorers(self, config, info):
        from shared import baselines

        return [baselines.BLEU, baselines.CHRF]

    def outputs(self, model, splits, role, config):
        """References and the model's translations (of the first `GATE_SENTENCES` validation pairs)."""
        sources, references = _pairs(splits, role)
        return references, [answer["translation"] for answer in self.predict_raw(model, splits.info, sources, False)]

    def baselines(self, splits, config):
        """Copying the source sentence: names, numbers and cognates score a few BLEU points for free."""
        from shared import baselines

        return [
            baselines.Baseline(
                "copy_source", **{role: _pairs(splits, role)[0] for role in ("validation", "test")}, trivial=True
            )
        ]

    def evaluate(self, model, splits, config):
        from shared import evaluation
        from shared.data.text import strings

        # The test split streams in chunks; the corpus scores need every hypothesis and reference, the table
        # only its first rows' sources.
        sources, references, hypotheses = [], [], []
        for chunk_sources, chunk_references in splits.test.elements().batch(EVALUATION_CHUNK).as_numpy_iterator():
            chunk_sources = strings(chunk_sources)
            answers = self.predict_raw(model, splits.info, chunk_sources, check=False)
            hypotheses += [answer["translation"] for answer in answers]
            references += strings(chunk_references)
            sources += chunk_sources[: max(0, config.sample_translations - len(sources))]
        metrics = evaluation.translation(hypotheses, references)
        rows = ["| source | reference | translation |", "|---|---|---|"]
        for source, reference, hypothesis in zip(sources, references, hypotheses):
            cells = (text.replace("|", "\\|") for text in (source, reference, hypothesis))
            rows.append("| " + " | ".join(cells) + " |")
        return evaluation.Evaluation(
            metrics=metrics, texts={"sample_translations.md": "\n".join(rows) + "\n"}, outputs=(references, hypotheses)
        )

    def input_example(self, splits):
        from shared.data.text import strings

        return strings(splits.test.sample(2)[0])

    def predict_raw(self, model, info, inputs, check=True, explain=None):
        """Translates raw sentences with the decoding saved in `info` (greedy, or beam search).

        Args:
            model (keras.Model): the trained encoder-decoder.
            info (TranslationState): vocabularies, sequence length and decoding settings of the run.
            inputs (list[str]): source sentences.
            check (bool): raise on empty inputs and warn about truncated ones (off for evaluation).
            explain (str | None): see `Task.predict_raw`: each answer explained over its source tokens.

        Returns:
            list[dict]: per input, `translation` (and `truncated: true` when the input was cut).
        """
        from shared.data.text import tokenize_text

        source_ids, truncated = tokenize_text(
            list(inputs), info.source_vocabulary, info.sequence_length, "split", check=check
        )
        vocabulary = info.target_vocabulary
        answers = [
            {"translation": detokenize([vocabulary[token] for token in tokens])}
            for tokens in _decoded(model, info, source_ids)
        ]
        for answer, cut in zip(answers, truncated):
            if cut:
                answer["truncated"] = True
        return self.explained(answers, model, info, list(inputs), None, explain, inputs)

    def explained_examples(self, info, targets, outputs, count, seed):
        """A seeded random choice of test pairs, titled with their reference and the model's translation."""
        from shared import explain

        positions = explain.chosen(len(targets), count, seed)
        return positions, [f"reference: {targets[position]}\nmodel: {outputs[position]}" for position in positions]

    def explanation(self, model, info, examples, outputs):
        """Explains each translation, decoded as `predict_raw` decodes it, over the source tokens: integrated gradients
        of its log-probability, teacher-forced (`_forced`), from zero source embeddings (the decoder's inputs held).
        Attention weights would be cheaper but say where the decoder looked, not what its answer rests on."""
        from shared import explain
        from shared.data.text import strings, tokenize_text

        vocabulary, length = info.source_vocabulary, info.sequence_length
        source_ids, _ = tokenize_text(strings(examples), vocabulary, length, "split")
        inputs, targets = _forced(source_ids, _decoded(model, info, source_ids), length)
        found = explain.explain("tokens", model, inputs, targets, key="encoder_inputs", vocabulary=vocabulary)
        return found, inputs

    def drift_view(self, model, info, batch):
        """Each source sentence's token count and its unknown ([UNK]) tokens: what the encoder reads."""
        from shared import drift

        return drift.token_view(batch["encoder_inputs"])

    def drift_inputs(self, info, inputs):
        """Source sentences as the encoder's token ids (empty and long ones as they come: monitoring counts them)."""
        from shared.data.text import tokenize_text

        source = info.source_vocabulary
        return {"encoder_inputs": tokenize_text(list(inputs), source, info.sequence_length, "split", check=False)[0]}

    def serving_signature(self, model, info):
        """Exports answer one decoder pass on token ids: the decode loop (greedy or beam search) is the caller's."""
        from shared import serving as graphs
        from shared.data.text import tokenize_text

        length = info.sequence_length

        def prepare(inputs):
            """Source ids and, as decoder inputs, [start] + the model's own greedy translation: comparing every
            position of that pass covers every step of greedy decoding."""
            source_ids, _ = tokenize_text(list(inputs), info.source_vocabulary, length, "split", check=True)
            return _forced(source_ids, beam_search(model, source_ids, 1, info.length_penalty), length)[0]

        contract = graphs.text_contract("source_vocabulary.txt", length, "split")
        width = info.beam_width if info.decoding == "beam" else 1
        contract["steps"] = [f"encoder_inputs: {step}" for step in contract["steps"]] + [
            f"decoder_inputs: int64 (n, {length}), [start] (id {START_ID}) then the tokens chosen so far, 0 after",
            f"decode: run the model, take next_token[:, t] at the last filled position t, pick the next id (greedy, or "
            f"beam search of width {width} with scores divided by length ** {info.length_penalty}), never 0 or "
            f"[start]; stop at [end] (id {END_ID}) or after {length} tokens",
            "detokenize: target_vocabulary.txt line number -> token, joined by spaces, no space before closing "
            "marks or after opening ones, the first letter capitalised (detokenize in tasks/nlp_translation.py)",
        ]
        contract.pop("vocabulary_file")
        contract.update(
            source_vocabulary_file="source_vocabulary.txt",
            target_vocabulary_file="target_vocabulary.txt",
            decoding=info.decoding,
            beam_width=info.beam_width,
            length_penalty=info.length_penalty,
            meaning={
                "next_token": "(n, length, target vocabulary): the probability of each next token "
                "at every decoder position"
            },
        )
        return ServingSignature(
            prepare=prepare,
            preprocessing=contract,
            files={
                "source_vocabulary.txt": info.source_vocabulary,
                "target_vocabulary.txt": info.target_vocabulary,
            },
        )


def _pairs(splits, role):
    """Returns:
    tuple[list[str], list[str]]: the sources and references of a split, in order (validation: its first
    `GATE_SENTENCES`, which suffice to tell a model from copying the source).
    """
    from shared.data.text import strings

    sources, references = [], []
    elements = getattr(splits, role).elements()
    for chunk_sources, chunk_references in (
        (elements.take(GATE_SENTENCES) if role == "validation" else elements)
        .batch(EVALUATION_CHUNK)
        .as_numpy_iterator()
    ):
        sources += strings(chunk_sources)
        references += strings(chunk_references)
    return sources, references


def _decoded(model, info, source_ids):
    """Decodes source ids as `info` says (greedy, or beam search of its width) in chunks of about 256 rows per forward
    pass, whatever the beam width.

    Returns:
        list[list[int]]: per sentence, its translation's token ids without markers.
    """
    width = info.beam_width if info.decoding == "beam" else 1
    chunk = max(1, 256 // width)
    return [
        tokens
        for start in range(0, len(source_ids), chunk)
        for tokens in beam_search(model, source_ids[start : start + chunk], width, info.length_penalty)
    ]


def _forced(source_ids, decoded, length):
    """The model's inputs that teacher-force decoded translations, and the token each decoder position answers.

    Args:
        source_ids (np.ndarray): (n, length) source token ids.
        decoded (list[list[int]]): per sentence, its translation's token ids without markers (`beam_search`).
        length (int): the decoder's positions.

    Returns:
        tuple[dict, np.ndarray]: `encoder_inputs` (the source ids) and `decoder_inputs` ([start], then the
        translation, 0 after), and (n, length) targets: the translation's tokens then [end], -1 after.
    """
    decoder_ids = np.zeros((len(decoded), length), dtype="int64")
    decoder_ids[:, 0] = START_ID
    targets = np.full((len(decoded), length), -1, dtype="int64")
    for row, tokens in enumerate(decoded):
        decoder_ids[row, 1 : len(tokens[: length - 1]) + 1] = tokens[: length - 1]
        answered = (list(tokens) + [END_ID])[:length]
        targets[row, : len(answered)] = answered
    return {"encoder_inputs": np.asarray(source_ids), "decoder_inputs": decoder_ids}, targets


def beam_search(model, source_ids, width, length_penalty):
    """Decodes token ids by beam search (width 1 is greedy decoding), stopping at [end].

    Args:
        model (keras.Model): the encoder-decoder, taking `encoder_inputs` and `decoder_inputs` of any length.
        source_ids (np.ndarray): (n, length) source token ids.
        width (int): hypotheses kept per sentence.
        length_penalty (float): final scores are log-probability / length**length_penalty.

    Returns:
        list[list[int]]: per sentence, the best hypothesis' token ids without markers.
    """
    count, length = source_ids.shape
    # Models of any input length (all since length bucketing) skip the chunk's shared trailing padding
    # and read only the prefix decoded so far; older fixed-length models get the full width. At least two
    # columns, since Keras warns about a softmax over one attention key (masking keeps results the same).
    trim = all(tensor.shape[1] is None for tensor in model.inputs)
    if trim:
        source_ids = source_ids[:, : max(2, int((source_ids != PADDING_ID).sum(axis=1).max()))]
    sources = np.repeat(source_ids, width, axis=0)
    decoder_inputs = np.zeros((count * width, length), dtype="int64")
    decoder_inputs[:, 0] = START_ID
    generated = np.zeros((count * width, length), dtype="int64")
    scores = np.full((count, width), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished = np.zeros((count, width), dtype=bool)
    lengths = np.zeros((count, width))
    for step in range(length):
        # Causal attention: the prefix decoded so far decides the next token.
        prefix = decoder_inputs[:, : max(2, step + 1)] if trim else decoder_inputs
        batch = {"encoder_inputs": sources, "decoder_inputs": prefix}
        probabilities = np.asarray(model.predict_on_batch(batch))
        log_probabilities = np.log(probabilities[:, step, :].astype("float64") + 1e-12)
        vocabulary_size = log_probabilities.shape[-1]
        log_probabilities = log_probabilities.reshape(count, width, vocabulary_size)
        log_probabilities[..., [PADDING_ID, START_ID]] = -np.inf
        # A finished hypothesis may only continue with padding, at no cost, so it keeps its score.
        log_probabilities[finished] = -np.inf
        log_probabilities[finished, PADDING_ID] = 0.0
        candidates = (scores[..., None] + log_probabilities).reshape(count, -1)
        best = np.argsort(-candidates, axis=1)[:, :width]
        origin, token = best // vocabulary_size, best % vocabulary_size
        rows = (np.arange(count)[:, None] * width + origin).reshape(-1)
        scores = np.take_along_axis(candidates, best, axis=1)
        was_finished = np.take_along_axis(finished, origin, axis=1)
        lengths = np.take_along_axis(lengths, origin, axis=1) + ~was_finished
        finished = was_finished | (token == END_ID)
        generated, decoder_inputs = generated[rows], decoder_inputs[rows]
        generated[:, step] = token.reshape(-1)
        if step + 1 < length:
            decoder_inputs[:, step + 1] = token.reshape(-1)
        if finished.all():
            break
    normalized = np.where(np.isfinite(scores), scores / np.maximum(lengths, 1) ** length_penalty, -np.inf)
    chosen = normalized.argmax(axis=1)
    results = []
    for sentence, beam in enumerate(chosen):
        tokens = []
        for token in generated[sentence * width + beam]:
            if token in (END_ID, PADDING_ID):
                break
            tokens.append(int(token))
        results.append(tokens)
    return results
