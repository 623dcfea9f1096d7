"""The layers import downwards only: settings import nothing of careflow's own, messaging knows no
workflows, workflows know no HTTP or database code (their activities are imported by reference)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWN = ("api", "activities", "careflow", "exchange", "messaging", "simulator", "store", "workers", "workflows")


def _imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split() if name.split(".")[0] in OWN} - {module.split(".")[0]}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("careflow.settings", set()),
        ("messaging", {"careflow"}),  # the directory's default path comes from settings
        ("workflows.models", {"messaging", "careflow"}),
    ],
)
def test_a_layer_imports_only_the_layers_below_it(module: str, allowed: set[str]) -> None:
    assert _imported_by(module) <= allowed, f"{module} imports {_imported_by(module) - allowed}"
