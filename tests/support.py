"""Small helpers the tests share: CSRF tokens from real pages, logging in, waiting."""

import re
import time

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
LOGIN_PATH = {"miner": "/miner/login", "renter": "/login"}


def csrf_token(client, path):
    """The CSRF token a real browser would get from the form on ``path``."""
    match = CSRF_RE.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, role, name, password, next_url=None):
    """Sign in through the real login form; returns the POST response."""
    path = LOGIN_PATH[role]
    url = f"{path}?next={next_url}" if next_url else path
    token = csrf_token(client, path)
    return client.post(url, data={"name": name, "password": password, "csrf_token": token})


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll ``predicate`` until it returns a true value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
