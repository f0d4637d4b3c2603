"""The package and its tests stay clean under ``mypy --strict`` (configured in pyproject.toml).

``scripts/test`` runs mypy once itself, before pytest, and deselects this test so that CI does not
pay for it twice; a plain ``pytest`` (e.g. ``pytest tests/unit``) still checks the types here.
"""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_is_clean() -> None:
    stdout, stderr, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "shipmail"), str(ROOT / "tests")]
    )
    assert status == 0, stdout + stderr
