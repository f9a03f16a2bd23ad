"""The GCS sets aside a raylet's resource report that predates a return of bundles it sent."""

from __future__ import annotations

import pytest

from skate.gcs.placement_group_manager import STALE_REPORT_S, report_is_stale


@pytest.mark.timeout(10)
def test_a_report_written_before_the_raylet_handled_the_last_return_is_stale():
    node = {"returns_sent": 3, "returned_at": 100.0}
    assert report_is_stale(node, {"returns_seen": 2}, now=100.5)  # crossed the return
    assert not report_is_stale(node, {"returns_seen": 3}, now=100.5)  # written after it
    assert not report_is_stale(node, {"returns_seen": 4}, now=100.5)  # (a GCS that restarted)


@pytest.mark.timeout(10)
def test_a_raylet_that_never_echoes_a_return_is_believed_again_after_a_while():
    node = {"returns_sent": 1, "returned_at": 100.0}
    assert report_is_stale(node, {"returns_seen": 0}, now=100.0 + STALE_REPORT_S - 0.1)
    assert not report_is_stale(node, {"returns_seen": 0}, now=100.0 + STALE_REPORT_S)


@pytest.mark.timeout(10)
def test_reports_without_the_field_or_of_nodes_never_sent_a_return_are_taken():
    assert not report_is_stale({"returns_sent": 2, "returned_at": 100.0}, {}, now=100.1)
    assert not report_is_stale({}, {"returns_seen": 0}, now=100.1)
    assert not report_is_stale({"returns_sent": 2, "returned_at": 100.0}, {"returns_seen": "x"}, now=100.1)
