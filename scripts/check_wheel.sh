#!/usr/bin/env bash
# A regular (non-editable) install works: build the sdist and the wheel from it, install the
# wheel with its dependencies into a FRESH virtualenv, and from a directory outside the
# repository run `qhil run bb84 --json` on the shipped default profile and the user-side
# pytest file examples/user_ci/test_installed_plugin.py (emulator_host, qhil_bench).
# Called by .ci/run after the tests; run it by hand the same way: bash scripts/check_wheel.sh
# Needs .venv (scripts/setup.sh: the dev extra brings `build`). Any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qhil-check-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
step() { echo "check_wheel: [${SECONDS}s] $*"; }

if ! .venv/bin/python -c "import build" 2>/dev/null; then
  echo "check_wheel: .venv has no 'build' package: run scripts/setup.sh (the dev extra has it)" >&2
  exit 1
fi
step "building the sdist, then the wheel from it"
.venv/bin/python -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || {
  tail -n 40 "$WORK/build.log"
  echo "check_wheel: build failed" >&2
  exit 1
}
wheels=("$WORK"/dist/qhil-*.whl)
sdists=("$WORK"/dist/qhil-*.tar.gz)
WHEEL=${wheels[0]}
SDIST=${sdists[0]}

step "checking both carry every hw_profiles/*.toml and py.typed"
.venv/bin/python - "$WHEEL" "$SDIST" hw_profiles/*.toml <<'EOF'
import sys
import tarfile
import zipfile
from pathlib import Path

wheel, sdist, *profiles = sys.argv[1:]
in_wheel = set(zipfile.ZipFile(wheel).namelist())
with tarfile.open(sdist) as tar:
    # regular files only: a symlink in the sdist would dangle once unpacked elsewhere
    in_sdist = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
wanted = ["qhil/py.typed"] + [f"qhil/hw_profiles/{Path(p).name}" for p in profiles]
missing = [f"wheel: {w}" for w in wanted if w not in in_wheel]
missing += [f"sdist: src/{w}" for w in wanted if f"src/{w}" not in in_sdist]
if missing:
    sys.exit("check_wheel: missing from the distributions: " + ", ".join(missing))
print(f"check_wheel: {len(wanted)} files in both ({Path(wheel).name}, {Path(sdist).name})")
EOF

step "installing the wheel (with its dependencies and the testing extra) into a fresh venv"
"$PY" -m venv "$WORK/venv"
# (pip's log goes to a file: the local indexes make it warn about every package)
"$WORK/venv/bin/python" -m pip install "$WHEEL[testing]" >"$WORK/pip.log" 2>&1 || {
  tail -n 40 "$WORK/pip.log"
  echo "check_wheel: installing the wheel failed" >&2
  exit 1
}

# Outside the repository, with nothing of it on the path; records and keys in the temp dir.
mkdir -p "$WORK/user/hw_profiles" "$WORK/home"
cd "$WORK/user"
export HOME="$WORK/home" QHIL_DATA_DIR="$WORK/data" XDG_DATA_HOME="$WORK/home/.local/share"
unset PYTHONPATH
where=$("$WORK/venv/bin/python" -c "import qhil; print(qhil.__file__)")
case $where in
  "$WORK/venv/"*) ;;
  *) echo "check_wheel: qhil imported from $where, not from the fresh venv" >&2; exit 1 ;;
esac

step "qhil run bb84 --json on the shipped default profile, from $PWD"
rc=0
"$WORK/venv/bin/qhil" run bb84 --json >"$WORK/bb84.json" 2>"$WORK/bb84.err" || rc=$?
if [ "$rc" -ne 0 ]; then
  tail -n 20 "$WORK/bb84.err" >&2
  echo "check_wheel: qhil run bb84 exited $rc" >&2
  exit 1
fi
"$WORK/venv/bin/python" - "$WORK/bb84.json" <<'EOF'
import json
import sys

summary = json.loads(open(sys.argv[1], encoding="utf-8").read())
if summary.get("status") != "success":
    sys.exit(f"check_wheel: qhil run bb84 did not succeed: status {summary.get('status')!r}")
print(f"check_wheel: bb84 {summary['status']}, run {summary.get('run_id')}")
EOF

step "the user-side pytest file, with the fresh venv's pytest"
mkdir "$WORK/user/tests"
cp "$REPO/examples/user_ci/test_installed_plugin.py" "$WORK/user/tests/"
# a user's own config: pytest-asyncio in its default strict mode
printf '[pytest]\nasyncio_default_fixture_loop_scope = function\n' >"$WORK/user/pytest.ini"
"$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider tests  # exits 5 if nothing ran

step "done"
