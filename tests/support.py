"""Small helpers the tests share: CSRF tokens from real pages, logging in, waiting, money."""

import re
import time

FUNDS = "1000"  # what ``fund`` gives a renter, in the miner's currency

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


def fund(*renters, amount=FUNDS):
    """Recharge ``renters`` (User rows; inside an app context) so their tasks may start."""
    from portal.ledger import recharge
    from portal.money import parse_amount

    for renter in renters:
        recharge(renter, parse_amount(amount), None, "test funds")
    return renters[0] if len(renters) == 1 else renters


def fund_on(server, *names, amount=FUNDS):
    """The same for renters of a live server, through its ``billing recharge`` command."""
    for name in names:
        server.flask("billing", "recharge", name, amount)
