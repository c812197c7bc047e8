"""A property-based fuzz of the config space: for every task, configs drawn from its declared constraints (within
what `resolve` accepts, on small data for one epoch) either train and register a model or stop with exit 2 and one
error line before any run is created: never a traceback, a native crash or a run left RUNNING.

Each command runs in a worker process (`fuzzing.Worker`), so a segfault fails its example and names it. The default
suite draws a couple of configs per task; `-m slow` draws `FUZZ_EXAMPLES` (default 50) per task. A failure prints the
command, which then belongs in a regression test.
"""

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings

import tasks
from tests import fuzzing

DEFAULT_EXAMPLES = 1  # per task, each field at its lower bound: a whole run takes 5-20 s here, and the suite
# allows the fuzz about a minute; `-m slow` draws at random
SLOW_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    running = fuzzing.Worker(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'mlflow.db'}")
    yield running
    running.close()


def fuzz(examples, derandomize, every_field):
    """A test that runs `examples` drawn configs of each task through the worker (see `fuzzing.config_strategy`)."""

    @pytest.mark.parametrize("task_name", tasks.names())
    def test(task_name, worker):
        # no shrinking: each step would be another training; the failing command is printed as drawn
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=derandomize,
            print_blob=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(fuzzing.config_strategy(tasks.get(task_name), every_field))
        def drawn(assignments):
            arguments = ["run", task_name, "--quick", *[part for pair in assignments for part in ("--set", pair)]]
            result = worker.run(arguments)
            said = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
            print(f"{result['seconds']:.1f} s, exit {result['code']}: {' '.join(arguments)} {' '.join(said)}")
            fuzzing.check_outcome(arguments, result, task_name)

        drawn()

    return test


# the default suite: every field at once, the first example each at its lower bound; slow: subsets at random
test_drawn_configs_train_or_stop_cleanly = fuzz(DEFAULT_EXAMPLES, derandomize=True, every_field=True)
test_many_drawn_configs_train_or_stop_cleanly = pytest.mark.slow(
    fuzz(SLOW_EXAMPLES, derandomize=False, every_field=False)
)
