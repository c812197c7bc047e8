"""Resumable training: a per-epoch backup of the weights and the MLflow run they belong to.

Every run backs up its weights and epoch after each epoch (`keras.callbacks.BackupAndRestore`) in a
folder keyed by the task and a hash of everything that defines the run (config, experiment, process),
and records its MLflow run id there. A run killed mid-training and started again with the same
settings and `--resume` restores the last completed epoch and logs into the same MLflow run. A
successful run deletes its folder. Without `--resume` a leftover backup is deleted with a warning, so
a fresh run never inherits stale weights; `--resume` with nothing to resume starts a fresh run.
A run holds a lock on its folder while it lives (the OS releases it when the process dies, even by
kill -9), so a second live run with the same settings trains without a backup instead of sharing one.
"""

import fcntl
import hashlib
import json
import shutil
import warnings

RUN_FILE = "run.json"


class Backup:
    """The backup folder of one run configuration.

    Args:
        root (pathlib.Path): where backups live (beside the MLflow store).
        name (str): the task name, a readable prefix of the folder name.
        key (dict): JSON-serialisable values that identify the run (config, experiment, process).
        resume (bool): continue a backup found there instead of deleting it.

    Raises:
        ValueError: `resume` while the run to resume is still alive.
    """

    def __init__(self, root, name, key, resume):
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.folder = root / f"{name}-{digest}"
        self.run_id = None
        root.mkdir(parents=True, exist_ok=True)
        self._lock = open(root / f"{name}-{digest}.lock", "w")  # held until clear() or the process ends
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            if resume:
                raise ValueError(
                    f"the {name} run to resume is still training (its backup {self.folder} is "
                    "locked); stop it first, or run without --resume."
                ) from None
            warnings.warn(
                f"another {name} run with the same settings is training; this one keeps no "
                "backup and cannot be resumed.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        recorded = self.folder / RUN_FILE
        # None as well in processes that do not log (multi-process training) or for a fresh run
        self.run_id = json.loads(recorded.read_text())["run_id"] if resume and recorded.exists() else None
        if resume and not recorded.exists():
            warnings.warn(
                f"--resume: no interrupted {name} run with these settings in {root}; starting a fresh run.",
                RuntimeWarning,
                stacklevel=2,
            )
        elif not resume and self.folder.exists():
            warnings.warn(
                f"deleted the backup of an interrupted {name} run with these settings "
                f"({self.folder}); pass --resume to continue such a run instead.",
                RuntimeWarning,
                stacklevel=2,
            )
            shutil.rmtree(self.folder)

    def record(self, run_id):
        """Records the MLflow run the backed-up weights belong to (None in a process that does not log)."""
        if self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / RUN_FILE).write_text(json.dumps({"run_id": run_id}))

    def callbacks(self):
        """Returns the Keras callbacks that save after every epoch and restore on a resumed fit."""
        import keras

        if not self._lock:
            return []
        # double_checkpoint keeps the previous epoch readable if a kill lands in the middle of a save;
        # the folder outlives fit so that a crash in evaluation or logging can still be resumed.
        return [
            keras.callbacks.BackupAndRestore(
                str(self.folder / "keras"), double_checkpoint=True, delete_checkpoint=False
            )
        ]

    def clear(self):
        """Deletes the backup once the run has finished, and lets go of it."""
        if self._lock:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._lock.close()
            self._lock = None
