"""Fixtures of the browser tests: more browser contexts, for a second person or language.

The ``page`` fixture of ``tests/conftest.py`` is one person in English. A test
that needs another person (another cookie jar) or another Accept-Language asks
``new_page`` for a page in a fresh context; each gets a screenshot in
tests/artifacts when the test fails, and all are closed at the end.
"""

import pytest

from tests.conftest import ARTIFACTS


@pytest.fixture
def new_page(browser, request):
    """``new_page(locale="en-US")``: a page in a new browser context of its own."""
    contexts = []

    def make(locale="en-US"):
        context = browser.new_context(locale=locale)
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
