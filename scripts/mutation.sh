#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the security-relevant numerics: which small wrong changes
# to the code do the tests fail to notice? Not part of CI's default run (CPU-heavy).
#
#   .venv/bin/pip install -e '.[dev,mutation]'
#   scripts/mutation.sh qkd|statistics|detector [mutmut-name-glob ...]
#
# Each group mutates its modules and runs only the fast tests that pin them. The run happens
# in a scratch copy, .mutation/<group>/ (mutmut writes its mutated tree to mutants/ there),
# so the working tree is never touched. Afterwards:
#   (cd .mutation/<group> && ../../.venv/bin/mutmut results)          # survivors
#   (cd .mutation/<group> && ../../.venv/bin/mutmut show <name>)      # one mutant's diff
# Optional name globs (e.g. 'qhil.numerics.qkd.decoy*') run only those mutants: the way
# to sample a large module. docs/mutation-report.md has the last report.
# Environment: MUTATION_CHILDREN (parallel workers, default 1), MUTATION_NICE (default 10).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
mutmut=${MUTMUT:-$repo/.venv/bin/mutmut}
group=${1:?usage: scripts/mutation.sh qkd|statistics|detector [mutant-name-glob ...]}
shift

case "$group" in
  qkd)
    paths=(src/qhil/numerics/qkd)
    tests=(tests/numerics_qkd/test_finite_key.py tests/numerics_qkd/test_decoy.py
      tests/numerics_qkd/test_sifting.py
      tests/numerics_qkd/test_gllp.py tests/numerics_qkd/test_cascade.py
      tests/numerics_qkd/test_toeplitz.py tests/numerics_qkd/test_pipeline.py)
    ;;
  statistics)
    paths=(src/qhil/orchestrator/experiments/bb84/statistics.py)
    tests=(tests/experiments/bb84/test_statistics_pinned.py)
    ;;
  detector)
    paths=(src/qhil/emulators/world/detector.py src/qhil/emulators/world/deadtime.py
      src/qhil/emulators/world/bank.py)
    tests=(tests/world/test_detector_physics.py tests/world/test_sampling_kernels.py
      tests/world/test_dead_time_pinned.py)
    ;;
  *)
    echo "scripts/mutation.sh: unknown group '$group' (qkd, statistics or detector)" >&2
    exit 2
    ;;
esac

work="$repo/.mutation/$group"
rm -rf "$work"
mkdir -p "$work"
# The scratch copy: sources, tests and pytest's configuration (pyproject.toml has no
# [tool.mutmut], so mutmut reads the setup.cfg written below).
cp -r "$repo/src" "$repo/tests" "$repo/hw_profiles" "$repo/pyproject.toml" "$work/"
{
  echo "[mutmut]"
  # The whole package is copied (a partial copy would not shadow the installed one); only
  # the group's files are mutated.
  echo "source_paths=src"
  echo "only_mutate="
  for p in "${paths[@]}"; do
    case "$p" in *.py) echo "    $p" ;; *) echo "    $p/*" ;; esac
  done
  echo "pytest_add_cli_args_test_selection="
  for t in "${tests[@]}"; do echo "    $t"; done
  echo "pytest_add_cli_args="
  echo "    -m"
  echo "    not slow"
  echo "    -p"
  echo "    no:cacheprovider"
  echo "    -q"
  # A mutant that makes a test loop for longer than this is killed (counted as a timeout).
  echo "timeout_multiplier=5.0"
  echo "timeout_constant=10.0"
} >"$work/setup.cfg"
cd "$work"
nice -n "${MUTATION_NICE:-10}" "$mutmut" run --max-children "${MUTATION_CHILDREN:-1}" "$@"
"$mutmut" results
