"""config/ (the files an operator copies) stays true to the code: every example is loaded through
the real settings model, policy loader or parser, and every settings field has a line (and vice
versa).

``config/`` holds files; ``broker.config`` (broker/config/) holds code.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from broker.attestation.policy import AttestationPolicy, load_policy
from broker.cli.main import app
from broker.config.settings import Settings
from broker.provider.settings import ProviderSettings
from broker.proxy.settings import ServeSettings
from broker.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
SRC = ROOT / "broker"

#: example file -> (settings model, variables read outside the model)
ENV_EXAMPLES = {
    "library.env.example": (Settings, {"ZG_HOME", "ZG_CONFIG_FILE", "ZG_DEBUG", "ZG_ANVIL_BIN"}),
    "serve.env.example": (ServeSettings, set()),
    "provider.env.example": (
        ProviderSettings,
        {"ZG_PROVIDER_ADMIN_KEY", "ZG_PROVIDER_ADMIN_KEY_FILE"},
    ),
    "worker.env.example": (WorkerSettings, set()),
}
#: commented example values not validated here, with the reason
NOT_LOADED = {"ZG_SERVE_API_KEY_FILE": "the model reads the file at validation"}

_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>ZG_[A-Z0-9_]+)=(?P<value>.*)$")


def _parse(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(variables set, variables shown commented out) of an env file."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = _LINE.match(line.strip())
        if m:
            target = commented if m["comment"] else active
            assert m["name"] not in active and m["name"] not in commented, f"{m['name']} twice"
            target[m["name"]] = m["value"]
    return active, commented


def _env_name(model: type, field: str) -> str:
    return f"{model.model_config['env_prefix']}{field}".upper()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No ZG_* variable but an empty home and no config file."""
    for name in list(os.environ):
        if name.startswith("ZG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ZG_HOME", str(tmp_path))
    monkeypatch.setenv("ZG_CONFIG_FILE", str(tmp_path / "absent.json"))
    return monkeypatch


def test_every_file_in_config_is_checked():
    files = {p.relative_to(CONFIG).as_posix() for p in CONFIG.rglob("*") if p.is_file()}
    checked = set(ENV_EXAMPLES) | {
        "attestation-policy.example.json",
        "prometheus.yml",
        "grafana/0g-broker-dashboard.json",
    }
    checked |= {f"systemd/{p.name}" for p in (CONFIG / "systemd").glob("*.service")}
    assert files == checked, "a file in config/ that no test loads (or a checked file is gone)"


@pytest.mark.parametrize("name", sorted(ENV_EXAMPLES))
def test_env_example_names_every_setting(name):
    model, outside = ENV_EXAMPLES[name]
    active, commented = _parse(CONFIG / name)
    documented = set(active) | set(commented)
    fields = {_env_name(model, f) for f in model.model_fields}
    assert not fields - documented, f"settings without a line in {name}"
    assert not documented - fields - outside, f"lines in {name} no setting reads"
    source = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    for var in outside:  # read by hand somewhere: the code still names it
        assert var in source, f"{var} is documented in {name} but no code reads it"


@pytest.mark.parametrize("name", sorted(ENV_EXAMPLES))
def test_env_example_defaults_are_the_real_defaults(name, clean_env):
    model, outside = ENV_EXAMPLES[name]
    defaults = model()
    active, _ = _parse(CONFIG / name)
    for var, value in active.items():
        clean_env.setenv(var, value)
    loaded = model()  # the example, as the environment a unit file gives
    by_env = {_env_name(model, f): f for f in model.model_fields}
    for var in active:
        if var in outside:
            continue
        field = by_env[var]
        assert getattr(loaded, field) == getattr(defaults, field), f"{var} is not the default"


@pytest.mark.parametrize("name", sorted(ENV_EXAMPLES))
def test_env_example_commented_values_validate(name, clean_env):
    model, outside = ENV_EXAMPLES[name]
    _, commented = _parse(CONFIG / name)
    for var, value in commented.items():
        if not value or var in outside or var in NOT_LOADED:
            continue
        clean_env.setenv(var, value)
        model()  # pydantic.ValidationError when the example value is wrong
        clean_env.delenv(var)


def test_attestation_policy_example_loads_and_shows_every_field():
    path = CONFIG / "attestation-policy.example.json"
    policy = load_policy(path)
    assert isinstance(policy, AttestationPolicy)
    assert set(json.loads(path.read_text())) == set(AttestationPolicy.model_fields)
    assert policy.accepted_tcb_statuses == AttestationPolicy().accepted_tcb_statuses


def test_prometheus_and_grafana_files_parse():
    prom = yaml.safe_load((CONFIG / "prometheus.yml").read_text())
    assert prom["scrape_configs"] and all("job_name" in job for job in prom["scrape_configs"])
    dash = json.loads((CONFIG / "grafana" / "0g-broker-dashboard.json").read_text())
    assert dash["panels"]


def _unit(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


@pytest.mark.parametrize("unit", sorted(p.name for p in (CONFIG / "systemd").glob("*.service")))
def test_systemd_unit_runs_a_real_command_from_the_examples(unit):
    pairs = _unit(CONFIG / "systemd" / unit)
    env_files = [v for k, v in pairs if k == "EnvironmentFile"]
    assert env_files
    for env_file in env_files:  # /etc/0g-broker/<x>.env <- config/<x>.env.example
        assert (CONFIG / (Path(env_file).name + ".example")).is_file(), env_file
    for key, value in pairs:  # no secret inline
        if key == "Environment":
            assert not re.search(r"KEY|PASSWORD|SECRET", value.split("=")[0]), value
    (exec_start,) = [v for k, v in pairs if k == "ExecStart"]
    argv = exec_start.split()
    assert argv[0].endswith("/0g-broker")
    group = get_command(app)
    for word in argv[1:]:  # the subcommand path exists in the CLI
        group = group.commands[word]
    assert not hasattr(group, "commands"), f"{exec_start} names a group, not a command"


def test_serve_takes_its_bind_settings_from_the_environment(clean_env):
    """The example's ZG_SERVE_PORT reaches `0g-broker serve` (the CLI's default must not win)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        clean_env.setenv("ZG_SERVE_PROVIDER", "0x" + "11" * 20)
        clean_env.setenv("ZG_SERVE_PORT", str(port))
        result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.output
