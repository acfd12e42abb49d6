"""docs/metrics.md and the Grafana dashboard name only metrics that exist, and the doc
describes every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import Counter, Histogram

from thinnest import metrics
from thinnest.api.routes.metrics import _LiveWorkers
from thinnest.engine.scrape import WorkerLoad

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _exported() -> dict[str, str]:
    """Each exported family's name, and the suffixes its samples may carry."""
    names = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names[value._name + "_total"] = ""
        elif isinstance(value, Histogram):
            for suffix in ("", "_bucket", "_count", "_sum"):
                names[value._name + suffix] = value._name
    for collector in (WorkerLoad(lambda: 0, 1), _LiveWorkers([])):
        names.update({family.name: "" for family in collector.collect()})
    return names


def test_the_doc_and_the_dashboard_name_only_exported_metrics() -> None:
    exported = _exported()
    for doc in (DOCS / "metrics.md", DOCS / "grafana-thinnest.json"):
        named = set(re.findall(r"\bthinnest_[a-z_]+[a-z]", doc.read_text()))
        assert named, doc
        assert named <= set(exported), (doc.name, sorted(named - set(exported)))


def test_the_doc_describes_every_metric() -> None:
    text = (DOCS / "metrics.md").read_text()
    families = {base or name for name, base in _exported().items()}
    assert sorted(n for n in families if f"`{n}`" not in text) == []
