#!/usr/bin/env bash
# beam's two commands, from the repository root:
#   cmake/dev.sh example   build and run the main example
#   cmake/dev.sh test      build everything and run all tests (ctest)
# Extra arguments go to the example, or to cmake's configure step for `test`.
# Missing Debian packages are installed with apt-get when run as root (otherwise the exact
# command is printed): fortunes (the example's corpus), gnuplot-nox (its plot), and for the
# tests doctest-dev and libbenchmark-dev.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
what=${1:-}; shift || true
build=${BEAM_BUILD_DIR:-build}

install_missing() {  # install_missing <package>...
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "beam needs: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
}

configure() {  # configure <build dir> [cmake options]
  local dir=$1; shift
  local generator=()
  command -v ninja >/dev/null && [ ! -f "$dir/CMakeCache.txt" ] && generator=(-G Ninja)
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
}

case "$what" in
  example)
    install_missing fortunes gnuplot-nox
    # Its own build folder: the example needs no test or benchmark dependency. Quiet when the
    # build succeeds; its full output when it fails.
    mkdir -p "$build-example"
    log="$build-example/build.log"
    if ! { configure "$build-example" -DBEAM_BUILD_TESTS=OFF -DBEAM_BUILD_BENCHMARKS=OFF &&
           cmake --build "$build-example" --target 02_train_beam -j "$(nproc)"; } >"$log" 2>&1; then
      cat "$log" >&2
      echo "cmake/dev.sh example: the build failed (output above, also in $log)" >&2
      exit 1
    fi
    "$build-example/examples/02_train_beam" --out "$build-example/results" "$@"
    ;;
  test)
    install_missing doctest-dev libbenchmark-dev fortunes
    configure "$build" -DBEAM_BUILD_TESTS=ON -DBEAM_BUILD_EXAMPLES=ON -DBEAM_BUILD_BENCHMARKS=ON "$@"
    cmake --build "$build" -j "$(nproc)"
    ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
    ;;
  *)
    echo "usage: cmake/dev.sh example [args] | test [cmake -D options]" >&2
    exit 2
    ;;
esac
