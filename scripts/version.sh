#!/bin/sh
# The version stamped into every binary (and the installer's .deb), SemVer:
#   at a tag v1.2.3                  1.2.3
#   5 commits past it                1.2.3+5.gabc1234
#   no tag yet                       0.0.296-dev+gabc1234 (296: commits so far)
#   uncommitted changes              ... with .dirty at the end (+dirty if no other build part)
#   no git                           dev
# Commit counts make builds of one branch sort in order, as dpkg compares.
cd "$(dirname "$0")/.." || exit 1
if ! git rev-parse --git-dir >/dev/null 2>&1; then echo dev; exit 0; fi
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty=dirty
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
  v=$(echo "$d" | sed -E 's/^v//; s/-([0-9]+)-g([0-9a-f]+)$/+\1.g\2/')
else
  v="0.0.$(git rev-list --count HEAD)-dev+g$(git rev-parse --short HEAD)"
fi
case "$v,$dirty" in
  *,) ;;
  *+*,dirty) v="$v.dirty" ;;
  *,dirty) v="$v+dirty" ;;
esac
echo "$v"
