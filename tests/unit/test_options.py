"""Validation of remote() options and runtime environments."""

from __future__ import annotations

import pytest

from skate._options import TASK_DEFAULTS, TASK_OPTIONS, check_resources, resource_shape, validate_options
from skate._runtime_env import validate_runtime_env
from skate.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy


def check(**options):
    return validate_options(options, TASK_OPTIONS, "remote functions")


def test_unknown_option_names_it():
    with pytest.raises(ValueError) as info:
        check(num_cpu=1)
    assert "num_cpu" in str(info.value)
    assert "num_cpus" in str(info.value)  # the valid ones are listed


def test_valid_options_pass_through():
    out = check(num_cpus=2, num_gpus=0, memory=1024, max_retries=-1, name="job", num_returns=2)
    assert out == {
        "num_cpus": 2,
        "num_gpus": 0,
        "memory": 1024,
        "max_retries": -1,
        "name": "job",
        "num_returns": 2,
    }
    assert check() == {}
    assert set(TASK_DEFAULTS) <= set(TASK_OPTIONS)


@pytest.mark.parametrize("value", [0, 0.5, 0.25, 1, 2, 2.0, 16, None, 0.0001])
def test_cpu_quantities_accepted(value):
    assert check(num_cpus=value) == {"num_cpus": value}


def test_negative_num_cpus():
    with pytest.raises(ValueError, match="num_cpus"):
        check(num_cpus=-1)


@pytest.mark.parametrize("value", ["1", [1], True, False, object()])
def test_non_number_num_cpus(value):
    with pytest.raises(TypeError, match="num_cpus"):
        check(num_cpus=value)


@pytest.mark.parametrize("value", [1.5, 2.25, 3.0001])
def test_fractions_above_one_rejected(value):
    with pytest.raises(ValueError, match="whole"):
        check(num_cpus=value)


def test_too_many_decimals():
    with pytest.raises(ValueError, match="decimal"):
        check(num_gpus=0.00001)


def test_num_gpus_and_memory_checked_too():
    with pytest.raises(ValueError, match="num_gpus"):
        check(num_gpus=-0.5)
    with pytest.raises(TypeError, match="memory"):
        check(memory="1GB")


@pytest.mark.parametrize("key", ["CPU", "GPU"])
def test_resources_cannot_name_cpu_or_gpu(key):
    with pytest.raises(ValueError, match=key):
        check(resources={key: 1})


def test_resources_validation():
    assert check(resources={"custom": 2, "other": 0.5}) == {"resources": {"custom": 2, "other": 0.5}}
    assert check_resources(None) == {}
    with pytest.raises(TypeError):
        check(resources=[("custom", 1)])
    with pytest.raises(TypeError):
        check(resources={1: 1})
    with pytest.raises(ValueError, match="custom"):
        check(resources={"custom": 1.5})
    with pytest.raises(ValueError, match="custom"):
        check(resources={"custom": -1})
    with pytest.raises(TypeError, match="custom"):
        check(resources={"custom": "1"})


def test_retry_exceptions():
    assert check(retry_exceptions=True) == {"retry_exceptions": True}
    assert check(retry_exceptions=[ValueError, KeyError]) == {"retry_exceptions": [ValueError, KeyError]}
    assert check(retry_exceptions=(OSError,)) == {"retry_exceptions": [OSError]}
    with pytest.raises(TypeError, match="retry_exceptions"):
        check(retry_exceptions=["ValueError"])
    with pytest.raises(TypeError):
        check(retry_exceptions=[int])  # a type, but not an exception type
    with pytest.raises(TypeError):
        check(retry_exceptions=ValueError)  # a bare type, not a list


def test_max_retries_and_num_returns():
    with pytest.raises(ValueError, match="max_retries"):
        check(max_retries=-2)
    with pytest.raises(TypeError, match="max_retries"):
        check(max_retries=1.0)
    with pytest.raises(ValueError, match="num_returns"):
        check(num_returns=-1)
    assert check(num_returns="streaming")["num_returns"] == "streaming"
    assert check(num_returns="dynamic")["num_returns"] == "dynamic"
    with pytest.raises(ValueError, match="num_returns"):
        check(num_returns="lots")


def test_name_must_be_str():
    with pytest.raises(TypeError, match="name"):
        check(name=5)


@pytest.mark.parametrize("value", ["SPREAD", "DEFAULT", None])
def test_scheduling_strategy_names(value):
    assert check(scheduling_strategy=value) == {"scheduling_strategy": value}


def test_scheduling_strategy_objects():
    s = NodeAffinitySchedulingStrategy("ab" * 14, soft=True)
    assert check(scheduling_strategy=s)["scheduling_strategy"] is s
    p = PlacementGroupSchedulingStrategy(object(), 0)
    assert check(scheduling_strategy=p)["scheduling_strategy"] is p


@pytest.mark.parametrize("value", ["FOO", "spread", 3])
def test_bad_scheduling_strategy(value):
    with pytest.raises(ValueError, match="scheduling_strategy"):
        check(scheduling_strategy=value)


def test_runtime_env_through_options():
    assert check(runtime_env={"env_vars": {"A": "1"}}) == {"runtime_env": {"env_vars": {"A": "1"}}}
    with pytest.raises(ValueError, match="bogus"):
        check(runtime_env={"bogus": 1})


# -- runtime_env ---------------------------------------------------------------------------


def test_runtime_env_none_and_valid():
    assert validate_runtime_env(None) is None
    env = {"working_dir": ".", "py_modules": ("a", "b"), "pip": ["numpy"], "env_vars": {"X": "y"}}
    out = validate_runtime_env(env)
    assert out["py_modules"] == ["a", "b"]
    assert out["pip"] == ["numpy"] and out["env_vars"] == {"X": "y"}
    assert env["py_modules"] == ("a", "b")  # the caller's dict is not modified


def test_runtime_env_unknown_key():
    with pytest.raises(ValueError, match="envvars"):
        validate_runtime_env({"envvars": {"A": "1"}})


def test_runtime_env_must_be_a_dict():
    with pytest.raises(TypeError):
        validate_runtime_env(["pip"])


@pytest.mark.parametrize("env_vars", [{"A": 1}, {"A": None}, {1: "x"}, ["A=1"]])
def test_env_vars_must_be_str_to_str(env_vars):
    with pytest.raises(TypeError, match="env_vars"):
        validate_runtime_env({"env_vars": env_vars})


def test_pip_and_conda_together():
    with pytest.raises(ValueError) as info:
        validate_runtime_env({"pip": ["requests"], "conda": "env"})
    assert "pip" in str(info.value) and "conda" in str(info.value)
    with pytest.raises(ValueError):
        validate_runtime_env({"pip": ["requests"], "uv": ["requests"]})


def test_pip_forms():
    for pip in ("requirements.txt", ["a", "b"], {"packages": ["a"]}):
        assert validate_runtime_env({"pip": pip})["pip"] == pip
    with pytest.raises(TypeError, match="pip"):
        validate_runtime_env({"pip": 5})
    with pytest.raises(TypeError, match="pip"):
        validate_runtime_env({"pip": {"version": "1"}})


def test_other_runtime_env_types():
    with pytest.raises(TypeError, match="working_dir"):
        validate_runtime_env({"working_dir": 1})
    with pytest.raises(TypeError, match="py_modules"):
        validate_runtime_env({"py_modules": "a"})
    with pytest.raises(TypeError, match="conda"):
        validate_runtime_env({"conda": ["x"]})
    with pytest.raises(TypeError, match="config"):
        validate_runtime_env({"config": 1})


# -- resource_shape ------------------------------------------------------------------------


def test_resource_shape_default_is_one_cpu():
    assert resource_shape({}) == {"CPU": 1.0}


def test_resource_shape_zero_cpus_has_no_cpu_key():
    assert resource_shape({"num_cpus": 0}) == {}


def test_resource_shape_gpus_memory_custom():
    shape = resource_shape(
        {"num_cpus": 0.5, "num_gpus": 2, "memory": 10**9, "resources": {"custom": 3, "unused": 0}}
    )
    assert shape == {"CPU": 0.5, "GPU": 2.0, "memory": 1e9, "custom": 3.0}
    assert all(isinstance(v, float) for v in shape.values())


def test_resource_shape_none_values():
    assert resource_shape({"num_gpus": None, "memory": None, "resources": None}) == {"CPU": 1.0}


def test_resource_shape_num_cpus_none_means_default():
    # num_cpus=None is accepted by the validator and, as in Ray, means "the default" (1 CPU).
    assert check(num_cpus=None) == {"num_cpus": None}
    assert resource_shape({**TASK_DEFAULTS, **check(num_cpus=None)}) == {"CPU": 1.0}


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_quantities_rejected_with_value_error(value):
    with pytest.raises(ValueError, match="num_cpus"):
        check(num_cpus=value)


@pytest.mark.parametrize("value", ["no", 0, 1, [False]])
def test_enable_task_events_must_be_a_bool_for_tasks_actors_and_methods(value):
    import skate
    from skate._options import ACTOR_OPTIONS, METHOD_OPTIONS

    tables = ((TASK_OPTIONS, "remote functions"), (ACTOR_OPTIONS, "actors"), (METHOD_OPTIONS, "methods"))
    for table, what in tables:
        with pytest.raises(TypeError, match="enable_task_events must be a bool"):
            validate_options({"enable_task_events": value}, table, what)
    with pytest.raises(TypeError, match="enable_task_events"):
        skate.method(enable_task_events=value)
    for ok in (True, False, None):
        assert check(enable_task_events=ok) == {"enable_task_events": ok}
