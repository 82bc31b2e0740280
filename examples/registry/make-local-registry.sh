#!/usr/bin/env bash
# A Harbor registry dataset made from this repository's example tasks, to try
# `autoagent eval -d NAME@VERSION --registry …` without a network: the tasks are committed to a
# git repository, published as a bare repository reached by a file:// URL, and a registry.json
# names each task by that URL, the commit and its path. Prints the command that runs it.
#
# Usage: bash examples/registry/make-local-registry.sh [DIR]   (default: a new temp dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tasks="$here/../tasks"
out=${1:-$(mktemp -d /tmp/autoagent-registry.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
git_() { git -c user.name=autoagent -c user.email=autoagent@localhost -c commit.gpgsign=false "$@"; }

rm -rf "$out/src" "$out/tasks.git"
mkdir -p "$out/src/tasks"
# The valid example tasks (invalid-config is there to show an error; broken-build never builds).
names=(hello-file partial-credit multi-metric multi-step separate-verifier)
for t in "${names[@]}"; do
  cp -R "$tasks/$t" "$out/src/tasks/$t"
done
git_ -C "$out/src" init -q -b main
git_ -C "$out/src" add -A
git_ -C "$out/src" commit -q -m "example tasks"
commit=$(git -C "$out/src" rev-parse HEAD)
git_ clone -q --bare "$out/src" "$out/tasks.git"

python3 - "$out" "$commit" "${names[@]}" <<'PY'
import json, sys
out, commit, names = sys.argv[1], sys.argv[2], sys.argv[3:]
url = f"file://{out}/tasks.git"
registry = [{
    "name": "examples",
    "version": "1.0",
    "description": "autoagent's example tasks, from a local bare repository",
    "tasks": [{"name": n, "git_url": url, "git_commit_id": commit, "path": f"tasks/{n}"} for n in names],
}]
with open(f"{out}/registry.json", "w") as f:
    json.dump(registry, f, indent=2)
PY
echo "registry: $out/registry.json (dataset examples@1.0, commit $commit)"
echo "run it:   autoagent eval -d examples@1.0 --registry $out/registry.json -a oracle"
