"""qhil's pytest plugin as a user's CI sees it: no qhil ini, run from another directory.

Without our ``asyncio_mode = "auto"``, pytest-asyncio is in its default strict mode, where a
plain async ``@pytest.fixture`` is refused; the plugin must work there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

USER_SIDE_TESTS = Path(__file__).parents[2] / "examples" / "user_ci" / "test_installed_plugin.py"


def _pytest_in(
    directory: Path, *args: str, python_code: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest in its own process, in ``directory`` with an empty ini (a user's own config)."""
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    run = f"import sys\n{python_code}\nimport pytest\nsys.exit(pytest.main({list(args)!r}))"
    return subprocess.run(
        [sys.executable, "-c", run],
        capture_output=True,
        text=True,
        cwd=directory,
        timeout=110,
        env={**os.environ, **(env or {})},
    )


# As in a virtualenv without pytest-asyncio: importing it fails.
NO_PYTEST_ASYNCIO = """
class _NoPytestAsyncio:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pytest_asyncio":
            raise ImportError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoPytestAsyncio())
"""


@pytest.mark.slow
def test_user_side_plugin_tests_pass_outside_the_repository_in_strict_mode(
    tmp_path: Path,
) -> None:
    shutil.copy(USER_SIDE_TESTS, tmp_path / USER_SIDE_TESTS.name)
    proc = _pytest_in(tmp_path, "-q", "-p", "no:cacheprovider", USER_SIDE_TESTS.name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout


def test_qhil_bench_without_pytest_asyncio_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "def test_uses_the_bench(qhil_bench):\n    pass\n", encoding="utf-8"
    )
    # Plugins named by hand, so that pytest does not try to load pytest-asyncio's.
    proc = _pytest_in(
        tmp_path,
        "-q",
        "-p",
        "qhil.testing.pytest_plugin",
        "test_user.py",
        python_code=NO_PYTEST_ASYNCIO,
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 error" in proc.stdout
    assert "qhil_bench is an async fixture and needs pytest-asyncio" in proc.stdout
    assert "pip install 'qhil[testing]'" in proc.stdout
