"""The package's shape rules (issue #21): no module grows past 500 lines."""

from __future__ import annotations

from pathlib import Path

import rayrec

MAX_LINES = 500


def test_no_module_is_over_500_lines():
    root = Path(rayrec.__file__).parent
    sizes = {p.relative_to(root): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 50, "the package's modules were not found"
    over = {str(p): n for p, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by concept): {over}"
