#!/usr/bin/env bash
# CI: ganrev as a user installs it. A wheel built from this checkout, installed in a fresh virtual environment
# outside the checkout, works offline from an empty folder: `ganrev models` lists the default generator, and
# compress, decompress and metrics (LPIPS included) of a held-out emoji run with no model path given.
# Needs .venv (the README's setup): its torch and torchvision versions are the ones installed, the same files.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

# Build from a copy of the files git knows (tracked, or new and not ignored): no stale build/, .venv/ or runs/
# can reach the wheel, and the checkout gets no build/ folder.
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
    if [[ -e $file ]]; then printf '%s\0' "$file"; fi  # a tracked file deleted in the work tree is left out
done | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
.venv/bin/python -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src"

python3 -m venv "$WORK/venv"
pins="$(.venv/bin/python -c 'from importlib.metadata import version as v; print("torch==" + v("torch"), "torchvision==" + v("torchvision"))')"
# shellcheck disable=SC2086  # two requirements
"$WORK/venv/bin/pip" install -q $pins
"$WORK/venv/bin/pip" install -q "$WORK"/dist/ganrev-*.whl  # its other dependencies as declared in pyproject.toml

# An empty folder, an empty home (no torch hub cache to fall back on), none of ganrev's variables, and no network
# where a network namespace can be made.
mkdir "$WORK/try" "$WORK/home"
cp pretrained/emoji64/heldout/1f0cf.png "$WORK/try/img.png"
cd "$WORK/try"
offline=()
if unshare -n true 2>/dev/null; then offline=(unshare -n); fi
ganrev() {
    env -u GANREV_GENERATOR -u GANREV_MODELS -u GANREV_LPIPS_WEIGHTS -u PYTHONPATH HOME="$WORK/home" \
        "${offline[@]}" "$WORK/venv/bin/ganrev" "$@"
}
fail() { echo "wheel check: $*" >&2; exit 1; }

listing="$(ganrev models)"
echo "$listing"
grep -Eq '^emoji64 +package ' <<<"$listing" || fail "ganrev models does not list the packaged emoji64"
ganrev compress img.png
[[ -s img.grv ]] || fail "compress wrote no img.grv"
ganrev decompress img.grv
[[ -s img.dec.png ]] || fail "decompress wrote no img.dec.png"
scores="$(ganrev metrics img.png img.dec.png)"
echo "$scores"
grep -Eq '^LPIPS +[0-9]' <<<"$scores" || fail "LPIPS is not available from the packaged weights"
echo "wheel-check: 4 passed, 0 failed"
