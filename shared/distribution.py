"""Where training runs: one device, every local GPU (`mirrored`), or several JAX processes (`data_parallel`).

`setup` returns a `Placement`; the runner builds, compiles and fits inside `Placement.scope()`, feeds
`Placement.dataset(...)` batches, and evaluates, logs and saves `Placement.local(...)`.
"""

import contextlib
import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Callable

import numpy as np

STRATEGIES = ("none", "mirrored", "data_parallel")
# What keras.distribution.initialize reads when the flags are not given.
PROCESS_ENVIRONMENT = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


@dataclasses.dataclass
class Placement:
    """How one process takes part in training.

    Attributes:
        strategy (str): one of `STRATEGIES`.
        replicas (int): model replicas that share each global batch (1 without a strategy).
        process_id (int): this process's index; 0 is the chief, which alone logs to MLflow.
        num_processes (int): processes training together.
        scope (Callable[[], contextlib.AbstractContextManager]): the context to build, compile and fit in.
    """

    strategy: str = "none"
    replicas: int = 1
    process_id: int = 0
    num_processes: int = 1
    scope: Callable = contextlib.nullcontext

    @property
    def is_chief(self):
        """bool: whether this process logs and registers the run."""
        return self.process_id == 0

    def feed(self, batch_size, examples):
        """How this process reads a split of `examples` examples under this placement.

        Keras splits each global batch across devices, which needs equal batches everywhere, so data
        parallel training drops the last partial batch, and a split smaller than one batch (a small
        validation split) is fed as one batch of the largest size that splits evenly. With several
        processes each one decodes only its share of the split (a shard of the index, taken before
        decoding) and feeds its part of every global batch.

        Args:
            batch_size (int): the configured global batch size.
            examples (int): examples in the split.

        Returns:
            dict: `batch_size` (per process), `shard` (`(count, position)` or None) and `drop_remainder`,
            the keyword arguments of `shared.data.examples.make_dataset`.

        Raises:
            ValueError: the batch size does not split evenly across the replicas, or there are fewer
                examples than replicas.
        """
        if self.strategy != "data_parallel":
            return {"batch_size": batch_size, "shard": None, "drop_remainder": False}
        if batch_size % self.replicas:
            raise ValueError(
                f"batch_size {batch_size} does not split across {self.replicas} data-parallel devices; "
                f"use a multiple, e.g. --set batch_size={batch_size - batch_size % self.replicas + self.replicas}."
            )
        batch_size = min(batch_size, examples - examples % self.replicas)
        if not batch_size:
            raise ValueError(
                f"{examples} examples cannot be shared by {self.replicas} data-parallel devices; "
                "use more data (max_examples, validation_fraction) or fewer processes."
            )
        shard = (self.num_processes, self.process_id) if self.num_processes > 1 else None
        return {"batch_size": batch_size // self.num_processes, "shard": shard, "drop_remainder": True}

    def local(self, model, build):
        """Returns `model`, or a single-device copy of it when its variables span several devices.

        A model sharded across processes cannot predict on one process's NumPy arrays, nor be saved
        as one file, and a mirrored model's `predict_on_batch` returns every replica's copy of the
        outputs (Keras 3.15), so evaluation, logging and registration use a copy built outside the scope.

        Args:
            model (keras.Model): the trained model.
            build (Callable[[], keras.Model]): builds the same architecture, uncompiled.
        """
        if self.strategy == "none":
            return model
        copy = build()
        copy.set_weights(model.get_weights())
        return copy

    def summary(self):
        """Returns:
        dict[str, str]: the placement as MLflow tags.
        """
        return {"strategy": self.strategy, "replicas": str(self.replicas), "num_processes": str(self.num_processes)}


def setup(strategy="none", coordinator=None, num_processes=None, process_id=None):
    """Prepares the backend for a strategy, once per process, before any other Keras or JAX computation.

    Args:
        strategy (str): `none`; `mirrored` (TensorFlow backend: every local GPU, else every logical
            CPU device); `data_parallel` (JAX backend: every device of every process).
        coordinator (str | None): `HOST:PORT` of process 0, for multi-process data parallel training.
        num_processes (int | None): processes taking part.
        process_id (int | None): this process's index, 0 to num_processes - 1.

    Returns:
        Placement

    Raises:
        ValueError: an unknown strategy, a strategy the Keras backend cannot run, or incomplete
            multi-process settings.
    """
    import keras

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy '{strategy}'; use one of {', '.join(STRATEGIES)}.")
    multi_process = any(value is not None for value in (coordinator, num_processes, process_id))
    if multi_process and strategy != "data_parallel":
        raise ValueError("--coordinator, --num-processes and --process-id need --strategy data_parallel.")
    backend = keras.backend.backend()
    if strategy == "mirrored":
        if backend != "tensorflow":
            raise ValueError(
                f"--strategy mirrored needs the TensorFlow backend, not {backend}; set "
                "KERAS_BACKEND=tensorflow, or use --strategy data_parallel with KERAS_BACKEND=jax."
            )
        return _mirrored()
    if strategy == "data_parallel":
        if backend != "jax":
            raise ValueError(
                f"--strategy data_parallel needs the JAX backend, not {backend}; set "
                "KERAS_BACKEND=jax, or use --strategy mirrored on TensorFlow."
            )
        return _data_parallel(coordinator, num_processes, process_id)
    return Placement()


def _mirrored():
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    mirrored = tf.distribute.MirroredStrategy([device.name for device in devices])
    return Placement("mirrored", replicas=mirrored.num_replicas_in_sync, scope=mirrored.scope)


def _data_parallel(coordinator, num_processes, process_id):
    import jax
    import keras

    given = (coordinator, num_processes, process_id)
    from_environment = all(os.environ.get(name) for name in PROCESS_ENVIRONMENT)
    if any(value is not None for value in given) and not all(value is not None for value in given):
        raise ValueError(
            "multi-process data parallel training needs all of --coordinator HOST:PORT, "
            "--num-processes N and --process-id I (or the environment variables "
            f"{', '.join(PROCESS_ENVIRONMENT)})."
        )
    if num_processes is not None or from_environment:
        keras.distribution.initialize(coordinator, num_processes, process_id)
    # Each process feeds its own shard of the data (see `Placement.feed`), so Keras must not shard again.
    distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
    return Placement(
        "data_parallel",
        replicas=len(jax.devices()),
        process_id=jax.process_index(),
        num_processes=jax.process_count(),
        scope=distribution.scope,
    )


def accelerator():
    """Returns:
    str | None: `gpu` or `tpu` when the Keras backend sees one, else None (CPU only).
    """
    import keras

    if keras.backend.backend() == "jax":
        import jax

        platform = jax.default_backend()
        return platform if platform in ("gpu", "tpu") else None
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        if tf.config.list_physical_devices(kind):
            return kind.lower()
    return None


def native_bfloat16(cpuinfo="/proc/cpuinfo"):
    """Whether the device training runs on computes bfloat16 natively, so that mixed bfloat16 pays.

    TPUs do; NVIDIA GPUs from Ampere on (compute capability 8.0). On a CPU, oneDNN (TensorFlow) and XLA
    (JAX) only emit bfloat16 dot products and convolutions with the AVX512_BF16 or AMX_BF16 instructions
    (x86) or the BF16 extension (Arm); elsewhere they convert to float32 and back, which is slower than
    float32 alone. Linux lists these as flags in `/proc/cpuinfo`; where it is missing (macOS, Windows)
    the answer is False, so those machines keep float32.

    Args:
        cpuinfo (str): the file listing the CPU's flags (a test points it at a fake one).

    Returns:
        bool: True where bfloat16 compute is native.
    """
    device = accelerator()
    if device == "tpu":
        return True
    if device == "gpu":
        return gpu_compute_capability() >= (8, 0)
    try:
        text = pathlib.Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 and Arm name the line differently
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def gpu_compute_capability():
    """Returns:
    tuple[int, int]: the first GPU's CUDA compute capability, (0, 0) when unknown.
    """
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            return tuple(int(part) for part in jax.devices("gpu")[0].compute_capability.split("."))
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return tuple(details.get("compute_capability", (0, 0)))
    except (AttributeError, IndexError, RuntimeError, ValueError):
        return (0, 0)


def weights_digest(model):
    """Returns:
    str: a SHA-256 of the model's weights, equal across processes that trained in lockstep.
    """
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()
