"""``0g-broker worker`` typer app (option parsing; serving is covered by the HTTP tests)."""

from __future__ import annotations

from typer.testing import CliRunner

from broker.cli.worker import app


def test_serve_help_lists_the_options():
    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in (
        "--model",
        "--host",
        "--port",
        "--device",
        "--idle-unload",
        "--queue-size",
        "--safety-checker",
    ):
        assert option in result.output


def test_invalid_option_values_exit_2_naming_the_field():
    result = CliRunner().invoke(app, ["serve", "--model", "tiny", "--device", "gpu"])
    assert result.exit_code == 2
    assert "device" in result.output
    result = CliRunner().invoke(app, ["serve", "--model", "tiny", "--queue-size", "-1"])
    assert result.exit_code == 2
    assert "queue_size" in result.output
