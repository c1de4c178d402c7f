"""The deployment files agree with the code: no Docker engine runs here, so parse and check."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from channels.cli import main
from status.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SETTINGS = {name.upper() for name in Settings.model_fields}
NOT_SETTINGS = {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "PROMETHEUS_MULTIPROC_DIR"}


def resolve(argv: list[str]) -> click.Context:
    """Parse a command line with the real CLI, as the container would run it."""
    assert argv[0] == "patient-status"
    command, rest = main, list(argv[1:])
    while isinstance(command, click.Group):
        assert rest, f"{command.name} needs a subcommand"
        name, rest = rest[0], rest[1:]
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"no such command: {name}"
        command = sub
    return command.make_context(command.name, rest)


def test_the_services_a_clinic_needs_are_there():
    assert {"app", "worker", "db", "migrate"} <= set(SERVICES)
    assert "pgdata" in COMPOSE["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["db"]["volumes"]


@pytest.mark.parametrize("service", ["app", "worker", "migrate"])
def test_commands_are_real_cli_commands(service):
    ctx = resolve(SERVICES[service]["command"])
    assert ctx.command.name in {"serve", "worker", "upgrade"}


def test_the_web_app_runs_without_workers_and_with_several_processes():
    ctx = resolve(SERVICES["app"]["command"])
    assert ctx.command.name == "serve"
    assert ctx.params["no_workers"] is True
    assert ctx.params["processes"] >= 2
    assert ctx.params["host"] == "0.0.0.0"


def test_migrations_run_once_before_app_and_workers_start():
    assert SERVICES["migrate"]["command"] == ["patient-status", "db", "upgrade"]
    assert SERVICES["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for service in ("app", "worker"):
        assert SERVICES[service]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_every_long_running_service_has_a_health_check():
    for service in ("db", "app", "worker"):
        test = SERVICES[service]["healthcheck"]["test"]
        assert test and test[0] in ("CMD", "CMD-SHELL")
    assert "/healthz" in " ".join(SERVICES["app"]["healthcheck"]["test"])
    assert "pg_isready" in SERVICES["db"]["healthcheck"]["test"][1]
    heartbeat = SERVICES["worker"]["environment"]["WORKER_HEARTBEAT_FILE"]
    assert heartbeat in " ".join(SERVICES["worker"]["healthcheck"]["test"])


def test_worker_scales_without_fixed_names_or_ports():
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker


def test_every_variable_the_compose_file_sets_is_a_setting():
    for name, service in SERVICES.items():
        if name == "db":
            continue
        for variable in service.get("environment", {}):
            assert variable in SETTINGS | NOT_SETTINGS, f"{name}: {variable} is not a setting"
        assert service["env_file"] == ".env"


def test_database_url_points_at_the_db_service_with_psycopg():
    for name in ("app", "worker", "migrate"):
        url = SERVICES[name]["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://") and "@db:5432/" in url


def test_env_example_lists_every_setting_with_a_comment():
    text = (ROOT / ".env.example").read_text()
    listed = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M)
    assert set(listed) >= SETTINGS, f"missing: {SETTINGS - set(listed)}"
    lines = text.splitlines()
    is_variable = re.compile(r"^[A-Z][A-Z0-9_]+=")
    for index, line in enumerate(lines):
        if is_variable.match(line):
            above = index - 1
            while is_variable.match(lines[above]):  # a group of related variables
                above -= 1
            assert lines[above].startswith("#"), f"{line.split('=')[0]} has no comment"


def test_env_example_values_are_valid_settings_once_secrets_are_filled(monkeypatch):
    text = (ROOT / ".env.example").read_text().replace("SECRET_KEY=\n", "SECRET_KEY=s3cret\n")
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]+=", line):
            name, value = line.split("=", 1)
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.quiet_window is not None
    assert settings.stuck_hours["prescription.awaiting_provider"] == 24


def test_dockerfile_default_command_is_a_real_command():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)
    ctx = resolve(yaml.safe_load(cmd))
    assert ctx.command.name == "serve"
    assert "/healthz" in dockerfile


def test_runbook_commands_are_real():
    """Every `patient-status ...` line in the runbook parses with the real CLI."""
    runbook = (ROOT / "docs" / "operations.md").read_text()
    commands = re.findall(r"^\s*(?:\$ )?(patient-status [^\n|#]+?)\s*$", runbook, re.M)
    assert len(commands) >= 5
    for line in commands:
        resolve(shlex.split(line))
