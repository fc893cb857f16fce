"""Agent runtime profiles: how to start an agent CLI on one task.

A profile is an argv template. ``{task}`` and ``{model}`` are replaced inside argv elements, so
the task is always one argv element and never shell text. When a worker has no model, every
element that contains ``{model}`` is dropped, together with the flag just before it (an element
starting with ``-`` and holding no placeholder), so ``["--model", "{model}"]`` disappears whole.

The CLI profiles run each tool in its non-interactive mode, which exits when the task is done
and so ends the worker. In that mode the tools do not read their terminal, so their ``input``
is ``none``, and a nudge is rejected instead of typed into nothing. Flags are those documented by
each tool at the time of writing (Claude Code ``-p``, Copilot CLI ``-p``, ``codex exec``,
Aider ``--message``, Gemini CLI ``--prompt``); a tool that changes them can be run through the
``command`` profile instead.
"""

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Literal

from cocopilot.errors import InvalidRequest
from cocopilot.settings import Settings

_PLACEHOLDER = re.compile(r"\{(task|model)\}")

DEMO = "demo"
COMMAND = "command"

InputMode = Literal["terminal", "none"]


@dataclass(frozen=True)
class AgentProfile:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    # Whether text typed into the session reaches the agent.
    input: InputMode = "terminal"
    # Environment variables of which the agent needs at least one (an API key or token).
    needs_one_of: tuple[str, ...] = ()
    # How to start the agent again in its worktree after the workers service restarted,
    # continuing its earlier session; empty when the tool cannot.
    resume_argv: tuple[str, ...] = ()

    def build_argv(self, task: str, model: str | None, resume: bool = False) -> list[str]:
        template = self.resume_argv if resume else self.argv
        values = {"task": task, "model": model or ""}
        argv: list[str] = []
        for index, element in enumerate(template):
            if "{model}" in element and model is None:
                flag = template[index - 1] if index else ""
                if flag.startswith("-") and not _PLACEHOLDER.search(flag):
                    argv.pop()
                continue
            # One pass, so a task that contains "{model}" is kept as written.
            argv.append(_PLACEHOLDER.sub(lambda match: values[match.group(1)], element))
        return argv

    def check_ready(self, environ: dict[str, str]) -> None:
        """Raise InvalidRequest when the CLI or its key is missing from the workers service."""
        program = self.argv[0]
        if shutil.which(program, path=environ.get("PATH")) is None:
            raise InvalidRequest(
                f"agent {self.name!r}: {program!r} is not installed in the workers service; "
                "build its image with the CLI (see COCOPILOT_AGENT_CLIS)"
            )
        if self.needs_one_of and not any(environ.get(name) for name in self.needs_one_of):
            raise InvalidRequest(
                f"agent {self.name!r} needs one of {', '.join(self.needs_one_of)} "
                "in the workers service's environment"
            )


CONTINUE = "Continue your task: {task}"

CLI_PROFILES = (
    AgentProfile(
        "claude",
        ("claude", "-p", "{task}", "--model", "{model}", "--dangerously-skip-permissions"),
        input="none",
        needs_one_of=("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
        resume_argv=(
            "claude",
            "-c",
            "-p",
            CONTINUE,
            "--model",
            "{model}",
            "--dangerously-skip-permissions",
        ),
    ),
    AgentProfile(
        "copilot",
        ("copilot", "-p", "{task}", "--allow-all-tools", "--no-ask-user", "--model={model}"),
        input="none",
        needs_one_of=("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"),
    ),
    AgentProfile(
        "codex",
        ("codex", "exec", "--sandbox", "workspace-write", "--model", "{model}", "{task}"),
        input="none",
        needs_one_of=("OPENAI_API_KEY", "CODEX_API_KEY"),
        resume_argv=("codex", "exec", "resume", "--last", CONTINUE),
    ),
    AgentProfile(
        "aider",
        ("aider", "--yes-always", "--model", "{model}", "--message", "{task}"),
        input="none",
        needs_one_of=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
    ),
    AgentProfile(
        "gemini",
        ("gemini", "--yolo", "--model", "{model}", "--prompt", "{task}"),
        input="none",
        needs_one_of=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    ),
)


def load_profiles(settings: Settings) -> dict[str, AgentProfile]:
    demo = AgentProfile(
        DEMO,
        (sys.executable, "-m", "services.workers.demo_agent", "{task}"),
        {"COCOPILOT_DEMO_DELAY_S": str(settings.demo_agent_delay_s)},
        input="none",
    )
    profiles = {profile.name: profile for profile in (demo, *CLI_PROFILES)}
    if settings.agent_command:
        profiles[COMMAND] = AgentProfile(
            COMMAND, tuple(settings.agent_command), resume_argv=tuple(settings.agent_resume_command)
        )
    return profiles


def get_profile(profiles: dict[str, AgentProfile], name: str) -> AgentProfile:
    """Return the profile ``name``, ready to run: its CLI installed and its key set."""
    try:
        profile = profiles[name]
    except KeyError:
        hint = "" if name != COMMAND else " (set COCOPILOT_AGENT_COMMAND on the workers service)"
        raise InvalidRequest(
            f"unknown agent {name!r}{hint}; available agents: {', '.join(sorted(profiles))}"
        ) from None
    profile.check_ready(dict(os.environ))
    return profile
