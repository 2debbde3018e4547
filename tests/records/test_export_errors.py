"""``qhil runs export``: an output it cannot write is one line naming it, exit 2, nothing left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from qhil.cli import main
from qhil.records import RunStore


def test_json_out_an_existing_folder_is_one_line_and_leaves_no_temp(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "data")
    with store.start_run("bb84", profile={"bench": {"name": "t"}}, seed=3) as run:
        run.append("qber_per_block", np.array([0.01, 0.02]))
        run.log_results(qber=0.02)
    out_dir = tmp_path / "existing"
    out_dir.mkdir()
    args = ["runs", "export", run.run_id, "--format", "json", "--out", str(out_dir)]
    r = CliRunner().invoke(main, [*args, "--data-dir", str(store.data_dir)])
    assert r.exit_code == 2, r.output
    (line,) = r.output.strip().splitlines()
    assert line.startswith("qhil: error: export: cannot write") and str(out_dir) in line
    assert list(tmp_path.glob(".*.tmp")) == []  # the temporary file is gone
    assert list(out_dir.iterdir()) == []
