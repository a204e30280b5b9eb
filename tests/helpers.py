"""Helpers shared by the tests (importable from any test module, unlike conftest.py).

Test sizes for long tests scale with KVSTORE_TEST_SCALE (default 1.0; CI runs the default).
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("KVSTORE_TEST_SCALE", "1.0"))


def scaled(n: int, minimum: int = 1) -> int:
    """``n`` scaled by KVSTORE_TEST_SCALE, for tests whose size is a knob."""
    return max(minimum, int(n * SCALE))
