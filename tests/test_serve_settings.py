"""``ServeSettings`` reads ``coderig serve``'s flags as they come and checks them in one call;
assembly problems are a ``ConfigError`` the CLI prints as one clear line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from coderig.cli import main
from coderig.serve.assembly import build_gateway
from coderig.serve.cli import flag_names, serve
from coderig.serve.settings import ConfigError, ServeSettings, describe_validation_error
from tests.support.inprocess import in_process_settings


def problem(**options) -> str:
    with pytest.raises(ValidationError) as caught:
        ServeSettings(**options)
    return describe_validation_error(caught.value, flag_names(serve))


def test_sizes_are_read_with_the_units_the_flags_document():
    settings = ServeSettings(max_body_size="2MiB", prompt_cache="0", max_header_size="64KiB")
    assert settings.max_body_bytes == 2 * 1024 * 1024
    assert settings.prompt_cache_bytes == 0
    assert settings.max_head_bytes == 64 * 1024
    assert ServeSettings(max_body_size="512kb").max_body_bytes == 512_000
    assert ServeSettings(max_body_bytes=4096).max_body_bytes == 4096  # the field's own name


def test_durations_are_seconds_whatever_their_spelling():
    settings = ServeSettings(
        stall_timeout="2m", header_timeout="250ms", body_timeout=5, editor_time_budget="1.5s"
    )
    assert settings.stall_timeout == 120.0
    assert settings.head_timeout == 0.25 and settings.body_read_timeout == 5.0
    assert settings.editor_time_budget_ms == 1500
    assert ServeSettings(editor_time_budget=0.0001).editor_time_budget_ms == 1  # never 0
    assert ServeSettings().editor_time_budget_ms is None
    assert ServeSettings(max_queue_wait="off").max_queue_wait is None


def test_health_check_is_split_into_its_three_fields():
    settings = ServeSettings(health_check="1s,500ms,5")
    assert (settings.health_interval, settings.health_timeout, settings.health_failures) == (
        1.0,
        0.5,
        5,
    )
    assert "use INTERVAL,TIMEOUT,FAILURES" in problem(health_check="2s,3s")


def test_lora_specs_schedule_and_upstreams_are_read_and_checked():
    assert ServeSettings(loras=("sql=./sql.gguf",)).loras == {"sql": "./sql.gguf"}
    assert "expected NAME=PATH" in problem(loras=("sql",))
    assert "unknown day" in problem(schedule="someday 9-5")
    settings = ServeSettings(engine="external", upstreams=["gpu1:8000", "http://gpu2:8000/v1/"])
    assert settings.upstreams == ["http://gpu1:8000", "http://gpu2:8000"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"engine": "external"}, "needs at least one --upstream"),
        ({"engine": "vllm"}, "--engine vllm needs --model"),
        ({"engine": "vllm", "model": "m", "upstreams": ["h:1"]}, "--upstream is for --engine"),
        (
            {"engine": "external", "upstreams": ["h:1"], "loras": ["a=b.gguf"]},
            "load them on the upstream",
        ),
        (
            {"engine": "external", "upstreams": ["h:1"], "schedule": "mon-fri 9-17"},
            "not coderig's to stop",
        ),
    ],
)
def test_flags_that_need_another_engine_are_refused_in_the_model(options, message):
    assert message in problem(**options)


def test_a_problem_is_named_by_the_flag_a_user_types():
    text = problem(max_body_size="10", idle_shutdown=-1, loras=5)
    lines = text.splitlines()
    assert lines[0].startswith("--max-body-size: ") and "1024" in lines[0]
    assert any(line.startswith("--idle-shutdown: ") for line in lines)
    assert any(line.startswith("--lora: ") for line in lines)  # the flag, not the field
    assert "Traceback" not in text and "errors.pydantic.dev" not in text


def test_an_option_the_settings_do_not_know_is_an_error_not_dropped():
    assert "--max-body-sise: Extra inputs are not permitted" in problem(max_body_sise="1MiB")


def test_every_serve_flag_is_a_settings_field():
    """The CLI passes its options straight to ServeSettings: each must be a field or alias."""
    fields = set()
    for name, info in ServeSettings.model_fields.items():
        fields.add(name)
        if info.validation_alias is not None:
            fields.update(info.validation_alias.choices)
    fields.add("health_check")  # split by a before-validator
    options = {param.name for param in serve.params if param.expose_value}
    assert options and options <= fields


def test_the_cli_prints_a_bad_value_as_a_usage_error_naming_the_flag():
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--max-body-size", "10"])
    assert result.exit_code == 2
    assert "Error: --max-body-size: Input should be greater than or equal to 1024" in result.output
    assert "Traceback" not in result.output


def test_assembly_raises_a_config_error_the_cli_prints_as_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        build_gateway(ServeSettings(model=str(tmp_path / "nope.gguf")))
    result = CliRunner().invoke(
        main, ["serve", "--port", "0", "--model", str(tmp_path / "nope.gguf")]
    )
    assert result.exit_code == 1
    assert "Error: " in result.output and "no such file" in result.output


def test_an_unreachable_upstream_is_a_config_error(tmp_path):
    settings = ServeSettings(engine="external", upstreams=["http://127.0.0.1:1"], log_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot ask the upstream which model it serves"):
        build_gateway(settings)


def test_a_context_above_the_models_is_a_config_error(fake_upstream_url, tmp_path):
    settings = in_process_settings(fake_upstream_url, tmp_path, max_model_len=10**6)
    with pytest.raises(ConfigError, match="above the model's trained context length"):
        build_gateway(settings)


def test_an_unreadable_keys_file_is_a_config_error(fake_upstream_url, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("alice:short\n")
    settings = in_process_settings(fake_upstream_url, tmp_path, api_keys_file=keys)
    with pytest.raises(ConfigError):
        build_gateway(settings)
