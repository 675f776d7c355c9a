#!/usr/bin/env bash
# install_consumer.sh BUILD_DIR SOURCE_DIR: installs the build into a temporary prefix, builds the
# examples against the installed package with find_package(wm), and runs the demo on the
# installed plugins (serial and threads). What a user of an installed wm does.
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d /tmp/wm-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src/examples" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/consumer" -j 2 > "$work/build.log"
# Only the installed plugin directory may be used.
unset WM_PLUGIN_PATH
timeout 60 "$work/consumer/wm_demo"
WM_WORK_MANAGER=threads timeout 60 "$work/consumer/wm_demo"
ls "$work/prefix"/lib*/wm/plugins/ 2>/dev/null || ls "$work/prefix"/lib/*/wm/plugins/
echo "install consumer: ok"
