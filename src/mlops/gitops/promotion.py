"""Promote, roll back, act on the sidecar's verdict: GTO stage tags that say who and why.

Subcommands of ``python -m mlops.gitops.promotion`` (``make promote``, ``make rollback``, the
rollout workflow):

- ``promote --version v1.2.0 --stage prod|canary|shadow --reason ...``
- ``rollback --reason ...``: withdraw the challenger, else put the previous production version
  back.
- ``verdict``: the sidecar's ``rollout-verdict`` dispatch (its ``client_payload`` as JSON in
  ``ROLLOUT_PAYLOAD``) turned into a promotion, a rollback or nothing.
- ``state``: the champion and the challenger, as the tags say now.
- ``withdrawal --tag <model>#<stage>!#N``: the release a withdrawal pushed from a clone needs
  (the champion's ``prod`` tag: production redeployed as the stages say now), or none.

Each writes ``tag`` (the tags made, one a line) and ``release-ref`` (the tag to release next, or
nothing) to ``$GITHUB_OUTPUT``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlops.core.errors import StageError, run
from mlops.gitops.outputs import publish, step_summary
from mlops.gitops.rollout import (
    VERDICT_EVENT,
    Context,
    Plan,
    State,
    change_message,
    describe,
    ordered,
    parse_verdict,
    plan_promotion,
    plan_rollback,
    plan_verdict,
    release_tag,
    rollout_state,
    verdict_reason,
    withdrawal_release,
)
from mlops.gitops.tags import create_stage_tags, git, push_tags, registry_events
from mlops.gitops.versions import PRODUCTION_STAGE
from mlops.params import project_model_name


def promote_command(options: argparse.Namespace, context: Context) -> None:
    name, state = _registry(options)
    apply(
        options, name, state, plan_promotion(state, name, options.version, options.stage), context
    )


def rollback_command(options: argparse.Namespace, context: Context) -> None:
    name, state = _registry(options)
    apply(options, name, state, plan_rollback(state, name), context)


def verdict_command(options: argparse.Namespace, context: Context) -> None:
    payload = _payload(os.environ.get("ROLLOUT_PAYLOAD", ""))
    verdict = parse_verdict(payload)
    name, state = _registry(options)
    with_verdict = Context(
        context.actor, verdict_reason(verdict), context.trigger, context.run_url, verdict
    )
    apply(options, name, state, plan_verdict(state, name, verdict), with_verdict)


def state_command(options: argparse.Namespace, context: Context) -> None:
    name, state = _registry(options)
    challenger = f"{state.challenger} ({state.mode})" if state.challenger else "none"
    print(f"{name}: champion {state.champion or 'none'}, challenger {challenger}")
    publish(
        {
            "champion": state.champion or "",
            "challenger": state.challenger or "",
            "challenger-mode": state.mode or "",
        }
    )


def withdrawal_command(options: argparse.Namespace, context: Context) -> None:
    name, state = _registry(options)
    events = {event.tag: event for event in registry_events(Path.cwd(), name)}
    withdrawal = events.get(options.tag)
    if withdrawal is None:
        raise StageError(f"'{options.tag}' is no registry tag of '{name}' (git fetch --tags?)")
    release = withdrawal_release(withdrawal, state) or ""
    reason = withdrawal.fields.get("Reason", "")
    if release:
        print(f"{options.tag} withdrew {withdrawal.version}: release {release} ({describe(state)})")
    else:
        print(f"{options.tag} belongs to a promotion that releases itself, or prod is empty")
    publish({"release-ref": release, "reason": reason})


def apply(
    options: argparse.Namespace, name: str, state: State, plan: Plan, context: Context
) -> None:
    """Create the plan's tags (and push them), then name the tag to release."""
    print(plan.summary)
    if not plan.changes:
        step_summary(f"**{plan.action}**: {plan.summary}")
        publish({"tag": "", "release-ref": "", "reason": context.reason})
        return
    if not context.reason.strip():
        raise StageError("say why: --reason (REASON=... for make) goes into the tag's message")
    repo = Path.cwd()
    events = registry_events(repo, name)
    commits = {e.version: e.commit for e in events if e.kind == "registration" and e.version}
    newest = ordered(events)[-1].at if events else None
    changes = [
        (
            change.assign,
            change.stage,
            commits[change.version],
            change_message(name, plan, change, context),
        )
        for change in plan.changes
    ]
    tags = create_stage_tags(repo, name, changes, newest)
    if options.push:
        try:
            push_tags(repo, tags)
        except StageError:
            for tag in tags:
                git(repo, "tag", "--delete", tag)
            raise
    for tag in tags:
        print(f"created {tag}" + (" and pushed it" if options.push else ""))
    release = release_tag(plan, list(zip(plan.changes, tags, strict=True)), state)
    made = ", ".join(f"`{tag}`" for tag in tags)
    step_summary(f"**{plan.action}**: {plan.summary} ({made}; release: `{release or 'none'}`)")
    publish({"tag": "\n".join(tags), "release-ref": release or "", "reason": context.reason})


def _registry(options: argparse.Namespace) -> tuple[str, State]:
    name = project_model_name(options.params)
    return name, rollout_state(registry_events(Path.cwd(), name))


def _payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise StageError(
            f"ROLLOUT_PAYLOAD is not JSON ({error}): expected the client_payload"
        ) from None
    if not isinstance(payload, dict):
        raise StageError(f"ROLLOUT_PAYLOAD: expected a JSON object, got {type(payload).__name__}")
    return payload


def default_actor() -> str:
    """Who is asking, when the workflow does not say: the git identity, else the login."""
    try:
        identity = git(Path.cwd(), "config", "user.name")
        email = git(Path.cwd(), "config", "user.email")
    except StageError:
        return getpass.getuser()
    return f"{identity} <{email}>" if email else identity


def arguments() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    promote = _subcommand(commands, "promote", "assign a registered version to a stage")
    promote.add_argument("--version", required=True)
    promote.add_argument("--stage", default=PRODUCTION_STAGE)
    _subcommand(commands, "rollback", "withdraw the challenger, else the previous prod version")
    _subcommand(commands, "verdict", f"act on the sidecar's {VERDICT_EVENT} (ROLLOUT_PAYLOAD)")
    _subcommand(commands, "state", "the champion and the challenger now")
    withdrawal = _subcommand(commands, "withdrawal", "what to release after a withdrawal tag")
    withdrawal.add_argument("--tag", required=True, help="the withdrawal: <model>#<stage>!#N")
    return top


def _subcommand(commands: Any, name: str, description: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=description)
    command.add_argument("--params", type=Path, default=Path("params.yaml"))
    command.add_argument("--reason", default="", help="why: recorded in the tag's message")
    command.add_argument("--actor", default="", help="who asked (default: the git identity)")
    command.add_argument("--trigger", default="make", help="what started it")
    command.add_argument("--run-url", default="", help="the workflow run, if any")
    command.add_argument("--push", action="store_true", help="push the tags to origin")
    return command


COMMANDS = {
    "promote": promote_command,
    "rollback": rollback_command,
    "verdict": verdict_command,
    "state": state_command,
    "withdrawal": withdrawal_command,
}


def main(argv: Sequence[str] | None = None) -> None:
    options = arguments().parse_args(argv)
    context = Context(
        actor=options.actor.strip() or default_actor(),
        reason=options.reason,
        trigger=options.trigger,
        run_url=options.run_url,
    )
    COMMANDS[options.command](options, context)


if __name__ == "__main__":
    raise SystemExit(run(main))
