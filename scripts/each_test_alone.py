"""Run every test file alone, each in a fresh interpreter: a file that passes only after another
file has imported or set something up fails here. A step of .ci/run, after ``make test``.

``python scripts/each_test_alone.py [PATTERN ...]`` (default: every tests/**/test_*.py); exit 1 when any
file fails alone, listing them.
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv):
    files = sorted(ROOT.glob("tests/**/test_*.py"))
    if argv:
        files = [f for f in files if any(p in str(f) for p in argv)]
    failed = []
    for f in files:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(f)],
                              cwd=ROOT, capture_output=True, text=True)
        status = "ok" if proc.returncode == 0 else "FAIL"
        print(f"{status:<4} {time.perf_counter() - t0:6.1f} s  {f.relative_to(ROOT)}", flush=True)
        if proc.returncode != 0:
            failed.append(f)
            print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    if failed:
        print(f"{len(failed)} test file(s) fail when run alone: {[str(f.relative_to(ROOT)) for f in failed]}")
        return 1
    print(f"all {len(files)} test files pass alone")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
