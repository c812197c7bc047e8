"""Where speech clips come from, as registered readers: class folders, flat folders named by a pattern, CSV
manifests and TFDS; `listed_clips` splits the clips listed up front (files and the generated words)."""

import dataclasses
import functools
import logging
import pathlib
import re

import numpy as np

from shared.data.sources import is_table, reader
from tasks.speech.audio import AUDIO_EXTENSIONS, fix_length, read_seconds
from tasks.speech.cache import file_clip, memory_clip
from tasks.speech.features import feature_settings

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Clips:
    """What every reader of speech returns.

    Attributes:
        roles (dict): role (train, validation, test) -> (clips, labels, count): the clips (a generator for
            streams, which fills labels as it is read), their integer labels and how many there are.
        class_names (list[str]): names in label order.
        name (str): the dataset's short name for MLflow.
        synthetic (bool): True for the generated words.
        slice_keys (dict[str, np.ndarray] | None): role -> each listed clip's slice key (`--set slice_by`), in the
            order of the role's clips; None when no slices are asked for (or the source is streamed).
    """

    roles: dict
    class_names: list
    name: str
    synthetic: bool = False
    slice_keys: dict | None = None


def slice_keys(config, paths, root, column=None):
    """Each clip's slice key (`--set slice_by`, `shared.slices`), or None when no slices are asked for.

    Args:
        config (SpeechConfig): its `slice_by`.
        paths (list[str] | None): the clips' files (None for generated clips), for `slice_by=path:REGEX`.
        root (str): the data folder the paths are read below, also naming the source in errors.
        column (Callable[[str], np.ndarray] | None): reads a named column for the clips (a manifest's,
            filename_pattern's named groups, the generated speakers); None: the clips come without one.
    """
    from shared import slices

    if not config.slice_by:
        return None
    if column is None or (slices.path_pattern(config.slice_by) and paths is not None):
        return slices.from_paths(paths or [], config.slice_by, root, root)
    return np.asarray(column(config.slice_by), dtype=object)


def named_columns(source, **columns):
    """A `slice_keys` column reader over named arrays, erring as a missing table column does (naming `source`)."""
    import pandas as pd

    from shared import slices

    return lambda name: slices.values(pd.DataFrame(columns), name, source)


def listed_clips(task, config, makers, labels, groups, class_names, name, synthetic=False, keys=None):
    """Clips listed up front (files, generated words), split by the task's rule (`Speech._split`).

    Args:
        task (tasks.speech.Speech): whose `_split` splits them.
        config (SpeechConfig): the split settings, `max_examples` and `augment_copies`.
        makers (list): one clip maker (`(copies, keep_clip) -> Clip`) per clip.
        labels (np.ndarray): integer labels.
        groups (np.ndarray | None): speaker or group ids, for group splits.
        class_names (list[str]): names in label order.
        name (str): the dataset's short name.
        synthetic (bool): True for generated clips.
        keys (np.ndarray | None): each clip's slice key (`slice_keys`).
    """
    copies = max(0, config.augment_copies)
    train, validation, test = task._split(config, labels, groups, None)
    train = train.cap(-(-config.max_examples // (1 + copies)), config.seed)
    roles = {
        role: (
            [makers[index](copies if role == "train" else 0, role == "test") for index in split.features],
            split.targets,
            len(split),
        )
        for role, split in (("train", train), ("validation", validation), ("test", test))
    }
    found = (
        None if keys is None else {role: keys[split.features] for role, split in zip(roles, (train, validation, test))}
    )
    return Clips(roles, class_names, name, synthetic, found)


def _file_clips(task, config, paths, names, groups, name, keys=None):
    """Audio files named by their labels (and groups), as `listed_clips`; each is read for as long as prediction
    reads it."""
    class_names = sorted(set(names))
    lookup = {class_name: index for index, class_name in enumerate(class_names)}
    labels = np.array([lookup[label] for label in names])
    groups = None if groups is None else np.array([str(group) for group in groups])
    seconds = read_seconds(feature_settings(config))  # as much of each file as prediction reads
    makers = [functools.partial(file_clip, path, seconds=seconds) for path in paths]
    return listed_clips(task, config, makers, labels, groups, class_names, name, keys=keys)


@reader(
    "audio_pattern_folder",
    ("folder",),
    "a flat folder of audio files named by filename_pattern",
    accepts=lambda argument, config: bool(config.filename_pattern),
)
def _read_pattern_folder(task, argument, config):
    paths, names, groups = pattern_files(argument, config.filename_pattern)
    compiled = re.compile(config.filename_pattern)
    fields = [compiled.search(pathlib.Path(path).name).groupdict() for path in paths]
    named = {key: [field[key] for field in fields] for key in compiled.groupindex}
    keys = slice_keys(config, paths, argument, named_columns(f"filename_pattern of '{argument}'", **named))
    return _file_clips(task, config, paths, names, groups, f"folder_{pathlib.Path(argument).name}", keys)


@reader("audio_folder", ("folder",), "a folder with one subfolder of audio files per class")
def _read_audio_folder(task, argument, config):
    from shared import images

    root = pathlib.Path(argument)
    if not any(entry.is_dir() and not entry.name.startswith(".") for entry in root.iterdir()):
        raise ValueError(
            f"'{argument}' has no class subfolders; for flat files set filename_pattern, e.g. "
            r"--set 'filename_pattern=(?P<label>\d)_(?P<speaker>[a-z]+)_\d+\.wav'."
        )
    paths, labels, class_names = images.class_folders(argument, extensions=AUDIO_EXTENSIONS)
    names = [class_names[label] for label in labels]
    keys = slice_keys(config, paths, argument)
    return _file_clips(task, config, paths, names, None, f"folder_{root.name}", keys)


@reader(
    "audio_manifest",
    ("file", "csv"),
    "a CSV manifest of path,label[,group]",
    accepts=is_table,
)
def _read_audio_manifest(task, argument, config):
    from shared import slices
    from shared.data.sources import read_text_columns

    paths, names, groups = manifest(argument)

    def column(name):
        return read_text_columns(argument, {"slice_by": name}, slices.HINT)["slice_by"]

    keys = slice_keys(config, paths, str(pathlib.Path(argument).resolve().parent), column)
    return _file_clips(task, config, paths, names, groups, f"file_{pathlib.Path(argument).stem}", keys)


@reader("tfds_audio", ("tfds",), "tfds:speech_commands (or another audio/label dataset)")
def _read_tfds_audio(task, argument, config):
    return Clips(*tfds_clips(argument, config, max(0, config.augment_copies)))


def tfds_clips(argument, config, copies):
    """The clips of a TFDS audio dataset's splits, read as streams (no split is held in memory).

    Returns:
        tuple: role -> (clips, labels, count) with clips a generator that fills labels as it is read;
        class names, dataset name, synthetic flag.
    """
    from shared.data import tfds

    name, _, chosen = argument.partition(":")
    found = tfds.builder(
        name,
        config.tfds_data_dir,
        "--data embedded, a class folder, a flat folder with filename_pattern or a CSV manifest",
        ("audio", "label"),
    )
    rate = int(found.info.features["audio"].sample_rate)
    size = int(round(config.duration * rate))  # keyword sets hold one word per clip: keep its centre
    streams = dict(zip(("train", "validation", "test"), tfds.streams(found, chosen, ("audio", "label"), config)))
    streams["train"] = streams["train"].cap(-(-config.max_examples // (1 + copies)), config.seed)

    def clips(role, labels):
        stream = streams[role]
        identity = stream.describe()["digest"]
        for position, (samples, label) in enumerate(stream.index().as_numpy_iterator()):
            labels.append(label)
            scale = 32768.0 if samples.dtype == np.int16 else 1.0
            yield memory_clip(
                f"tfds:{identity}:{position}",
                fix_length(samples / scale, size),
                rate,
                f"tfds:{name} {stream.split} #{position}",
            )(copies if role == "train" else 0, role == "test")

    roles = {}
    for role in streams:
        labels = []
        roles[role] = (clips(role, labels), labels, len(streams[role]))
    return roles, list(found.info.features["label"].names), f"tfds_{name}", False


def pattern_files(folder, pattern):
    """Labels (and groups) of the audio files of a flat folder from a regex on their file names (checked by
    `SpeechConfig.check`)."""
    compiled = re.compile(pattern)
    group_key = next((key for key in ("speaker", "group") if key in compiled.groupindex), None)
    paths, labels, groups, skipped = [], [], [], []
    for path in sorted(pathlib.Path(folder).rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        match = compiled.search(path.name)
        if match is None or match.group("label") is None:
            skipped.append(path.name)
            continue
        paths.append(str(path))
        labels.append(match.group("label"))
        groups.append(match.group(group_key) if group_key else None)
    if skipped:
        logger.warning(
            "skipping %d audio file(s) whose names do not match filename_pattern, e.g. %s",
            len(skipped),
            ", ".join(skipped[:3]),
        )
    if not paths:
        raise ValueError(
            f"no audio file ({', '.join(AUDIO_EXTENSIONS)}) in '{folder}' matches filename_pattern '{pattern}'."
        )
    return paths, labels, groups if group_key else None


def manifest(path):
    """Paths, labels and optional groups of a CSV manifest `path,label[,group]` (the label column may be named
    `word` or `class`, the group column `speaker`)."""
    from shared.data.sources import listed_files, read_text_columns

    columns = read_text_columns(path, {"path": "path,file,filename", "label": "label,word,class"})
    try:
        groups = read_text_columns(path, {"group": "group,speaker"})["group"].tolist()
    except ValueError:  # the group column is optional
        groups = None
    paths = listed_files(path, columns["path"], "audio file")
    return paths, [str(label).strip() for label in columns["label"]], groups
