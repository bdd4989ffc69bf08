"""Fair queuing between developers: a freed slot goes to the waiting flows in turn."""

from __future__ import annotations

import asyncio

import pytest

from coderig.serve.auth import Caller
from coderig.serve.fair import FairSlots


async def _waiter(slots: FairSlots, flow: str, name: str, served: list[str]) -> None:
    await slots.acquire(flow)
    served.append(name)


async def _queue(slots: FairSlots, arrivals: list[tuple[str, str]], served: list[str]):
    tasks = []
    for flow, name in arrivals:
        tasks.append(asyncio.create_task(_waiter(slots, flow, name, served)))
        await asyncio.sleep(0)  # arrive in this order
    return tasks


def test_a_quiet_developer_waits_behind_one_request_not_behind_the_noisy_ones_queue():
    async def scenario() -> list[str]:
        slots = FairSlots(1)
        await slots.acquire("noisy")  # the slot is busy
        served: list[str] = []
        noisy = [("noisy", f"n{i}") for i in range(10)]
        tasks = await _queue(slots, [*noisy, ("quiet", "q0")], served)
        for _ in range(11):
            slots.release()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return served

    served = asyncio.run(scenario())
    assert served.index("q0") == 1  # after the one noisy request that was first in line
    assert [s for s in served if s.startswith("n")] == [f"n{i}" for i in range(10)]


def test_flows_take_turns_one_request_each():
    async def scenario() -> list[str]:
        slots = FairSlots(1)
        await slots.acquire("x")
        served: list[str] = []
        arrivals = [("a", "a0"), ("a", "a1"), ("a", "a2"), ("b", "b0"), ("b", "b1"), ("c", "c0")]
        tasks = await _queue(slots, arrivals, served)
        for _ in arrivals:
            slots.release()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return served

    assert asyncio.run(scenario()) == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_free_slots_are_taken_at_once_and_cancelled_waiters_leak_nothing():
    async def scenario() -> tuple[int, bool]:
        slots = FairSlots(2)
        await slots.acquire("a")
        await slots.acquire("b")
        assert slots.locked()
        waiting = asyncio.create_task(slots.acquire("c"))
        await asyncio.sleep(0)
        assert slots.waiting == 1
        waiting.cancel()  # the client left while queued
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # granted and cancelled before it ran: the slot is given back
        granted = asyncio.create_task(slots.acquire("d"))
        await asyncio.sleep(0)
        slots.release()
        granted.cancel()
        with pytest.raises(asyncio.CancelledError):
            await granted
        slots.release()
        await asyncio.wait_for(slots.acquire("e"), 1)
        await asyncio.wait_for(slots.acquire("f"), 1)
        return slots.waiting, slots.locked()

    assert asyncio.run(scenario()) == (0, True)


def test_a_developer_is_their_key_else_their_user_or_session_else_their_address():
    assert Caller("alice", "s1", "10.0.0.1").flow("u") == "key:alice"
    assert Caller(None, "s1", "10.0.0.1").flow("u") == "user:u"
    assert Caller(None, "s1", "10.0.0.1").flow() == "user:s1"
    assert Caller(None, None, "10.0.0.1").flow() == "addr:10.0.0.1"


def test_a_new_request_counts_only_the_turns_before_its_own_as_ahead_of_it():
    async def scenario() -> tuple[int, int, int]:
        slots = FairSlots(1)
        await slots.acquire("x")
        tasks = [asyncio.create_task(slots.acquire("noisy")) for _ in range(10)]
        tasks.append(asyncio.create_task(slots.acquire("quiet")))
        await asyncio.sleep(0)
        counts = (slots.ahead_of("newcomer"), slots.ahead_of("quiet"), slots.ahead_of("noisy"))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return counts

    # a newcomer waits one noisy turn and the quiet one's; the quiet developer's second request
    # two of each; the noisy developer's next one behind all eleven
    assert asyncio.run(scenario()) == (2, 3, 11)


def test_with_share_on_a_single_developer_still_gets_every_slot():
    async def scenario() -> int:
        slots = FairSlots(4, share=True)
        for _ in range(4):
            await asyncio.wait_for(slots.acquire("script"), 1)
        return slots.running("script")

    assert asyncio.run(scenario()) == 4


def test_with_share_on_a_burst_leaves_slots_free_for_the_other_developers_seen():
    async def scenario() -> tuple[int, bool, bool, int]:
        slots = FairSlots(4, share=True)
        await slots.acquire("quiet-a")  # three developers seen recently...
        slots.release("quiet-a")
        await slots.acquire("quiet-b")
        slots.release("quiet-b")
        burst = [asyncio.create_task(slots.acquire("noisy")) for _ in range(6)]
        await asyncio.sleep(0)
        running = slots.running("noisy")  # ...so the burst runs ceil(4 / 3) = 2 at a time
        # a quiet developer's request takes a free slot at once, not after the burst
        quiet = asyncio.create_task(slots.acquire("quiet-a"))
        await asyncio.sleep(0)
        quiet_ran = quiet.done()
        # one of the burst finishing lets the next of the burst in
        slots.release("noisy")
        await asyncio.sleep(0)
        next_ran = sum(t.done() for t in burst) == 3
        for task in burst:
            task.cancel()
        await asyncio.gather(*burst, return_exceptions=True)
        return running, quiet_ran, next_ran, slots.share_of()

    assert asyncio.run(scenario()) == (2, True, True, 2)


def test_a_held_developer_gets_the_idle_slots_once_the_others_leave_the_window():
    async def scenario() -> int:
        slots = FairSlots(2, share=True, window=0.2)
        await slots.acquire("quiet")
        slots.release("quiet")
        burst = [asyncio.create_task(slots.acquire("noisy")) for _ in range(2)]
        await asyncio.sleep(0)
        held = sum(t.done() for t in burst)
        await asyncio.wait_for(asyncio.gather(*burst), 2)  # the quiet one ages out: both run
        return held

    assert asyncio.run(scenario()) == 1


def test_share_off_is_plain_fair_queuing():
    async def scenario() -> int:
        slots = FairSlots(4)
        await slots.acquire("quiet")
        slots.release("quiet")
        for _ in range(4):
            await asyncio.wait_for(slots.acquire("noisy"), 1)
        return slots.share_of()

    assert asyncio.run(scenario()) == 4


def test_a_held_request_lets_later_ones_take_the_free_slot_and_runs_once_nothing_does():
    async def scenario() -> tuple[bool, bool, bool]:
        slots = FairSlots(2)
        await slots.acquire("a")  # one slot busy, one free
        cold = asyncio.create_task(slots.acquire("cold", hold=60))
        await asyncio.sleep(0)
        warm = asyncio.create_task(slots.acquire("warm"))
        await asyncio.sleep(0)
        cold_waited, warm_ran = not cold.done(), warm.done()
        slots.release("a")
        await asyncio.sleep(0)
        still_waits = not cold.done()  # the warm one still runs
        slots.release("warm")
        await asyncio.wait_for(cold, 1)  # nothing runs: the held one goes, long before 60 s
        return cold_waited, warm_ran, still_waits

    assert asyncio.run(scenario()) == (True, True, True)


def test_a_held_request_takes_a_free_slot_when_its_hold_runs_out():
    async def scenario() -> int:
        slots = FairSlots(2)
        await slots.acquire("a")  # runs for the whole test
        await asyncio.wait_for(slots.acquire("cold", hold=0.05), 5)
        return slots.running("a") + slots.running("cold")

    assert asyncio.run(scenario()) == 2


def test_a_held_request_on_an_idle_replica_does_not_wait():
    async def scenario() -> bool:
        slots = FairSlots(2)
        was_locked = slots.locked("cold", hold=60)
        await asyncio.wait_for(slots.acquire("cold", hold=60), 1)
        return was_locked

    assert asyncio.run(scenario()) is False


def test_a_held_request_that_leaves_frees_nothing_and_blocks_nobody():
    async def scenario() -> tuple[int, bool]:
        slots = FairSlots(1)
        await slots.acquire("a")
        cold = asyncio.create_task(slots.acquire("cold", hold=60))
        await asyncio.sleep(0)
        cold.cancel()
        await asyncio.gather(cold, return_exceptions=True)
        slots.release("a")
        await asyncio.wait_for(slots.acquire("b"), 1)
        return slots.waiting, slots.locked()

    assert asyncio.run(scenario()) == (0, True)
