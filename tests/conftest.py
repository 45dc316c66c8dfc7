"""Fixtures for tests whose assertions depend on a training trajectory or on float rounding.

Training is deterministic on one machine, but another CPU (other oneDNN kernels, other SIMD
widths) follows another trajectory, so such a test must hold for every trajectory, not only
for the one seen here. Each such test

* takes `learning_seed` and adds it to the seeds of its random init and data
  (`TF_DEPTHSEG_TEST_SEED`, default 0: the normal suite runs the seeds written in the tests);
* passes each asserted quantity, with the bound it is asserted against, to `record_measure`,
  which appends a JSON line to the file named by `TF_DEPTHSEG_MEASURE_FILE` (nothing when
  unset), then asserts as usual.

Tests that use `record_measure` get the `measured` marker: `scripts/measure_test_spread.py`
runs them (`pytest -m measured`) for several seeds with `TF_ENABLE_ONEDNN_OPTS` 1 and 0 and
tabulates min / median / max against the bounds; docs/testing.md has the figures.
"""

from __future__ import annotations

import json
import math
import os

import pytest

SEED_ENV = "TF_DEPTHSEG_TEST_SEED"
MEASURE_FILE_ENV = "TF_DEPTHSEG_MEASURE_FILE"


def seed_from_env() -> int:
    """The seed offset of this run (also for the tests' subprocesses, which inherit the env)."""
    value = os.environ.get(SEED_ENV, "0")
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"{SEED_ENV}={value!r} is not an integer") from None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "measured: asserts a training or float-rounding quantity against a bound "
        "(given to tests that use record_measure; see tests/conftest.py)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "record_measure" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.measured)
    # The `slow` tests (each 20-80 CPU s: tool subprocesses, compiled training) run first.
    # Under xdist (scripts/run_tests.sh: -n 2) tests are handed out in this order, and the
    # heaviest sat at the end of the alphabet (test_tasks_*): one of them starting last kept
    # the other worker idle for minutes. A stable sort keeps the order within each group.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def learning_seed() -> int:
    """Offset added to a measured test's seeds (`TF_DEPTHSEG_TEST_SEED`, default 0)."""
    return seed_from_env()


@pytest.fixture
def record_measure(request, learning_seed):
    """`record_measure(name, value, below=None, above=None)`: notes one asserted quantity and
    the bound the test asserts (`value < below` or `value > above`); returns `value`.

    Call it for every quantity before the first assertion, so that a failing run still
    records them all.
    """
    path = os.environ.get(MEASURE_FILE_ENV)

    def record(name: str, value, *, below=None, above=None) -> float:
        value = float(value)
        if path:
            row = {"test": request.node.nodeid, "name": name,
                   "value": value if math.isfinite(value) else str(value),
                   "below": below, "above": above, "seed": learning_seed,
                   "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")}
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
        return value

    return record
