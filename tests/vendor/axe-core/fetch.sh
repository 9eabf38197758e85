#!/usr/bin/env bash
# Vendors axe-core's single-file build for tests/test_accessibility.py and tests/test_keyboard.py:
# axe.min.js, its LICENSE (MPL-2.0, which allows shipping the unmodified file) and VERSION.
# Run once by hand when upgrading (`bash tests/vendor/axe-core/fetch.sh 4.14.1`) and commit the
# result; the tests never touch the network. Needs npm.
set -euo pipefail
version=${1:-4.14.1}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "axe-core@$version" >/dev/null)
tar -xzf "$work/axe-core-$version.tgz" -C "$work" package/axe.min.js package/LICENSE package/package.json
cp "$work/package/axe.min.js" "$work/package/LICENSE" "$here/"
printf '%s\n' "$version" >"$here/VERSION"
echo "axe-core $version -> $here"
