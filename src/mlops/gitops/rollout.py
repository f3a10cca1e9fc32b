"""Promotion and rollback as git events: the rules, on the registry's events (no git here).

The stages of a model, all GTO stage tags:

- ``prod``: the champion, what serves production. Every version that was ever assigned to it
  stays in GTO's stage history; the champion is the one assigned last (GTO's rule).
- ``canary`` or ``shadow``: the challenger, at most one, served beside the champion by the
  scorer (a canary gets a share of the traffic, a shadow a copy of it). The monitoring sidecar
  compares the two and sends a verdict: ``promote``, ``hold`` or ``rollback``.

Promoting, rolling back and acting on a verdict each give a plan: the tags to create (assign or
unassign a version in a stage), what they say (who, why, the verdict), and which stage to
release afterwards. ``tags`` creates them, in this order and with increasing times.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mlops.core.errors import StageError
from mlops.gitops.records import format_record, parse_record
from mlops.gitops.versions import PRODUCTION_STAGE, VERSION_PATTERN

CHALLENGER_STAGES = ("canary", "shadow")
VERDICTS = ("promote", "hold", "rollback")
VERDICT_EVENT = "rollout-verdict"  # the repository_dispatch event type the sidecar sends
MAX_REASONS = 20

EventKind = Literal["registration", "deregistration", "assignment", "unassignment", "deprecation"]


@dataclass(frozen=True)
class RegistryEvent:
    """One GTO tag of the model, as ``tags.registry_events`` reads it."""

    tag: str
    kind: EventKind
    version: str | None
    stage: str | None
    at: datetime
    counter: int  # GTO's tag number: orders the events made within the same second
    author: str
    message: str
    commit: str

    @property
    def fields(self) -> dict[str, str]:
        return parse_record(self.message)[1]


@dataclass(frozen=True)
class State:
    champion: str | None  # the version in prod
    champion_tag: str | None  # the tag that put it there (what a withdrawal re-releases)
    challenger: str | None
    mode: str | None  # the challenger's stage: canary or shadow
    registered: tuple[str, ...]  # registered, not deregistered, oldest first
    production_history: tuple[str, ...]  # what a rollback goes back through (see below)


@dataclass(frozen=True)
class Change:
    """One stage tag to create."""

    assign: bool  # False: unassign
    stage: str
    version: str
    subject: str


@dataclass(frozen=True)
class Plan:
    action: str  # promote, rollback, hold, ignore
    changes: tuple[Change, ...]
    summary: str
    previous: str | None = None  # the champion (or the challenger withdrawn) before the plan
    release_stage: str | None = None  # the stage whose tag the release runs on afterwards


@dataclass(frozen=True)
class Verdict:
    """The ``client_payload`` of the sidecar's ``rollout-verdict`` dispatch (docs/gitops.md)."""

    model_name: str
    champion_version: str
    challenger_version: str
    verdict: str
    reasons: tuple[str, ...]
    window: Mapping[str, Any] = field(default_factory=dict)

    def record(self) -> str:
        """The verdict as the tags record it: one line of JSON."""
        value = {"verdict": self.verdict, "reasons": list(self.reasons), "window": self.window}
        return json.dumps(value, sort_keys=True, ensure_ascii=False)


# --- the state, replayed from the events --------------------------------------------------------


def ordered(events: Iterable[RegistryEvent]) -> list[RegistryEvent]:
    return sorted(events, key=lambda event: (event.at, event.counter))


def rollout_state(events: Iterable[RegistryEvent]) -> State:
    """Replay the events as GTO reads them: a stage holds every version assigned to it and not
    unassigned since, and its current version is the one assigned last."""
    stages: dict[str, list[RegistryEvent]] = {}  # the assignments in force, the current last
    registered: list[str] = []
    history: list[str] = []
    for event in ordered(events):
        if event.kind == "registration" and event.version:
            registered.append(event.version)
        elif event.kind == "deregistration" and event.version in registered:
            registered.remove(event.version)
        elif event.stage and event.version and event.kind in ("assignment", "unassignment"):
            kept = [held for held in stages.get(event.stage, []) if held.version != event.version]
            stages[event.stage] = kept + ([event] if event.kind == "assignment" else [])
            if event.stage == PRODUCTION_STAGE:
                history = _production_history(history, event)
    current = {stage: held[-1] for stage, held in stages.items() if held}
    champion = current.get(PRODUCTION_STAGE)
    challengers = [current[stage] for stage in CHALLENGER_STAGES if stage in current]
    challenger = max(challengers, key=lambda e: (e.at, e.counter)) if challengers else None
    return State(
        champion=champion.version if champion else None,
        champion_tag=champion.tag if champion else None,
        challenger=challenger.version if challenger else None,
        mode=challenger.stage if challenger else None,
        registered=tuple(registered),
        production_history=tuple(history),
    )


def _production_history(history: list[str], event: RegistryEvent) -> list[str]:
    """The versions production went through, as a stack: a promotion pushes its version, a
    rollback pops the version it rolls back from, an unassignment removes its version. Rolling
    back twice therefore goes two versions back, never to the version just rolled back from."""
    version = str(event.version)
    if event.kind == "unassignment":
        return [entry for entry in history if entry != version]
    if event.fields.get("Action") == "rollback" and history:
        history = history[:-1]
    if not history or history[-1] != version:
        history = [*history, version]
    return history


# --- the plans ----------------------------------------------------------------------------------


def plan_promotion(state: State, name: str, version: str, stage: str) -> Plan:
    """Assign a registered version to a stage. A new challenger replaces the one before it; a
    challenger promoted to prod leaves its stage."""
    _check_version(version)
    if version not in state.registered:
        known = ", ".join(state.registered) or "none yet"
        raise StageError(f"{version} is not a registered version of '{name}' (registered: {known})")
    if stage == PRODUCTION_STAGE:
        if version == state.champion:
            raise StageError(f"{name} {version} is already in {stage}: nothing to promote")
        changes = [Change(True, stage, version, f"promote {name} {version} to {stage}")]
        if version == state.challenger and state.mode:
            subject = f"{name} {version} leaves {state.mode}: promoted to {stage}"
            changes.append(Change(False, state.mode, version, subject))
        return Plan("promote", tuple(changes), changes[0].subject, state.champion, stage)
    if stage in CHALLENGER_STAGES:
        return _challenge(state, name, version, stage)
    change = Change(True, stage, version, f"promote {name} {version} to {stage}")
    return Plan("promote", (change,), change.subject, None, stage)


def _challenge(state: State, name: str, version: str, stage: str) -> Plan:
    if state.champion is None:
        raise StageError(
            f"no version of '{name}' is in {PRODUCTION_STAGE}: a {stage} challenger needs a "
            f"champion to be compared with (promote one to {PRODUCTION_STAGE} first)"
        )
    if version == state.champion:
        raise StageError(f"{name} {version} is the champion: it cannot challenge itself")
    if (version, stage) == (state.challenger, state.mode):
        raise StageError(f"{name} {version} is already the {stage} challenger")
    changes = []
    if state.challenger and state.mode:
        subject = f"withdraw {name} {state.challenger} from {state.mode}: {version} challenges"
        changes.append(Change(False, state.mode, state.challenger, subject))
    changes.append(Change(True, stage, version, f"{name} {version} challenges in {stage}"))
    return Plan("promote", tuple(changes), changes[-1].subject, state.challenger, stage)


def plan_rollback(state: State, name: str) -> Plan:
    """Back to the last good state: withdraw the challenger if there is one (the champion keeps
    serving), else put the previous production version back."""
    if state.challenger and state.mode:
        subject = f"roll back {name}: withdraw the {state.mode} challenger {state.challenger}"
        change = Change(False, state.mode, state.challenger, subject)
        return Plan("rollback", (change,), subject, state.challenger, PRODUCTION_STAGE)
    if state.champion is None:
        raise StageError(f"no version of '{name}' is in {PRODUCTION_STAGE}: nothing to roll back")
    target = previous_production(state)
    if target is None:
        raise StageError(
            f"no earlier {PRODUCTION_STAGE} version of '{name}' to roll back to "
            f"({PRODUCTION_STAGE} history: {', '.join(state.production_history) or 'none'})"
        )
    subject = f"roll back {name} in {PRODUCTION_STAGE} to {target} (from {state.champion})"
    change = Change(True, PRODUCTION_STAGE, target, subject)
    return Plan("rollback", (change,), subject, state.champion, PRODUCTION_STAGE)


def previous_production(state: State) -> str | None:
    """The production version before the champion that is still registered."""
    history = list(state.production_history)
    while history and history[-1] == state.champion:
        history.pop()
    candidates = [version for version in history if version in state.registered]
    return candidates[-1] if candidates else None


def plan_verdict(state: State, name: str, verdict: Verdict) -> Plan:
    """What a verdict does: ``promote`` makes the challenger the champion, ``rollback`` withdraws
    it, ``hold`` changes nothing. A verdict about other versions than those deployed now (it
    crossed a promotion) is ignored."""
    if verdict.model_name != name:
        raise StageError(
            f"client_payload.model_name '{verdict.model_name}': this repository's model is "
            f"'{name}' (package.model_name in params.yaml)"
        )
    deployed = (state.champion, state.challenger)
    if (verdict.champion_version, verdict.challenger_version) != deployed:
        summary = (
            f"ignored: a {verdict.verdict} verdict on champion {verdict.champion_version} and "
            f"challenger {verdict.challenger_version}, but {describe(state)}"
        )
        return Plan("ignore", (), summary)
    if verdict.verdict == "hold":
        return Plan("hold", (), f"hold: {describe(state)}, unchanged")
    if verdict.verdict == "promote":
        return plan_promotion(state, name, verdict.challenger_version, PRODUCTION_STAGE)
    return plan_rollback(state, name)


def describe(state: State) -> str:
    challenger = f"{state.mode} challenger {state.challenger}" if state.challenger else "none"
    return f"the champion is {state.champion or 'none'} and the challenger {challenger}"


def parse_verdict(payload: Mapping[str, Any]) -> Verdict:
    """The sidecar's ``client_payload``, checked field by field (it arrives from outside)."""

    def text(key: str) -> str:
        value = payload.get(key)
        if not isinstance(value, str) or not value.strip():
            raise StageError(f"client_payload.{key}: expected a non-empty string, got {value!r}")
        return value.strip()

    verdict = text("verdict")
    if verdict not in VERDICTS:
        raise StageError(f"client_payload.verdict '{verdict}': expected one of {VERDICTS}")
    reasons = payload.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise StageError(f"client_payload.reasons: expected a list of strings, got {reasons!r}")
    window = payload.get("window", {})
    if not isinstance(window, dict):
        raise StageError(f"client_payload.window: expected an object, got {window!r}")
    versions = {key: text(key) for key in ("champion_version", "challenger_version")}
    for key, version in versions.items():
        if not VERSION_PATTERN.match(version):
            raise StageError(f"client_payload.{key} '{version}': expected vMAJOR.MINOR.PATCH")
    return Verdict(
        model_name=text("model_name"),
        champion_version=versions["champion_version"],
        challenger_version=versions["challenger_version"],
        verdict=verdict,
        reasons=tuple(reasons[:MAX_REASONS]),
        window=window,
    )


def _check_version(version: str) -> None:
    if not VERSION_PATTERN.match(version):
        raise StageError(f"model version '{version}': expected vMAJOR.MINOR.PATCH, e.g. v1.2.0")


# --- what the tags say --------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """Who asked, why, and through what: recorded in every tag of a plan."""

    actor: str
    reason: str
    trigger: str  # make, workflow_dispatch, repository_dispatch rollout-verdict
    run_url: str = ""
    verdict: Verdict | None = None


def change_message(name: str, plan: Plan, change: Change, context: Context) -> str:
    fields = {
        "Action": plan.action,
        "Model": name,
        "Version": change.version,
        "Stage": change.stage,
        "Previous": plan.previous,
        "Actor": context.actor,
        "Reason": context.reason,
        "Trigger": context.trigger,
        "Run": context.run_url,
        "Verdict": context.verdict.record() if context.verdict else None,
    }
    return format_record(change.subject, fields)


def verdict_reason(verdict: Verdict) -> str:
    because = "; ".join(verdict.reasons) or "no reason given"
    return f"the monitoring sidecar's verdict: {verdict.verdict} ({because})"


def withdrawal_release(withdrawal: RegistryEvent, state: State) -> str | None:
    """What to release after a withdrawal pushed from a clone (which, unlike the rollout
    workflow's pushes, starts the release workflow): the champion's ``prod`` tag, which deploys
    production as the stages say now. None when the withdrawal belongs to a promotion whose
    assignment starts a release of its own (a challenger leaving for ``prod``, or making way
    for another challenger), or when no version is in ``prod``."""
    if withdrawal.kind != "unassignment":
        raise StageError(f"'{withdrawal.tag}' is not a withdrawal (<model>#<stage>!#N)")
    if withdrawal.fields.get("Action") == "promote":
        return None
    return state.champion_tag


def release_tag(plan: Plan, created: Sequence[tuple[Change, str]], state: State) -> str | None:
    """The tag the release runs on after the plan: the assignment it made to the stage to
    release, or (a withdrawal) the tag that put the champion in production."""
    for change, tag in created:
        if change.assign and change.stage == plan.release_stage:
            return tag
    if plan.release_stage == PRODUCTION_STAGE and created:
        return state.champion_tag
    return None
