#!/usr/bin/env bash
# Checks the layering of docs/architecture.md: an `#include "hrm/<folder>/..."` in include/hrm/<layer>/ or
# src/<layer>/ may only name the same or a lower layer. Exits 1 listing every violation.
set -euo pipefail
cd "$(dirname "$0")/.."
rank() {
  case "$1" in
    util) echo 0 ;; dist) echo 1 ;; config) echo 2 ;; data) echo 3 ;; nn) echo 4 ;; model) echo 5 ;; loss) echo 6 ;;
    optim) echo 7 ;; train) echo 8 ;; eval | analysis) echo 9 ;; *) echo 99 ;;
  esac
}
bad=0
while IFS= read -r file; do
  layer=$(echo "$file" | sed -E 's#^(include/hrm|src)/([^/]+)/.*#\2#')
  own=$(rank "$layer")
  if [ "$own" = 99 ]; then echo "unknown layer folder: $file"; bad=1; continue; fi
  while IFS= read -r inc; do
    target=$(echo "$inc" | sed -E 's#.*"hrm/([^/]+)/.*#\1#')
    if [ "$(rank "$target")" -gt "$own" ]; then
      echo "$file includes hrm/$target/ (layer $(rank "$target") above $layer, layer $own)"
      bad=1
    fi
  done < <(grep -E '^#include "hrm/[^/]+/' "$file" || true)
done < <(find include/hrm src -mindepth 2 -name '*.h' -o -mindepth 2 -name '*.cpp' | sort)
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "PASS: every include goes to the same or a lower layer"
