"""Text for models: standardising, adapting a vocabulary on training text, tokenising raw strings as in training."""

import numpy as np


def strings(texts):
    """Text values as Python strings: tf.string values decoded from UTF-8 bytes, anything else `str`."""
    return [text.decode("utf-8") if isinstance(text, bytes) else str(text) for text in texts]


def standardize_text(texts, punctuation="strip"):
    """Lower-cases text and strips punctuation or splits it into separate tokens (tf.data-ready).

    Runs on `tf.string` tensors so it can sit in a tf.data map and in a predictor, never inside a
    model, which keeps models backend-agnostic.

    Args:
        texts (tf.Tensor | list[str]): strings.
        punctuation (str): "strip" removes it (classification); "split" keeps each mark as its own
            token (translation, where the output must be punctuated).

    Returns:
        tf.Tensor: standardised strings, tokens separated by single spaces.
    """
    import tensorflow as tf

    if punctuation not in ("strip", "split"):
        raise ValueError(f"punctuation must be 'strip' or 'split', got '{punctuation}'.")
    texts = tf.strings.lower(tf.convert_to_tensor(texts), encoding="utf-8")
    texts = tf.strings.regex_replace(texts, r"<br\s*/?>", " ")  # IMDB reviews keep HTML line breaks
    marks = r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~¿¡«»“”…]"
    if punctuation == "strip":
        texts = tf.strings.regex_replace(texts, marks, " ")
    else:
        texts = tf.strings.regex_replace(texts, r"([!\"#$%&()*+,./:;<=>?@\[\\\]^_`{|}~¿¡«»“”…])", r" \1 ")
    return tf.strings.strip(tf.strings.regex_replace(texts, r"\s+", " "))


# Texts are cut to this many characters per token the model reads before they are tokenised: words,
# numbers and URLs with their spacing stay far below it, so a text the model would read whole is never
# cut, while the work per input is bounded (a 64-token model reads at most 6,400 characters).
TEXT_CHARACTERS_PER_TOKEN = 100


def text_vectorizer(vocabulary, sequence_length):
    """Rebuilds the TextVectorization of a training run from its saved vocabulary (input: standardised text).

    Args:
        vocabulary (list[str]): the adapted vocabulary, padding ("") and [UNK] first.
        sequence_length (int | None): pad / truncate to this many tokens (None pads to the batch's longest).

    Returns:
        keras.layers.TextVectorization
    """
    import keras

    return keras.layers.TextVectorization(
        standardize=None, split="whitespace", vocabulary=vocabulary[2:], output_sequence_length=sequence_length
    )


def adapt_vocabulary(texts, size, punctuation, sample, seed=0, part=0):
    """Adapts a TextVectorization on at most `sample` training texts.

    Word counts settle long before a large corpus ends, so a seeded random sample of `sample` texts (in
    their original order) gives the vocabulary of them all at a bounded cost in time and memory; a corpus
    of at most `sample` texts is read whole. A split of a text file is decoded from its stream: only the
    sampled records are read, and the counts, not the texts, stay in memory.

    Args:
        texts (np.ndarray | shared.data.examples.Examples): training strings, or a split whose decoded
            elements are `(text, label)` or `(source, target)` strings.
        size (int): maximum vocabulary size, including padding and [UNK].
        punctuation (str): "strip" or "split" (see `standardize_text`).
        sample (int): at most this many texts are counted.
        seed (int): chooses the sample (the same texts whether they are held in memory or streamed).
        part (int): which element of a split's decoded `(features, targets)` to count (0 or 1).

    Returns:
        list[str]: the vocabulary, most frequent first, padding ("") and [UNK] at indices 0 and 1.
    """
    import keras
    import tensorflow as tf

    from shared.data.examples import Split

    if isinstance(texts, Split):
        dataset = texts.cap(sample, seed).elements().map(lambda *element: element[part]).batch(1024)
    else:
        if len(texts) > sample:
            texts = np.asarray(texts, dtype=object)[
                np.sort(np.random.default_rng(seed).choice(len(texts), sample, replace=False))
            ]
        dataset = tf.data.Dataset.from_tensor_slices(list(texts)).batch(1024)
    layer = keras.layers.TextVectorization(max_tokens=size, standardize=None, split="whitespace")
    layer.adapt(dataset.map(lambda batch: standardize_text(batch, punctuation)))
    return [str(token) for token in layer.get_vocabulary()]


def check_sentences(texts):
    """Refuses an empty or non-string text, naming its position when there are several.

    Raises:
        ValueError: the first text that is not a non-empty string.
    """
    for position, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            where = f"input {position + 1}" if len(texts) > 1 else "the input"
            raise ValueError(f"{where} is {text!r}; give a non-empty sentence (a string).")


def tokenize_text(texts, vocabulary, sequence_length, punctuation, check=False):
    """Standardises and tokenises raw strings into padded id rows (numpy), as at training time.

    Each text is first cut to `sequence_length * TEXT_CHARACTERS_PER_TOKEN` characters, so that a
    megabyte sentence costs what a paragraph does.

    Args:
        texts (list[str]): raw strings.
        vocabulary (list[str]): the saved vocabulary.
        sequence_length (int): the model's maximum length; longer texts are truncated (flagged as such).
        punctuation (str): "strip" or "split".
        check (bool): predictor mode: raise on empty texts and warn about truncated ones.

    Returns:
        tuple[np.ndarray, np.ndarray]: ids (n, sequence_length) int64 and, per text, whether it was truncated.

    Raises:
        ValueError: (check mode) a text is empty or not a string.
    """
    import warnings

    import tensorflow as tf

    if check:
        check_sentences(texts)
    limit = sequence_length * TEXT_CHARACTERS_PER_TOKEN
    cut = np.array([len(text) > limit for text in texts], dtype=bool)
    standardized = standardize_text(tf.constant([text[:limit] for text in texts], dtype=tf.string), punctuation)
    lengths = tf.strings.split(standardized).row_lengths().numpy()
    truncated = (lengths > sequence_length) | cut
    if check and truncated.any():
        warnings.warn(
            f"{int(truncated.sum())} input(s) longer than the model's {sequence_length} tokens were truncated "
            f"(inputs {', '.join(str(i + 1) for i in np.flatnonzero(truncated)[:10])}).",
            stacklevel=2,
        )
    ids = text_vectorizer(vocabulary, sequence_length)(standardized)
    return np.asarray(ids).astype("int64"), truncated


def word_vector_size(path):
    """The dimension of a word-vector text file (GloVe `.txt`, word2vec / fastText `.vec`, or either `.gz`).

    Raises:
        ValueError: the file is absent or its first line is not `word v1 v2 ...` or a `count dim` header.
    """
    import os

    if not os.path.isfile(path):
        raise ValueError(
            f"embeddings file '{path}' does not exist; give a GloVe .txt or word2vec/fastText .vec "
            "file (optionally .gz), or --set embeddings=none to learn embeddings from scratch."
        )
    with _open_vectors(path) as lines:
        fields = next(lines, "").split()
    try:
        values = [float(value) for value in fields[1:]]
    except ValueError:
        values = []
    if _is_header(" ".join(fields)):
        return int(fields[1])
    if not values:
        raise ValueError(
            f"embeddings file '{path}': the first line is not 'word v1 v2 ...' (GloVe) or "
            "'count dimension' (word2vec/fastText text format); binary vector files are not read."
        )
    return len(values)


def word_vectors(path, vocabulary, seed=0):
    """An embedding matrix for `vocabulary` from a word-vector text file, streamed line by line.

    Only the vocabulary's rows are kept, so a multi-gigabyte file costs the memory of the matrix. Words
    the file lacks (and [UNK]) start from random vectors of the file's own scale, the padding row at zero.

    Args:
        path (str): GloVe `.txt` or word2vec / fastText `.vec` text file, optionally gzipped.
        vocabulary (list[str]): the adapted vocabulary, padding ("") and [UNK] first.
        seed (int): seeds the vectors of words the file lacks.

    Returns:
        tuple[np.ndarray, float]: float32 matrix (len(vocabulary), dim) and the share of words found.
    """
    size = word_vector_size(path)
    index = {word: position for position, word in enumerate(vocabulary) if position > 1}
    matrix = np.zeros((len(vocabulary), size), dtype="float32")
    found = np.zeros(len(vocabulary), dtype=bool)
    with _open_vectors(path) as lines:
        for line in lines:
            word, _, rest = line.rstrip().partition(" ")
            position = index.get(word)
            if position is None or found[position]:
                continue
            values = np.array(rest.split(), dtype="float32")
            if values.shape == (size,):
                matrix[position], found[position] = values, True
    scale = matrix[found].std() if found.any() else 0.1
    missing = ~found
    missing[0] = False
    matrix[missing] = np.random.default_rng(seed).normal(0, scale, (int(missing.sum()), size))
    return matrix, float(found[2:].mean()) if len(vocabulary) > 2 else 0.0


def extend_vocabulary(vocabulary, path, count, punctuation):
    """Appends a word-vector file's most frequent words that `vocabulary` lacks, up to `count` of them.

    Words a model never met in training then still read as their pretrained vectors, not as [UNK].
    Vector files list words most frequent first; words that standardising would change (capitals,
    punctuation marks the tokeniser strips or splits off) could never be looked up and are skipped.

    Args:
        vocabulary (list[str]): the adapted vocabulary, padding ("") and [UNK] first.
        path (str): GloVe `.txt` or word2vec / fastText `.vec` text file, optionally gzipped.
        count (int): at most this many words are added (0 adds none).
        punctuation (str): the standardisation of the vocabulary ("strip" or "split", see `standardize_text`).

    Returns:
        list[str]: the vocabulary followed by the added words.
    """
    import itertools

    known, added = set(vocabulary), []
    with _open_vectors(path) as lines:
        first = next(lines, "")
        if not _is_header(first):
            lines = itertools.chain([first], lines)
        while len(added) < count:
            batch = [line.partition(" ")[0] for line in itertools.islice(lines, 4 * count)]
            if not batch:
                break
            standardized = strings(standardize_text(batch, punctuation).numpy())
            for word, form in zip(batch, standardized):
                if word == form and word and " " not in word and word not in known and len(added) < count:
                    known.add(word)
                    added.append(word)
    return vocabulary + added


def _is_header(line):
    """Whether a vector file's first line is word2vec / fastText's `count dimension` header."""
    fields = line.split()
    return len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit()


def _open_vectors(path):
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="replace")
