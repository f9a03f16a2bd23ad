"""skate.NodeID, JobID, ActorID, TaskID, WorkerID (and ObjectID): Ray's typed ids."""

from __future__ import annotations

import copy
import os
import pickle

import pytest

import skate
from skate import _ids
from skate._id_types import BaseID

ID_TYPES = [skate.NodeID, skate.JobID, skate.ActorID, skate.TaskID, skate.WorkerID]
SIZES = {
    skate.NodeID: _ids.NODE_ID_BYTES,
    skate.JobID: _ids.JOB_ID_BYTES,
    skate.ActorID: _ids.ACTOR_ID_BYTES,
    skate.TaskID: _ids.TASK_ID_BYTES,
    skate.WorkerID: _ids.WORKER_ID_BYTES,
}


@pytest.mark.parametrize("cls", ID_TYPES)
def test_binary_and_hex_round_trip(cls):
    raw = os.urandom(SIZES[cls])
    ident = cls.from_binary(raw)
    assert ident.binary() == raw and bytes(ident) == raw
    assert ident.hex() == raw.hex()
    assert cls.from_hex(raw.hex()) == ident
    assert cls.from_hex(raw.hex().upper()) == ident
    assert cls(raw) == ident
    assert cls.size() == ident.size() == SIZES[cls]


@pytest.mark.parametrize("cls", ID_TYPES)
def test_nil(cls):
    nil = cls.nil()
    assert nil.is_nil()
    assert nil.binary() == b"\xff" * SIZES[cls]  # as Ray: every byte 0xff
    assert nil == cls.nil()
    assert not cls.from_random().is_nil()
    assert not cls(b"\x00" * SIZES[cls]).is_nil()


@pytest.mark.parametrize("cls", ID_TYPES)
def test_repr_is_type_and_hex(cls):
    ident = cls.from_random()
    assert repr(ident) == f"{cls.__name__}({ident.hex()})"
    assert str(ident) == repr(ident)


def test_equality_and_hash_need_the_same_type():
    raw = os.urandom(14)
    assert _ids.NODE_ID_BYTES == _ids.WORKER_ID_BYTES == 14
    node, worker = skate.NodeID(raw), skate.WorkerID(raw)
    assert node != worker and not (node == worker)
    assert node == skate.NodeID(raw) and not (node != skate.NodeID(raw))
    assert hash(node) == hash(skate.NodeID(raw))
    assert len({node, worker, skate.NodeID(raw), skate.WorkerID(raw)}) == 2
    assert {node: 1}[skate.NodeID(raw)] == 1
    assert node != raw and node != raw.hex()  # an id is not its bytes or its hex


@pytest.mark.parametrize("cls", ID_TYPES)
def test_pickle_and_copy(cls):
    ident = cls.from_random()
    back = pickle.loads(pickle.dumps(ident))
    assert back == ident and type(back) is cls
    assert copy.deepcopy(ident) == ident


def test_ids_are_immutable():
    ident = skate.ActorID.from_random()
    with pytest.raises(AttributeError):
        ident.other = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", ID_TYPES)
def test_bad_inputs_name_the_type(cls):
    with pytest.raises(TypeError, match=cls.__name__):
        cls("ab" * SIZES[cls])  # a hex string is not bytes
    with pytest.raises(TypeError, match=cls.__name__):
        cls.from_binary(None)
    with pytest.raises(ValueError, match=f"{cls.__name__} needs {SIZES[cls]} bytes"):
        cls(b"\x01" * (SIZES[cls] + 1))
    with pytest.raises(ValueError, match="not a hex string"):
        cls.from_hex("zz" * SIZES[cls])
    with pytest.raises(ValueError, match=cls.__name__):
        cls.from_hex("ab")
    with pytest.raises(TypeError, match="from_hex"):
        cls.from_hex(12)


def test_job_id_from_int_matches_the_gcs_counter():
    # The GCS hands out job ids 1, 2, ... as 4 little-endian bytes (hex "01000000").
    assert skate.JobID.from_int(1).hex() == "01000000"
    assert skate.JobID.from_hex("02000000") == skate.JobID.from_int(2)
    for bad in (-1, 2**32, 1.5, "1", True):
        with pytest.raises(ValueError, match="from_int"):
            skate.JobID.from_int(bad)


def test_object_id_is_object_ref():
    assert skate.ObjectID is skate.ObjectRef
    assert all(issubclass(cls, BaseID) for cls in ID_TYPES)
