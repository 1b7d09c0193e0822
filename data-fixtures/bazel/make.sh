#!/usr/bin/env bash
# Produces the Bazel fixtures beside this script with a real Bazel (Debian's bazel-bootstrap):
# a clean build, the same build again from Bazel's caches, a build with a failing target under
# --keep_going, and one without it that stops at a genrule exiting 3, each as Build Event
# Protocol JSON (--build_event_json_file) and a JSON trace profile (--profile). Bazel runs with
# a minimal environment, and machine-specific paths, user and host names are replaced by
# neutral ones.
# Usage: bash data-fixtures/bazel/make.sh [NAME...]   (needs: apt-get install bazel-bootstrap)
# Given names (clean, cached, failed, stopped), only those fixtures are rewritten; every build
# still runs, in order, because each starts from the caches the builds before it left.
set -euo pipefail
all=(clean cached failed stopped)
names=("${@:-${all[@]}}")
for name in "${names[@]}"; do
    [[ " ${all[*]} " == *" $name "* ]] || { echo "no build named '$name' (${all[*]})" >&2; exit 2; }
done
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/workspace/." "$work/"
cd "$work"
build() {  # NAME TARGETS...
    local name=$1; shift
    env -i PATH=/usr/bin:/bin HOME="$HOME" bazel --batch build "$@" --nosandbox_debug --build_event_json_file="$work/$name.bep.json" \
        --profile="$work/$name.profile.json" >/dev/null 2>&1 || true
}
env -i PATH=/usr/bin:/bin HOME="$HOME" bazel --batch clean --expunge >/dev/null 2>&1 || true
build clean //app:server //lib:proto
build cached //app:server //lib:proto
build failed //app:server //app:broken --keep_going
build stopped //app:server //app:client //lib:c
output_base=$(env -i PATH=/usr/bin:/bin HOME="$HOME" bazel --batch info output_base 2>/dev/null)
for name in "${names[@]}"; do
    for file in "$work/$name.bep.json" "$work/$name.profile.json"; do
        sed -e "s#$output_base#/home/dev/.cache/bazel/output_base#g" \
            -e "s#$work#/home/dev/tiny#g" \
            -e "s#$HOME#/home/dev#g" \
            -e 's#"BUILD_USER","value":"[^"]*"#"BUILD_USER","value":"dev"#' \
            -e 's#"BUILD_HOST","value":"[^"]*"#"BUILD_HOST","value":"buildhost"#' \
            -e 's#"serverPid":"[0-9]*"#"serverPid":"1"#' \
            "$file" > "$here/$(basename "$file")"
    done
done
