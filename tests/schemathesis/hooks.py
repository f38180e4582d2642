"""Schemathesis hooks: real credentials, so the fuzzer reaches the success paths too.

Generated requests carry random codes and tokens, which only ever reach the refusals. Before
about three calls in four, `before_call` swaps in what a real client would send: a fresh
`wx.login` code from the WeChat simulator, the refresh and access tokens of a real login, the
simulator's sealed profile and phone codes, the admin token, a signed cloud-login request, a
signed push. The fourth keeps the generated values. `after_call` tallies the statuses per
operation into the file `FUZZ_TALLY` names, for run.sh's coverage report.

Configured by run.sh through the environment: FUZZ_SERVICE, FUZZ_SIM (base URLs),
FUZZ_ADMIN_TOKEN, FUZZ_APPIDS (comma-separated), FUZZ_CLOUD_SECRET, FUZZ_PUSH_TOKEN (both for
the first appid), FUZZ_TALLY.
"""

import atexit
import base64
import collections
import hashlib
import hmac
import json
import os
import random
import secrets
import threading
import time

import requests
import schemathesis

SERVICE = os.environ["FUZZ_SERVICE"]
SIM = os.environ["FUZZ_SIM"]
ADMIN = os.environ["FUZZ_ADMIN_TOKEN"]
APPIDS = os.environ["FUZZ_APPIDS"].split(",")
CLOUD_SECRET = os.environ["FUZZ_CLOUD_SECRET"]
PUSH_TOKEN = os.environ["FUZZ_PUSH_TOKEN"]
TALLY = os.environ["FUZZ_TALLY"]

# How often a generated request gets real credentials instead of its own.
REAL = 0.75
# Returning users: logins pick one of these names half the time (a new user otherwise).
RETURNING = [f"returning-{i}" for i in range(16)]

# Its own generator: hypothesis warns when a hook moves the global one under its strategies.
_rng = random.Random()
_http = requests.Session()
_lock = threading.Lock()
_tally = collections.Counter()
_users = collections.deque(maxlen=64)


def _sim(path, body):
    answer = _http.post(f"{SIM}{path}", json=body, timeout=10)
    answer.raise_for_status()
    return answer.json()


def _code(appid, user):
    return _sim("/sim/wx.login", {"appid": appid, "user": user})["code"]


class Login:
    """A real login of a new user: its tokens, ids, and the names the simulator knows it by."""

    def __init__(self):
        self.appid = APPIDS[0]
        self.user = f"fuzz-{secrets.token_hex(8)}"
        answer = _http.post(
            f"{SERVICE}/v1/wechat/login",
            json={"appid": self.appid, "code": _code(self.appid, self.user)},
            timeout=10,
        )
        answer.raise_for_status()
        body = answer.json()
        self.access = body["access_token"]
        self.refresh = body["refresh_token"]
        self.user_id = body["user"]["user_id"]
        payload = self.access.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.session_id = claims["sid"]
        with _lock:
            _users.append(self.user_id)


def _bearer(case, token):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


def _json_body(case):
    return case.body if isinstance(case.body, dict) else None


def _login_route(case):
    body = _json_body(case)
    if body is not None:
        appid = _rng.choice(APPIDS)
        user = _rng.choice(RETURNING) if _rng.random() < 0.5 else f"new-{secrets.token_hex(8)}"
        body["appid"] = appid
        body["code"] = _code(appid, user)


def _refresh_route(case):
    body = _json_body(case)
    if body is not None:
        body["refresh_token"] = Login().refresh


# The login `/v1/me` routes share until one of them ends its session or user (a new login
# costs two calls and a user), and at most this many times, so fresh users keep coming.
SHARED_USES = 8
ENDS_SESSION = {
    ("POST", "/v1/logout"),
    ("DELETE", "/v1/me"),
    ("DELETE", "/v1/me/sessions/{session_id}"),
}
_shared = {"login": None, "uses": 0}


def _user_login(op):
    with _lock:
        login, uses = _shared["login"], _shared["uses"]
        if login is None or uses >= SHARED_USES or op in ENDS_SESSION:
            login, uses = None, 0
        _shared["login"], _shared["uses"] = (None, 0) if op in ENDS_SESSION else (login, uses + 1)
    if login is None:
        login = Login()
        if op not in ENDS_SESSION:
            with _lock:
                _shared["login"], _shared["uses"] = login, 1
    return login


def _me_route(case):
    """The `/v1/me*` routes and logout: a real user's access token, and what the route's
    body or path names made real for that user."""
    op = (case.method.upper(), case.path)
    login = _user_login(op)
    _bearer(case, login.access)
    body = _json_body(case)
    if op == ("POST", "/v1/me/profile/authorize") and body is not None:
        sealed = _sim("/sim/getUserProfile", {"appid": login.appid, "user": login.user})
        body.update(
            raw_data=sealed["rawData"],
            signature=sealed["signature"],
            encrypted_data=sealed["encryptedData"],
            iv=sealed["iv"],
        )
    elif op == ("POST", "/v1/me/phone") and body is not None:
        body["code"] = _sim("/sim/getPhoneNumber", {"appid": login.appid, "user": login.user})["code"]
    elif op == ("DELETE", "/v1/me/sessions/{session_id}") and case.path_parameters:
        case.path_parameters["session_id"] = login.session_id
    elif op == ("DELETE", "/v1/me/authorizations/{kind}") and case.path_parameters:
        # Something to withdraw: the user authorizes what the path names first (should that
        # fail, the withdrawal answers 404, as for any user with nothing to withdraw).
        if case.path_parameters.get("kind") in AUTHORIZE:
            try:
                AUTHORIZE[case.path_parameters["kind"]](login)
            except requests.RequestException:
                pass


def _authorize_profile(login):
    sealed = _sim("/sim/getUserProfile", {"appid": login.appid, "user": login.user})
    _http.post(
        f"{SERVICE}/v1/me/profile/authorize",
        headers={"Authorization": f"Bearer {login.access}"},
        json={
            "raw_data": sealed["rawData"],
            "signature": sealed["signature"],
            "encrypted_data": sealed["encryptedData"],
            "iv": sealed["iv"],
        },
        timeout=10,
    )


def _authorize_phone(login):
    code = _sim("/sim/getPhoneNumber", {"appid": login.appid, "user": login.user})["code"]
    _http.post(
        f"{SERVICE}/v1/me/phone",
        headers={"Authorization": f"Bearer {login.access}"},
        json={"code": code},
        timeout=10,
    )


AUTHORIZE = {"profile": _authorize_profile, "phone": _authorize_phone}


def _admin_route(case):
    _bearer(case, ADMIN)
    params = case.path_parameters or {}
    if "id" in params:
        with _lock:
            known = list(_users)
        params["id"] = _rng.choice(known) if known else Login().user_id
    body = _json_body(case)
    if case.path == "/v1/token/introspect" and body is not None:
        body["token"] = Login().access


def _cloud_login(case, kwargs):
    body = _json_body(case)
    if body is None:
        return
    body["appid"] = APPIDS[0]
    # The signature covers the exact bytes, so they are sent as given here.
    raw = json.dumps(body).encode()
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    signature = hmac.new(
        CLOUD_SECRET.encode(), f"{timestamp}\n{nonce}\n".encode() + raw, hashlib.sha256
    ).hexdigest()
    case.headers = {
        **(case.headers or {}),
        "Content-Type": "application/json",
        "x-identity-timestamp": timestamp,
        "x-identity-nonce": nonce,
        "x-identity-signature": signature,
    }
    kwargs["data"] = raw


def _push(case):
    if case.path_parameters is not None:
        case.path_parameters["appid"] = APPIDS[0]
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(8)
    signature = hashlib.sha1("".join(sorted([PUSH_TOKEN, timestamp, nonce])).encode()).hexdigest()
    case.query = {
        **(case.query or {}),
        "signature": signature,
        "timestamp": timestamp,
        "nonce": nonce,
    }


ADMIN_PREFIXES = ("/v1/admin/", "/v1/events", "/v1/token/introspect", "/metrics")


@schemathesis.hook
def before_call(context, case, kwargs):
    if os.environ.get("FUZZ_DEBUG"):
        print("before", case.method, case.path, case.headers, case.path_parameters, case.body)
    if _rng.random() >= REAL:
        return
    path = case.path
    if path == "/v1/wechat/login":
        _login_route(case)
    elif path == "/v1/token/refresh":
        _refresh_route(case)
    elif path.startswith("/v1/me") or path == "/v1/logout":
        _me_route(case)
    elif path.startswith(ADMIN_PREFIXES):
        _admin_route(case)
    elif path == "/v1/wechat/cloud-login":
        _cloud_login(case, kwargs)
    elif path.startswith("/v1/wechat/push/"):
        _push(case)


@schemathesis.hook
def after_call(context, case, response):
    if os.environ.get("FUZZ_DEBUG"):
        print("after", case.method, case.path, case.headers, response.status_code, response.request.headers)
    with _lock:
        _tally[f"{case.method.upper()} {case.path} {response.status_code}"] += 1


@atexit.register
def _write_tally():
    with _lock:
        counts = dict(_tally)
    with open(TALLY, "w") as out:
        json.dump(counts, out, indent=1, sort_keys=True)
