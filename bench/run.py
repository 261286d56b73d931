#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""`make bench`: runs every bench/bench_*.py in turn (or those named on the
command line). Each one measures its baseline in the same run and prints its
figures as ratios against it; the machine is shared and noisy, so absolute
times mean little."""
import glob
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
scripts = sorted(glob.glob(os.path.join(here, "bench_*.py")))
if len(sys.argv) > 1:
    scripts = [s for s in scripts if any(a in os.path.basename(s) for a in sys.argv[1:])]
failed = 0
for script in scripts:
    print(f"== {os.path.basename(script)}", flush=True)
    rc = subprocess.call([sys.executable, script])
    if rc != 0:
        print(f"!! {os.path.basename(script)} exited {rc}", flush=True)
        failed += 1
sys.exit(1 if failed else 0)
