"""The gateway's end-to-end tests use the voice engine's fixtures (a real worker, speech)."""

from __future__ import annotations

import pytest

from tests.engine.conftest import Worker, speak, worker  # noqa: F401


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call" and report.failed and "worker" in getattr(item, "funcargs", {}):
        # The worker runs in its own process: its log explains a missing agent.
        log: Worker = item.funcargs["worker"]  # type: ignore[attr-defined]
        report.sections.append(("worker log (tail)", log.text()[-6000:]))
    return report
