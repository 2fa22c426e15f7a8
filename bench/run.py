"""Runs every benchmark under bench/ (`make bench`)."""

from __future__ import annotations

import runpy
from pathlib import Path

for script in sorted(Path(__file__).resolve().parent.glob("*/run.py")):
    print(f"== {script.parent.name}")
    runpy.run_path(str(script), run_name="__main__")
