"""Streaming reads in bounded memory: a file far larger than the process ever grows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Peak RSS of this process image: /proc's VmHWM. (getrusage's ru_maxrss would do, but on Linux
# a child inherits the parent's maximum across fork and exec, so a big test runner would mask
# the child's own peak; both are reported.)
PROBE = """
import json, resource, sys
import martlet

def peak_mib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

path = sys.argv[1]
stream = martlet.load_dataset(path, streaming=True)
before = peak_mib()
rows = chars = 0
for row in stream:
    rows += 1
    chars += len(row["messages"][1]["content"])
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "chars": chars, "before": before, "after": peak_mib(),
                  "ru_maxrss": maxrss}))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak RSS from /proc (Linux)")
def test_a_large_jsonl_file_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    answer = "The quick brown fox jumps over the lazy dog. " * 22  # ~1 KB
    rows = 110_000
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            row = {
                "messages": [
                    {"role": "user", "content": f"Question {i}: " + answer},
                    {"role": "assistant", "content": answer},
                ]
            }
            fh.write(json.dumps(row) + "\n")
    size_mib = path.stat().st_size / 2**20
    assert size_mib > 200
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"] == rows and report["chars"] == rows * len(answer)
    grown = report["after"] - report["before"]
    # the whole file is > 200 MiB; reading it row by row must not grow the process by more
    # than a few MiB (generous bound for allocator noise), nor reach a fraction of the file
    assert grown < 32, report
    assert report["after"] < size_mib / 2, report
