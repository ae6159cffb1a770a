#!/usr/bin/env bash
# Builds the llama.cpp that BENCHMARKS.md compares against: the copy vendored in the PyPI sdist
# llama-cpp-python==0.3.36 (llama.cpp build 0c1e570), fetched from PyPI's simple index, sha256
# verified, built outside the repo. Only `llama-bench` and `llama-server` are built. Needs a C++
# compiler; cmake comes from PyPI when the machine has none.
#
# Cache directory: $CALLM_LLAMA_DIR, default ~/.cache/callm/llama.cpp (outside the repo).
# Usage: scripts/build-llama-cpp.sh [native|portable]   (default: native)
#   native    -DGGML_NATIVE=ON: the instruction sets this CPU reports.
#   portable  AVX2 + AVX-512 (VBMI, VNNI, BF16) + AVX-VNNI spelled out, no -march=native: for VMs
#             that advertise AMX without letting a process use it (native builds then fault).
# Prints the two binaries' paths last. Idempotent: an existing build is reused.
set -euo pipefail

version=0.3.36
sum=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
dir="${CALLM_LLAMA_DIR:-$HOME/.cache/callm/llama.cpp}"
mode="${1:-native}"
py="${PYTHON:-python3}"

case "$mode" in
  native) flags=(-DGGML_NATIVE=ON) ;;
  portable)
    flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
      -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON
      -DGGML_AVX_VNNI=ON) ;;
  *) echo "usage: $0 [native|portable]" >&2; exit 2 ;;
esac

src="$dir/llama_cpp_python-$version/vendor/llama.cpp"
build="$dir/build-$mode"
mkdir -p "$dir"

if [ ! -f "$src/CMakeLists.txt" ]; then
  tgz="$dir/llama_cpp_python-$version.tar.gz"
  if [ ! -f "$tgz" ] || [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$sum" ]; then
    url=$(curl -fsS https://pypi.org/simple/llama-cpp-python/ \
      | grep -o "https://[^\"#]*llama_cpp_python-$version.tar.gz" | head -1)
    [ -n "$url" ] || { echo "llama-cpp-python $version not found on PyPI's simple index" >&2; exit 1; }
    echo "get  llama-cpp-python $version sdist (llama.cpp sources) from PyPI"
    curl -fsSL -o "$tgz.part" "$url"
    if [ "$(sha256sum "$tgz.part" | cut -d' ' -f1)" != "$sum" ]; then
      echo "sha256 mismatch for $tgz" >&2; rm -f "$tgz.part"; exit 1
    fi
    mv "$tgz.part" "$tgz"
  fi
  tar -xzf "$tgz" -C "$dir"
fi

if ! command -v cmake > /dev/null; then
  echo "get  cmake from PyPI (pip --user)"
  "$py" -m pip install --quiet --user --disable-pip-version-check cmake
  PATH="$("$py" -m site --user-base)/bin:$PATH"
fi

if [ ! -x "$build/bin/llama-server" ] || [ ! -x "$build/bin/llama-bench" ]; then
  echo "build llama.cpp ($mode) in $build: about 10 minutes on 2 cores"
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF "${flags[@]}" > "$build.cmake.log"
  cmake --build "$build" -j "$(nproc)" --target llama-server llama-bench > "$build.build.log"
fi
echo "$build/bin/llama-bench"
echo "$build/bin/llama-server"
