"""The dashboard guard's decision (skate.dashboard.auth.authorize), case by case."""

from __future__ import annotations

from skate.dashboard import auth

TOKEN = b"cluster-token"
SESSION = auth.session_value(TOKEN, b"nonce")
HOST = "127.0.0.1:8265"
COOKIE = {auth.SESSION_COOKIE: SESSION}


def decide(method="GET", headers=None, cookies=None, url_token=None, open_path=False):
    return auth.authorize(method, headers or {}, cookies or {}, url_token, HOST, TOKEN, SESSION, open_path)


def test_session_value_is_derived_not_the_token():
    assert SESSION != TOKEN.decode() and TOKEN.decode() not in SESSION
    assert auth.session_value(TOKEN, b"nonce") == SESSION
    assert auth.session_value(TOKEN, b"other") != SESSION  # a new dashboard process, new cookies
    assert auth.session_value(b"other-token", b"nonce") != SESSION


def test_bearer_cookie_and_url_token():
    assert decide(headers={"Authorization": "Bearer cluster-token"}) == auth.Verdict(auth.ALLOW, via="bearer")
    assert decide(cookies=COOKIE) == auth.Verdict(auth.ALLOW, via="cookie")
    assert decide(url_token="cluster-token").outcome == auth.SET_COOKIE
    assert decide(method="POST", url_token="cluster-token").outcome == auth.UNAUTHORIZED  # GETs only
    for bad in (
        decide(),
        decide(headers={"Authorization": "Bearer wrong"}),
        decide(headers={"Authorization": "Basic cluster-token"}),
        decide(headers={"Authorization": "Bearer wrong"}, cookies=COOKIE),  # a wrong header is not ignored
        decide(cookies={auth.SESSION_COOKIE: "forged"}),
        decide(url_token="wrong"),
    ):
        assert bad.outcome == auth.UNAUTHORIZED, bad


def test_cookie_changes_need_our_origin():
    ours = {"Origin": f"http://{HOST}"}
    assert decide("POST", ours, COOKIE).outcome == auth.ALLOW
    assert decide("POST", {}, COOKIE).outcome == auth.FORBID
    assert decide("POST", {"Origin": "http://evil.example"}, COOKIE).outcome == auth.FORBID
    assert decide("POST", {"Origin": "null"}, COOKIE).outcome == auth.FORBID
    upgrade = {"Upgrade": "websocket", "Origin": "http://127.0.0.1:9999"}
    assert decide("GET", upgrade, COOKIE).outcome == auth.FORBID
    assert (
        decide("GET", {"Origin": "http://evil.example"}, COOKIE).outcome == auth.ALLOW
    )  # reading: CORS guards it
    # Bearer clients (no browser) need no Origin, but a browser's foreign Origin is refused even so.
    bearer = {"Authorization": "Bearer cluster-token"}
    assert decide("POST", bearer).outcome == auth.ALLOW
    assert decide("POST", {**bearer, "Origin": "http://evil.example"}).outcome == auth.FORBID


def test_open_paths_keep_the_origin_rule():
    assert decide("POST", {}, open_path=True).outcome == auth.ALLOW
    assert decide("POST", {"Origin": "http://evil.example"}, open_path=True).outcome == auth.FORBID
