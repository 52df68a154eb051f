"""Settings come from defaults, then the conf file, then ORCH_* variables, then the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conf.settings import Settings, SettingsError, load_settings


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
