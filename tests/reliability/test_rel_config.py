"""--config values are parsed and checked exactly like the CLI flags (issue 17 item 2): a JSON string "false" is
False, not a truthy string; wrong types and non-finite numbers are one-line errors naming the key (choices and
ranges: the job's validate(), the same for both)."""

from __future__ import annotations

import json

import pytest

from nda.run import parse_config
from tasks import gan


def _cfg(tmp_path, values: dict, *argv: str):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(values))
    return gan.validate(parse_config(gan.GANConfig, ["--config", str(path), *argv]))


@pytest.mark.parametrize("text, expected", [("false", False), ("true", True), ("0", False), ("yes", True)])
def test_boolean_strings_mean_what_they_mean_on_the_command_line(tmp_path, text, expected):
    cfg = _cfg(tmp_path, {"conditional": text, "anomaly": expected})
    assert cfg.conditional is expected and cfg.anomaly is expected


def test_string_numbers_and_nulls_parse_like_flags(tmp_path):
    cfg = _cfg(tmp_path, {"seed": "3", "lr_d": "0.001", "limit": "none", "steps": 5, "fake_weight": 1})
    assert (cfg.seed, cfg.lr_d, cfg.limit, cfg.steps) == (3, 0.001, None, 5)
    assert type(cfg.fake_weight) is float


@pytest.mark.parametrize("values, message", [
    ({"conditional": "maybe"}, r"'conditional' \(--conditional\) must be a boolean"),
    ({"conditional": 1}, r"'conditional' \(--conditional\) must be a boolean"),
    ({"seed": 1.5}, r"'seed' \(--seed\) must be an int, got 1.5"),
    ({"seed": True}, r"'seed' \(--seed\) must be an int"),
    ({"seed": "1.5"}, r"'seed' \(--seed\) must be an int"),
    ({"data": ["digits"]}, r"'data' \(--data\) must be a string, got \[\"digits\"\]"),
    ({"lr_d": "inf"}, r"'lr_d' \(--lr-d\) must be a finite number or null"),
    ({"ema_decay": float("nan")}, r"'ema_decay' \(--ema-decay\) must be a finite number, got NaN"),
    ({"limit": {"n": 3}}, r"'limit' \(--limit\) must be an int or null"),
])
def test_bad_values_are_one_line_errors_naming_the_key(tmp_path, values, message):
    with pytest.raises(ValueError, match=message) as err:
        _cfg(tmp_path, values)
    assert "\n" not in str(err.value)


def test_flags_still_override_the_file_and_a_saved_config_round_trips(tmp_path):
    cfg = _cfg(tmp_path, {"conditional": "true", "seed": 2}, "--seed", "4")
    assert cfg.conditional is True and cfg.seed == 4
    from nda.run.config import saved_config

    again = _cfg(tmp_path, saved_config(cfg))
    assert again == cfg
