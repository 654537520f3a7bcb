"""Write the web UI's screenshots (docs/webui/*.png) from the browser tests.

    python plugins/webui/tools/screenshots.py [OUT_DIR]

Runs plugins/webui/tests/test_browser.py with MARTLET_WEBUI_SCREENSHOTS=OUT_DIR (default: the
repository's docs/webui): the tests drive the real app in headless Chromium on a tiny model
and save train.png, chat.png, evaluate.png and export.png as they go, so the pictures show
what the tests checked. Needs Debian's `chromium` and `playwright`, as the tests do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "docs" / "webui"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MARTLET_WEBUI_SCREENSHOTS": str(out.resolve())}
    tests = REPO / "plugins" / "webui" / "tests" / "test_browser.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:xdist", str(tests)],
        cwd=REPO,
        env=env,
        check=False,
    )
    if done.returncode == 0:
        for png in sorted(out.glob("*.png")):
            print(png.relative_to(REPO) if png.is_relative_to(REPO) else png)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
