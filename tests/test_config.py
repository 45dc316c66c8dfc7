"""Config: typed dotted overrides, unknown-key hints, JSON round trip, every config file."""

import dataclasses
import json

import pytest

from tf_depthseg import config as cfg
# The task registry: every task's config section (the config files build them; importing it
# also puts them in the Bazel test's runfiles).
from tf_depthseg.training import tasks  # noqa: F401
from tf_depthseg.training.tasks.suw_config import SUWConfig


def test_nested_overrides_set_values_of_every_type():
    base = cfg.ExperimentConfig()
    out = cfg.apply_overrides(base, [
        "train.steps=100", "suw.sam_dilations=[1,2,4]", "optim.learning_rate=1e-3",
        "data.crop_size=[64, 128]", "suw.weak=patch", "train.deterministic=true",
        "name=my run", "data.crop_size=none", "optim.learning_rate=2"])
    assert out.train.steps == 100
    assert out.suw.sam_dilations == (1, 2, 4)
    assert out.suw.weak == "patch" and out.train.deterministic is True
    assert out.name == "my run"
    assert out.data.crop_size is None
    # An int given for a float field becomes a float; the base config is untouched (frozen).
    assert out.optim.learning_rate == 2.0 and isinstance(out.optim.learning_rate, float)
    assert base.train.steps == cfg.TrainConfig().steps


@pytest.mark.parametrize("override, message", [
    ("train.stepz=1", "Did you mean train.steps"),
    ("trian.steps=1", "Did you mean train.steps"),
    ("steps=1", "Did you mean train.steps"),
    ("suw.sam_dilations=[1,2.5]", "sam_dilations[1]: expected int"),
    ("train.steps=abc", "expected int, got 'abc'"),
    ("optim.learning_rate=[1]", "expected float"),
    ("data.image_size=[1,2,3]", "expected 2 values"),
    ("suw.weak=foo", "not one of ['none', 'pixel', 'patch']"),
    ("suw.num_binz=3", "Did you mean suw.num_bins"),
    ("loss.weak=patch", "moved to 'suw.weak'"),
    ("model.num_bins=8", "moved to 'suw.num_bins'"),
    ("export.image_size=[8,8]", "removed: exports serve at data.image_size"),
    ("data.dataset=kitti", "was removed"),
    ("suw=1", "is a section"),
    ("data=1", "is a section"),
    ("train.steps", "must look like section.field=value"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(cfg.ConfigError, match=None) as info:
        cfg.apply_overrides(cfg.ExperimentConfig(), [override])
    assert message in str(info.value)
    assert override.split("=")[0] in str(info.value)


def test_json_round_trip_and_unknown_keys_in_json(tmp_path):
    config = cfg.apply_overrides(cfg.ExperimentConfig(), ["suw.sam_dilations=[1,2]",
                                                          "data.crop_size=[8,16]"])
    path = cfg.save_json(config, str(tmp_path))
    assert cfg.load_config(path) == config
    data = json.loads(open(path).read())
    data["train"]["stpes"] = 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(cfg.ConfigError, match="train.stpes.*Did you mean train.steps"):
        cfg.load_config(str(bad))


def test_unknown_config_name_lists_known_ones():
    with pytest.raises(cfg.ConfigError, match="not found"):
        cfg.load_config("suw/no_such_config")


def test_every_config_file_loads_validates_and_has_a_smoke_variant():
    files = cfg.list_config_files()
    assert files, "configs/ has no experiment files"
    for rel in files:
        name = rel[:-3]
        full = cfg.load_config(name)
        smoke = cfg.load_config(name, smoke=True)
        for config in (full, smoke):
            assert isinstance(config, cfg.ExperimentConfig)
            # Validation runs in __post_init__; a JSON round trip re-validates every field.
            assert cfg.from_dict(cfg.ExperimentConfig, cfg.to_dict(config)) == config
        assert smoke.train.steps < full.train.steps, f"{rel}: smoke must be smaller"
        module_doc = open(f"{cfg.configs_root()}/{rel}").read()
        assert "bazel run //tools:train" in module_doc, f"{rel}: docstring must give the command"


def test_sections_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ExperimentConfig().train.steps = 3


# --------------------------------------------------------------------------------------------
# Ranges: every numeric field declares one next to its default (config._ranged).
# --------------------------------------------------------------------------------------------


def _numeric(annotation) -> bool:
    import typing
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation in (int, float) or any(_numeric(a) for a in args if a is not Ellipsis)


def test_every_numeric_field_declares_a_range():
    import typing
    for key, section in cfg.ExperimentConfig().sections().items():
        cls = type(section)
        assert cfg._section_key(cls) == key + "."
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if _numeric(hints[field.name]):
                assert ("range" in field.metadata or "range_checked_by" in field.metadata), (
                    f"{key}.{field.name} has no range")


@pytest.mark.parametrize("override, message", [
    ("train.steps=-5", "train.steps=-5 is out of range: must be >= 1"),
    ("data.batch_size=0", "data.batch_size=0 is out of range: must be >= 1"),
    ("data.flip_prob=1.5", "data.flip_prob=1.5 is out of range: must be in [0, 1]"),
    ("model.bn_momentum=1", "model.bn_momentum=1.0 is out of range: must be in [0, 1)"),
    ("optim.learning_rate=0", "optim.learning_rate=0.0 is out of range: must be > 0"),
    ("eval.max_examples=-1", "eval.max_examples=-1 is out of range: must be >= 0"),
    ("data.image_size=[0,96]", "data.image_size=[0, 96] is out of range: every element must "
                               "be >= 1"),
    ("suw.sam_dilations=[1,0]", "every element must be >= 1"),
    ("optim.decay_steps=[10,5]", "optim.decay_steps=[10, 5]: the values must be increasing"),
    ("data.scale_range=[1.2,0.8]", "must be non-decreasing"),
    ("suw.min_depth=100", "suw.min_depth=100.0 must be below suw.max_depth=80.0"),
    ("optim.lr_multipliers=[['backbone', -1]]", "group 'backbone' is -1"),
])
def test_out_of_range_values_name_the_key_the_value_and_the_range(override, message):
    with pytest.raises(cfg.ConfigError) as info:
        cfg.apply_overrides(cfg.ExperimentConfig(), [override])
    assert message in str(info.value)


def test_range_boundaries_and_order_of_overrides():
    out = cfg.apply_overrides(cfg.ExperimentConfig(), [
        "train.steps=1", "data.flip_prob=0", "data.flip_prob=1", "train.checkpoint_every=0",
        "model.bn_momentum=0", "data.crop_size=none", "optim.decay_steps=[]",
        # Relations are checked on the result, not after each override: lowering both depth
        # bounds in this order passes through min_depth (1.0) > max_depth (0.5).
        "suw.max_depth=0.5", "suw.min_depth=0.1"])
    assert (out.suw.min_depth, out.suw.max_depth) == (0.1, 0.5)
    assert out.train.steps == 1 and out.data.flip_prob == 1.0


def test_relations_are_checked_when_loading_json(tmp_path):
    data = cfg.to_dict(cfg.ExperimentConfig())
    data["eval"]["min_depth"] = 90.0
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(cfg.ConfigError, match="eval.min_depth=90.0 must be below "
                                              "eval.max_depth=80.0"):
        cfg.load_config(str(path))
    data = cfg.to_dict(cfg.ExperimentConfig())
    data["train"]["steps"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(cfg.ConfigError, match=r"train.steps=0 is out of range: must be >= 1"):
        cfg.load_config(str(path))


# --------------------------------------------------------------------------------------------
# Task-owned sections (issue 13): config.suw belongs to the SUW task.
# --------------------------------------------------------------------------------------------


def test_task_sections_are_filled_read_as_attributes_and_round_trip(tmp_path):
    config = cfg.ExperimentConfig(task="suw", task_sections={"suw": SUWConfig(num_bins=8)})
    assert config.suw.num_bins == 8 and config.suw == SUWConfig(num_bins=8)
    assert cfg.ExperimentConfig().suw == SUWConfig()  # missing sections get their defaults
    assert "suw.num_bins" in cfg.all_keys(config) and "loss.weak" not in cfg.all_keys(config)
    data = cfg.to_dict(config)
    assert data["suw"]["num_bins"] == 8 and "task_sections" not in data
    out = cfg.apply_overrides(config, ["suw.num_bins=32", "suw.unsupervised=ego"])
    assert (out.suw.num_bins, out.suw.unsupervised, config.suw.num_bins) == (32, "ego", 8)
    assert out != config and cfg.apply_overrides(out, ["suw.num_bins=8",
                                                       "suw.unsupervised=none"]) == config
    assert cfg.load_config(cfg.save_json(out, str(tmp_path))) == out
    with pytest.raises(AttributeError, match="no section 'seg'"):
        _ = config.seg


def test_unknown_task_and_foreign_sections_are_config_errors():
    with pytest.raises(cfg.ConfigError, match="task='suv' is not a registered task. Did you "
                                              "mean suw"):
        cfg.ExperimentConfig(task="suv")
    with pytest.raises(cfg.ConfigError, match="unknown config key 'seg'.*task 'suw' has the "
                                              "sections \\['suw'\\]"):
        cfg.ExperimentConfig(task="suw", task_sections={"seg": {}})
    data = cfg.to_dict(cfg.ExperimentConfig())
    data["suw"]["num_binz"] = 3
    with pytest.raises(cfg.ConfigError, match="suw.num_binz.*Did you mean suw.num_bins"):
        cfg.from_dict(cfg.ExperimentConfig, data)


def _old_layout_json() -> dict:
    """A config.json as runs before issue 13 wrote it (SUW knobs in model/loss/data/export)."""
    data = cfg.to_dict(cfg.ExperimentConfig())
    suw = data.pop("suw")
    data["model"].update(name=suw["network"], num_bins=16, min_depth=0.5, max_depth=40.0,
                         sam_dilations=[1, 2], pose_net=False, object_motion_net=False,
                         max_objects=2, hourglass_head="auto")
    data["loss"] = {k: suw[k] for k in ("supervised", "supervised_weight", "soft_target_a",
                                        "silog_lambda", "unsupervised", "unsupervised_weight",
                                        "ssim_weight", "smoothness_weight", "automask",
                                        "num_scales", "weak", "weak_weight")}
    data["loss"].update(weak="patch", weak_weight=0.1)
    data["data"].update(dataset="kitti", weak_pairs_per_image=3, weak_train_pattern="",
                        weak_batch_size=0)
    data["export"]["image_size"] = [64, 208]
    return data


def test_old_config_json_loads_with_its_keys_moved(tmp_path):
    old = _old_layout_json()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    config = cfg.load_config(str(path))
    assert (config.suw.num_bins, config.suw.min_depth, config.suw.max_depth) == (16, 0.5, 40.0)
    assert config.suw.sam_dilations == (1, 2) and config.suw.pose_net is False
    assert (config.suw.weak, config.suw.weak_weight, config.suw.weak_pairs_per_image) == (
        "patch", 0.1, 3)
    assert config.suw.network == "suw_encoder_decoder" and config.suw.max_objects == 2
    # Today's layout is untouched by the migration.
    today = cfg.to_dict(config)
    assert cfg.migrate_old_keys(today, "x") == today
    # Without the migration (from_dict directly) an old key names its new place.
    with pytest.raises(cfg.ConfigError, match="moved to 'suw.num_bins'"):
        cfg.from_dict(cfg.ExperimentConfig, {"model": {"num_bins": 3}})


def test_setting_another_task_brings_its_sections_at_their_defaults():
    out = cfg.apply_overrides(cfg.ExperimentConfig(), ["suw.num_bins=8", "task=sde",
                                                       "sde.num_scales=2"])
    assert out.task == "sde" and set(out.task_sections) == {"sde"}
    assert out.sde.num_scales == 2
    back = cfg.apply_overrides(out, ["task=suw"])
    assert back.suw == SUWConfig()  # the SUW section starts again from its defaults


def test_paths_of_any_section_resolve_but_keywords_stay():
    config = cfg.apply_overrides(cfg.ExperimentConfig(task="sde"), [
        "data.train_pattern=d/train-*.tfrecord", "sde.encoder_weights=imagenet",
        "sde.pose_weights=w/pose.weights.h5"])
    out = cfg.resolve_paths(config, lambda path: "/abs/" + path)
    assert out.data.train_pattern == "/abs/d/train-*.tfrecord"
    assert out.sde.encoder_weights == "imagenet"
    assert out.sde.pose_weights == "/abs/w/pose.weights.h5"
    assert out.data.eval_pattern == ""  # empty paths stay empty


def test_configs_pickle_and_deepcopy():
    import copy
    import pickle
    config = cfg.apply_overrides(cfg.ExperimentConfig(), ["suw.num_bins=8", "train.steps=3"])
    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config) == config


def test_lr_multipliers_parse_as_group_multiplier_pairs():
    out = cfg.apply_overrides(cfg.ExperimentConfig(),
                              ["optim.lr_multipliers=[['backbone', 0.1], ['head', 10]]"])
    assert out.optim.lr_multipliers == (("backbone", 0.1), ("head", 10.0))
