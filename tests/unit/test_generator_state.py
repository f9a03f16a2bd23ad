"""The owner's record of one streaming generator (core_worker.generator_state): exact steps."""

from __future__ import annotations

import pytest

from skate.core_worker.generator_state import (
    DROP,
    DUPLICATE,
    END,
    ERROR,
    ITEM,
    KEEP,
    WAIT,
    GeneratorState,
)


def test_items_are_taken_in_order_then_the_end():
    s = GeneratorState()
    assert s.take() == (WAIT, -1)
    assert not s.ready()
    assert s.on_item(0) == KEEP
    assert s.on_item(1) == KEEP
    assert s.ready()
    assert s.take() == (ITEM, 0)
    assert s.take() == (ITEM, 1)
    assert s.take() == (WAIT, -1)
    s.on_end(failed=False)
    assert s.finished()  # everything was taken: next() would stop
    assert s.take() == (END, -1)
    assert s.take() == (END, -1)
    assert s.finished()


def test_the_error_comes_after_the_items_before_it_then_the_end():
    s = GeneratorState()
    s.on_item(0)
    s.on_end(failed=True)
    assert s.ready()
    assert not s.finished()
    assert s.take() == (ITEM, 0)
    assert not s.finished()
    assert s.take() == (ERROR, -1)
    assert s.finished()
    assert s.take() == (END, -1)


def test_an_error_before_any_item():
    s = GeneratorState()
    s.on_end(failed=True)
    assert s.take() == (ERROR, -1)
    assert s.take() == (END, -1)


def test_duplicates_from_a_retried_attempt_are_ignored():
    s = GeneratorState()
    assert s.on_item(0) == KEEP
    assert s.on_item(1) == KEEP
    assert s.take() == (ITEM, 0)
    # The retry runs the generator again from the start: items 0 and 1 are known.
    assert s.on_item(0) == DUPLICATE
    assert s.on_item(1) == DUPLICATE
    assert s.on_item(2) == KEEP
    assert s.take() == (ITEM, 1)
    assert s.take() == (ITEM, 2)
    assert s.available == 3


def test_out_of_order_items_wait_for_the_gap():
    s = GeneratorState()
    assert s.on_item(1) == KEEP
    assert s.available == 0
    assert s.take() == (WAIT, -1)
    assert s.on_item(1) == DUPLICATE
    assert s.on_item(0) == KEEP
    assert s.available == 2
    assert s.take() == (ITEM, 0)
    assert s.take() == (ITEM, 1)


def test_items_after_the_end_are_dropped():
    s = GeneratorState()
    s.on_end(failed=False)
    assert s.on_item(0) == DROP


def test_negative_index_is_refused():
    with pytest.raises(ValueError, match="index"):
        GeneratorState().on_item(-1)


def test_no_backpressure_acks_at_once():
    s = GeneratorState(threshold=-1)
    for i in range(100):
        s.on_item(i)
        assert s.may_ack(i)
    s0 = GeneratorState(threshold=0)
    s0.on_item(0)
    assert s0.may_ack(0)


def test_backpressure_holds_acks_until_the_consumer_takes_items():
    s = GeneratorState(threshold=2)
    s.on_item(0)
    assert s.may_ack(0)  # 1 unconsumed < 2
    s.on_item(1)
    assert not s.may_ack(1)  # 2 unconsumed: the producer must wait
    s.hold(1)
    assert s.releasable() == []
    assert s.take() == (ITEM, 0)
    assert s.releasable() == [1]  # 2 - 1 = 1 < 2
    assert s.releasable() == []
    s.on_item(2)
    assert not s.may_ack(2)  # items 1 and 2 unconsumed
    s.hold(2)
    assert s.take() == (ITEM, 1)
    assert s.releasable() == [2]


def test_threshold_one_lets_the_producer_run_one_item_ahead():
    s = GeneratorState(threshold=1)
    s.on_item(0)
    assert not s.may_ack(0)
    s.hold(0)
    assert s.take() == (ITEM, 0)
    assert s.releasable() == [0]


def test_held_acks_go_when_the_stream_ends_or_is_abandoned():
    s = GeneratorState(threshold=1)
    s.on_item(0)
    s.hold(0)
    s.on_end(failed=False)
    assert s.releasable() == [0]

    a = GeneratorState(threshold=1)
    a.on_item(0)
    a.hold(0)
    a.on_item(1)
    a.hold(1)
    assert list(a.abandon()) == [0, 1]
    assert a.releasable() == [0, 1]
    assert a.on_item(2) == DROP
    assert a.may_ack(2)


def test_abandon_returns_only_untaken_items():
    s = GeneratorState()
    for i in range(4):
        s.on_item(i)
    s.take()
    assert list(s.abandon()) == [1, 2, 3]
    assert s.unconsumed() == 0
    assert s.on_item(3) == DUPLICATE


def test_generator_spec_from_options():
    from skate._options import generator_spec

    assert generator_spec(1, {}) is None
    assert generator_spec("streaming", {}) == ["streaming", -1, 0]
    opts = {"_generator_backpressure_num_objects": 3}
    assert generator_spec("streaming", opts) == ["streaming", 3, 0]
    assert generator_spec("dynamic", opts) == ["dynamic", -1, 0]  # no stream to hold back
