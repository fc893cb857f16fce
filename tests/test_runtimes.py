"""Agent profiles: argv templates and readiness checks."""

from pathlib import Path

import pytest

from cocopilot.errors import InvalidRequest
from cocopilot.settings import Settings
from services.workers.runtimes import AgentProfile, get_profile, load_profiles

CLAUDE_LIKE = AgentProfile("cli", ("tool", "-p", "{task}", "--model", "{model}", "--yes"))


def test_task_is_one_argv_element() -> None:
    task = "fix it; rm -rf / && echo $HOME `id`"

    argv = CLAUDE_LIKE.build_argv(task, "big-model")

    assert argv == ["tool", "-p", task, "--model", "big-model", "--yes"]


def test_missing_model_drops_flag_and_value() -> None:
    assert CLAUDE_LIKE.build_argv("task", None) == ["tool", "-p", "task", "--yes"]


def test_missing_model_drops_joined_flag() -> None:
    profile = AgentProfile("cli", ("tool", "{task}", "--model={model}"))

    assert profile.build_argv("task", None) == ["tool", "task"]


def test_placeholder_inside_task_is_kept() -> None:
    argv = CLAUDE_LIKE.build_argv("print {model} and {task}", "m")

    assert argv[2] == "print {model} and {task}"


def test_resume_uses_resume_template() -> None:
    profile = AgentProfile("cli", ("tool", "{task}"), resume_argv=("tool", "--continue", "{task}"))

    assert profile.build_argv("go on", None, resume=True) == ["tool", "--continue", "go on"]


def test_profile_without_cli_is_rejected() -> None:
    profile = AgentProfile("ghost", ("no-such-agent-cli", "{task}"))

    with pytest.raises(InvalidRequest, match="'no-such-agent-cli' is not installed"):
        profile.check_ready({"PATH": "/usr/bin:/bin"})


def test_profile_without_key_is_rejected(tmp_path: Path) -> None:
    cli = tmp_path / "agentcli"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    profile = AgentProfile(
        "keyed", ("agentcli", "{task}"), needs_one_of=("AGENT_KEY", "AGENT_TOKEN")
    )

    with pytest.raises(InvalidRequest, match="needs one of AGENT_KEY, AGENT_TOKEN"):
        profile.check_ready({"PATH": str(tmp_path)})
    profile.check_ready({"PATH": str(tmp_path), "AGENT_TOKEN": "t"})


def test_every_cli_profile_is_loaded() -> None:
    profiles = load_profiles(Settings(agent_command=["tool", "{task}"]))

    assert sorted(profiles) == ["aider", "claude", "codex", "command", "copilot", "demo", "gemini"]


def test_unknown_agent_lists_available() -> None:
    with pytest.raises(InvalidRequest, match="available agents: aider, claude"):
        get_profile(load_profiles(Settings()), "robot")
