"""The dashboard's default port taken (another head's): the new dashboard listens elsewhere."""

from __future__ import annotations

import socket
import urllib.request

import pytest

import skate


@pytest.mark.timeout(60)
def test_a_taken_default_port_means_any_free_port():
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 8265))
            holder.listen()
        except OSError:
            pass  # already taken by someone else: the same situation
        ctx = skate.init(num_cpus=1, include_dashboard=True)
        try:
            url = ctx.dashboard_url if ctx.dashboard_url.startswith("http") else "http://" + ctx.dashboard_url
            assert not url.endswith(":8265"), url
            with pytest.raises(urllib.error.HTTPError) as info:  # it answers (and wants the token)
                urllib.request.urlopen(url + "/api/version", timeout=10)
            assert info.value.code == 401
        finally:
            skate.shutdown()
    finally:
        holder.close()
