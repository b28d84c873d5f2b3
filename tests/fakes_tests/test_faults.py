"""The fault plan on its own: scripting, seeded schedules, bounds and replay."""

from __future__ import annotations

from tests.fakes.faults import APPLIED_KINDS, FaultKind, Faults


def test_scripted_faults_match_operation_skip_and_times():
    faults = Faults()
    faults.inject(FaultKind.HTTP_500, operation="Create", skip=1, times=2)
    faults.inject("drop_after_apply")  # any operation, once
    decided = [faults.decide(op) for op in ["List", "Create", "Create", "Create", "Create", "List"]]
    assert decided == [
        FaultKind.DROP_AFTER_APPLY,
        None,
        FaultKind.HTTP_500,
        FaultKind.HTTP_500,
        None,
        None,
    ]
    assert [(e.seq, e.operation, e.call, e.source) for e in faults.events] == [
        (1, "List", 1, "script"),
        (3, "Create", 2, "script"),
        (4, "Create", 3, "script"),
    ]
    assert faults.events[0].applied and not faults.events[1].applied
    assert faults.count(FaultKind.HTTP_500) == 2 and faults.count(operation="List") == 1


def test_applied_kinds_are_the_after_apply_ones():
    assert {k.value for k in APPLIED_KINDS} == {
        "timeout_after_apply",
        "drop_after_apply",
        "http_500_after_apply",
    }


def schedule(seed, operations_in_order, **kwargs):
    faults = Faults()
    faults.randomize(seed, **kwargs)
    for op in operations_in_order:
        faults.decide(op)
    return faults


def test_random_decisions_depend_only_on_seed_operation_and_call_number():
    ops = ["A"] * 30 + ["B"] * 30
    interleaved = [op for pair in zip(["A"] * 30, ["B"] * 30, strict=True) for op in pair]
    one = schedule(5, ops, rate=0.3, max_consecutive=100)
    two = schedule(5, interleaved, rate=0.3, max_consecutive=100)
    key = lambda f: sorted((e.operation, e.call, e.kind) for e in f.events)  # noqa: E731
    assert key(one) == key(two) and key(one)
    assert key(schedule(6, ops, rate=0.3, max_consecutive=100)) != key(one)
    assert {e.kind for e in one.events} <= set(FaultKind)


def test_bounds_operations_kinds_and_limit():
    bounded = schedule(1, ["A"] * 9, rate=1.0, max_consecutive=2)
    assert [e.call for e in bounded.events] == [1, 2, 4, 5, 7, 8]
    only_b = schedule(1, ["A", "B", "A", "B"], rate=1.0, operations={"B"})
    assert {e.operation for e in only_b.events} == {"B"}
    kinds = schedule(1, ["A"] * 40, rate=1.0, kinds=("throttle",), max_consecutive=100)
    assert {e.kind for e in kinds.events} == {FaultKind.THROTTLE}
    limited = schedule(1, ["A"] * 40, rate=1.0, max_consecutive=100, limit=3)
    assert len(limited.events) == 3
    assert "seed=1" in limited.describe() and "limit=3" in limited.describe()


def test_clear_stops_injection_but_keeps_the_record():
    faults = schedule(1, ["A"] * 3, rate=1.0, max_consecutive=100)
    faults.inject("http_503")
    faults.clear()
    assert faults.decide("A") is None
    assert len(faults.events) == 3
    assert Faults().describe() == "no faults"
