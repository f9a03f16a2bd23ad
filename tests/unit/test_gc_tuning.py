"""GC settings: frozen after start; thresholds raised only in Skate's own processes."""

from __future__ import annotations

import gc

import pytest

from skate import _gc_tuning


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.timeout(10)
def test_own_processes_freeze_and_collect_young_objects_less_often(restore_gc, monkeypatch):
    monkeypatch.delenv("SKATE_GC_TUNING", raising=False)
    gc.set_threshold(700, 10, 10)
    _gc_tuning.tune(own_process=True)
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (_gc_tuning.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.timeout(10)
def test_a_driver_keeps_the_users_thresholds_and_a_raised_one_is_never_lowered(restore_gc, monkeypatch):
    monkeypatch.delenv("SKATE_GC_TUNING", raising=False)
    gc.set_threshold(700, 10, 10)
    _gc_tuning.tune(own_process=False)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() > 0
    gc.set_threshold(50_000, 10, 10)
    _gc_tuning.tune(own_process=True)
    assert gc.get_threshold()[0] == 50_000
    gc.set_threshold(0, 10, 10)  # the user turned collection off: left off
    _gc_tuning.tune(own_process=True)
    assert gc.get_threshold()[0] == 0


@pytest.mark.timeout(10)
def test_switched_off_it_touches_nothing(restore_gc, monkeypatch):
    monkeypatch.setenv("SKATE_GC_TUNING", "0")
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    _gc_tuning.tune(own_process=True)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
