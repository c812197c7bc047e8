"""Data helpers every task uses, one concern per module.

    sources     the `--data` value, reading user files (IDX, npz, text, CSV/TSV/Parquet, JSON Lines), progress bars
    splits      seeded, stratified, grouped and time-ordered train / validation / test splits
    text        standardising text, vocabularies, tokenising as in training
    tabular     numeric / categorical columns and their training-fitted preprocessing
    examples    what a split is (an index of arrays or files) and its tf.data pipeline
    tfds        TFDS datasets, streamed

Splits are `examples.Examples` (an index in memory, decoded in tf.data) or `tfds.Stream`s.
"""
