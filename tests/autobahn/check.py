"""Reads Autobahn TestSuite reports and fails on any FAILED or missing case.

usage: check.py EXPECTED_CASES LABEL=REPORT_DIR/index.json [...]

Each index.json must hold exactly one agent with EXPECTED_CASES cases. A case
fails when its `behavior` or `behaviorClose` is FAILED (the suite's own red
"Fail"); every other result (OK, NON-STRICT, INFORMATIONAL, and close results
such as FAILED BY CLIENT, which the suite's report shows as "almost") is
counted and shown but passes; the cases whose close was UNCLEAN or WRONG
CODE are listed as notes. Prints per-side counts, every failed or missing
case, and a closing `autobahn: N passed, M failed` line; exits 1 on any
failure or unreadable report. Runs under Python 2.7 and 3.
"""
from __future__ import print_function

import json
import sys
from collections import Counter


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def check_side(label, path, expected):
    """Returns (passed, failed, failure lines) for one report; a missing
    case counts as failed, an unreadable report as one failure."""
    try:
        with open(path) as f:
            index = json.load(f)
    except (IOError, OSError, ValueError) as e:
        return 0, 1, ["%s: cannot read %s: %s" % (label, path, e)]
    if len(index) != 1:
        return 0, 1, ["%s: %s holds %d agents (%s), expected exactly one"
                   % (label, path, len(index), ", ".join(sorted(index)))]
    agent, cases = list(index.items())[0]
    behavior = Counter(c.get("behavior") for c in cases.values())
    close = Counter(c.get("behaviorClose") for c in cases.values())
    print("%s (agent %s): %d cases; behavior: %s; behaviorClose: %s" % (
        label, agent, len(cases),
        ", ".join("%s %d" % kv for kv in sorted(behavior.items())),
        ", ".join("%s %d" % kv for kv in sorted(close.items()))))
    failures = []
    passed = 0
    failed = 0
    for case_id in sorted(cases, key=case_key):
        c = cases[case_id]
        if c.get("behavior") == "FAILED" or c.get("behaviorClose") == "FAILED":
            failures.append("%s: case %s FAILED (behavior %s, behaviorClose %s, report %s)"
                            % (label, case_id, c.get("behavior"), c.get("behaviorClose"),
                               c.get("reportfile")))
            failed += 1
        else:
            passed += 1
            if c.get("behaviorClose") in ("UNCLEAN", "WRONG CODE"):
                print("%s: note: case %s behaviorClose %s (behavior %s, report %s)"
                      % (label, case_id, c.get("behaviorClose"), c.get("behavior"),
                         c.get("reportfile")))
    if len(cases) < expected:
        failures.append("%s: %d of %d cases missing from %s (the run did not finish)"
                        % (label, expected - len(cases), expected, path))
        failed += expected - len(cases)
    elif len(cases) > expected:
        failures.append("%s: %d cases in %s, expected %d"
                        % (label, len(cases), path, expected))
        failed += 1
    return passed, failed, failures


def main(argv):
    if len(argv) < 3 or not argv[1].isdigit() or any("=" not in a for a in argv[2:]):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    expected = int(argv[1])
    passed = 0
    failed = 0
    failures = []
    for arg in argv[2:]:
        label, path = arg.split("=", 1)
        p, n, f = check_side(label, path, expected)
        passed += p
        failed += n
        failures += f
    for line in failures:
        print("autobahn: " + line)
    print("autobahn: %d passed, %d failed" % (passed, failed))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
