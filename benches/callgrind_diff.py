#!/usr/bin/env python3
"""Per-function instructions per request from two callgrind profiles of the same server under
N1 and N2 requests (`benches/wsgi_callgrind.sh` writes them: target/callgrind/LABEL.N.PID, the
worker's being the larger file of each run): (I_N2(f) - I_N1(f)) / (N2 - N1) for every
function f, self cost (not inclusive), largest first. Start-up cancels out as in the script's
total.

    python3 benches/callgrind_diff.py target/callgrind/L.2000.PID1 target/callgrind/L.6000.PID2 4000 [TOP]

Needs callgrind_annotate (valgrind).
"""

import collections
import re
import subprocess
import sys


def load(path):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cost = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r" \[.*\]$", "", m.group(2))
            fn = name.split(":", 1)[1] if ":" in name else name
            cost[fn] += int(m.group(1).replace(",", ""))
    return cost


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    a, b, n = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 60
    diff = {k: (b[k] - a.get(k, 0)) / n for k in b}
    print(f"total per request {sum(diff.values()):.0f}")
    for k, v in sorted(diff.items(), key=lambda x: -x[1])[:top]:
        print(f"{v:7.0f}  {k[:160]}")


if __name__ == "__main__":
    main()
