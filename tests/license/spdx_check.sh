#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every source file of the project names its license (SPDX) in its first three lines, and the
# LICENSE file is the MIT license that the lines name. Usage: spdx_check.sh SOURCE_DIR
set -euo pipefail
src=$1
grep -q '^MIT License$' "$src/LICENSE" || { echo "FAIL: $src/LICENSE is not the MIT license"; exit 1; }
missing=0
checked=0
while IFS= read -r -d '' f; do
  checked=$((checked + 1))
  if ! head -3 "$f" | grep -q 'SPDX-License-Identifier: MIT'; then
    echo "FAIL: no 'SPDX-License-Identifier: MIT' line in the first three lines of ${f#"$src"/}"
    missing=$((missing + 1))
  fi
done < <(find "$src" \( -path "$src/.git" -o -path "$src/build*" -o -path "$src/.*" \) -prune -o -type f \
           \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.c' -o -name '*.py' -o -name '*.sh' \
              -o -name '*.cmake' -o -name '*.cmake.in' -o -name CMakeLists.txt -o -name Makefile \) -print0)
[ "$checked" -gt 100 ] || { echo "FAIL: only $checked source files found under $src"; exit 1; }
[ "$missing" -eq 0 ] || { echo "$missing of $checked source files lack the SPDX line"; exit 1; }
echo "PASS: $checked source files carry 'SPDX-License-Identifier: MIT'"
