# shellcheck shell=bash
# Helpers for the ctest scripts that drive scripts/testbed/run and check its markers from outside.

passed=0
failed=0

# expect DESCRIPTION COMMAND [ARGS...]: counts a check; a failing one is named on stderr.
expect() {
  local desc=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $desc" >&2
  fi
}

# Prints the value of KEY in a marker line ("" if absent).
field() {
  local line=$1 key=$2 tok
  for tok in $line; do
    if [[ $tok == "$key="* ]]; then
      printf '%s\n' "${tok#*=}"
      return 0
    fi
  done
  return 0
}

# The closing line (ctest shows it) and the exit status.
finish() {
  echo "$1: $passed passed, $failed failed"
  ((failed == 0))
}
