"""Experiment configurations: presets, TOML loading, validation messages, hashes."""

from __future__ import annotations

import pytest

from expreg.experiments import EXPERIMENTS, get_config, make_tasks, width


def write(tmp_path, text: str):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_preset_validates_and_has_tasks(name):
    for preset in ("quick", "full", "tiny"):
        cfg = get_config(name, preset)
        assert cfg.versioned_name == f"{name}-v{cfg.version}"
        assert len(make_tasks(name, cfg)) >= 1


def test_toml_overrides_its_preset(tmp_path):
    path = write(tmp_path, 'experiment = "width"\npreset = "full"\nns = [4, 8]\nseeds = [5, 6]\n')
    cfg = get_config("width", config_file=path)
    assert cfg.ns == [4, 8] and cfg.seeds == [5, 6]
    assert cfg.m_cap == width.PRESETS["full"]["m_cap"]  # untouched fields come from the named preset
    tasks = make_tasks("width", cfg)
    assert len(tasks) == 2 * 2 * len(cfg.ds) * len(cfg.activations) * len(cfg.inits)  # scalings run inside a task


def test_hash_is_stable_and_tracks_every_field():
    a, b = get_config("lazy", "quick"), get_config("lazy", "quick")
    assert a.config_hash == b.config_hash and len(a.config_hash) == 12
    assert get_config("lazy", "quick", n=17).config_hash != a.config_hash
    # task keys differ across configurations and seeds, and are unique within a sweep
    keys = [t.key for t in make_tasks("lazy", a)]
    assert len(set(keys)) == len(keys)
    assert not set(keys) & {t.key for t in make_tasks("lazy", get_config("lazy", "quick", n=17))}


def test_unknown_field_is_named(tmp_path):
    path = write(tmp_path, 'experiment = "kernel"\nwidthz = [4]\n')
    with pytest.raises(ValueError, match=r"unknown field 'widthz'.*\[4\]"):
        get_config("kernel", config_file=path)


def test_bad_value_names_field_and_value(tmp_path):
    path = write(tmp_path, 'experiment = "lazy"\nwidths = [64, 33]\n')
    with pytest.raises(ValueError, match=r"field 'widths'.*even.*33"):
        get_config("lazy", config_file=path)
    path = write(tmp_path, 'experiment = "width"\nepsilon = -1.0\n')
    with pytest.raises(ValueError, match=r"field 'epsilon'.*-1.0"):
        get_config("width", config_file=path)
    with pytest.raises(ValueError, match=r"field 'activations.0'.*'tanh'"):
        get_config("convergence", activations=["tanh"])


def test_wrong_experiment_preset_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"configures experiment 'lazy', not 'width'.*expreg run lazy"):
        get_config("width", config_file=write(tmp_path, 'experiment = "lazy"\n'))
    with pytest.raises(ValueError, match=r"preset 'huge' is not known.*'full'"):
        get_config("width", "huge")
    with pytest.raises(ValueError, match="not valid TOML"):
        get_config("width", config_file=write(tmp_path, "ns = [1, \n"))
    with pytest.raises(FileNotFoundError, match="no configuration file"):
        get_config("width", config_file=tmp_path / "missing.toml")
    with pytest.raises(ValueError, match=r"experiment 'nope' is not known.*width"):
        get_config("nope")
