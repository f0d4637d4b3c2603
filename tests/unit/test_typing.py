"""The package and its tests stay clean under ``mypy --strict`` (configured in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_is_clean() -> None:
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "shipmail"),
                                      str(ROOT / "tests")])
    assert status == 0, stdout + stderr
