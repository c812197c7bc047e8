"""nlp_sentiment: data paths (embedded, CSV/TSV, split files, class folders, TFDS mock), bad input,
end-to-end training with MLflow logging, and raw-sentence prediction from the registry."""

import json

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest

import tasks
from pipelines import cli, runner
from shared import tracking
from shared.data import examples, tfds as tfds_source
from tests.conftest import resolve, shared_data

TASK = "nlp_sentiment"


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


@pytest.fixture
def reviews_csv(tmp_path):
    rows = ["review,stars"]
    rng = np.random.default_rng(0)
    words = {"bad": ["awful", "dull"], "ok": ["fine", "average"], "good": ["great", "superb"]}
    for index in range(90):
        label = ["bad", "ok", "good"][index % 3]
        rows.append(f'"the film was {rng.choice(words[label])}, i think",{label}')
    return _write(tmp_path / "reviews.csv", "\n".join(rows) + "\n")


def test_embedded_reviews_need_word_order():
    task, resolved = resolve(TASK, "embedded_examples=400")
    splits = task.load_data(resolved)
    texts = list(splits.train.features) + list(splits.test.features)
    assert splits.synthetic and splits.info.class_names == ["negative", "positive"]
    assert any(" not " in text or "n't" in text for text in texts) and any(" but " in text for text in texts)
    assert {"", "[UNK]"} == set(splits.info.vocabulary[:2])
    json.dumps(splits.info.to_json())  # saved with the model: must be JSON


def test_csv_with_named_columns_is_multiclass(reviews_csv):
    task, resolved = resolve(TASK, f"data={reviews_csv}", "text_column=review", "label_column=stars")
    splits = task.load_data(resolved)
    assert splits.info.class_names == ["bad", "good", "ok"]
    assert sum(len(part) for part in (splits.train, splits.validation, splits.test)) == 90
    _, defaults = resolve(TASK)
    model = task.build_model(defaults, splits.info)
    assert model.output_shape == (None, 3)


def test_missing_column_names_the_columns_found(reviews_csv):
    with pytest.raises(ValueError, match=r"no text column 'body'.*\['review', 'stars'\]"):
        task, resolved = resolve(TASK, f"data={reviews_csv}", "text_column=body")
        task.load_data(resolved)


def test_non_utf8_file_names_the_line(tmp_path):
    path = _write(tmp_path / "latin.csv", "text,label\ngood film,1\nmauvais caf\xe9,0\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"latin.csv' line 3 is not valid UTF-8"):
        task, resolved = resolve(TASK, f"data={path}")
        task.load_data(resolved)


def test_empty_texts_are_dropped_with_a_warning(tmp_path):
    lines = ["text,label"] + [f"sentence number {i},{i % 2}" for i in range(40)] + ['"   ",1', ",0"]
    path = _write(tmp_path / "with_empty.csv", "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="dropped 2 row"):
        task, resolved = resolve(TASK, f"data={path}")
        splits = task.load_data(resolved)
    assert sum(len(part) for part in (splits.train, splits.validation, splits.test)) == 40


def test_split_files_folder_accepts_column_aliases_and_rejects_unseen_labels(tmp_path):
    train = "label\tsentence\n" + "".join(f"{i % 2}\tphrase {i} is ok\n" for i in range(40))
    _write(tmp_path / "train.tsv", train)
    _write(tmp_path / "dev.tsv", "label\tcontent\n0\tsome dev sentence\n1\tanother one\n")
    _write(tmp_path / "test.tsv", "label\tcontent\n1\ta test sentence\n")
    task, resolved = resolve(TASK, f"data={tmp_path}")
    splits = task.load_data(resolved)
    assert len(splits.validation.targets) == 2 and len(splits.test.targets) == 1
    assert len(splits.train.targets) == 40
    _write(tmp_path / "test.tsv", "label\tcontent\n7\ta test sentence\n")
    with pytest.raises(ValueError, match=r"test labels \['7'\] are not in the training labels \['0', '1'\]"):
        task, resolved = resolve(TASK, f"data={tmp_path}")
        task.load_data(resolved)


def test_class_folders_of_txt_files(tmp_path):
    for label, word in (("neg", "awful"), ("pos", "lovely")):
        (tmp_path / label).mkdir()
        for index in range(12):
            _write(tmp_path / label / f"{index}.txt", f"a {word} movie number {index}")
    task, resolved = resolve(TASK, f"data={tmp_path}")
    splits = task.load_data(resolved)
    assert splits.info.class_names == ["neg", "pos"]
    assert all(path.endswith(".txt") for path in splits.train.features)  # an index of files, read in tf.data
    texts, labels = splits.train.sample(len(splits.train))
    assert all((b"lovely" if label == 1 else b"awful") in text for text, label in zip(texts, labels))
    _write(tmp_path / "pos" / "bad.txt", b"caf\xe9")
    with pytest.raises(ValueError, match=r"bad.txt' is not valid UTF-8"):
        task, resolved = resolve(TASK, f"data={tmp_path}")
        task.load_data(resolved)


@pytest.mark.parametrize("name", ["imdb_reviews", "glue/sst2"])
def test_tfds_under_mock_data(name, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=30):
        task, resolved = resolve(TASK, f"data=tfds:{name}")
        splits = task.load_data(resolved)
    assert len(splits.info.class_names) == 2
    assert all(isinstance(text, str) for text in splits.train.features)
    assert len(splits.test.targets) > 0


def test_cli_inputs_from_sentences_text_file_and_csv_column(tmp_path, reviews_csv):
    lines = _write(tmp_path / "lines.txt", "first line\n\nsecond line\n")
    pairs = tasks.get(TASK).cli_inputs(["a sentence", str(lines), f"{reviews_csv}:review"])
    texts = [text for _, text in pairs]
    assert texts[:3] == ["a sentence", "first line", "second line"] and len(texts) == 93


def test_predictor_rejects_empty_and_truncates_long_sentences():
    task, resolved = resolve(TASK, "embedded_examples=200", "sequence_length=8")
    splits = task.load_data(resolved)
    model = task.build_model(resolved, splits.info)
    with pytest.raises(ValueError, match="input 2 is ''"):
        task.predict_raw(model, splits.info, ["fine", ""])
    with pytest.warns(UserWarning, match="longer than the model's 8 tokens were truncated"):
        answers = task.predict_raw(model, splits.info, ["the plot was good", " ".join(["word"] * 20)])
    assert "truncated" not in answers[0] and answers[1]["truncated"] is True
    assert abs(sum(entry["probability"] for entry in answers[0]["top_k"]) - 1) < 1e-4


def test_token_dropout_only_touches_real_tokens():
    from shared import augmentation

    ids = np.array([[5, 6, 7, 0, 0]] * 200, dtype="int64")
    dropped, _ = augmentation.token_dropout(0.5, seed=1)(ids, None)
    dropped = np.asarray(dropped)
    assert (dropped[:, 3:] == 0).all()
    assert 0.3 < (dropped[:, :3] == 1).mean() < 0.7


def test_run_logs_everything_and_predicts_raw_sentences(tracking_store, tmp_path, capsys):
    result = runner.run(
        *resolve(
            TASK,
            "epochs=1",
            "embedded_examples=600",
            "max_examples=400",
            "architecture=transformer",
            "embedding_dim=32",
        )
    )
    for metric in ("accuracy", "f1", "macro_f1", "roc_auc"):
        assert 0 <= result.metrics[metric] <= 1
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"confident_mistakes.md", "classification_report.txt"} <= artifacts
    plots = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert "plots/confusion_matrix.png" in plots
    explained = mlflow.MlflowClient().list_artifacts(result.run_id, "plots/explain")
    assert [item.path for item in explained] == ["plots/explain/tokens.png"]
    model = tracking.load("models:/nlp_sentiment/latest")
    answers = model.predict(pd.DataFrame({"text": ["The acting was not very good.", "The music was truly wonderful!"]}))
    assert [answer["label"] in ("negative", "positive") for answer in answers] == [True, True]
    json.dumps(answers)
    capsys.readouterr()
    texts = ["The acting was not very good.", "The music was truly wonderful!"]
    assert cli.main(["predict", TASK, "--model", "models:/nlp_sentiment/latest", "--explain", *texts]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == [answer["label"] for answer in answers]  # explaining changes no answer
    for line, words in zip(lines, (["the", "acting", "was", "not", "very", "good"], ["the", "music", "was", "truly"])):
        field = line["explanation"]
        assert field["method"] == "integrated_gradients" and field["output"] == "positive"  # two classes: the positive
        assert [token for token, _ in field["tokens"]][: len(words)] == words  # standardised, [UNK] for unseen words
        weights = list(field["words"].values())
        assert len(weights) == 5 and weights == sorted(weights, key=abs, reverse=True)
    sentences = _write(
        tmp_path / "sentences.csv",
        'id,review\n1,"The acting was not very good."\n2,\n3,The music was truly wonderful!\n',
    )
    output = tmp_path / "labels.csv"
    assert (
        cli.main(
            [
                "predict",
                "nlp_sentiment",
                "--model",
                "models:/nlp_sentiment/latest",
                "--output",
                str(output),
                f"{sentences}:review",
            ]
        )
        == 1
    )
    assert "3 rows, 1 errors" in capsys.readouterr().err
    rows = pd.read_csv(output, keep_default_na=False, dtype=str).to_dict("records")
    assert [row["input"] for row in rows] == ["The acting was not very good.", "", "The music was truly wonderful!"]
    assert [row["label"] for row in rows] == [answers[0]["label"], "", answers[1]["label"]]
    assert "is ''" in rows[1]["error"] and rows[0]["error"] == rows[2]["error"] == ""


@pytest.mark.slow
def test_bilstm_learns_negation_and_contrast(tracking_store):
    result = runner.run(*resolve(TASK, "epochs=8", "max_examples=0", quick=False))
    assert result.metrics["accuracy"] > 0.8


@pytest.mark.slow
def test_sst2_dev_file_loads_with_its_content_column():
    task, resolved = resolve(TASK, f"data={shared_data('sst2')}")
    splits = task.load_data(resolved)
    assert len(splits.validation.targets) == 872 and len(splits.test.targets) == 1821


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """A randomly initialised two-layer BERT and its WordPiece vocabulary, saved as a local keras-hub preset."""
    import keras_hub

    folder = tmp_path_factory.mktemp("tiny_bert")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "the",
        "plot",
        "acting",
        "music",
        "was",
        "not",
        "very",
        "good",
        "bad",
        "great",
        "dull",
        "but",
        "although",
        "i",
        "did",
        "think",
        "##s",
        ".",
    ]
    keras_hub.models.BertTokenizer(vocabulary=words, lowercase=True).save_to_preset(str(folder))
    keras_hub.models.BertBackbone(
        vocabulary_size=len(words),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    ).save_to_preset(str(folder))
    return folder


@pytest.mark.slow  # fine-tunes a keras-hub encoder (20 s); the offline refusal below stays in the default suite
def test_pretrained_backbone_from_a_local_preset_fine_tunes_and_predicts_raw_strings(tracking_store, tiny_preset):
    result = runner.run(
        *resolve(
            TASK,
            f"backbone={tiny_preset}",
            "epochs=1",
            "embedded_examples=300",
            "max_examples=200",
            "sequence_length=16",
            "learning_rate=5e-5",
        )
    )
    assert 0 <= result.metrics["accuracy"] <= 1
    model = tracking.load("models:/nlp_sentiment/latest")
    with pytest.warns(UserWarning, match="longer than the model's 16 tokens were truncated"):
        answers = model.predict(pd.DataFrame({"text": ["The acting was not very good.", " ".join(["good"] * 30)]}))
    assert [answer["label"] in ("negative", "positive") for answer in answers] == [True, True]
    assert "truncated" not in answers[0] and answers[1]["truncated"] is True
    json.dumps(answers)
    # the backbone's own token embedding is reached inside it: sub-word tokens, its markers included, get weights
    explained = mlflow.MlflowClient().list_artifacts(result.run_id, "plots/explain")
    assert [item.path for item in explained] == ["plots/explain/tokens.png"]
    served = model.unwrap_python_model()
    field = served.predict(None, pd.DataFrame({"text": ["The acting was not very good."]}), {"explain": "unused"})[0]
    tokens = [token for token, _ in field["explanation"]["tokens"]]
    assert tokens == ["[CLS]", "the", "acting", "was", "not", "very", "good", ".", "[SEP]"]


def test_backbone_without_network_stops_at_once_naming_offline_alternatives(monkeypatch, tmp_path):
    from shared import network
    from tasks import nlp_sentiment

    monkeypatch.setattr(network, "reachable", lambda host, port=443, timeout=3.0: False)
    monkeypatch.setattr(nlp_sentiment, "_preset_cached", lambda handle: False)
    with pytest.raises(ValueError, match=r"cannot reach www.kaggle.com.*local keras-hub preset folder.*backbone=none"):
        task, resolved = resolve(TASK, "backbone=bert_tiny_en_uncased")
        task.load_data(resolved)
    with pytest.raises(ValueError, match="neither a folder nor a keras-hub text preset"):
        task, resolved = resolve(TASK, "backbone=no_such_model")
        task.load_data(resolved)
    with pytest.raises(ValueError, match="holds no keras-hub preset"):
        task, resolved = resolve(TASK, f"backbone={tmp_path}")
        task.load_data(resolved)


@pytest.mark.parametrize("architecture", ["cnn", "bilstm"])
def test_features_ignore_padding(architecture):
    task, resolved = resolve(TASK, f"architecture={architecture}", "embedded_examples=200")
    splits = task.load_data(resolved)
    model = task.build_model(resolved, splits.info)
    ids = np.array([[5, 6, 7, 8, 0, 0]], dtype="int64")
    short, padded = model.predict(ids[:, :4], verbose=0), model.predict(ids, verbose=0)
    np.testing.assert_allclose(short, padded, atol=1e-6)


def test_length_buckets_pad_each_batch_to_its_own_length_and_keep_every_example():
    task, resolved = resolve(TASK, "embedded_examples=400", "batch_size=16")
    splits = task.load_data(resolved)
    dataset = examples.make_dataset(
        splits.train,
        16,
        shuffle=True,
        seed=0,
        cache="memory",
        batch_map=task.train_map(resolved, splits.info),
        buckets=task.length_buckets(resolved, splits.info),
    )
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == int(dataset.cardinality())  # Keras knows the epoch length
    assert sum(len(labels) for _, labels in batches) == len(splits.train)
    widths = {token_ids.shape[1] for token_ids, _ in batches}
    assert len(widths) > 1 and max(widths) < resolved.sequence_length


def _in_memory_splits(path, resolved):
    """The splits the loader carved when it read the whole file with pandas (the path before streaming)."""
    from shared.data.sources import read_text_columns
    from shared.data.splits import carve
    from tasks import nlp_sentiment

    table = read_text_columns(path, {"text": resolved.text_column, "label": resolved.label_column})
    encoded, names = nlp_sentiment._encode_labels(
        {"train": nlp_sentiment._clean(table["text"], table["label"], path)}, path
    )
    return carve(encoded["train"], resolved), names


@pytest.mark.parametrize("extension", ["csv", "tsv"])
def test_thousands_of_rows_stream_as_offsets_and_carve_the_same_split(tmp_path, extension):
    rng = np.random.default_rng(1)
    words = {"neg": ["awful", "dull", "clumsy"], "pos": ["great", "superb", "moving"]}
    separator = "," if extension == "csv" else "\t"
    rows = [f"text{separator}label"]
    for index in range(3000):
        label = ["neg", "pos"][int(rng.integers(2))]
        text = f"review {index}: the film was {rng.choice(words[label])}"
        text = f'"{text}, i think"' if extension == "csv" else f'{text}, i "think"'  # TSV quotes are literal
        rows.append(f"{text}{separator}{label}" if index % 500 else f"  {separator}{label}")  # some empty texts
    path = _write(tmp_path / f"reviews.{extension}", "\n".join(rows) + "\n")
    task, resolved = resolve(TASK, f"data={path}")
    with pytest.warns(UserWarning, match="dropped 6 row"):
        splits = task.load_data(resolved)
    assert splits.train.features.dtype == np.int64 and splits.train.origin == "text file"
    with pytest.warns(UserWarning, match="dropped 6 row"):
        (train, validation, test), names = _in_memory_splits(str(path), resolved)
    assert splits.info.class_names == names == ["neg", "pos"]
    for streamed, held in ((splits.train, train), (splits.validation, validation), (splits.test, test)):
        np.testing.assert_array_equal(streamed.targets, held.targets)  # same seed, same split
    texts, labels = splits.test.sample(len(splits.test))
    assert [text.decode() for text in texts] == list(test.features)
    np.testing.assert_array_equal(labels, test.targets)
    assert all(any(word.encode() in text for word in words[names[label]]) for text, label in zip(texts, labels))


def test_streamed_csv_trains_and_evaluates(tmp_path, tracking_store):
    rows = ["text,label"] + [
        f'"the film was {"great" if index % 2 else "awful"}, number {index}",{index % 2}' for index in range(2000)
    ]
    path = _write(tmp_path / "reviews.csv", "\n".join(rows) + "\n")
    result = runner.run(
        *resolve(
            TASK, f"data={path}", "epochs=1", "max_examples=600", "architecture=cnn", "embedding_dim=16", "filters=8"
        ),
    )
    assert 0 <= result.metrics["accuracy"] <= 1
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert "confident_mistakes.md" in artifacts
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["examples.testing"] == "300"
    from pipelines import evaluate

    folder = tmp_path / "files"  # train / dev / test files: three indexes, each decoded from its own file
    folder.mkdir()
    for name, start in (("train", 0), ("dev", 100), ("test", 150)):
        _write(folder / f"{name}.csv", "\n".join(rows[:1] + rows[1 + start : 51 + start]) + "\n")
    scored = evaluate.evaluate(tasks.get(TASK), result.model_uri, str(folder))
    assert scored["examples"] == 150 and 0 <= scored["metrics"]["accuracy"] <= 1


def test_multi_line_quoted_fields_decode_whole(tmp_path):
    quoted = ['"first line\nsecond line, with a comma"', '"she said ""wow"" twice"', '"ends with a break\r\n"']
    expected = ["first line\nsecond line, with a comma", 'she said "wow" twice', "ends with a break\r\n"]
    rows = ["text,label"] + [
        f"{quoted[index % 3] if index < 3 else f'plain text {index}'},{index % 2}" for index in range(60)
    ]
    path = _write(tmp_path / "multi.csv", "\ufeff" + "\r\n".join(rows) + "\r\n")  # a BOM and Windows line ends
    task, resolved = resolve(TASK, f"data={path}", "validation_fraction=0.1", "test_fraction=0.1")
    splits = task.load_data(resolved)
    every = examples.join([splits.train, splits.validation, splits.test])
    texts = {text.decode() for text in every.sample(len(every))[0]}
    assert set(expected) <= texts and len(texts) == 60


def test_bad_text_files_name_the_file_and_line_before_training(tmp_path):
    rows = ["text,label"] + [f"sentence {index},{index % 2}" for index in range(3000)]
    latin = list(rows)
    latin[2500] = "caf\xe9 cr\xe8me,1"
    path = _write(tmp_path / "latin.csv", "\n".join(latin) + "\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"latin.csv' line 2501 is not valid UTF-8 \(byte 0xe9\)"):
        task, resolved = resolve(TASK, f"data={path}")
        task.load_data(resolved)
    extra = list(rows)
    extra[40] = "a sentence, with a comma,1"
    path = _write(tmp_path / "extra.csv", "\n".join(extra) + "\n")
    with pytest.raises(ValueError, match=r"extra.csv' line 41 has 3 fields, the header 2; quote texts"):
        task, resolved = resolve(TASK, f"data={path}")
        task.load_data(resolved)
    (tmp_path / "split").mkdir()
    _write(tmp_path / "split" / "train.csv", "\n".join(rows) + "\n")
    _write(tmp_path / "split" / "dev.csv", "text,label\n ,1\n")
    with pytest.raises(ValueError, match=r"dev.csv' has no row with a text, so the validation split would be empty"):
        task, resolved = resolve(TASK, f"data={tmp_path / 'split'}")
        task.load_data(resolved)


def test_word_vectors_start_the_embedding(tmp_path):
    import gzip

    from shared.data.text import word_vector_size, word_vectors

    lines = "the 0.5 0.5 0.5\ngood 1 2 3\nbad -1 -2 -3\n"
    glove = _write(tmp_path / "vectors.txt", lines)
    fasttext = tmp_path / "vectors.vec.gz"
    with gzip.open(fasttext, "wt") as out:
        out.write("3 3\n" + lines)
    vocabulary = ["", "[UNK]", "good", "plot", "bad"]
    for path in (glove, fasttext):
        assert word_vector_size(str(path)) == 3
        matrix, share = word_vectors(str(path), vocabulary)
        assert matrix.shape == (5, 3) and share == pytest.approx(2 / 3)
        np.testing.assert_array_equal(matrix[[0, 2, 4]], [[0, 0, 0], [1, 2, 3], [-1, -2, -3]])
        assert np.abs(matrix[3]).sum() > 0  # an unknown word starts random, not at the padding's zero

    task, resolved = resolve(
        TASK, "architecture=cnn", f"embeddings={glove}", "embedding_dim=3", "embedded_examples=300"
    )
    splits = task.load_data(resolved)
    model = task.build_model(resolved, splits.info)
    embedding = next(layer for layer in model.layers if layer.name.startswith("embedding"))
    np.testing.assert_allclose(np.asarray(embedding.embeddings)[splits.info.vocabulary.index("good")], [1, 2, 3])


def test_vector_words_unseen_in_training_join_the_vocabulary_frozen(tmp_path):
    from shared.data.text import extend_vocabulary

    vectors = _write(tmp_path / "vectors.vec", "5 3\ngood 1 2 3\nThe 9 9 9\n, 8 8 8\nmasterpiece 4 5 6\nmess 7 7 7\n")
    vocabulary = ["", "[UNK]", "good", "plot"]
    # capitals and stripped punctuation could never be looked up; the header is not a word
    assert extend_vocabulary(vocabulary, str(vectors), 5, "strip") == vocabulary + ["masterpiece", "mess"]
    assert extend_vocabulary(vocabulary, str(vectors), 1, "strip") == vocabulary + ["masterpiece"]

    task, resolved = resolve(
        TASK, "architecture=bilstm", f"embeddings={vectors}", "embedding_dim=3", "embedded_examples=300"
    )
    splits = task.load_data(resolved)
    vocabulary = splits.info.vocabulary
    assert vocabulary[-2:] == ["masterpiece", "mess"] and splits.info.added_words == 2
    model = task.build_model(resolved, splits.info)
    embedding = next(layer for layer in model.layers if type(layer).__name__ == "ExtendedEmbedding")
    assert [weight.name for weight in embedding.trainable_weights] == ["trained"]
    np.testing.assert_allclose(
        embedding(np.array([[vocabulary.index("masterpiece"), vocabulary.index("good")]])), [[[4, 5, 6], [1, 2, 3]]]
    )
    token_ids = task.prepare_inputs(splits.info, ["a masterpiece"])
    assert vocabulary.index("masterpiece") in token_ids[0]
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", custom_objects=task.custom_objects())
    np.testing.assert_allclose(loaded.predict(token_ids, verbose=0), model.predict(token_ids, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "assignments, message",
    [
        (["embeddings=/no/such.txt"], "does not exist"),
        (["embeddings={glove}"], "holds 3-d vectors but embedding_dim is 128; set --set embedding_dim=3"),
        (["embeddings={glove}", "embedding_dim=3", "architecture=transformer", "heads=1"], "architecture cnn, bilstm"),
        (["embeddings={binary}", "embedding_dim=3"], "the first line is not"),
    ],
)
def test_bad_word_vectors_stop_before_training(tmp_path, assignments, message):
    glove = _write(tmp_path / "vectors.txt", "good 1 2 3\n")
    binary = _write(tmp_path / "vectors.bin", b"\x00\x01 binary")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve(TASK, *[item.format(glove=glove, binary=binary) for item in assignments])


def test_ensemble_members_average_their_logits_train_and_predict_raw_sentences(tracking_store, tmp_path):
    rng = np.random.default_rng(0)
    words = [["awful", "dull", "boring"], ["great", "superb", "moving"]]
    rows = [
        f"the {rng.choice(['film', 'plot', 'cast'])} was {rng.choice(words[index % 2])},{index % 2}"
        for index in range(600)
    ]
    reviews = _write(tmp_path / "reviews.csv", "text,label\n" + "\n".join(rows) + "\n")
    result = runner.run(
        *resolve(TASK, f"data={reviews}", "architecture=cnn", "ensemble=3", "epochs=4", "filters=16"),
    )
    assert result.metrics["accuracy"] > 0.9  # one word in six decides: chance is 0.5
    model = tracking.load("models:/nlp_sentiment/latest")
    answers = model.predict(pd.DataFrame({"text": ["The film was awful.", "The cast was superb!"]}))
    assert [answer["label"] for answer in answers] == ["0", "1"]

    network = model.unwrap_python_model().model
    logits = [layer for layer in network.layers if layer.name.startswith("member_")]
    assert len(logits) == 3 and len({id(layer.kernel) for layer in logits}) == 3
    token_ids = np.array([[2, 3, 4, 0], [5, 6, 0, 0]], dtype="int64")
    members = keras.Model(network.inputs, [layer.output for layer in logits]).predict(token_ids, verbose=0)
    np.testing.assert_allclose(
        network.predict(token_ids, verbose=0),
        keras.ops.convert_to_numpy(keras.ops.softmax(np.mean(members, axis=0))),
        atol=1e-6,
    )


def test_ensemble_of_a_pretrained_backbone_stops_before_training():
    with pytest.raises(ValueError, match="ensemble=2 averages from-scratch models"):
        resolve(TASK, "backbone=bert_tiny_en_uncased", "ensemble=2")
