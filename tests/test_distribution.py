"""Scaling out: MirroredStrategy on two logical CPUs, two-process JAX data parallel training."""

import os
import re
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest

import tasks
from pipelines.serving_fuzz import free_port
from shared import distribution
from shared.data import examples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_unknown_strategy_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown strategy 'horovod'; use one of none, mirrored, data_parallel"):
        distribution.setup("horovod")


def test_data_parallel_on_tensorflow_says_to_switch_backend():
    with pytest.raises(ValueError, match="needs the JAX backend.*KERAS_BACKEND=jax"):
        distribution.setup("data_parallel")


def test_process_flags_need_data_parallel():
    with pytest.raises(ValueError, match="need --strategy data_parallel"):
        distribution.setup("none", num_processes=2)


def feed(placement, count, batch_size):
    """The batch sizes this process reads of `count` examples, as the runner feeds them."""
    split = examples.Examples(np.arange(count), np.arange(count))
    return [len(batch) for batch, _ in examples.make_dataset(split, **placement.feed(batch_size, count))]


def test_data_parallel_batch_must_split_across_devices():
    placement = distribution.Placement("data_parallel", replicas=2)
    with pytest.raises(ValueError, match="batch_size 5 does not split across 2.*batch_size=6"):
        placement.feed(5, 10)
    assert feed(placement, 10, 4) == [4, 4]  # the partial batch would desynchronise processes
    assert feed(placement, 7, 64) == [6]  # a validation split smaller than a batch still validates
    with pytest.raises(ValueError, match="1 examples cannot be shared by 2 data-parallel devices"):
        placement.feed(64, 1)


def test_each_process_reads_an_equal_share_before_decoding():
    first, second = (
        distribution.Placement("data_parallel", replicas=2, process_id=index, num_processes=2) for index in (0, 1)
    )
    split = examples.Examples(np.arange(11), np.arange(11))
    shares = [
        np.concatenate([rows for rows, _ in examples.make_dataset(split, **placement.feed(4, 11))])
        for placement in (first, second)
    ]
    assert [len(share) for share in shares] == [4, 4]  # 2 steps of 2 per process: they step together
    assert not set(shares[0]) & set(shares[1])  # disjoint shares of the index


def test_single_device_placement_is_a_no_op():
    placement = distribution.Placement()
    model = object()
    assert placement.is_chief and placement.local(model, build=None) is model
    assert placement.feed(3, 10) == {"batch_size": 3, "shard": None, "drop_remainder": False}


def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def only_run(tmp_path, experiment):
    client = mlflow.MlflowClient(tracking_uri=store(tmp_path), registry_uri=store(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_mirrored_strategy_trains_on_two_logical_cpus(name, tmp_path):
    script = textwrap.dedent("""
        import sys
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from pipelines import cli

        sys.exit(cli.main(["run", sys.argv[1], "--quick", "--strategy", "mirrored"]))
    """)
    completed = subprocess.run(
        [sys.executable, "-c", script, name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, MLFLOW_TRACKING_URI=store(tmp_path)),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    _, run = only_run(tmp_path, name)
    assert run.info.status == "FINISHED" and f"test_{tasks.get(name).primary_metric}" in run.data.metrics
    assert run.data.tags["strategy"] == "mirrored" and run.data.tags["replicas"] == "2"


@pytest.mark.slow
@pytest.mark.parametrize("name", tasks.names())
def test_two_jax_processes_train_identical_weights_and_only_process_0_logs(name, tmp_path):
    environment = dict(
        os.environ,
        MLFLOW_TRACKING_URI=store(tmp_path),
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    )
    port = free_port()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines",
                "run",
                name,
                "--quick",
                "--strategy",
                "data_parallel",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(index),
            ],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        errors = [process.communicate(timeout=900)[1] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, error in zip(processes, errors):
        assert process.returncode == 0, error[-3000:]
    worker = re.search(r"process 1 of 2 done \(process 0 logs the run\) \| weights sha256 (\w+)", errors[1])
    assert worker, errors[1][-3000:]
    client, run = only_run(tmp_path, name)
    assert run.info.status == "FINISHED" and f"test_{tasks.get(name).primary_metric}" in run.data.metrics
    assert run.data.tags["weights_sha256"] == worker.group(1)  # both replicas ended with the same weights
    assert run.data.tags["strategy"] == "data_parallel" and run.data.tags["num_processes"] == "2"
    assert [version.run_id for version in client.search_model_versions(f"name='{name}'")] == [run.info.run_id]


@pytest.mark.slow
def test_two_jax_processes_each_decode_about_half_of_the_training_files(tmp_path):
    from shared import images

    folder = tmp_path / "photos"
    for label in ("dark", "bright"):
        (folder / label).mkdir(parents=True)
        for index in range(40):
            images.save_png(
                np.full((8, 8, 1), 0.2 if label == "dark" else 0.8) + index / 400, folder / label / f"{index}.png"
            )
    script = textwrap.dedent("""
        import sys

        from shared import images

        decoded, original = set(), images.decode

        def counting(raw, name="input"):
            decoded.add(str(raw))
            return original(raw, name)

        images.decode = counting
        from pipelines import cli

        code = cli.main(["run", "vision_classification", "--data", sys.argv[1], "--set", "epochs=2",
                         "--set", "cache=none", "--set", "validation_fraction=0.25", "--set", "test_fraction=0.25",
                         "--set", "batch_size=8", "--strategy", "data_parallel", "--coordinator", sys.argv[2],
                         "--num-processes", "2", "--process-id", sys.argv[3]])
        print(f"decoded {len(decoded)} files", file=sys.stderr)
        sys.exit(code)
    """)
    environment = dict(
        os.environ,
        MLFLOW_TRACKING_URI=store(tmp_path),
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    )
    address = f"127.0.0.1:{free_port()}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(folder), address, str(index)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        errors = [process.communicate(timeout=900)[1] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, error in zip(processes, errors):
        assert process.returncode == 0, error[-3000:]
    counts = [int(re.search(r"decoded (\d+) files", error).group(1)) for error in errors]
    # 80 files: 40 train + 20 validation are shared out (30 each), and only process 0 evaluates the 20 test files
    assert 26 <= counts[1] <= 32, counts
    assert counts[0] <= 32 + 20, counts
    worker = re.search(r"weights sha256 (\w+)", errors[1]).group(1)
    _, run = only_run(tmp_path, "vision_classification")
    assert run.data.tags["weights_sha256"] == worker
