#!/usr/bin/env bash
# Mutation testing of the safety core with mutmut (docs/mutation-testing.md); not part of .ci/run.
#
#   benchmarks/mutation.sh                      # every module, one after the other
#   benchmarks/mutation.sh executor ratelimit   # some of: planner executor ratelimit planfile agreement apply
#   MUTMUT_CHILDREN=1 benchmarks/mutation.sh    # mutants tested in parallel (default 2, the machine's cores)
#
# mutmut copies the project to mutants/, records which tests of [tool.mutmut]'s selection reach each
# function, and runs only those against each of its mutants, fastest first, stopping at the first
# failure. Per module this prints how many mutants were killed, survived, timed out or reached by
# no test, how long it took, and every mutant not killed; `.venv/bin/mutmut show NAME` shows one
# mutant's diff. mutmut's own output goes to mutants/mutation-MODULE.log.
set -euo pipefail
cd "$(dirname "$0")/.."

mutmut=.venv/bin/mutmut
if [ ! -x "$mutmut" ]; then
  echo "mutmut not found: install the dev dependencies (pip install -e '.[dev]')" >&2
  exit 1
fi
# [tool.mutmut]'s type_check_command runs `mypy` (by that name) in mutants/.
export PATH="$PWD/.venv/bin:$PATH"
children=${MUTMUT_CHILDREN:-2}
modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  modules=(ratelimit agreement executor planfile apply planner)
fi

for module in "${modules[@]}"; do
  case "$module" in
    planner | executor | ratelimit | planfile | agreement | apply) ;;
    *)
      echo "unknown module $module: one of planner executor ratelimit planfile agreement apply" >&2
      exit 2
      ;;
  esac
  echo "== retention.$module"
  started=$SECONDS
  mkdir -p mutants
  # A name given to `mutmut run` is tested again even when mutmut has a result for it.
  "$mutmut" run --max-children "$children" "retention.$module.*" > "mutants/mutation-$module.log" 2>&1
  # `results --all true` prints `NAME: STATUS` for every mutant; mutants in planner/ are
  # named retention.planner.<function> or retention.planner.<module>.<function>.
  "$mutmut" results --all true | grep -F "retention.$module." \
    | awk -F': ' '{ count[$NF]++; total++ } END {
        printf "%d mutants:", total
        for (status in count) printf " %d %s,", count[status], status
        printf "\n" }' | sed 's/,$//'
  echo "retention.$module: $((SECONDS - started)) s"
  # Every mutant neither killed by a test nor rejected by mypy --strict.
  "$mutmut" results --all true | grep -F "retention.$module." \
    | grep -v -e ': killed$' -e ': caught by type check$' || true
done
