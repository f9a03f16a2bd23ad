"""Node labels: parsing, checking and matching (skate._labels), the strategy and option that
build constraints, and the pure deciders that use them (raylet scheduler, GCS actor placement)."""

from __future__ import annotations

import pytest

from skate import _labels
from skate._labels import DOES_NOT_EXIST, EXISTS, IN, NOT_IN
from skate._options import ACTOR_OPTIONS, TASK_OPTIONS, label_constraint, validate_options
from skate.gcs.placement import NodeLoad, choose_node
from skate.raylet import resources as res
from skate.raylet.scheduler import Grant, Infeasible, LocalScheduler, Spillback
from skate.util.scheduling_strategies import (
    DoesNotExist,
    Exists,
    In,
    NodeLabelSchedulingStrategy,
    NotIn,
)

NODE = {"zone": "a", "disk": "ssd", "empty": ""}


# -- node labels ----------------------------------------------------------------------
def test_check_node_labels_accepts_str_to_str_and_copies():
    given = {"zone": "a", "example.com/tier": "gold", "x": ""}
    out = _labels.check_node_labels(given)
    assert out == given and out is not given
    assert _labels.check_node_labels(None) == {}


@pytest.mark.parametrize(
    "labels, exc, culprit",
    [
        (["zone"], TypeError, "list"),
        ({1: "a"}, TypeError, "1"),
        ({"zone": 1}, TypeError, "'zone'"),
        ({"zone": None}, TypeError, "'zone'"),
        ({"": "a"}, ValueError, "''"),
        ({"-zone": "a"}, ValueError, "'-zone'"),
        ({"zone": "a b"}, ValueError, "'a b'"),
        ({"zone": "x" * 64}, ValueError, "zone"),
        ({"bad prefix/zone": "a"}, ValueError, "bad prefix"),
    ],
)
def test_check_node_labels_names_the_culprit(labels, exc, culprit):
    with pytest.raises(exc, match="labels") as info:
        _labels.check_node_labels(labels)
    assert culprit in str(info.value)


def test_parse_labels_arg_json_and_key_value_forms():
    assert _labels.parse_labels_arg('{"zone": "a", "disk": "ssd"}') == {"zone": "a", "disk": "ssd"}
    assert _labels.parse_labels_arg("zone=a,disk=ssd") == {"zone": "a", "disk": "ssd"}
    assert _labels.parse_labels_arg(" zone = a , disk=ssd ") == {"zone": "a", "disk": "ssd"}
    assert _labels.parse_labels_arg('"zone=a"') == {"zone": "a"}
    assert _labels.parse_labels_arg("") == {}
    with pytest.raises(ValueError, match="not key=value"):
        _labels.parse_labels_arg("zone")
    with pytest.raises(ValueError, match="not key=value"):
        _labels.parse_labels_arg("zone=a=b")
    with pytest.raises(ValueError, match="not valid JSON"):
        _labels.parse_labels_arg("{zone: a}")
    with pytest.raises(TypeError, match="'zone'"):
        _labels.parse_labels_arg('{"zone": 3}')


def test_node_labels_adds_the_default_node_id_label():
    assert _labels.node_labels("n1", {"zone": "a"}) == {"ray.io/node-id": "n1", "zone": "a"}
    assert _labels.node_labels("n1", None) == {"ray.io/node-id": "n1"}


# -- selectors ------------------------------------------------------------------------
def test_parse_label_selector_every_form():
    assert _labels.parse_label_selector({"zone": "a"}) == (("zone", IN, ("a",)),)
    assert _labels.parse_label_selector({"zone": "!a"}) == (("zone", NOT_IN, ("a",)),)
    assert _labels.parse_label_selector({"zone": "in(a, b)"}) == (("zone", IN, ("a", "b")),)
    assert _labels.parse_label_selector({"zone": "!in(a,b)"}) == (("zone", NOT_IN, ("a", "b")),)
    assert _labels.parse_label_selector({"zone": ""}) == (("zone", IN, ("",)),)
    assert _labels.parse_label_selector({"a": "x", "b": "!y"}) == (("a", IN, ("x",)), ("b", NOT_IN, ("y",)))
    assert _labels.parse_label_selector(None) == ()
    assert _labels.parse_label_selector({}) == ()


@pytest.mark.parametrize(
    "selector, exc, culprit",
    [
        ("zone=a", TypeError, "str"),
        ({"zone": 1}, TypeError, "'zone'"),
        ({1: "a"}, TypeError, "1"),
        ({"": "a"}, ValueError, "''"),
        ({"zone": "in()"}, ValueError, "in()"),
        ({"zone": "in(a,)"}, ValueError, "in(a,)"),
        ({"zone": "!"}, ValueError, "'!'"),
        ({"zone": "!!a"}, ValueError, "'!!a'"),
        ({"zone": "a b"}, ValueError, "'a b'"),
        ({"zone": "gt(3)"}, ValueError, "gt(3)"),
    ],
)
def test_bad_label_selector_names_the_culprit(selector, exc, culprit):
    with pytest.raises(exc, match="label_selector") as info:
        _labels.parse_label_selector(selector)
    assert culprit in str(info.value)


@pytest.mark.parametrize(
    "expr, expected",
    [
        (("zone", IN, ("a",)), True),
        (("zone", IN, ("b", "a")), True),
        (("zone", IN, ("b",)), False),
        (("gpu", IN, ("a",)), False),  # missing key: never in
        (("zone", NOT_IN, ("a",)), False),
        (("zone", NOT_IN, ("b",)), True),
        (("gpu", NOT_IN, ("a",)), True),  # missing key: always not in
        (("zone", EXISTS, ()), True),
        (("empty", EXISTS, ()), True),
        (("gpu", EXISTS, ()), False),
        (("gpu", DOES_NOT_EXIST, ()), True),
        (("zone", DOES_NOT_EXIST, ()), False),
        (("empty", IN, ("",)), True),
    ],
)
def test_expression_matching_exactly(expr, expected):
    assert _labels.expr_matches(NODE, expr) is expected


def test_matches_needs_every_expression():
    assert _labels.matches(NODE, ())
    assert _labels.matches(NODE, [("zone", IN, ("a",)), ("disk", EXISTS, ())])
    assert not _labels.matches(NODE, [("zone", IN, ("a",)), ("disk", DOES_NOT_EXIST, ())])
    with pytest.raises(ValueError, match="unknown label operator 'gt'"):
        _labels.expr_matches(NODE, ("zone", "gt", ("1",)))


def test_selector_syntax_matches_as_ray_documents():
    def ok(selector: dict) -> bool:
        return _labels.matches(NODE, _labels.parse_label_selector(selector))

    assert ok({"zone": "a"}) and not ok({"zone": "b"})
    assert ok({"zone": "!b"}) and not ok({"zone": "!a"})
    assert ok({"gpu": "!a"})  # not equal: a node without the label qualifies
    assert ok({"zone": "in(b,a)"}) and not ok({"zone": "in(b,c)"}) and not ok({"gpu": "in(a)"})
    assert ok({"zone": "!in(b,c)"}) and not ok({"zone": "!in(a,c)"}) and ok({"gpu": "!in(a)"})
    assert ok({"zone": "a", "disk": "ssd"}) and not ok({"zone": "a", "disk": "hdd"})


def test_wire_form_round_trip_and_expression_checks():
    con = _labels.constraint([("zone", IN, ("a",))], [("disk", EXISTS, ())])
    wired = [[list(e[:2]) + [list(e[2])] for e in part] for part in con]  # as msgpack gives it back
    assert _labels.from_wire(wired) == con
    assert _labels.from_wire(None) is None and _labels.constraint() is None
    with pytest.raises(ValueError, match="unknown label operator"):
        _labels.expression("zone", "like", ["a"])
    with pytest.raises(ValueError, match="non-empty str"):
        _labels.expression("", IN, ["a"])
    with pytest.raises(ValueError, match="at least one value"):
        _labels.expression("zone", IN, [])
    assert _labels.describe(con) == "hard: zone in (a); soft: disk exists"


# -- NodeLabelSchedulingStrategy and the options ---------------------------------------
def test_strategy_operators_and_wire_form():
    strategy = NodeLabelSchedulingStrategy(
        {"zone": In("a", "b"), "spot": DoesNotExist()}, soft={"disk": Exists(), "gpu": NotIn("k80")}
    )
    assert [e.key for e in strategy.hard] == ["zone", "spot"]  # Ray's shape: key + operator
    assert strategy._constraint() == (
        (("zone", IN, ("a", "b")), ("spot", DOES_NOT_EXIST, ())),
        (("disk", EXISTS, ()), ("gpu", NOT_IN, ("k80",))),
    )
    assert NodeLabelSchedulingStrategy(None, soft={"disk": Exists()})._constraint()[0] == ()


@pytest.mark.parametrize(
    "make, culprit",
    [
        (lambda: In(), "In()"),
        (lambda: NotIn(), "NotIn()"),
        (lambda: In("a", 1), "position 1"),
        (lambda: NodeLabelSchedulingStrategy({}), "both be empty"),
        (lambda: NodeLabelSchedulingStrategy(None, soft=None), "both be empty"),
        (lambda: NodeLabelSchedulingStrategy({"zone": "a"}), "hard['zone']"),
        (lambda: NodeLabelSchedulingStrategy({1: In("a")}), "1"),
        (lambda: NodeLabelSchedulingStrategy({"": In("a")}), "''"),
        (lambda: NodeLabelSchedulingStrategy(["zone"]), "list"),
        (lambda: NodeLabelSchedulingStrategy({"a": In("x")}, soft={"b": Exists}), "soft['b']"),
    ],
)
def test_bad_strategy_is_a_value_error_naming_the_culprit(make, culprit):
    with pytest.raises(ValueError) as info:  # Ray raises ValueError here
        make()
    assert culprit in str(info.value)


def test_label_selector_option_is_checked_at_options_time():
    for allowed, what in ((TASK_OPTIONS, "task"), (ACTOR_OPTIONS, "actor")):
        assert validate_options({"label_selector": {"zone": "a"}}, allowed, what) == {
            "label_selector": {"zone": "a"}
        }
        with pytest.raises(TypeError, match="label_selector"):
            validate_options({"label_selector": "zone=a"}, allowed, what)
        with pytest.raises(ValueError, match="in\\(\\)"):
            validate_options({"label_selector": {"zone": "in()"}}, allowed, what)
        strategy = NodeLabelSchedulingStrategy({"zone": In("a")})
        assert (
            validate_options({"scheduling_strategy": strategy}, allowed, what)["scheduling_strategy"]
            is strategy
        )


def test_label_constraint_merges_selector_and_strategy():
    assert label_constraint({}) is None
    assert label_constraint({"label_selector": {}}) is None
    assert label_constraint({"label_selector": {"zone": "a"}}) == ((("zone", IN, ("a",)),), ())
    strategy = NodeLabelSchedulingStrategy({"disk": Exists()}, soft={"gpu": In("a100")})
    assert label_constraint({"label_selector": {"zone": "!b"}, "scheduling_strategy": strategy}) == (
        (("zone", NOT_IN, ("b",)), ("disk", EXISTS, ())),
        (("gpu", IN, ("a100",)),),
    )


# -- the raylet's decision ------------------------------------------------------------
def _scheduler(labels: dict, cpus: float = 1) -> LocalScheduler:
    s = LocalScheduler({"CPU": cpus}, 1, "local", labels)
    s.worker_starting("w0")
    s.worker_registered("w0")
    return s


def _view(**nodes: tuple[dict, float]) -> dict:
    """node id -> (labels, free CPU of 1)."""
    return {
        nid: {
            "address": f"addr-{nid}",
            "resources": {"CPU": 1},
            "available": {"CPU": free},
            "alive": True,
            "labels": labels,
        }
        for nid, (labels, free) in nodes.items()
    }


def _hard(**selector: str):
    return _labels.constraint(_labels.parse_label_selector(selector))


def test_scheduler_runs_a_matching_request_here():
    s = _scheduler({"zone": "a"})
    s.set_cluster_view(_view(b=({"zone": "b"}, 1)))
    _, actions = s.request_lease("o", {"CPU": 1}, labels=_hard(zone="a"))
    assert [type(a) for a in actions] == [Grant]


def test_scheduler_spills_a_request_to_the_matching_node():
    s = _scheduler({"zone": "a"})
    s.set_cluster_view(_view(b=({"zone": "b"}, 0), c=({"zone": "b"}, 1)))
    _, actions = s.request_lease("o", {"CPU": 1}, labels=_hard(zone="b"))
    [spill] = actions
    assert isinstance(spill, Spillback) and spill.node_id == "c"  # matching, with room now
    # Both matching nodes busy: it still goes to one of them (to wait), never runs here.
    _, actions = s.request_lease("o", {"CPU": 1}, labels=_hard(zone="b"))
    [spill] = actions
    assert isinstance(spill, Spillback) and spill.node_id in ("b", "c")


def test_scheduler_keeps_unmatched_request_pending_until_a_matching_node_joins():
    s = _scheduler({"zone": "a"})
    s.set_cluster_view(_view(b=({"zone": "b"}, 1)))
    req, actions = s.request_lease("o", {"CPU": 1}, labels=_hard(zone="c"))
    assert [type(a) for a in actions] == [Infeasible]
    assert s.infeasible == [req]
    actions = s.set_cluster_view(_view(b=({"zone": "b"}, 1), c=({"zone": "c"}, 1)))
    [spill] = actions
    assert isinstance(spill, Spillback) and spill.node_id == "c" and s.infeasible == []


def test_scheduler_soft_preference_in_rays_order():
    soft = _labels.constraint((), [("disk", IN, ("ssd",))])
    # Here does not match soft; a soft node has room: go there.
    s = _scheduler({"disk": "hdd"})
    s.set_cluster_view(_view(b=({"disk": "ssd"}, 1)))
    [spill] = s.request_lease("o", {"CPU": 1}, labels=soft)[1]
    assert isinstance(spill, Spillback) and spill.node_id == "b"
    # The soft node is busy but here has room: room now beats the preference.
    s = _scheduler({"disk": "hdd"})
    s.set_cluster_view(_view(b=({"disk": "ssd"}, 0)))
    assert [type(a) for a in s.request_lease("o", {"CPU": 1}, labels=soft)[1]] == [Grant]
    # Here matches soft: stay.
    s = _scheduler({"disk": "ssd"})
    s.set_cluster_view(_view(b=({"disk": "ssd"}, 1)))
    assert [type(a) for a in s.request_lease("o", {"CPU": 1}, labels=soft)[1]] == [Grant]
    # No soft node at all: runs anywhere (here).
    s = _scheduler({})
    s.set_cluster_view(_view(b=({}, 1)))
    assert [type(a) for a in s.request_lease("o", {"CPU": 1}, labels=soft)[1]] == [Grant]


def test_scheduler_redirected_request_that_matches_stays():
    s = _scheduler({"zone": "a"}, cpus=1)
    s.set_cluster_view(_view(b=({"zone": "a"}, 1)))
    s.request_lease("o", {"CPU": 1})  # takes the CPU here
    req, actions = s.request_lease("o", {"CPU": 1}, labels=_hard(zone="a"), spill_ok=False)
    assert not [a for a in actions if isinstance(a, (Spillback, Grant))]
    assert list(s.queue) == [req]  # waits here: no ping-pong


def test_scheduler_unlabeled_spillback_unchanged():
    s = _scheduler({"zone": "a"})
    s.set_cluster_view(_view(b=({"zone": "b"}, 1)))
    s.request_lease("o", {"CPU": 1})
    [spill] = s.request_lease("o", {"CPU": 1})[1]
    assert isinstance(spill, Spillback) and spill.node_id == "b"


# -- the GCS's actor placement --------------------------------------------------------
def _load(nid: str, free: float, total: float = 2) -> NodeLoad:
    return NodeLoad(nid, res.to_fixed({"CPU": total}), res.to_fixed({"CPU": free}))


def test_choose_node_soft_order():
    shape = res.to_fixed({"CPU": 1})
    nodes = [_load("a", 2), _load("b", 2), _load("c", 0)]
    assert choose_node(shape, nodes, None, soft={"b"}) == "b"  # soft and free
    assert choose_node(shape, nodes, None, soft={"c"}) == "a"  # free beats soft but full
    assert choose_node(shape, [_load("a", 0), _load("c", 0)], None, soft={"c"}) == "c"  # feasible: soft first
    assert choose_node(shape, nodes, None, soft=set()) == "a"  # no soft node: as without labels
    assert choose_node(shape, nodes, None) == choose_node(shape, nodes, None, soft=None)
