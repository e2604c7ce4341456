"""The replay protocol on its own: one episode at a time against the toy app's orchestrators."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.app_loader import FunctionIndex
from devhost.durable.history import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    RUNNING,
    EventType,
    event,
    flatten_actions,
    format_timestamp,
)
from devhost.durable.replay import EpisodeInput, EpisodeResult, run_episode

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Replayer:
    """Feeds episodes by hand: the history grows exactly as the engine would grow it."""

    def __init__(self, index: FunctionIndex, name: str, payload: Any) -> None:
        self.handle = index.orchestrators[name]
        self.name = name
        self.input = json.dumps(payload)
        self.history: list[dict[str, Any]] = []
        self.now = T0

    def episode(self, *new_events: dict[str, Any]) -> EpisodeResult:
        self.now += timedelta(seconds=1)
        result = run_episode(
            self.handle,
            EpisodeInput(
                instance_id="inst-1",
                name=self.name,
                input=self.input,
                parent_instance_id=None,
                history=self.history,
                new_events=list(new_events),
                now=self.now,
                execution_id="exec-1",
            ),
        )
        self.history += result.appended
        return result

    def start(self) -> EpisodeResult:
        return self.episode(
            event(
                EventType.EXECUTION_STARTED, self.now, Name=self.name, Input=self.input, Version=""
            )
        )

    def completed(self, task_id: int, value: Any) -> dict[str, Any]:
        return event(
            EventType.TASK_COMPLETED, self.now, TaskScheduledId=task_id, Result=json.dumps(value)
        )

    def failed(self, task_id: int, reason: str) -> dict[str, Any]:
        return event(
            EventType.TASK_FAILED, self.now, TaskScheduledId=task_id, Reason=reason, Details="d"
        )

    def fired(self, timer_id: int) -> dict[str, Any]:
        return event(
            EventType.TIMER_FIRED, self.now, TimerId=timer_id, FireAt=format_timestamp(self.now)
        )


def scheduled(result: EpisodeResult) -> list[tuple[int, str, Any]]:
    return [(a.task_id, a.name, json.loads(a.input or "null")) for a in result.activities]


def test_sequence_schedules_one_activity_per_episode_with_sequential_ids(toy_index):
    replay = Replayer(toy_index, "sequence", 5)
    first = replay.start()
    assert first.status == RUNNING
    assert scheduled(first) == [(0, "double", 5)]
    assert [e["EventType"] for e in first.appended] == [
        EventType.ORCHESTRATOR_STARTED,
        EventType.EXECUTION_STARTED,
        EventType.TASK_SCHEDULED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]
    assert scheduled(replay.episode(replay.completed(0, 10))) == [(1, "double", 10)]
    assert scheduled(replay.episode(replay.completed(1, 20))) == [(2, "double", 20)]
    done = replay.episode(replay.completed(2, 40))
    assert done.status == COMPLETED
    assert json.loads(done.output or "") == [10, 20, 40]
    assert done.appended[-2]["EventType"] == EventType.EXECUTION_COMPLETED


def test_fan_out_schedules_all_children_at_once_in_order(toy_index):
    replay = Replayer(toy_index, "fan_out", 4)
    result = replay.start()
    assert [(tid, name) for tid, name, _ in scheduled(result)] == [
        (i, "slow_echo") for i in range(4)
    ]
    # completions in any order; the result keeps the task order
    replay.episode(replay.completed(2, {"echo": 2}), replay.completed(0, {"echo": 0}))
    done = replay.episode(replay.completed(3, {"echo": 3}), replay.completed(1, {"echo": 1}))
    assert done.status == COMPLETED
    assert json.loads(done.output or "") == [0, 1, 2, 3]


def test_failed_activity_reaches_the_orchestrator_and_fails_it(toy_index):
    replay = Replayer(toy_index, "failing", "why")
    replay.start()
    result = replay.episode(replay.failed(0, "Activity function 'boom' failed: ValueError: boom"))
    assert result.status == FAILED
    assert "ValueError: boom" in (result.error or "")
    message = json.loads(result.output or "")
    assert message.startswith("Orchestrator function 'failing' failed: ")
    completed = result.appended[-2]
    assert completed["EventType"] == EventType.EXECUTION_COMPLETED
    assert completed["OrchestrationStatus"] == FAILED


def test_retry_allocates_a_timer_then_a_new_attempt_then_gives_up(toy_index):
    replay = Replayer(toy_index, "with_retry", {"key": "x", "fail_times": 9, "attempts": 2})
    assert scheduled(replay.start())[0][:2] == (0, "flaky")
    # attempt 1 fails -> the host creates the retry timer with the next id
    after_failure = replay.episode(replay.failed(0, "first"))
    assert [(t.timer_id, t.fire_at - replay.now) for t in after_failure.timers] == [
        (1, timedelta(milliseconds=50))
    ]
    assert after_failure.activities == []
    # the timer fires -> attempt 2 with id 2
    assert scheduled(replay.episode(replay.fired(1)))[0][:2] == (2, "flaky")
    # attempt 2 fails -> one more timer (the SDK waits for it before failing the task)
    assert [t.timer_id for t in replay.episode(replay.failed(2, "second")).timers] == [3]
    done = replay.episode(replay.fired(3))
    assert done.status == COMPLETED
    assert json.loads(done.output or "")["error"].startswith("second")


def test_retry_success_continues_with_the_next_id(toy_index):
    replay = Replayer(toy_index, "with_retry", {"key": "y", "fail_times": 1, "attempts": 3})
    replay.start()
    replay.episode(replay.failed(0, "first"))
    replay.episode(replay.fired(1))
    result = replay.episode(replay.completed(2, "ok after 2"))
    assert scheduled(result) == [(3, "shout", "ok after 2")]


def test_retries_in_a_task_all_keep_the_sdk_and_the_host_in_step(toy_index):
    """Inside one ``task_all`` both sides number retry timers and attempts in event order."""
    replay = Replayer(toy_index, "parallel_retries", "k")
    first = replay.start()
    assert [tid for tid, _, _ in scheduled(first)] == [0, 1, 2]
    # several failures in one episode: each allocates its timer where it is processed
    both = replay.episode(replay.completed(1, 42), replay.failed(0, "a1"), replay.failed(2, "b1"))
    assert [t.timer_id for t in both.timers] == [3, 4]
    assert scheduled(replay.episode(replay.fired(4)))[0][0] == 5  # b, attempt 2
    assert scheduled(replay.episode(replay.fired(3)))[0][0] == 6  # a, attempt 2
    replay.episode(replay.completed(5, "ok b"))
    replay.episode(replay.failed(6, "a2"))  # timer 7
    replay.episode(replay.fired(7))  # a, attempt 3 = id 8
    tail = replay.episode(replay.completed(8, "ok a"))
    assert scheduled(tail) == [(9, "shout", "done")]
    done = replay.episode(replay.completed(9, "DONE"))
    assert json.loads(done.output or "") == ["ok a", 42, "ok b", "DONE"]


def test_timer_and_external_event_with_cancellation(toy_index):
    replay = Replayer(toy_index, "approval", 30)
    started = replay.start()
    assert [t.timer_id for t in started.timers] == [0]
    assert started.timers[0].fire_at == replay.now + timedelta(seconds=30)
    assert json.loads(started.custom_status or "") == {"stage": "waiting"}
    raised = event(EventType.EVENT_RAISED, replay.now, Name="approve", Input=json.dumps("yes"))
    done = replay.episode(raised)
    assert done.status == COMPLETED
    assert done.timers == []  # the cancelled timer is not scheduled again
    assert json.loads(done.output or "") == {"approved": "yes"}
    assert json.loads(done.custom_status or "") == {"stage": "approved"}


def test_timer_firing_resumes_with_the_fire_time(toy_index):
    replay = Replayer(toy_index, "approval", 5)
    replay.start()
    replay.now += timedelta(seconds=5)
    done = replay.episode(replay.fired(0))
    assert json.loads(done.output or "") == {"approved": None}


def test_continue_as_new_returns_the_next_input(toy_index):
    replay = Replayer(toy_index, "counter", 1)
    replay.start()
    result = replay.episode(replay.completed(0, 2))
    assert result.status == CONTINUED_AS_NEW
    assert json.loads(result.continue_as_new_input or "") == 2


def test_sub_orchestration_gets_an_id_and_instance_id(toy_index):
    replay = Replayer(toy_index, "parent", {})
    result = replay.start()
    [sub] = result.sub_orchestrations
    assert (sub.task_id, sub.name, sub.instance_id, sub.input) == (0, "sequence", "exec-1:0", "3")
    completed = event(
        EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, replay.now, TaskScheduledId=0, Result="[6]"
    )
    [retried] = replay.episode(completed).sub_orchestrations
    assert (retried.task_id, retried.name) == (1, "with_retry")
    failed = event(
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        replay.now,
        TaskScheduledId=1,
        Reason="no",
        Details="",
    )
    assert [t.timer_id for t in replay.episode(failed).timers] == [2]
    [again] = replay.episode(replay.fired(2)).sub_orchestrations
    assert (again.task_id, again.instance_id) == (3, "exec-1:3")


def test_non_deterministic_replay_fails_the_orchestration(toy_index):
    replay = Replayer(toy_index, "sequence", 5)
    replay.start()
    scheduled_event = next(e for e in replay.history if e["EventType"] == EventType.TASK_SCHEDULED)
    scheduled_event["Name"] = "shout"  # history says another activity was scheduled
    result = replay.episode(replay.completed(0, 10))
    assert result.status == FAILED
    assert "Non-deterministic" in (result.error or "")


def test_orchestrator_exception_state_is_parsed_from_out_of_proc_data(toy_index):
    """The SDK raises ``<message>$OutOfProcData$:<state>``; actions before the error are kept."""
    replay = Replayer(toy_index, "failing", "x")
    replay.start()
    result = replay.episode(replay.failed(0, "Activity function 'boom' failed: E: x"))
    assert result.outcome.raw_state.get("isDone") is False
    assert [a["functionName"] for a in result.outcome.actions] == ["boom"]


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        ([[{"actionType": 0, "functionName": "a"}], [{"actionType": 5}]], ["a", None]),
        (
            [
                [
                    {
                        "actionType": 12,
                        "compoundActions": [
                            {"actionType": 0, "functionName": "b"},
                            {
                                "actionType": 11,
                                "compoundActions": [{"actionType": 6, "externalEventName": "e"}],
                            },
                        ],
                    }
                ]
            ],
            ["b", None],
        ),
    ],
)
def test_flatten_actions_expands_compound_actions_in_order(actions, expected):
    flat = list(flatten_actions(actions))
    assert [a.get("functionName") for a in flat] == expected
