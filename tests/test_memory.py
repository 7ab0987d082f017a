"""config.memory: one malloc arena per web worker (glibc), left to MALLOC_ARENA_MAX when set.

Each case runs in a fresh interpreter: mallopt changes the whole process.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = "from config.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def _run(extra_env: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env.update(extra_env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_limits_arenas_on_glibc() -> None:
    assert _run({}) == "True"


def test_an_explicit_malloc_arena_max_is_left_alone() -> None:
    assert _run({"MALLOC_ARENA_MAX": "4"}) == "False"
