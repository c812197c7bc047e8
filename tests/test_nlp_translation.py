"""nlp_translation: generated grammar, TSV pairs and TFDS mock data, bad input, decoding, sacreBLEU
metrics, end-to-end training with MLflow logging and raw-sentence translation from the registry."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines import cli, runner
from shared import evaluation, explain, tracking
from shared.data import tfds as tfds_source
from shared.data.text import tokenize_text
from tasks import nlp_translation
from tests.conftest import resolve

TASK = "nlp_translation"


@pytest.mark.parametrize(
    "number, feminine, expected",
    [
        (1, True, "una"),
        (21, False, "veintiún"),
        (31, True, "treinta y una"),
        (100, False, "cien"),
        (101, False, "ciento un"),
        (200, True, "doscientas"),
        (511, False, "quinientos once"),
        (999, True, "novecientas noventa y nueve"),
        (16, False, "dieciséis"),
    ],
)
def test_spanish_numbers_agree_with_the_noun(number, feminine, expected):
    assert nlp_translation.spanish_number(number, feminine) == expected


def test_generated_pairs_reorder_adjectives_and_punctuate():
    sources, targets = nlp_translation.generated_pairs(300, seed=0)
    assert all(source.endswith(".") and target.endswith(".") for source, target in zip(sources, targets))
    assert any(" red " in source and "roj" in target for source, target in zip(sources, targets))
    task, resolved = resolve(TASK, "embedded_examples=300")
    splits = task.load_data(resolved)
    assert splits.synthetic and splits.info.target_vocabulary[:4] == ["", "[UNK]", "[start]", "[end]"]
    json.dumps(splits.info.to_json())


def test_tsv_pairs_with_extra_columns_and_reverse_direction(tmp_path):
    lines = [f"Sentence {i}.\tFrase {i}.\tCC-BY attribution #{i}" for i in range(40)]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    task, resolved = resolve(TASK, f"data={tmp_path / 'pairs.tsv'}", "direction=reverse")
    splits = task.load_data(resolved)
    assert splits.train.features.dtype == np.int64  # byte offsets of the lines, decoded in tf.data
    sources, targets = splits.train.sample(len(splits.train))
    assert all(source.startswith(b"Frase") for source in sources)
    assert all(target.startswith(b"Sentence") for target in targets)
    assert sum(len(part) for part in (splits.train, splits.validation, splits.test)) == 40


def test_tsv_line_with_one_field_names_the_line(tmp_path):
    (tmp_path / "broken.tsv").write_text("Go.\tVe.\nHello.\tHola.\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.tsv' line 3 has one field"):
        task, resolved = resolve(TASK, f"data={tmp_path / 'broken.tsv'}")
        task.load_data(resolved)


def test_non_utf8_pairs_name_the_line(tmp_path):
    (tmp_path / "latin.tsv").write_bytes("Go.\tVe.\nCoffee.\tCaf\xe9.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.tsv' line 2 is not valid UTF-8"):
        task, resolved = resolve(TASK, f"data={tmp_path / 'latin.tsv'}")
        task.load_data(resolved)


def test_empty_sentences_are_dropped_with_a_warning(tmp_path):
    lines = [f"Sentence {i}.\tFrase {i}." for i in range(30)] + ["Lonely.\t ", " \tSola."]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="dropped 2 pair"):
        task, resolved = resolve(TASK, f"data={tmp_path / 'pairs.tsv'}")
        task.load_data(resolved)


def test_tfds_ted_hrlr_under_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=30):
        task, resolved = resolve(TASK, "data=tfds:ted_hrlr_translate/pt_to_en")
        splits = task.load_data(resolved)
    assert splits.info.languages == ["pt", "en"]
    assert len(splits.test.targets) > 0 and all(isinstance(text, str) for text in splits.train.features)


def test_bad_config_values_are_one_line_errors():
    with pytest.raises(ValueError, match="decoding='sampling' is not allowed; it must be one of greedy, beam"):
        resolve(TASK, "decoding=sampling")
    with pytest.raises(ValueError, match="direction='sideways' is not allowed"):
        resolve(TASK, "direction=sideways")
    with pytest.raises(ValueError, match="embedding_dim \\(30\\) must be divisible by heads \\(4\\)"):
        resolve(TASK, "embedding_dim=30")


def test_detokenize_restores_spanish_punctuation():
    assert nlp_translation.detokenize(["¿", "dónde", "está", "?"]) == "¿Dónde está?"
    assert nlp_translation.detokenize(["tengo", "un", "libro", ",", "dos", "."]) == "Tengo un libro, dos."


def test_sacrebleu_scores_raw_and_normalised():
    scores = evaluation.translation(
        ["Hola, mundo entero y feliz.", "Tengo dos gatos muy negros."],
        ["hola mundo entero y feliz", "Tengo dos gatos muy negros."],
    )
    assert scores["bleu_normalized"] == pytest.approx(100.0)
    assert scores["bleu"] < 100.0 and 0 < scores["chrf"] <= 100


def test_beam_search_and_predictor_on_an_untrained_model():
    task, resolved = resolve(TASK, "embedded_examples=200", "sequence_length=8", "embedding_dim=16", "dense_dim=32")
    splits = task.load_data(resolved)
    model = task.build_model(resolved, splits.info)
    source_ids, _ = tokenize_text(["I have one red book."], splits.info.source_vocabulary, 8, "split")
    greedy = nlp_translation.beam_search(model, source_ids, 1, 0.6)
    beams = nlp_translation.beam_search(model, np.repeat(source_ids, 2, axis=0), 3, 0.6)
    assert len(greedy) == 1 and len(beams) == 2 and beams[0] == beams[1]
    assert all(len(tokens) <= 8 and nlp_translation.END_ID not in tokens for tokens in greedy + beams)
    with pytest.raises(ValueError, match="the input is ''"):
        task.predict_raw(model, splits.info, [""])
    with pytest.warns(UserWarning, match="longer than the model's 8 tokens were truncated"):
        answers = task.predict_raw(model, splits.info, ["I have", "We need " + "one " * 12 + "houses."])
    assert isinstance(answers[0]["translation"], str) and answers[1]["truncated"] is True
    # The explanation teacher-forces the greedy translation: each target is the argmax at its position, and the
    # source tokens' weights add up to its log-probability minus that from zero source embeddings.
    found, inputs = task.explanation(model, splits.info, ["I have one red book."], None)
    targets = found.outputs[0][found.outputs[0] >= 0]
    probabilities = np.asarray(model(inputs, training=False))[0, : len(targets)]
    assert targets.tolist() == probabilities.argmax(axis=-1).tolist() == (greedy[0] + [nlp_translation.END_ID])[:8]
    assert found.tokens[0].tolist() == ["i", "have", "one", "red", "[UNK]", ".", "", ""]  # "book": none in 200 pairs
    assert (found.summaries[0, 6:] == 0).all() and np.abs(found.summaries[0, :6]).min() > 0
    layers = explain.token_embeddings(model, "encoder_inputs")
    with explain._embedded(layers, [np.zeros((1, 8, 16), "float32")]):
        zeroed = np.asarray(model(inputs, training=False))[0, : len(targets)]
    rows = np.arange(len(targets))
    change = float(np.log(probabilities[rows, targets]).sum() - np.log(zeroed[rows, targets]).sum())
    assert float(found.summaries.sum()) == pytest.approx(change, abs=0.02 + 0.02 * abs(change))


def test_run_logs_bleu_and_translates_and_explains_raw_sentences(tracking_store, tmp_path, capsys):
    result = runner.run(
        *resolve(
            TASK,
            "epochs=1",
            "embedded_examples=500",
            "max_examples=300",
            "sequence_length=12",
            "embedding_dim=32",
            "dense_dim=64",
            "decoding=beam",
            "beam_width=2",
        )
    )
    assert {"bleu", "chrf", "bleu_normalized", "chrf_normalized"} <= set(result.metrics)
    client = mlflow.MlflowClient()
    assert "sample_translations.md" in {item.path for item in client.list_artifacts(result.run_id)}
    assert [item.path for item in client.list_artifacts(result.run_id, "plots/explain")] == ["plots/explain/tokens.png"]
    assert client.get_metric_history(result.run_id, "val_token_accuracy")
    answers = tracking.load("models:/nlp_translation/latest").predict(pd.DataFrame({"text": ["I have two red cars."]}))
    assert isinstance(answers[0]["translation"], str)
    json.dumps(answers)
    capsys.readouterr()
    assert cli.main(["predict", TASK, "--model", f"models:/{TASK}/latest", "--explain", "I have two red cars."]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["translation"] == answers[0]["translation"]  # explaining changes no answer
    field = explained["explanation"]
    assert field["method"] == "integrated_gradients" and field["output"] == "translation"
    assert [token for token, _ in field["tokens"]] == ["i", "have", "two", "red", "cars", "."]
    assert list(field["words"]) == sorted(field["words"], key=lambda word: -abs(field["words"][word]))[:5]


@pytest.mark.slow
def test_transformer_learns_the_number_grammar(tracking_store):
    result = runner.run(*resolve(TASK, "epochs=15", "max_examples=0", quick=False))
    assert result.metrics["bleu"] > 40


def test_tsv_of_pairs_streams_and_decodes_the_pairs_of_the_file(tmp_path):
    from shared.data import examples
    from shared.data.splits import carve

    lines = [f"I have {i} books.\tTengo {i} libros.\tCC-BY #{i}" if i % 400 else f"Empty {i}.\t " for i in range(2500)]
    lines[7] = 'A "quoted" one, and a\u2028line separator.\tUna "citada".'  # splitlines() breaks at U+2028
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")  # a BOM and Windows line ends
    task, resolved = resolve(TASK, f"data={path}", "max_examples=0")
    for load in (
        lambda: task.load_data(resolved),
        lambda: nlp_translation.read_pairs(str(path), "forward"),
    ):  # the scan counts lines as read_pairs
        with pytest.raises(ValueError, match=r"pairs.tsv' line 8 has one field \('A \"quoted\" one, and a'\)"):
            load()
    lines[7] = 'A "quoted" one.\tUna "citada".'
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    with pytest.warns(UserWarning, match="dropped 7 pair"):
        splits = task.load_data(resolved)
    assert splits.train.features.dtype == np.int64 and splits.train.origin == "text file"
    with pytest.warns(UserWarning, match="dropped 7 pair"):
        held = carve(
            nlp_translation._drop_empty(*nlp_translation.read_pairs(str(path), "forward"), "file"),
            resolved,
            stratify=False,
        )
    for streamed, in_memory in zip((splits.train, splits.validation, splits.test), held):
        sources, targets = streamed.sample(len(streamed))
        assert [text.decode() for text in sources] == list(in_memory.features)  # same seed, same split
        assert [text.decode() for text in targets] == list(in_memory.targets)
    every = examples.join([splits.train, splits.validation, splits.test])
    assert ('A "quoted" one.', 'Una "citada".') in {(s.decode(), t.decode()) for s, t in zip(*every.sample(3000))}
    with pytest.warns(UserWarning, match="dropped 7 pair"):
        task, resolved = resolve(TASK, f"data={path}", "direction=reverse")
        reference = task.load_data(resolved)
    first_source, first_target = reference.train.sample(1)
    assert first_source[0].startswith(b"Tengo") and first_target[0].startswith(b"I have")
