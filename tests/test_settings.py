"""Settings come from defaults, then the conf file, then ORCH_* variables, then the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conf.settings import Settings, load_settings
from core.errors import SettingsError


def test_defaults_match_the_contract():
    settings = Settings()
    assert settings.port == 8080
    assert settings.request_timeout == 60
    assert settings.cors_origins == "*"
    assert settings.shutdown_timeout == 30


def test_each_source_overrides_the_one_before(tmp_path: Path):
    conf = tmp_path / "orchestrator.toml"
    conf.write_text('port = 9000\npace = 5\nstep_timeout = 7\nlog_level = "debug"\n')
    env = {"ORCH_PACE": "6", "ORCH_STEP_TIMEOUT": "8"}
    settings = load_settings([f"--config={conf}", "--step_timeout=9"], env)
    assert (settings.port, settings.pace, settings.step_timeout, settings.log_level) == (9000, 6, 9, "debug")


def test_the_conf_file_can_be_named_in_the_environment(tmp_path: Path):
    conf = tmp_path / "custom.toml"
    conf.write_text("max_topic_length = 42\n")
    assert load_settings([], {"ORCH_CONFIG": str(conf)}).max_topic_length == 42


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown option(s) prot"),
        ("port = \n", "cannot read conf file"),
        ('port = "x"\n', "port: 'x' from conf file"),
        ("port = 1.5\n", "is not a valid int"),
    ],
)
def test_a_bad_conf_file_is_refused_with_a_message_naming_the_problem(tmp_path: Path, text, message):
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings([f"--config={conf}"], {})


def test_allowed_origins_are_split_and_trimmed():
    assert Settings(cors_origins=" https://a.example ,http://b.example,").allowed_origins == (
        "https://a.example",
        "http://b.example",
    )


def test_per_step_model_options_come_from_a_conf_table_or_json(tmp_path: Path):
    conf = tmp_path / "orchestrator.toml"
    conf.write_text(
        '[llm_step_options.create-content]\nmodel = "big"\nmax_tokens = 4096\ntemperature = 0.8\n'
    )
    expected = {"create-content": {"max_tokens": 4096, "model": "big", "temperature": 0.8}}
    assert load_settings([f"--config={conf}"], {}).step_options == expected
    as_json = '{"create-content": {"max_tokens": 4096, "model": "big", "temperature": 0.8}}'
    assert load_settings([], {"ORCH_LLM_STEP_OPTIONS": as_json}).step_options == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"write-poem": {"max_tokens": 1}}', "'write-poem' is not a step name"),
        ('{"create-content": {"max_tokens": "lots"}}', "create-content.max_tokens = 'lots'"),
        ('{"create-content": {"top_k": 3}}', "create-content.top_k = 3"),
    ],
)
def test_bad_per_step_options_are_refused_naming_the_problem(value, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings([f"--llm_step_options={value}"], {})


def test_the_api_key_is_not_in_the_settings_repr():
    assert "sk-secret" not in repr(Settings(llm_api_key="sk-secret"))


def test_optional_steps_must_be_step_names():
    with pytest.raises(SettingsError, match="unknown step generate-poems"):
        load_settings(["--optional_steps=generate-images,generate-poems"], {})
