"""Hostile and random requests against `mlflow models serve`, and the judging of its answers.

The engine of `benchmarks/serving_fuzz.py` (which trains quick models, fuzzes each one served and reports
the figures) and of the tests that serve models: request makers (`Case`, `request`, `b64`, `png`, `png_bomb`, `wav`,
`lying_wav`, `raw_input`), the hostile draw (`Cases`), the judge (`judge`), server processes
(`free_port`, `background`, `serve`) and one model's fuzz (`fuzz_one`). It lives in the package so that
the benchmark and the tests share it without either importing the other.

A served file model gets an input folder (`PIPELINES_INPUT_ROOT`) holding one good file and a symbolic
link out of it; requests are drawn from hostile kinds: random and truncated files as base64, a
20,000 x 20,000 PNG bomb, lying audio headers, numbers or nested lists where a path, sentence or row is
expected, NaN and infinities in rows, path escapes, a 1 MB sentence, 10,000-row requests, rows of mixed
good and bad inputs, and malformed bodies. Per request: an answer came (no dropped connection, no 5xx);
a multi-row request gets one answer per row, its good rows answered and its bad rows an error; a bad
single row gets a 4xx or an error row. Afterwards a good request must get the same answer as before.
Heavy libraries are imported inside the functions that need them.
"""

import base64
import contextlib
import dataclasses
import io
import json
import math
import os
import pathlib
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

ROOT = pathlib.Path(__file__).resolve().parents[1]  # where `python -m pipelines` finds these packages
TASKS = ("vision_classification", "nlp_sentiment", "fraud_detection", "speech")  # image, text, tabular, audio
GOOD, BAD, ANY = "good", "bad", "any"  # what a row must get: an answer, an error, either
BIG_ROWS = 10_000
# Kinds that take seconds each (10,000 rows, a 24-megapixel image, ten minutes of audio): tried in the
# first rounds only, so that the bounded number of requests spreads over every kind.
HEAVY, HEAVY_ROUNDS = {"big_request", "large_image", "ten_minute_file"}, 3


@dataclasses.dataclass
class Case:
    """One request.

    Attributes:
        kind (str): what it tries, for the report.
        body (bytes): the request body.
        rows (list[str] | None): per row, GOOD, BAD or ANY; None for a malformed request (any 4xx).
        content_type (str): its Content-Type.
        parser_500 (bool): MLflow's request parser answers 500 before any model code runs (a JSON body
            nested past Python's recursion limit: `json.loads` raises RecursionError outside MLflow's
            error handling); the server must stay up, but the status is MLflow's.
    """

    kind: str
    body: bytes
    rows: list
    content_type: str = "application/json"
    parser_500: bool = False


def request(column, cells):
    """A `dataframe_split` body with one row per cell (NaN and infinities as JavaScript literals, as
    Python's json writes and reads them)."""
    return json.dumps({"dataframe_split": {"columns": [column], "data": [[cell] for cell in cells]}}).encode()


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


def png(array):
    """PNG bytes of a uint8 (h, w) or (h, w, c) array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width=20_000, height=20_000):
    """A small PNG (a few hundred KB) that declares `width x height` black gray pixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    rows = bytes(width + 1) * 100  # each row: filter byte 0, then zeros
    body = b"".join(compressor.compress(rows) for _ in range(height // 100)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def wav(samples, rate, channels=1):
    """16-bit PCM WAV bytes of float samples in [-1, 1]."""
    import numpy as np
    import soundfile

    buffer = io.BytesIO()
    data = np.asarray(samples, "float32").reshape(-1, channels)
    soundfile.write(buffer, data, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def lying_wav(good, rate=None, channels=None, frames=None):
    """A WAV whose header claims another rate, channel count or length than its data holds."""
    data = bytearray(good)
    position = data.find(b"fmt ")
    if rate is not None:
        data[position + 12 : position + 16] = struct.pack("<I", rate)
    if channels is not None:
        data[position + 10 : position + 12] = struct.pack("<H", channels)
    if frames is not None:
        chunk = data.find(b"data")
        data[chunk + 4 : chunk + 8] = struct.pack("<I", min(frames * 2, 2**32 - 1))
    return bytes(data)


def raw_input(task, folder, model_uri=None):
    """A good raw input as an application sends it: a file's bytes as `{"b64": ...}` for images and audio
    (a PNG or WAV of the model's logged input example), otherwise the logged example itself (a sentence, a
    record, a unit's history, a user id).

    Args:
        task (tasks.base.Task): the task whose model answers.
        folder (pathlib.Path): where the model's files go.
        model_uri (str | None): the logged model (default: the task's latest version, `latest`).
    """
    import mlflow
    import numpy as np

    from shared import images, tracking

    tracking._connect()
    local = pathlib.Path(
        mlflow.artifacts.download_artifacts(model_uri or latest(task.name), dst_path=str(folder / "model"))
    )
    example = mlflow.models.Model.load(str(local)).load_input_example(str(local))[task.input_column].iloc[0]
    if task.input_column == "image":
        path = folder / "input.png"
        images.save_png(np.asarray(example, "float32"), path)
        return b64(path.read_bytes())
    if task.input_column == "audio":
        info = json.loads(next(local.rglob("info.json")).read_text())
        return b64(wav(example, info["features"]["sample_rate"]))
    return example


def files(task, good, folder):
    """The input folder of a served file model: one good file inside, one outside, a link out, a FIFO.

    Returns:
        pathlib.Path: the folder to serve with as `PIPELINES_INPUT_ROOT`.
    """
    suffix = ".png" if task.input_column == "image" else ".wav"
    root = folder / "incoming"
    root.mkdir(parents=True, exist_ok=True)
    data = base64.b64decode(good["b64"])
    (root / f"inside{suffix}").write_bytes(data)
    (folder / f"secret{suffix}").write_bytes(data)  # readable, so reading it would answer: an escape shows
    (root / f"link_out{suffix}").symlink_to(folder / f"secret{suffix}")
    os.mkfifo(root / f"fifo{suffix}")  # opening a FIFO would block the worker
    return root


def escapes(suffix):
    """Paths a served model must refuse (with its input folder holding `inside` and `link_out`)."""
    return [
        f"../secret{suffix}",
        f"link_out{suffix}",
        f"fifo{suffix}",
        f"missing{suffix}",
        "/etc/passwd",
        "/proc/self/environ",
        "/dev/zero",
        f"./../incoming/../secret{suffix}",
        "%2e%2e/secret" + suffix,
        "a\x00b",
        "/" * 5000 + "etc/passwd",
        "x" * 100_000,
        "~/.ssh/id_rsa",
        "file:///etc/passwd",
        ".",
        "",
    ]


def _odd(rng):
    """A value of the wrong JSON type for any column, and a short name for it."""
    choices = [
        ("number", rng.randint(-(10**6), 10**6)),
        ("float", rng.uniform(-1e9, 1e9)),
        ("nan", math.nan),
        ("infinity", math.inf),
        ("null", None),
        ("true", True),
        ("empty_list", []),
        ("deep_list", json.loads("[" * 60 + "1" + "]" * 60)),
        ("dict", {"x": [1, 2]}),
        ("b64_not_text", {"b64": 12}),
        ("b64_invalid", {"b64": "!!not base64!!"}),
        ("huge_int", 10**400),
        ("string_list", ["a", "b"]),
    ]
    return choices[rng.randrange(len(choices))]


class Cases:
    """Draws hostile and random requests for one served model.

    Args:
        task (tasks.base.Task): the served task.
        good: a good raw input (see `raw_input`).
        info (FittedState): the model's saved info (sample rate, preprocessing spec).
        seed (int): seeds the draw.
    """

    def __init__(self, task, good, info, seed):
        self.task, self.good, self.info = task, good, info
        self.column = task.input_column
        self.rng = random.Random(seed)
        self.kinds = getattr(self, f"_{self.column}_kinds")()
        self.bomb = png_bomb() if self.column == "image" else None

    def draw(self, count):
        """Yields `count` cases: the kinds in turn, so that every kind is tried about equally often
        (the heavy ones in the first `HEAVY_ROUNDS` rounds only)."""
        schedule, rounds = [], 0
        while len(schedule) < count:
            schedule += [name for name in sorted(self.kinds) if rounds < HEAVY_ROUNDS or name not in HEAVY]
            rounds += 1
        for name in schedule[:count]:
            yield self.kinds[name](name)

    # Requests every model gets.
    def _common(self):
        return {
            "odd_type": lambda kind: self._single(kind, *self._odd_cell()),
            "mixed_rows": self._mixed,
            "malformed_json": lambda kind: Case(kind, bytes(self.rng.randrange(256) for _ in range(200)), None),
            "not_utf8": lambda kind: Case(kind, b'{"dataframe_split": "\xff\xfe"}', None),
            "wrong_content_type": lambda kind: Case(kind, request(self.column, [self.good]), None, "text/plain"),
            "csv_body": lambda kind: Case(kind, b"a,b\n1,2\n", None, "text/csv"),
            "wrong_shape": lambda kind: Case(
                kind,
                self.rng.choice(
                    [
                        b"[]",
                        b"12",
                        b'{"inputs": {}}',
                        b"{}",
                        b'{"dataframe_split": {"columns": []}}',
                        b'{"dataframe_records": [{"other": 1}]}',
                    ]
                ),
                None,
            ),
            "deep_json": lambda kind: Case(
                kind, b'{"dataframe_split": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, parser_500=True
            ),
            "one_mb_text": lambda kind: self._single(kind, "word " * 200_000, GOOD if self.column == "text" else BAD),
        }

    def _odd_cell(self):
        name, value = _odd(self.rng)
        return value, BAD

    def _single(self, kind, cell, expected):
        return Case(kind, request(self.column, [cell]), [expected])

    def _mixed(self, kind):
        """2-20 rows: the good input and single-row kinds mixed, each row with its own expectation."""
        cells, rows = [], []
        for _ in range(self.rng.randint(2, 20)):
            cell, expected = self.rng.choice([(self.good, GOOD), self._odd_cell(), *self._row_choices()])
            cells.append(cell)
            rows.append(expected)
        return Case(kind, request(self.column, cells), rows)

    def _big(self, kind, cell, sprinkle):
        """A 10,000-row request of `cell()` rows with ten `sprinkle()` rows among them ((value, expectation) pairs)."""
        cells, rows = map(list, zip(*(cell() for _ in range(BIG_ROWS))))
        for position in self.rng.sample(range(BIG_ROWS), 10):
            cells[position], rows[position] = sprinkle()
        return Case(kind, request(self.column, cells), rows)

    def _row_choices(self):
        """(cell, expectation) pairs of this model's own kinds that fit in a mixed request."""
        return getattr(self, f"_{self.column}_rows")()

    # Images.
    def _image_kinds(self):
        kinds = self._common()
        kinds.update(
            {
                "good": lambda kind: self._single(kind, self.good, GOOD),
                "random_image": lambda kind: self._single(kind, *self._random_image()),
                "random_bytes": lambda kind: self._single(
                    kind, b64(self.rng.randbytes(self.rng.randint(0, 4096))), BAD
                ),
                "truncated_png": lambda kind: self._single(kind, self._truncated(), ANY),
                "png_bomb": lambda kind: self._single(kind, b64(self.bomb), BAD),
                "large_image": lambda kind: self._single(kind, b64(png(self._zeros((4000, 6000)))), GOOD),
                "pixel_array": lambda kind: self._single(kind, *self._pixels()),
                "path_inside": lambda kind: self._single(kind, "inside.png", GOOD),
                "path_escape": lambda kind: self._single(kind, self.rng.choice(escapes(".png")), BAD),
                "big_request": lambda kind: self._big(kind, lambda: (self.good, GOOD), self._odd_cell),
            }
        )
        return kinds

    def _image_rows(self):
        return [
            self._random_image(),
            self._pixels(),
            ("inside.png", GOOD),
            (self.rng.choice(escapes(".png")), BAD),
            (b64(self.rng.randbytes(64)), BAD),
        ]

    @staticmethod
    def _zeros(shape):
        import numpy as np

        return np.zeros(shape, "uint8")

    def _random_image(self):
        import numpy as np

        generator = np.random.default_rng(self.rng.randrange(2**32))
        height, width = self.rng.randint(1, 96), self.rng.randint(1, 96)
        channels = self.rng.choice([None, 3, 4])
        shape = (height, width) if channels is None else (height, width, channels)
        return b64(png(generator.integers(0, 256, shape, dtype="uint8"))), GOOD

    def _truncated(self):
        data = base64.b64decode(self._random_image()[0]["b64"])
        return b64(data[: self.rng.randint(0, len(data) - 1)])

    def _pixels(self):
        """A decoded pixel array, good or broken in one way."""
        side = self.rng.randint(1, 32)
        value = [[self.rng.random() for _ in range(side)] for _ in range(side)]
        broken = self.rng.choice(["none", "ragged", "strings", "nan", "channels", "flat", "deep"])
        if broken == "ragged":
            value[-1] = value[-1][:-1] or [0.0, 0.0]
        elif broken == "strings":
            value[0][0] = "x"
        elif broken == "nan":
            value[0][0] = math.nan
        elif broken == "channels":
            value = [[[pixel] * 7 for pixel in row] for row in value]
        elif broken == "flat":
            value = value[0]
        elif broken == "deep":
            value = [[[[pixel]] for pixel in row] for row in value]
        return value, GOOD if broken == "none" else BAD

    # Text.
    def _text_kinds(self):
        kinds = self._common()
        kinds.update(
            {
                "good": lambda kind: self._single(kind, self.good, GOOD),
                "random_text": lambda kind: self._single(kind, *self._random_text()),
                "blank_text": lambda kind: self._single(kind, self.rng.choice(["", " ", "\n\t", "\u3000"]), BAD),
                "path_like_text": lambda kind: self._single(kind, self.rng.choice(escapes(".txt")[:8]), GOOD),
                "control_characters": lambda kind: self._single(kind, "ok \x00\x07\x1b[31m\ud800 ok", ANY),
                "big_request": lambda kind: self._big(kind, lambda: (self._random_words(), GOOD), self._odd_cell),
            }
        )
        return kinds

    def _text_rows(self):
        return [self._random_text(), ("", BAD), ("word " * 50_000, GOOD)]

    def _random_words(self):
        return " ".join(
            self.rng.choice(["good", "bad", "not", "very", "film", "plot", "xyzzy"])
            for _ in range(self.rng.randint(1, 40))
        )

    def _random_text(self):
        text = "".join(
            chr(self.rng.choice([self.rng.randint(32, 126), self.rng.randint(0x80, 0xD7FF)]))
            for _ in range(self.rng.randint(1, 300))
        )
        return text, GOOD if text.strip() else BAD

    # Tabular rows.
    def _row_kinds(self):
        kinds = self._common()
        kinds.update(
            {
                "good": lambda kind: self._single(kind, self.good, GOOD),
                "hostile_value": lambda kind: self._single(kind, *self._hostile_row()),
                "missing_columns": lambda kind: self._single(kind, {"amount": 1.0}, BAD),
                "row_as_json_text": lambda kind: self._single(kind, json.dumps(self.good), GOOD),
                "broken_json_text": lambda kind: self._single(
                    kind,
                    self.rng.choice(['{"amount": ', "{" * 50_000, '{"a":' * 5000 + "1" + "}" * 5000, "{nan}"]),
                    BAD,
                ),
                "big_request": lambda kind: self._big(kind, lambda: self._hostile_row(GOOD), self._hostile_row),
            }
        )
        return kinds

    def _row_rows(self):
        return [self._hostile_row(), self._hostile_row(GOOD)]

    def _hostile_row(self, only=None):
        """The good row with one value replaced: by a bad one (infinite, too large, wrong type), or by
        one the model must take (NaN and null are missing values, numeric text, an unseen category)."""
        spec = self.info.preprocessing
        numeric = [item["name"] for item in spec["numeric"]]
        categorical = [item["name"] for item in spec["categorical"]]
        row = dict(self.good)
        good = [("nan", math.nan), ("null", None), ("numeric_text", "12.5"), ("bool", True), ("random", None)]
        bad = [
            ("infinity", math.inf),
            ("minus_infinity", -math.inf),
            ("huge_int", 10**400),
            ("too_large", 1e300),
            ("text", "abc"),
            ("list", [1, 2]),
            ("dict", {"a": 1}),
        ]
        if categorical and self.rng.random() < 0.3:  # any value is a category, seen or not
            row[self.rng.choice(categorical)] = self.rng.choice(["", "x" * 10_000, [1], {"a": None}, 3.5, None])
            return row, GOOD
        expected = only or self.rng.choice([GOOD, BAD])
        name, value = self.rng.choice(good if expected == GOOD else bad)
        if name == "random":
            value = self.rng.uniform(-1e4, 1e4)
        row[self.rng.choice(numeric)] = value
        return row, expected

    # Audio.
    def _audio_kinds(self):
        rate = self.info.features["sample_rate"]
        data = base64.b64decode(self.good["b64"])
        kinds = self._common()
        kinds.update(
            {
                "good": lambda kind: self._single(kind, self.good, GOOD),
                "sample_list": lambda kind: self._single(kind, *self._samples()),
                "random_bytes": lambda kind: self._single(
                    kind, b64(self.rng.randbytes(self.rng.randint(0, 4096))), BAD
                ),
                "truncated_wav": lambda kind: self._single(kind, b64(data[: self.rng.randint(0, len(data) - 1)]), ANY),
                "lying_header": lambda kind: self._single(
                    kind,
                    b64(
                        self.rng.choice(
                            [
                                lying_wav(data, rate=0),
                                lying_wav(data, rate=2_000_000_000),
                                lying_wav(data, channels=60_000),
                                lying_wav(data, channels=0),
                            ]
                        )
                    ),
                    BAD,
                ),
                "hour_long_header": lambda kind: self._single(kind, b64(lying_wav(data, frames=3600 * rate)), ANY),
                "ten_minute_file": lambda kind: self._single(kind, b64(self._long_wav(rate)), GOOD),
                "path_inside": lambda kind: self._single(kind, "inside.wav", GOOD),
                "path_escape": lambda kind: self._single(kind, self.rng.choice(escapes(".wav")), BAD),
                # 10,000 one-second clips would be a 400 MB request: cheap bad rows, ten good ones among them
                "big_request": lambda kind: self._big(kind, self._odd_cell, lambda: (self.good, GOOD)),
            }
        )
        return kinds

    def _audio_rows(self):
        return [self._samples(), ("inside.wav", GOOD), (self.rng.choice(escapes(".wav")), BAD)]

    def _long_wav(self, rate):
        import numpy as np

        generator = np.random.default_rng(self.rng.randrange(2**32))
        return wav(generator.uniform(-0.5, 0.5, 600 * rate // 2), rate // 2)  # ten minutes at half the rate

    def _samples(self):
        """A decoded sample list at the model's rate, good or broken in one way."""
        rate = self.info.features["sample_rate"]
        broken = self.rng.choice(["none", "long", "nan", "strings", "nested", "empty", "silent", "short"])
        length = {"long": 60 * rate, "short": 10, "empty": 0}.get(broken, rate)
        samples = [round(self.rng.uniform(-0.5, 0.5), 3) for _ in range(length)]
        if broken == "nan":
            samples[length // 2] = math.nan
        elif broken == "strings":
            samples[0] = "x"
        elif broken == "nested":
            samples = [samples[:100], samples[100:200]]
        elif broken == "silent":
            samples = [0.0] * length
        return samples, GOOD if broken in ("none", "long") else BAD


def post(url, case, timeout=300):
    """Sends one case; returns (status, parsed body or None, error text or None)."""
    sent = urllib.request.Request(f"{url}/invocations", case.body, {"Content-Type": case.content_type})
    try:
        with urllib.request.urlopen(sent, timeout=timeout) as response:
            return response.status, json.loads(response.read()), None
    except urllib.error.HTTPError as error:
        return error.code, None, error.read()[:300].decode("utf-8", "replace")
    except (OSError, ValueError) as error:  # refused, reset, timed out, or a body that is not JSON
        return None, None, f"{type(error).__name__}: {error}"


def judge(case, status, body):
    """Returns None when the server's answer is acceptable for the case, else why not."""
    if status == 500 and case.parser_500:
        return None
    if status is None or status >= 500:
        return f"no answer ({status})"
    if case.rows is None:
        return None if 400 <= status < 500 else f"a malformed request got {status}"
    if status != 200:
        if len(case.rows) == 1 and case.rows[0] != GOOD:
            return None
        return f"HTTP {status} for {len(case.rows)} row(s) expecting {sorted(set(case.rows))}"
    answers = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(answers, list) or len(answers) != len(case.rows):
        return f"{len(answers) if isinstance(answers, list) else 'no'} answers for {len(case.rows)} rows"
    for position, (expected, answer) in enumerate(zip(case.rows, answers)):
        if not isinstance(answer, dict):
            return f"row {position + 1} got {str(answer)[:200]}, not an object"
        if expected == GOOD and "error" in answer:
            return f"row {position + 1} should be answered, got {str(answer)[:200]}"
        if expected == BAD and "error" not in answer:
            return f"row {position + 1} should be an error, got {str(answer)[:200]}"
    return None


def peak_rss_mb(pid):
    """The sum of the high-water marks of resident memory (VmHWM) of a process and its descendants, in MB."""
    import psutil

    total = 0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        with contextlib.suppress(OSError), open(f"/proc/{process.pid}/status", encoding="ascii") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return total / 1024


def free_port():
    """Returns:
    int: a TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def background(command, probe_url, log_path, env=None, cwd=None, timeout=300):
    """Runs a server command (`mlflow server`, `mlflow models serve`) until the block ends.

    Args:
        command (list[str]): the command line.
        probe_url (str): a URL that answers once the server is up (/ping, /health).
        log_path (pathlib.Path): where the server's output goes; quoted when it fails to come up.
        env (dict | None): the server's environment (default: this process's).
        cwd (pathlib.Path | None): its working directory.
        timeout (float): seconds to wait for `probe_url`.

    Yields:
        int: the server's process id.

    Raises:
        RuntimeError: the server exited or did not answer in time (the message ends with its log).
    """
    with open(log_path, "wb") as log:  # the server's own process group, so its workers stop with it
        server = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"`{' '.join(command[2:5])}` did not come up:\n{pathlib.Path(log_path).read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(probe_url, timeout=5):
                    break
            except OSError:
                time.sleep(1)
        yield server.pid
    finally:
        with contextlib.suppress(ProcessLookupError):  # a server that never came up has already exited
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def latest(name):
    """The task's latest registered version: the quick model `train` just logged. Not its `@champion`: a quick
    model that learned no more than its trivial baseline is registered but never promoted, and serving it is
    what is tested here."""
    return f"models:/{name}/latest"


@contextlib.contextmanager
def serve(name, store, log_path, input_root=None):
    """Runs `mlflow models serve` on the task's latest version (`latest`) until the block ends; with `input_root`,
    the server reads file inputs only under it.

    Yields:
        tuple[str, int]: the base URL, once /ping answers, and the server's process id.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        latest(name),
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=store,
        # the server execs `uvicorn` from PATH: this interpreter's scripts folder, even when not activated
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    )
    if input_root is not None:
        env["PIPELINES_INPUT_ROOT"] = str(input_root)
    url = f"http://127.0.0.1:{port}"
    with background(command, f"{url}/ping", log_path, env=env) as pid:
        yield url, pid


def fuzz_one(name, store, folder, count, seed, log=print):
    """Serves one task's latest version (`latest`) and fuzzes it.

    Returns:
        dict: `requests`, `answered` (as the case expects), `failures` (kind -> count), `examples` (the
        first failures), `kinds` (kind -> count), `statuses` (HTTP status -> count, "None" for no
        answer), `good_still_correct`, `startup_peak_rss_mb` (before the first hostile request),
        `peak_rss_mb`, `good_requests_per_second`.
    """
    import tasks

    task = tasks.get(name)
    folder.mkdir(parents=True, exist_ok=True)
    good = raw_input(task, folder)
    info = task.state_class.from_json(json.loads(next((folder / "model").rglob("info.json")).read_text()))
    root = files(task, good, folder) if task.input_kind == "file" else folder
    with serve(name, store, folder / "serve.log", root) as (url, pid):
        status, before, error = post(url, Case("good", request(task.input_column, [good]), [GOOD]))
        if status != 200:
            raise RuntimeError(f"{name}: a good request got {status}: {error}")
        started = time.monotonic()
        timed = 20
        for _ in range(timed):
            post(url, Case("good", request(task.input_column, [good]), [GOOD]))
        rate = timed / (time.monotonic() - started)
        startup = peak_rss_mb(pid)  # loading TensorFlow and the model, and a few good requests
        tried, failures, examples, kinds, statuses = 0, {}, [], {}, {}
        for case in Cases(task, good, info, seed).draw(count):
            status, body, error = post(url, case)
            tried += 1
            kinds[case.kind] = kinds.get(case.kind, 0) + 1
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            problem = judge(case, status, body)
            if problem:
                failures[case.kind] = failures.get(case.kind, 0) + 1
                if len(examples) < 10:
                    examples.append(f"{case.kind}: {problem} {error or ''}"[:500])
            if tried % 100 == 0:
                log(f"{name}: {tried}/{count} requests, {sum(failures.values())} failed")
        status, after, _ = post(url, Case("good", request(task.input_column, [good]), [GOOD]))
        peak = peak_rss_mb(pid)
    return {
        "requests": tried,
        "answered": tried - sum(failures.values()),
        "failures": failures,
        "examples": examples,
        "kinds": kinds,
        "statuses": statuses,
        "good_still_correct": status == 200 and after == before,
        "startup_peak_rss_mb": round(startup),
        "peak_rss_mb": round(peak),
        "good_requests_per_second": round(rate, 1),
    }


def train(names, store, log=print):
    """Trains a quick model per task into `store` (each its task's `latest` version).

    Returns:
        float: seconds spent.
    """
    started = time.monotonic()
    for name in names:
        log(f"training {name} (--quick)")
        subprocess.run(
            [sys.executable, "-m", "pipelines", "run", name, "--quick", "--promote", "always"],
            cwd=ROOT,
            env=dict(os.environ, MLFLOW_TRACKING_URI=store),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return time.monotonic() - started
