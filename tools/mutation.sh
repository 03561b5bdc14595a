#!/usr/bin/env bash
# Mutation testing of the pure rules: mutmut changes core/ and api/states.py one small edit at a
# time (`+= 1` → `+= 2`, `>` → `>=`, a string, a constant) and runs tests/unit against each; a
# mutant no test notices marks a rule nothing pins down. Prints killed / total per module and
# fails below MUTATION_MIN percent overall (default 97). Slow (tens of minutes): run it before
# changing a rule in core/, and weekly in CI, not on every push (README, Development).
#
#   tools/mutation.sh                      all of core/ and api/states.py, one worker
#   tools/mutation.sh core/admission.py    only these modules (paths under operator/workpools/)
#   MUTATION_JOBS=4 tools/mutation.sh      more workers on a machine of one's own
#   cd .mutation && mutmut show <name>     a surviving mutant's diff, after a run
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/tools/python-env.sh"

# mutmut is the `mutation` extra, installed here only, so the everyday test install stays light.
stamp="$root/.venv/.mutation-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
  echo "mutation: installing the mutation extra into $root/.venv" >&2
  python -m pip install --quiet -e "$root[test,mutation]"
  rm -f "$root"/.venv/.mutation-* && touch "$stamp"
fi

# mutmut names a mutant after its file's path from the working directory and switches it on only
# in the module of that name, so it must run where the package sits at the top (`workpools/`,
# not `operator/workpools/`): a staging directory of links, rebuilt each run.
work="$root/.mutation"
rm -rf "$work"
mkdir -p "$work"
for item in tests tools pyproject.toml crds examples manifests; do
  ln -s "../$item" "$work/$item"
done
ln -s ../operator/workpools "$work/workpools"
# Hypothesis as tests/unit/conftest.py sets it for mutation runs: no deadline (mutmut traces every
# call, and slowness must not count as a kill), no example database (nor, below, a random seed),
# so the score never hangs on luck or on the order mutants ran in.
export WORKPOOLS_HYPOTHESIS_PROFILE=mutation
modules=("${@:-core/*}")
[[ $# -gt 0 ]] || modules+=(api/states.py)
cat >"$work/setup.cfg" <<EOF
[mutmut]
source_paths = workpools
only_mutate =
$(printf '    workpools/%s\n' "${modules[@]}")
pytest_add_cli_args_test_selection = tests/unit
pytest_add_cli_args =
    --hypothesis-seed=0
    -p
    no:cacheprovider
also_copy =
    tools
    crds
    examples
    manifests
EOF

cd "$work"
echo "mutation: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- operator tests || echo ' (with uncommitted changes)'), ${MUTATION_JOBS:-1} worker(s)" >&2
mutmut run --max-children "${MUTATION_JOBS:-1}" >"$work/run.log" 2>&1 || {
  tail -c 4000 "$work/run.log" >&2  # the progress line is one long line
  exit 1
}
mutmut results --all true >"$work/results.txt"

python - "${MUTATION_MIN:-97}" "$work/results.txt" <<'EOF'
"""Score per module from `mutmut results --all true` lines: `    <module>.x_<function>__mutmut_<n>: <status>`."""

import re
import sys
from collections import Counter, defaultdict

minimum, path = float(sys.argv[1]), sys.argv[2]
# A mutant that makes the tests hang is caught as surely as one that makes them fail.
CAUGHT = {"killed", "timeout", "caught by type check"}
statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)
survivors: list[str] = []
for line in open(path, encoding="utf-8"):
    name, _, status = line.strip().rpartition(": ")
    if not name:
        continue
    module = re.split(r"\.x(?:_|ǁ)", name, maxsplit=1)[0]
    statuses[module][status] += 1
    if status not in CAUGHT | {"not checked"}:
        survivors.append(f"{status}: {name}")

print(f"{'module':<34} {'killed':>7} {'total':>6} {'score':>7}")
caught = total = unchecked = 0
for module, counts in sorted(statuses.items()):
    k, n, u = sum(counts[s] for s in CAUGHT), sum(counts.values()), counts["not checked"]
    caught, total, unchecked = caught + k, total + n - u, unchecked + u
    note = f"  ({u} not checked)" if u else ""
    print(f"{module:<34} {k:>7} {n - u:>6} {100 * k / max(n - u, 1):>6.1f}%{note}")
score = 100 * caught / total if total else 0.0
print(f"{'all':<34} {caught:>7} {total:>6} {score:>6.1f}%")
for survivor in survivors:
    print("  not killed:", survivor)
if unchecked:
    sys.exit(f"{unchecked} mutants not checked: the run was interrupted, so this is no score")
if score < minimum:
    sys.exit(f"mutation score {score:.1f}% is below {minimum:g}%")
EOF
