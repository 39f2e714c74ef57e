"""One intra-op thread per process by default (issue 14), overridable by ALCHEMY_THREADS / OMP_NUM_THREADS."""

from __future__ import annotations

from alchemy_mbrl.cli import default_threads


def test_default_threads(monkeypatch) -> None:
    monkeypatch.delenv("ALCHEMY_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("ALCHEMY_THREADS", "2")
    assert default_threads() == 2
    monkeypatch.setenv("ALCHEMY_THREADS", "zero")
    assert default_threads() == 3
