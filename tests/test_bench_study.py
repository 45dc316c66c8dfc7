"""The studies' shared bookkeeping (bench/study.py): a killed study keeps its finished runs,
changed settings stop without touching the file, mean +- std matches numpy's sample statistics."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import study  # noqa: E402


def test_result_store_keeps_finished_runs_across_restarts(tmp_path):
    path = str(tmp_path / "results.json")
    first = study.ResultStore(path, {"steps": 600, "note": "a"}, compare=["steps"])
    first.put("dt", 1, {"miou": 0.5})
    first.put("dt", 0, {"miou": 0.4})
    first.put("baseline", 0, {"miou": 0.3})
    first.data["extra"] = {"kept": True}
    first.save()

    again = study.ResultStore(path, {"steps": 600, "note": "b"}, compare=["steps"])
    assert again.has("dt", 0) and again.has("dt", 1) and not again.has("classmix", 0)
    assert [e["miou"] for e in again.by_variant("dt")] == [0.4, 0.5]  # seed order
    assert again.data["extra"] == {"kept": True}
    assert again.data["settings"]["note"] == "b"

    with pytest.raises(SystemExit, match="steps 600 there, 300 now"):
        study.ResultStore(path, {"steps": 300}, compare=["steps"])
    with open(path) as f:  # the stored study is left as it was
        assert len(json.load(f)["runs"]) == 3


def test_by_variant_does_not_mix_variants_sharing_a_prefix(tmp_path):
    store = study.ResultStore(str(tmp_path / "r.json"), {})
    store.put("dt_xd", 0, {"v": 1})
    store.put("dt", 0, {"v": 2})
    store.put("dt", 10, {"v": 3})
    store.put("dt", 2, {"v": 4})
    assert [e["v"] for e in store.by_variant("dt")] == [2, 4, 3]
    assert [e["v"] for e in store.by_variant("dt_xd")] == [1]


def test_mean_std_is_numpys_sample_statistics():
    values = [0.52, 0.47, 0.61]
    mean, std = study.mean_std(values)
    np.testing.assert_allclose(mean, np.mean(values))
    np.testing.assert_allclose(std, np.std(values, ddof=1))
    assert study.mean_std([0.3]) == (0.3, 0.0)
    assert study.format_mean_std(values, 100) == (
        f"{100 * np.mean(values):.1f} +- {100 * np.std(values, ddof=1):.1f} (3)")
