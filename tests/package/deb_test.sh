#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deb_test.sh BUILD_DIR SOURCE_DIR VERSION LIBDIR CPACK: what a user of the .deb does, without installing it.
#  1. builds the .deb as `make package` does (cpack -G DEB, into a scratch directory) and reads its
#     control fields: name, version, dependencies;
#  2. unpacks it (dpkg-deb -x) into a temporary root: the files the docs name are there, and every
#     place that reports the version says VERSION (wm --version, <wm/version.hpp>, the CMake package
#     version file, wm.pc, the .deb);
#  3. builds the README's host program against the unpacked root with CMake (find_package(wm)) and
#     with pkg-config (--define-prefix: the .pc names /usr, the root is elsewhere), and runs both on
#     serial and processes, with the plugins of the package's own (relocatable) plugin directory;
#  4. installs the build with a prefix and DESTDIR, as `make install PREFIX=... DESTDIR=...` does:
#     everything lands under DESTDIR/PREFIX, and wm.pc names PREFIX.
set -euo pipefail
build=$1 src=$2 version=$3 libdir=$4 cpack=$5  # libdir: CMAKE_INSTALL_LIBDIR, e.g. lib
work=$(mktemp -d /tmp/wm-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "deb test: FAILED: $*" >&2; exit 1; }
# Only what the test sets: no plugin path, no backend choice, no library path from the caller.
for v in $(env | sed -n 's/^\(WM_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH

# 1. The package.
timeout 600 "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$work/cpack" > "$work/cpack.log" 2>&1 \
  || { cat "$work/cpack.log" >&2; fail "cpack -G DEB"; }
debs=("$work"/cpack/wm_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "no single wm_*.deb in $work/cpack: $(ls "$work/cpack")"
deb=${debs[0]}
[[ $(dpkg-deb -f "$deb" Package) == wm ]] || fail "package name: $(dpkg-deb -f "$deb" Package)"
[[ $(dpkg-deb -f "$deb" Version) == "$version" ]] || fail ".deb version $(dpkg-deb -f "$deb" Version), not $version"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in libc6 libstdc++6 libelf1 libboost-dev libcereal-dev; do
  [[ $depends == *"$dep"* ]] || fail "the .deb does not depend on $dep (Depends: $depends)"
done

# 2. Unpacked.
root=$work/root
dpkg-deb -x "$deb" "$root"
usr=$root/usr
for f in bin/wm bin/wm_run_task include/wm/wm.hpp include/wm/task.hpp include/wm/version.hpp include/wm/abi.h \
         $libdir/pkgconfig/wm.pc $libdir/cmake/wm/wmConfig.cmake $libdir/cmake/wm/wmConfigVersion.cmake \
         $libdir/wm/plugins/wm_backend_serial.so $libdir/wm/plugins/wm_backend_processes.so \
         share/man/man1/wm.1 share/bash-completion/completions/wm share/doc/wm/html/index.html \
         share/doc/wm/LICENSE share/doc/wm/CHANGELOG.md share/doc/wm/README.md; do
  [[ -e $usr/$f ]] || fail "the .deb has no /usr/$f"
done
[[ -z $(find "$usr/include" -name '*.in') ]] || fail "the .deb installs a template: $(find "$usr/include" -name '*.in')"
grep -q "^## \[$version\]" "$usr/share/doc/wm/CHANGELOG.md" || fail "CHANGELOG.md has no section for $version"

reported=$("$usr/bin/wm" --version)
[[ $reported == "wm $version "* ]] || fail "wm --version says '$reported', not $version"
grep -q "^#define WM_VERSION_STRING \"$version\"$" "$usr/include/wm/version.hpp" || fail "<wm/version.hpp> is not $version"
grep -q "set(PACKAGE_VERSION \"$version\")" "$usr/$libdir/cmake/wm/wmConfigVersion.cmake" \
  || fail "wmConfigVersion.cmake is not $version"
export PKG_CONFIG_PATH=$usr/$libdir/pkgconfig
pc() { pkg-config --define-prefix "$@"; }
[[ $(pc --modversion wm) == "$version" ]] || fail "pkg-config --modversion wm says $(pc --modversion wm)"
grep -q "^prefix=/usr$" "$usr/$libdir/pkgconfig/wm.pc" || fail "wm.pc of the .deb does not name /usr: $(grep ^prefix "$usr/$libdir/pkgconfig/wm.pc")"
[[ $(pc --variable=pluginsdir wm) -ef $usr/$libdir/wm/plugins ]] || fail "pluginsdir is $(pc --variable=pluginsdir wm)"
# The unpacked tool finds the unpacked plugins (the bundled directory is found next to libwm_core).
"$usr/bin/wm" list > "$work/list.txt"
grep -q "^processes .*$usr/$libdir/wm/plugins/wm_backend_processes.so$" "$work/list.txt" \
  || { cat "$work/list.txt" >&2; fail "wm list from the unpacked root does not show its own processes plugin"; }

# 3. The README's host program.
mkdir -p "$work/app"
awk '/^## A complete host program/ {on = 1} on && /^```cpp$/ {code = 1; next} code && /^```$/ {exit} code' \
  "$src/README.md" > "$work/app/app.cpp"
grep -q "WM_TASK(integrate)" "$work/app/app.cpp" || fail "no host program found in README.md"
cat > "$work/app/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.20)
project(readme_app LANGUAGES CXX)
find_package(wm $version REQUIRED)
add_executable(app app.cpp)
target_link_libraries(app PRIVATE WM::core)
CMAKE
cmake -S "$work/app" -B "$work/app/build" -DCMAKE_PREFIX_PATH="$usr" > "$work/app-configure.log" 2>&1 \
  || { cat "$work/app-configure.log" >&2; fail "configure the README program with find_package(wm)"; }
grep -q "wm_DIR:PATH=$usr/$libdir/cmake/wm" "$work/app/build/CMakeCache.txt" || fail "find_package(wm) found another wm"
cmake --build "$work/app/build" > "$work/app-build.log" 2>&1 || { cat "$work/app-build.log" >&2; fail "build with CMake"; }
# With pkg-config: the flags a Makefile would use, and a run path to the unpacked library.
# shellcheck disable=SC2046
c++ -std=c++17 -O1 -o "$work/app/app_pc" "$work/app/app.cpp" $(pc --cflags --libs wm) -Wl,-rpath,"$usr/$libdir" \
  2> "$work/app-pc.log" || { cat "$work/app-pc.log" >&2; fail "build with pkg-config: $(pc --cflags --libs wm)"; }
for app in "$work/app/build/app" "$work/app/app_pc"; do
  for backend in serial processes; do
    WM_WORK_MANAGER=$backend WM_N_WORKERS=2 timeout 60 "$app" > "$work/run.out" 2> "$work/run.err" \
      || { cat "$work/run.err" >&2; fail "$app on $backend exited with $?"; }
    workers=$([[ $backend == serial ]] && echo 1 || echo 2)
    grep -q "^pi ~ 3.14159 on $backend with $workers workers$" "$work/run.out" \
      || fail "$app on $backend said: $(cat "$work/run.out" "$work/run.err")"
  done
  ldd "$app" > "$work/ldd.txt"
  grep -q "libwm_core.so.* => $usr/$libdir/libwm_core.so" "$work/ldd.txt" \
    || fail "$app does not use the unpacked libwm_core: $(grep libwm_core "$work/ldd.txt")"
done

# 4. A prefix and a staging directory.
DESTDIR=$work/stage cmake --install "$build" --prefix /opt/wm-test > "$work/install.log"
[[ -x $work/stage/opt/wm-test/bin/wm && -f $work/stage/opt/wm-test/$libdir/libwm_core.so ]] \
  || fail "cmake --install with DESTDIR did not stage under DESTDIR/PREFIX"
grep -q "^prefix=/opt/wm-test$" "$work/stage/opt/wm-test/$libdir/pkgconfig/wm.pc" || fail "wm.pc does not name the prefix"
[[ ! -e /opt/wm-test ]] || fail "an install with DESTDIR wrote to /opt/wm-test itself"
echo "deb test: ok ($deb)"
