"""What a piece of code imports, measured in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

_REPORT = """
import json as _json, sys as _sys
print(_json.dumps(sorted(m for m in _sys.modules if m.split(".")[0] in {packages!r})))
"""


def modules_imported(code: str, packages: Sequence[str], cwd: Path,
                     args: Sequence[str] = ()) -> list[str]:
    """Run ``code`` (with ``args`` as ``sys.argv[1:]``) in a new Python process and return
    the modules of ``packages`` it has imported by its end, sorted; fails the test with the
    process's stderr if the code fails."""
    script = textwrap.dedent(code) + _REPORT.format(packages=tuple(packages))
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, timeout=300, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
