"""A model's history from git alone: ``make audit``.

Every version (who registered it, from which run), every promotion, rollback and withdrawal
(who, why, through what, and the monitoring sidecar's verdict when one decided it), and every
deployment (which release run deployed which version as the champion, and which as the canary or
shadow challenger beside it, to which environment, and whether it became healthy), oldest first,
read from the registry's GTO tags and the releases' deployment tags. Nothing else is consulted: a
clone with its tags (``git fetch --tags``) is the audit trail.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlops.core.errors import StageError, run
from mlops.gitops.deployments import Deployment, read_deployments
from mlops.gitops.records import parse_record
from mlops.gitops.rollout import RegistryEvent, State, ordered, rollout_state
from mlops.gitops.tags import registry_events
from mlops.gitops.versions import recorded_sha256
from mlops.params import project_model_name

FORMATS = ("text", "json")
# What a GTO event is called, by the action its tag records (none: a tag made another way).
EVENT_NAMES = {
    ("registration", ""): "registered",
    ("deregistration", ""): "deregistered",
    ("deprecation", ""): "deprecated",
    ("assignment", "promote"): "promoted",
    ("assignment", "rollback"): "rolled back",
    ("assignment", ""): "assigned",
    ("unassignment", "promote"): "left (promoted)",
    ("unassignment", "rollback"): "withdrawn (rollback)",
    ("unassignment", ""): "unassigned",
}


@dataclass(frozen=True)
class Entry:
    at: datetime
    event: str
    version: str
    where: str  # a stage, or an environment
    who: str
    why: str
    verdict: str  # the sidecar's verdict that decided it, if one did
    tag: str
    run: str
    health: str = ""  # a deployment's
    challenger: str = ""  # the version a deployment ran beside the champion (``version``)
    challenger_mode: str = ""  # canary or shadow

    def serving(self) -> str:
        """What a deployment ran: the champion, and the challenger beside it if any."""
        beside = f" with the {self.challenger_mode} challenger {self.challenger}"
        return self.version + (beside if self.challenger else "")


def history(events: Iterable[RegistryEvent], deployments: Iterable[Deployment]) -> list[Entry]:
    """The registry's events and the deployments, oldest first; a deployment carries the verdict
    of the stage tag it released."""
    entries = {event.tag: registry_entry(event) for event in ordered(events)}
    for deployment in deployments:
        released = entries.get(deployment.fields.get("Ref", ""))
        entries[deployment.tag] = deployment_entry(deployment, released)
    return sorted(entries.values(), key=lambda entry: entry.at)


def registry_entry(event: RegistryEvent) -> Entry:
    subject, fields = parse_record(event.message)
    action = fields.get("Action", "")
    name = EVENT_NAMES.get((event.kind, action)) or EVENT_NAMES[(event.kind, "")]
    return Entry(
        at=event.at,
        event=name,
        version=event.version or "",
        where=event.stage or "",
        who=fields.get("Actor") or event.author,
        why=fields.get("Reason") or _registered_model(subject) or subject,
        verdict=verdict_text(fields.get("Verdict", "")),
        tag=event.tag,
        run=fields.get("Run", ""),
    )


def _registered_model(subject: str) -> str:
    sha256 = recorded_sha256(subject)
    return f"model.onnx sha256 {sha256[:12]}…" if sha256 else ""


def deployment_entry(deployment: Deployment, released: Entry | None) -> Entry:
    fields = deployment.fields
    return Entry(
        at=deployment.at,
        event="deployed",
        version=deployment.version,
        where=deployment.environment,
        who=fields.get("Actor", ""),
        why=fields.get("Reason", ""),
        verdict=released.verdict if released else "",
        tag=deployment.tag,
        run=fields.get("Run", ""),
        health=deployment.health,
        challenger=deployment.challenger,
        challenger_mode=deployment.mode,
    )


def verdict_text(recorded: str) -> str:
    """``promote (accuracy +0.021; p99 latency 12 ms)`` from the tag's Verdict field."""
    if not recorded:
        return ""
    try:
        verdict = json.loads(recorded)
    except json.JSONDecodeError:
        return recorded
    reasons = "; ".join(str(reason) for reason in verdict.get("reasons", []))
    return f"{verdict.get('verdict', '?')} ({reasons})" if reasons else str(verdict.get("verdict"))


def current(state: State, entries: Sequence[Entry]) -> list[str]:
    """Where the model stands: the champion, the challenger, each environment's last deploy."""
    challenger = f"{state.challenger} ({state.mode})" if state.challenger else "none"
    lines = [f"champion (prod): {state.champion or 'none'}", f"challenger: {challenger}"]
    last: dict[str, Entry] = {}
    for entry in entries:
        if entry.event == "deployed":
            last[entry.where] = entry
    for environment, entry in sorted(last.items()):
        when = entry.at.isoformat(timespec="seconds")
        lines.append(
            f"{environment}: {entry.serving()}, {entry.health}, deployed {when} ({entry.tag})"
        )
    return lines


def render_text(name: str, state: State, entries: Sequence[Entry]) -> str:
    lines = [f"# {name}", "", *(f"- {line}" for line in current(state, entries)), ""]
    lines += ["| when (UTC) | event | version | where | who | why | verdict | tag | run |"]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    for entry in entries:
        event = f"{entry.event}: {entry.health}" if entry.health else entry.event
        cells = [
            entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            event,
            entry.serving(),
            entry.where,
            entry.who,
            entry.why,
            entry.verdict,
            f"`{entry.tag}`",
            entry.run,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def render_json(name: str, state: State, entries: Sequence[Entry]) -> str:
    document = {
        "model": name,
        "champion": state.champion,
        "challenger": state.challenger,
        "challenger_mode": state.mode,
        "history": [{**asdict(entry), "at": entry.at.isoformat()} for entry in entries],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", help="default: package.model_name of params.yaml")
    parser.add_argument("--format", default="text", choices=FORMATS)
    options = parser.parse_args(argv)
    name = options.model or project_model_name(options.params)
    repo = Path.cwd()
    events = registry_events(repo, name)
    deployments = read_deployments(repo, name)
    if not events and not deployments:
        raise StageError(f"no tag of model '{name}' in this repository (git fetch --tags?)")
    render = render_json if options.format == "json" else render_text
    print(render(name, rollout_state(events), history(events, deployments)), end="")


if __name__ == "__main__":
    raise SystemExit(run(main))
