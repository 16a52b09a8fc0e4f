#!/usr/bin/env bash
# Run the test suite against the installed package (what `make test` and CI run).
#   bash tools/run_tests.sh [pytest args]    default tiers: unit + ros, not slow (-m or test paths override)
# ROS traffic is kept to this machine and to this run: LOCALHOST discovery and a per-run
# ROS_DOMAIN_ID (override by exporting ROS_DOMAIN_ID). pytest's exit 5 (no test ran) is a failure.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
source "$ROOT/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}
export PYTHONDONTWRITEBYTECODE=1
cd "$ROOT"
args=("$@")
# the default tiers unless the caller picks tiers (-m) or names test files
if [[ " $* " != *" -m "* ]] && [[ "$*" != *test/* ]]; then
  args=(-m "(unit or ros) and not slow" "${args[@]}")
fi
echo "[tests] ROS_DOMAIN_ID=$ROS_DOMAIN_ID  pytest ${args[*]}"
"$VIRTUAL_ENV/bin/pytest" "${args[@]}"
rc=$?
if [ $rc -eq 5 ]; then
  echo "[tests] ERROR: pytest collected no tests (exit 5); a run that tests nothing is a failure" >&2
  exit 1
fi
exit $rc
