"""Client addresses (skate.client.address): both schemes, defaults, and clear errors."""

from __future__ import annotations

import pytest

from skate.client.address import is_client_address, parse_client_address


@pytest.mark.parametrize(
    "address, expected",
    [
        ("skate://head:10002", ("head", 10002)),
        ("ray://127.0.0.1:20001", ("127.0.0.1", 20001)),
        ("ray://head", ("head", 10001)),
        ("skate://[::1]:5", ("::1", 5)),
        ("skate://head:7/", ("head", 7)),
    ],
)
def test_parses(address, expected):
    assert is_client_address(address)
    assert parse_client_address(address) == expected


@pytest.mark.parametrize(
    "address, why",
    [
        ("http://head:1", "scheme"),
        ("head:1", "scheme"),
        ("skate://", "expected"),
        ("skate://:1", "host is missing"),
        ("skate://head:x", "port"),
        ("skate://head:0", "port"),
        ("skate://head:65536", "port"),
        ("skate://::1:5", "brackets"),
        ("skate://[::1:5", "bracket"),
        ("skate://user@head:1", "expected"),
    ],
)
def test_rejects_naming_the_address(address, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_client_address(address)
    assert repr(address) in str(info.value)


def test_not_a_string():
    assert not is_client_address(None)
    with pytest.raises(TypeError):
        parse_client_address(5)  # type: ignore[arg-type]
