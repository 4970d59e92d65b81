"""The typed config: every built-in parses and round-trips, a bad key or value is named by
its key path with the allowed values, and the README's reference is generated from the
same definitions."""

from __future__ import annotations

import pytest

from camtrace.errors import CamtraceError
from camtrace.schema import load_yaml
from camtrace.training.engine import TrainConfig
from camtrace.workflows.attacks.plan import plan_attacks
from camtrace.workflows.config import (
    AttackRunConfig,
    ExperimentConfig,
    config_reference,
    parse_config,
)
from camtrace.workflows.experiment import builtin_configs, load_config
from camtrace.workflows.identification import detector_specs


@pytest.mark.parametrize("name", builtin_configs())
def test_every_builtin_config_parses_and_round_trips(name: str) -> None:
    config = parse_config(load_config(name))
    assert config.name == name
    assert parse_config(config.to_dict()) == config
    if config.attacks:  # the plan checks every attack's parameters by building it
        sizes = {s.arch: s.protocol.size for s in detector_specs(config)}
        assert plan_attacks(config.attacks, sizes).runs


def test_sections_become_typed_values() -> None:
    config = parse_config(
        {
            "data": {"source": "index", "root": "photos", "layout": "dresden"},
            "split": {"protocol": "random", "fractions": [0.6, 0.2, 0.2], "splits": 3},
            "detectors": ["mislnet", {"arch": "densenet40", "patches": "guera"}],
            "attacks": {
                "jpeg": [None, 90],
                "runs": [{"method": "fgsm", "eps": 2}],
                "transfer": [{"method": "pgd", "eps": 8}, {"method": "timifgsm", "eps": 8}],
            },
        }
    )
    assert config.data.layout == "dresden" and config.split.splits == 3
    assert config.split.protocol_options() == {"protocol": "random", "fractions": (0.6, 0.2, 0.2)}
    assert [d.arch for d in config.zoo()] == ["mislnet", "densenet40"]
    assert config.zoo()[1].patches.protocol == "guera"
    assert config.attacks.jpeg == (None, 90) and config.attacks.runs[0].eps == (2.0,)
    assert [t.method for t in config.attacks.transfer] == ["pgd", "timifgsm"]
    assert parse_config({}) == ExperimentConfig()


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"detektor": {}}, r"^detektor: unknown key; known: name, seed, workdir, data"),
        ({"seed": -1}, r"^seed: -1 is not allowed; use int >= 0$"),
        (
            {"data": {"source": "ftp"}},
            r"^data\.source: 'ftp' .* use simulate \| index \| manifest \| bench$",
        ),
        ({"data": {"source": "index", "root": "x"}}, r"^data\.layout: required with source index"),
        ({"data": {"source": "index", "shots": 3}}, r"^data\.shots: applies to source simulate"),
        ({"split": {"protocol": "random", "eval_scene_frac": 0.2}}, r"^split\.eval_scene_frac"),
        ({"split": {"splits": 0}}, r"^split\.splits: 0 is not allowed; use int >= 1$"),
        ({"train": {"lr": "1e-3x"}}, r"^train\.lr: '1e-3x' is not allowed; use float >= 0$"),
        ({"train": {"lr": "-1e-3"}}, r"^train\.lr: '-1e-3' is not allowed; use float >= 0$"),
        ({"train": {"seed": 1}}, r"^train\.seed: the experiment's seed"),
        ({"train": {"epochs": 2.0}}, r"^train\.epochs: 2\.0 is not allowed; use int >= 1$"),
        ({"train": {"channels_last": "yes"}}, r"^train\.channels_last: 'yes' .* use bool$"),
        ({"evaluate": {"voting_ks": [1, 0]}}, r"^evaluate\.voting_ks\[1\]: 0 .* use int >= 1$"),
        ({"train": {"optimizer": "rmsprop"}}, r"^train\.optimizer: .* use sgd \| adam$"),
        ({"detectors": ["bondi2017", "resnet"]}, r"^detectors\[1\]\.arch: 'resnet' .*bondi2017"),
        ({"detectors": [{"arch": "mislnet", "train": {"epoch": 2}}]}, r"^detectors\[0\]\.train"),
        ({"patches": {"protocol": "huge"}}, r"^patches\.protocol: 'huge' .* bondi \| guera \| gan"),
        ({"attacks": {"jpeg": [None, 0]}}, r"^attacks\.jpeg\[1\]: 0 .* 1-100 \| camera \| null$"),
        (
            {"detectors": [{"pretrained": "bondi2017", "train": {"epochs": 1}}]},
            r"^detectors\[0\]\.train: a pretrained detector is used as shipped",
        ),
        (
            {"generators": {"method": "mislgan", "eps": 4}},
            r"^generators\.eps: applies to method gap",
        ),
        ({"attacks": {"runs": [{}]}}, r"^attacks\.runs\[0\]\.method: required$"),
        (
            {"attacks": {"runs": [{"method": "fgsm"}, {"method": "pgd", "eps": ["big"]}]}},
            r"^attacks\.runs\[1\]\.eps\[0\]: 'big' is not allowed; use float$",
        ),
        ([1, 2], r"a config is a YAML mapping"),
    ],
)
def test_a_bad_key_or_value_is_named_by_its_path(raw: object, message: str) -> None:
    with pytest.raises(CamtraceError, match=message) as err:
        parse_config(raw)
    assert "\n" not in str(err.value)


def test_a_detectors_train_keys_override_the_top_level_ones_key_by_key() -> None:
    config = parse_config(
        {"seed": 3, "train": {"lr": 0.5, "epochs": 7}, "detectors": [{"train": {"epochs": 2}}]}
    )
    assert config.train_config(config.detectors[0]) == TrainConfig(lr=0.5, epochs=2, seed=3)


def test_the_reference_holds_every_key() -> None:
    reference = config_reference()
    assert "| `eps` | list of float | [] |" in reference
    assert "| `splits` | int >= 1 | 1 |" in reference
    assert all(f"| `{name}` |" in reference for name in AttackRunConfig.model_fields)


def test_yaml_exponent_floats_are_read_as_numbers() -> None:
    """PyYAML (YAML 1.1) reads 1e-3 as a string; camtrace reads YAML 1.2's numbers."""
    raw = load_yaml("train: {lr: 1e-3, momentum: .5, weight_decay: -2E+1}", "test")
    assert raw["train"] == {"lr": 1e-3, "momentum": 0.5, "weight_decay": -20.0}
    assert load_yaml("name: 1e3x", "test") == {"name": "1e3x"}
