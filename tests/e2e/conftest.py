"""Fixtures of the browser tests: more browser contexts, for a second person or language,
and a watch for Content-Security-Policy violations on every page a test opens.

The ``page`` fixture of ``tests/conftest.py`` is one person in English. A test
that needs another person (another cookie jar) or another Accept-Language asks
``new_page`` for a page in a fresh context; each gets a screenshot in
tests/artifacts when the test fails, and all are closed at the end.

Both watch their browser context: a violation the browser reports (the page's
``securitypolicyviolation`` event, or Chromium's "Refused to …" console message)
fails the test at teardown. A test that provokes one on purpose takes what it
expected out of ``csp_violations``.
"""

import pytest

from tests.conftest import ARTIFACTS

BINDING = "__hourglassCspViolation"
# Runs in every frame before the page's own scripts (not subject to the page's policy).
LISTENER = """document.addEventListener("securitypolicyviolation", (e) => {
  window.BINDING(`${e.effectiveDirective} refused ${e.blockedURI || "inline"} on ${e.documentURI}`
                 + ` (${e.sourceFile || "?"}:${e.lineNumber})`);
});""".replace("BINDING", BINDING)


def watch(context, seen):
    """Record in ``seen`` every CSP violation reported in ``context``'s pages."""
    context.expose_binding(BINDING, lambda source, text: seen.append(text))
    context.add_init_script(LISTENER)

    def console(message):
        if "Content Security Policy" in message.text:
            seen.append(f"console {message.type}: {message.text}")
    context.on("console", console)


@pytest.fixture
def csp_violations():
    """The CSP violations the test's browser contexts reported, in order."""
    return []


@pytest.fixture
def page(page, csp_violations):
    """``tests/conftest.py``'s page, watched for CSP violations."""
    watch(page.context, csp_violations)
    yield page
    assert not csp_violations, "Content-Security-Policy violations:\n" + "\n".join(
        csp_violations)


@pytest.fixture
def new_page(browser, request, csp_violations, live_server_factory):
    """``new_page(locale="en-US")``: a page in a new browser context of its own, closed
    before the test's servers stop (as ``page``)."""
    contexts = []

    def make(locale="en-US"):
        context = browser.new_context(locale=locale)
        watch(context, csp_violations)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield make
    report = getattr(request.node, "rep_call", None)
    for number, context in enumerate(contexts, start=1):
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            for page in context.pages:
                page.screenshot(path=ARTIFACTS / f"{request.node.name}-context{number}.png",
                                full_page=True)
        context.close()
    assert not csp_violations, "Content-Security-Policy violations:\n" + "\n".join(
        csp_violations)
