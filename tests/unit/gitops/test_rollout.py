"""The promotion rules: the state the tags give, promotions, rollbacks, the sidecar's verdicts,
and what the tags' messages record."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops.core.errors import StageError
from mlops.gitops.records import format_record, parse_record
from mlops.gitops.rollout import (
    Change,
    Context,
    RegistryEvent,
    change_message,
    parse_verdict,
    plan_promotion,
    plan_rollback,
    plan_verdict,
    previous_production,
    release_tag,
    rollout_state,
    withdrawal_release,
)

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NAME = "churn model"


class Registry:
    """Events as the tags would give them, one second apart, GTO's counter increasing."""

    def __init__(self) -> None:
        self.events: list[RegistryEvent] = []

    def add(
        self, kind: str, version: str, stage: str | None = None, action: str = "", same_second=False
    ) -> str:
        counter = len(self.events) + 1
        if kind == "registration":
            tag = f"{NAME}@{version}"
        else:
            tag = f"{NAME}#{stage}{'!' if kind == 'unassignment' else ''}#{counter}"
        seconds = len(self.events) - (1 if same_second else 0)
        message = format_record(f"{kind} {version}", {"Action": action})
        self.events.append(
            RegistryEvent(
                tag,
                kind,
                version,
                stage,
                START + timedelta(seconds=seconds),
                counter,  # type: ignore[arg-type]
                "ci",
                message,
                f"commit-{version}",
            )
        )
        return tag

    def register(self, *versions: str) -> "Registry":
        for version in versions:
            self.add("registration", version)
        return self

    def state(self) -> Any:
        return rollout_state(reversed(self.events))  # GTO's history lists the newest first


def registry(*versions: str) -> Registry:
    return Registry().register(*versions)


def test_the_champion_is_the_version_assigned_to_prod_last() -> None:
    tags = registry("v1.0.0", "v1.1.0")
    tags.add("assignment", "v1.0.0", "prod", "promote")
    last = tags.add("assignment", "v1.1.0", "prod", "promote")
    state = tags.state()
    assert (state.champion, state.champion_tag, state.challenger) == ("v1.1.0", last, None)
    assert state.registered == ("v1.0.0", "v1.1.0")


def test_within_one_second_gtos_counter_orders_the_tags() -> None:
    tags = registry("v1.0.0", "v1.1.0")
    tags.add("assignment", "v1.1.0", "prod", "promote")
    tags.add("assignment", "v1.0.0", "prod", "rollback", same_second=True)
    assert tags.state().champion == "v1.0.0"


def test_unassigning_the_champion_gives_prod_back_to_the_version_before() -> None:
    """GTO's reading: a stage holds every version assigned and not unassigned since."""
    tags = registry("v1.0.0", "v1.1.0")
    tags.add("assignment", "v1.0.0", "prod")
    tags.add("assignment", "v1.1.0", "prod")
    tags.add("unassignment", "v1.1.0", "prod")
    assert tags.state().champion == "v1.0.0"


def test_promoting_to_prod_and_refusing_what_is_not_a_change() -> None:
    tags = registry("v1.0.0", "v1.1.0")
    tags.add("assignment", "v1.0.0", "prod", "promote")
    state = tags.state()
    plan = plan_promotion(state, NAME, "v1.1.0", "prod")
    assert plan.changes == (Change(True, "prod", "v1.1.0", f"promote {NAME} v1.1.0 to prod"),)
    assert (plan.action, plan.previous, plan.release_stage) == ("promote", "v1.0.0", "prod")
    with pytest.raises(StageError, match="already in prod"):
        plan_promotion(state, NAME, "v1.0.0", "prod")
    with pytest.raises(
        StageError, match=r"v2\.0\.0 is not a registered version .*v1\.0\.0, v1\.1\.0"
    ):
        plan_promotion(state, NAME, "v2.0.0", "prod")
    with pytest.raises(StageError, match=r"expected vMAJOR\.MINOR\.PATCH"):
        plan_promotion(state, NAME, "1.1", "prod")


def test_a_challenger_needs_a_champion_and_replaces_the_one_before() -> None:
    tags = registry("v1.0.0", "v1.1.0", "v1.2.0")
    with pytest.raises(StageError, match="needs a champion"):
        plan_promotion(tags.state(), NAME, "v1.1.0", "canary")
    tags.add("assignment", "v1.0.0", "prod", "promote")
    with pytest.raises(StageError, match="cannot challenge itself"):
        plan_promotion(tags.state(), NAME, "v1.0.0", "shadow")
    tags.add("assignment", "v1.1.0", "shadow", "promote")
    state = tags.state()
    assert (state.challenger, state.mode) == ("v1.1.0", "shadow")
    with pytest.raises(StageError, match="already the shadow challenger"):
        plan_promotion(state, NAME, "v1.1.0", "shadow")
    # the shadow challenger moves on to a canary: it leaves shadow
    moved = plan_promotion(state, NAME, "v1.1.0", "canary")
    assert [(c.assign, c.stage, c.version) for c in moved.changes] == [
        (False, "shadow", "v1.1.0"),
        (True, "canary", "v1.1.0"),
    ]
    replaced = plan_promotion(state, NAME, "v1.2.0", "canary")
    assert [(c.assign, c.stage, c.version) for c in replaced.changes] == [
        (False, "shadow", "v1.1.0"),
        (True, "canary", "v1.2.0"),
    ]
    assert replaced.release_stage == "canary"


def test_a_challenger_promoted_to_prod_leaves_its_stage() -> None:
    tags = registry("v1.0.0", "v1.1.0")
    tags.add("assignment", "v1.0.0", "prod", "promote")
    tags.add("assignment", "v1.1.0", "canary", "promote")
    plan = plan_promotion(tags.state(), NAME, "v1.1.0", "prod")
    assert [(c.assign, c.stage, c.version) for c in plan.changes] == [
        (True, "prod", "v1.1.0"),
        (False, "canary", "v1.1.0"),
    ]
    for change in plan.changes:
        tags.add("assignment" if change.assign else "unassignment", change.version, change.stage)
    state = tags.state()
    assert (state.champion, state.challenger, state.mode) == ("v1.1.0", None, None)


def test_a_rollback_withdraws_the_challenger_first() -> None:
    tags = registry("v1.0.0", "v1.1.0")
    prod = tags.add("assignment", "v1.0.0", "prod", "promote")
    tags.add("assignment", "v1.1.0", "canary", "promote")
    state = tags.state()
    plan = plan_rollback(state, NAME)
    assert plan.changes == (
        Change(
            False, "canary", "v1.1.0", f"roll back {NAME}: withdraw the canary challenger v1.1.0"
        ),
    )
    assert plan.previous == "v1.1.0"
    made = tags.add("unassignment", "v1.1.0", "canary", "rollback")
    # the release redeploys the champion, through the tag that put it in prod
    assert release_tag(plan, [(plan.changes[0], made)], state) == prod
    after = tags.state()
    assert (after.champion, after.challenger) == ("v1.0.0", None)


def test_rolling_back_twice_goes_two_versions_back_not_forth() -> None:
    tags = registry("v1.0.0", "v1.1.0", "v1.2.0")
    for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
        tags.add("assignment", version, "prod", "promote")
    first = plan_rollback(tags.state(), NAME)
    assert first.changes[0].version == "v1.1.0" and first.previous == "v1.2.0"
    assert first.changes[0].subject == f"roll back {NAME} in prod to v1.1.0 (from v1.2.0)"
    tags.add("assignment", "v1.1.0", "prod", "rollback")
    second = plan_rollback(tags.state(), NAME)
    assert second.changes[0].version == "v1.0.0"  # not v1.2.0, the version just rolled back from
    tags.add("assignment", "v1.0.0", "prod", "rollback")
    with pytest.raises(StageError, match=r"no earlier prod version .*\(prod history: v1\.0\.0\)"):
        plan_rollback(tags.state(), NAME)


def test_a_version_promoted_again_after_a_rollback_counts_again() -> None:
    tags = registry("v1.0.0", "v1.1.0", "v1.2.0")
    tags.add("assignment", "v1.0.0", "prod", "promote")
    tags.add("assignment", "v1.1.0", "prod", "promote")
    tags.add("assignment", "v1.0.0", "prod", "rollback")
    tags.add("assignment", "v1.1.0", "prod", "promote")  # fixed and promoted again by hand
    assert previous_production(tags.state()) == "v1.0.0"


def test_a_rollback_never_goes_to_a_deregistered_version() -> None:
    tags = registry("v1.0.0", "v1.1.0", "v1.2.0")
    for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
        tags.add("assignment", version, "prod", "promote")
    tags.add("deregistration", "v1.1.0")
    assert plan_rollback(tags.state(), NAME).changes[0].version == "v1.0.0"


def test_nothing_to_roll_back_without_a_champion() -> None:
    with pytest.raises(StageError, match="nothing to roll back"):
        plan_rollback(registry("v1.0.0").state(), NAME)


def verdict_payload(**changes: Any) -> dict[str, Any]:
    payload = {
        "model_name": NAME,
        "champion_version": "v1.0.0",
        "challenger_version": "v1.1.0",
        "verdict": "promote",
        "reasons": ["accuracy 0.93 vs 0.91 over 1200 labelled records"],
        "window": {"start": "2026-11-02T08:00:00Z", "end": "2026-11-02T09:00:00Z"},
    }
    return {**payload, **changes}


@pytest.fixture
def canary() -> Registry:
    tags = registry("v1.0.0", "v1.1.0")
    tags.add("assignment", "v1.0.0", "prod", "promote")
    tags.add("assignment", "v1.1.0", "canary", "promote")
    return tags


def test_the_verdicts_promote_hold_and_roll_back(canary: Registry) -> None:
    state = canary.state()
    promote = plan_verdict(state, NAME, parse_verdict(verdict_payload()))
    assert [(c.assign, c.stage, c.version) for c in promote.changes] == [
        (True, "prod", "v1.1.0"),
        (False, "canary", "v1.1.0"),
    ]
    hold = plan_verdict(state, NAME, parse_verdict(verdict_payload(verdict="hold")))
    assert (hold.action, hold.changes) == ("hold", ())
    rollback = plan_verdict(state, NAME, parse_verdict(verdict_payload(verdict="rollback")))
    assert [(c.assign, c.stage, c.version) for c in rollback.changes] == [
        (False, "canary", "v1.1.0")
    ]


def test_a_verdict_on_versions_no_longer_deployed_is_ignored(canary: Registry) -> None:
    """It crossed a promotion made by hand: acting on it would undo that."""
    stale = parse_verdict(verdict_payload(champion_version="v0.9.0", verdict="rollback"))
    plan = plan_verdict(canary.state(), NAME, stale)
    assert (plan.action, plan.changes) == ("ignore", ())
    assert "champion v0.9.0" in plan.summary and "canary challenger v1.1.0" in plan.summary


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"verdict": "ship it"}, "client_payload.verdict 'ship it': expected one of"),
        ({"verdict": None}, "client_payload.verdict: expected a non-empty string"),
        ({"challenger_version": "latest"}, "client_payload.challenger_version 'latest'"),
        ({"reasons": "better"}, "client_payload.reasons: expected a list of strings"),
        ({"window": [1, 2]}, "client_payload.window: expected an object"),
        ({"model_name": ""}, "client_payload.model_name: expected a non-empty string"),
    ],
)
def test_a_malformed_verdict_is_refused_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(StageError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_verdict(verdict_payload(**changes))


def test_a_verdict_for_another_model_is_refused(canary: Registry) -> None:
    other = parse_verdict(verdict_payload(model_name="penguins"))
    with pytest.raises(StageError, match="this repository's model is 'churn model'"):
        plan_verdict(canary.state(), NAME, other)


def test_the_tag_message_records_who_why_and_the_verdict(canary: Registry) -> None:
    verdict = parse_verdict(verdict_payload())
    plan = plan_verdict(canary.state(), NAME, verdict)
    context = Context(
        "mlops-monitor", "better\non two lines", "repository_dispatch", "https://r/1", verdict
    )
    subject, fields = parse_record(change_message(NAME, plan, plan.changes[0], context))
    assert subject == f"promote {NAME} v1.1.0 to prod"
    assert fields["Action"] == "promote" and fields["Previous"] == "v1.0.0"
    assert fields["Actor"] == "mlops-monitor" and fields["Reason"] == "better on two lines"
    assert fields["Trigger"] == "repository_dispatch" and fields["Run"] == "https://r/1"
    assert '"verdict": "promote"' in fields["Verdict"] and "1200 labelled" in fields["Verdict"]


def test_a_message_written_another_way_has_no_fields() -> None:
    assert parse_record("Register x v1.0.0: model.onnx sha256=ab") == (
        "Register x v1.0.0: model.onnx sha256=ab",
        {},
    )
    assert parse_record("subject\n\nfree text: with a colon\nmore text\n")[1] == {}
    assert format_record("s", {"A": "1", "B": None, "C": ""}) == "s\n\nA: 1\n"


def test_a_withdrawal_pushed_by_hand_releases_the_champion_unless_its_promotion_does() -> None:
    """A clone's push starts the release workflow on the withdrawal tag: production is then
    released as the stages say (the champion's prod tag), except when the withdrawal is one half
    of a promotion whose assignment starts a release of its own."""
    tags = registry("v1.0.0", "v1.1.0", "v1.2.0")
    champion = tags.add("assignment", "v1.0.0", "prod", "promote")
    tags.add("assignment", "v1.1.0", "canary", "promote")
    rollback = tags.add("unassignment", "v1.1.0", "canary", "rollback")
    by_hand = tags.add("unassignment", "v1.1.0", "shadow")  # `gto unassign`: no Action field
    events = {event.tag: event for event in tags.events}
    state = tags.state()
    assert withdrawal_release(events[rollback], state) == champion
    assert withdrawal_release(events[by_hand], state) == champion
    tags.add("assignment", "v1.2.0", "canary", "promote")
    promoted = tags.add("assignment", "v1.2.0", "prod", "promote")
    left = tags.add("unassignment", "v1.2.0", "canary", "promote")  # released by `promoted`
    events = {event.tag: event for event in tags.events}
    assert withdrawal_release(events[left], tags.state()) is None
    assert tags.state().champion_tag == promoted
    with pytest.raises(StageError, match=r"is not a withdrawal \(<model>#<stage>!#N\)"):
        withdrawal_release(events[promoted], tags.state())


def test_withdrawing_the_only_champion_leaves_nothing_to_release() -> None:
    tags = registry("v1.0.0")
    tags.add("assignment", "v1.0.0", "prod", "promote")
    withdrawn = tags.add("unassignment", "v1.0.0", "prod", "rollback")
    (event,) = [event for event in tags.events if event.tag == withdrawn]
    assert withdrawal_release(event, tags.state()) is None
