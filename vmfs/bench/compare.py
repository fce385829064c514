"""Side-by-side timing of `host vmfs cat`, `debugvmfs ... cat` and a dissect.vmfs read.

Usage: python3 compare.py HOST_BINARY IMAGE PATH [RUNS] [DEBUGVMFS] [SINKS]

Contestants: `host vmfs cat` (the zero-copy path: extents mapped, data copied by the kernel from
the image file), `host vmfs cat --no-zero-copy` (the block path: file requests through the VMFS
and LVM layers into a buffer, then written), `DEBUGVMFS IMAGE cat PATH` (`debugvmfs` for VMFS5,
`debugvmfs6` for VMFS6) and `vmfs/bench/dissect_cat.py` (dissect.vmfs).

Sinks (SINKS, comma-separated, default all four):
- `null`: stdout is /dev/null. The kernel's /dev/null accepts a sendfile without touching the
  data, so for the zero-copy path this measures mapping the file and nothing else.
- `pipe`: stdout is a pipe read by `cat > /dev/null` (started by this script, no shell): every
  byte is copied once more, by the reading `cat`, whoever writes it. The pipe starts with
  Linux's default 64 KiB buffer (`host vmfs cat` grows it to 1 MiB; the others leave it).
- `pipe1m`: the same with the pipe's buffer grown to 1 MiB by this script for everyone, so that
  only the way the bytes are written differs.
- `file`: stdout is a regular file in the temporary directory, truncated before each run
  (copy_file_range for the zero-copy path; 128 MiB of page cache written either way).

After one warm-up run of each command (so the image is in the page cache for everyone), the
sinks are measured one after the other; within a sink the commands run interleaved RUNS times,
so that load from other processes on the machine falls on all of them alike. Prints the median and minimum wall time of each, and the ratio of
each `host` median to the faster median of the two other readers.
"""
import fcntl
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

host, image, path = sys.argv[1], sys.argv[2], sys.argv[3]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 11
debugvmfs = sys.argv[5] if len(sys.argv) > 5 else "debugvmfs"
sinks = sys.argv[6].split(",") if len(sys.argv) > 6 else ["null", "pipe", "pipe1m", "file"]
F_SETPIPE_SZ = 1031
here = Path(__file__).parent
commands = {
    "host vmfs cat": [host, "vmfs", "cat", "--device", image, path],
    "host --no-zero-copy": [host, "vmfs", "cat", "--no-zero-copy", "--device", image, path],
    f"{debugvmfs} cat": [debugvmfs, image, "cat", path],
    "dissect.vmfs": [sys.executable, str(here / "dissect_cat.py"), image, path],
}
out_file = Path(tempfile.gettempdir()) / f"vmfs-compare-{os.getpid()}.out"


def run(cmd, sink):
    """Runs `cmd` with its stdout on `sink`; returns the wall time in seconds."""
    if sink == "null":
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start
    if sink == "file":
        with open(out_file, "wb") as f:
            start = time.perf_counter()
            subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL, check=True)
            return time.perf_counter() - start
    read_end, write_end = os.pipe()
    if sink == "pipe1m":
        fcntl.fcntl(write_end, F_SETPIPE_SZ, 1 << 20)
    start = time.perf_counter()
    writer = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.DEVNULL)
    reader = subprocess.Popen(["cat"], stdin=read_end, stdout=subprocess.DEVNULL)
    os.close(write_end)
    os.close(read_end)
    reader.wait()
    writer.wait()
    elapsed = time.perf_counter() - start
    if writer.returncode or reader.returncode:
        raise RuntimeError(f"{cmd} | cat failed")
    return elapsed


usable = {}
for name, cmd in commands.items():
    try:
        run(cmd, "null")
        usable[name] = cmd
    except subprocess.CalledProcessError:
        print(f"{name:20} failed on this image, skipped")
print(f"load before: {os.getloadavg()}")
times = {(sink, name): [] for sink in sinks for name in usable}
# One sink at a time (the file sink leaves 128 MiB of dirty page cache per run to be written
# back, which would slow the other sinks' runs), the contestants interleaved within it.
for sink in sinks:
    for _ in range(runs):
        for name, cmd in usable.items():
            times[(sink, name)].append(run(cmd, sink))
print(f"load after:  {os.getloadavg()}")
out_file.unlink(missing_ok=True)
for sink in sinks:
    medians = {name: statistics.median(times[(sink, name)]) for name in usable}
    others = [m for name, m in medians.items() if not name.startswith("host")]
    best_other = min(others) if others else None
    for name in usable:
        t = times[(sink, name)]
        ratio = ""
        if name.startswith("host") and best_other is not None:
            ratio = f"   {best_other / medians[name]:5.2f}x the faster other reader"
        print(
            f"{sink:6} {name:20} median {medians[name] * 1000:8.1f} ms"
            f"   min {min(t) * 1000:8.1f} ms   ({runs} runs){ratio}"
        )
