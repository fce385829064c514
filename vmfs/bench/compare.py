"""Side-by-side timing of `host vmfs cat`, `debugvmfs ... cat` and a dissect.vmfs read.

Usage: python3 compare.py HOST_BINARY IMAGE PATH [RUNS] [DEBUGVMFS]
Each command's stdout goes to /dev/null. After one warm-up run of each (so the image is in the
page cache for everyone), the commands run interleaved RUNS times, so that load from other
processes on the machine falls on all of them alike. Prints the median and minimum wall time.
DEBUGVMFS defaults to `debugvmfs` (VMFS5); pass `debugvmfs6` for VMFS6 images.
"""
import statistics
import subprocess
import sys
import time
from pathlib import Path

host, image, path = sys.argv[1], sys.argv[2], sys.argv[3]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 11
debugvmfs = sys.argv[5] if len(sys.argv) > 5 else "debugvmfs"
here = Path(__file__).parent
commands = {
    "host vmfs cat": [host, "vmfs", "cat", "--device", image, path],
    f"{debugvmfs} cat": [debugvmfs, image, "cat", path],
    "dissect.vmfs": [sys.executable, str(here / "dissect_cat.py"), image, path],
}
usable = {}
for name, cmd in commands.items():
    if subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        usable[name] = (cmd, [])
    else:
        print(f"{name:16} failed on this image, skipped")
for _ in range(runs):
    for name, (cmd, times) in usable.items():
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
for name, (_, times) in usable.items():
    print(
        f"{name:16} median {statistics.median(times) * 1000:8.1f} ms"
        f"   min {min(times) * 1000:8.1f} ms   ({runs} runs)"
    )
