"""Agent runtime profiles: how to start an agent CLI on one task.

A profile is an argv template. ``{task}`` and ``{model}`` are replaced inside argv elements, so
the task is always one argv element and never shell text. When a worker has no model, every
element that contains ``{model}`` is dropped, together with the flag just before it (an element
starting with ``-`` and holding no placeholder), so ``["--model", "{model}"]`` disappears whole.
"""

import re
import sys
from dataclasses import dataclass, field

from cocopilot.errors import InvalidRequest
from cocopilot.settings import Settings

_PLACEHOLDER = re.compile(r"\{(task|model)\}")

DEMO = "demo"
COMMAND = "command"


@dataclass(frozen=True)
class AgentProfile:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def build_argv(self, task: str, model: str | None) -> list[str]:
        values = {"task": task, "model": model or ""}
        argv: list[str] = []
        for index, element in enumerate(self.argv):
            if "{model}" in element and model is None:
                flag = self.argv[index - 1] if index else ""
                if flag.startswith("-") and not _PLACEHOLDER.search(flag):
                    argv.pop()
                continue
            # One pass, so a task that contains "{model}" is kept as written.
            argv.append(_PLACEHOLDER.sub(lambda match: values[match.group(1)], element))
        return argv


def load_profiles(settings: Settings) -> dict[str, AgentProfile]:
    profiles = {
        DEMO: AgentProfile(
            DEMO,
            (sys.executable, "-m", "services.workers.demo_agent", "{task}"),
            {"COCOPILOT_DEMO_DELAY_S": str(settings.demo_agent_delay_s)},
        ),
    }
    if settings.agent_command:
        profiles[COMMAND] = AgentProfile(COMMAND, tuple(settings.agent_command))
    return profiles


def get_profile(profiles: dict[str, AgentProfile], name: str) -> AgentProfile:
    try:
        return profiles[name]
    except KeyError:
        hint = "" if name != COMMAND else " (set COCOPILOT_AGENT_COMMAND on the workers service)"
        raise InvalidRequest(
            f"unknown agent {name!r}{hint}; available agents: {', '.join(sorted(profiles))}"
        ) from None
