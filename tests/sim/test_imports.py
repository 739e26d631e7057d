"""The simulator runs on numpy alone: importing it loads no Ray, torch or gymnasium."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_simulator_loads_no_ray_torch_or_gymnasium():
    code = (
        "import sys, rayrec.sim; "
        "assert not {'ray', 'torch', 'gymnasium'} & set(sys.modules), "
        "sorted({'ray', 'torch', 'gymnasium'} & set(sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
