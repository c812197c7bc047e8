"""precision=auto: bfloat16 only where the device computes it natively, and float32 models out of every run."""

from unittest import mock

import pytest

import tasks
from shared import distribution, regularization
from tests.conftest import on_jax, resolve


@pytest.mark.parametrize(
    "text, native",
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n", True),  # AMD Zen 4, Intel Cooper Lake
        ("flags\t\t: fpu avx512f amx_bf16 amx_tile\n", True),  # Intel Sapphire Rapids
        ("Features\t: fp asimd sve bf16 i8mm\n", True),  # Arm Neoverse V1
        ("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n", False),  # AVX-512 without bfloat16
        ("model name\t: something without flags\n", False),
    ],
)
def test_native_bfloat16_reads_the_cpus_flags(text, native, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert distribution.native_bfloat16(str(cpuinfo)) is native
    assert distribution.native_bfloat16(str(tmp_path / "missing")) is False  # macOS, Windows: float32


def test_auto_chooses_bfloat16_only_where_the_detection_says_so():
    try:
        with mock.patch.object(distribution, "native_bfloat16", return_value=True):
            assert regularization.set_precision("auto") == "mixed_bfloat16"
            assert regularization.set_precision("auto", cpu_bfloat16=False) == "float32"  # a task that opts out
            with mock.patch.object(distribution, "accelerator", return_value="gpu"):
                assert regularization.set_precision("auto", cpu_bfloat16=False) == "mixed_bfloat16"
        with mock.patch.object(distribution, "native_bfloat16", return_value=False):
            assert regularization.set_precision("auto") == "float32"
            assert regularization.set_precision("mixed_bfloat16") == "mixed_bfloat16"  # asked for: emulated
            with mock.patch.object(distribution, "accelerator", return_value="gpu"):  # before Ampere
                assert regularization.set_precision("auto") == "mixed_float16"
        with pytest.warns(RuntimeWarning, match="precision=mixed_float16 needs a GPU or TPU"):
            assert regularization.set_precision("mixed_float16") == "float32"
        assert regularization.set_precision("float32") == "float32"
    finally:
        regularization.set_precision("float32")


def check_bfloat16_run():
    """A quick run under auto with native bfloat16 faked: it trains in bfloat16 and logs a float32 model."""
    import mlflow

    from pipelines import runner
    from shared import tracking

    task, settings = resolve("fraud_detection")
    with (
        mock.patch.object(distribution, "native_bfloat16", return_value=True),
        mock.patch.object(type(task), "cpu_bfloat16", True),
    ):
        result = runner.run(task, settings)
    tags = mlflow.get_run(result.run_id).data.tags
    assert tags["effective.precision_policy"] == "mixed_bfloat16", tags
    assert {layer.dtype_policy.name for layer in result.model.layers} == {"float32"}
    logged = tracking.logged_model(result.model_uri, tasks.get("fraud_detection"))
    assert {layer.dtype_policy.name for layer in logged.model.layers} == {"float32"}
    return tags["effective.precision_policy"]


def test_auto_trains_in_bfloat16_and_logs_a_float32_model(tracking_store):
    assert check_bfloat16_run() == "mixed_bfloat16"


def test_auto_trains_in_bfloat16_and_logs_a_float32_model_on_jax(tmp_path):
    code = "from tests.test_precision import check_bfloat16_run as c; print(c())"
    printed = on_jax(code, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'm.db'}")
    assert printed.strip().endswith("mixed_bfloat16")
