"""reuse_freed_memory: a freed big block is reused, not handed back to the OS and faulted in again."""

import json
import subprocess
import sys

import pytest

from overfeat_np.memory import _mallopt, reuse_freed_memory

# Allocates, frees and reallocates a 96 MiB array and reports the page faults of the second
# allocation (resource counts minor faults: pages the kernel had to hand out and zero).
_PROBE = """
import json, resource, sys
import numpy as np
from overfeat_np.memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else False
n = 96 * 2**20 // 4
a = np.ones(n, np.float32); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(n, np.float32)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode):
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(_mallopt() is None, reason="the C library is not glibc: no mallopt to set")
def test_reuse_freed_memory_avoids_fresh_pages_for_a_reallocated_block():
    default, reuse = _probe("default"), _probe("reuse")
    assert reuse["applied"] and not default["applied"]
    assert default["faults"] >= 40  # 96 MiB fresh: at least 48 huge pages, or 24,576 small ones
    assert reuse["faults"] <= default["faults"] // 8


@pytest.mark.skipif(_mallopt() is None, reason="the C library is not glibc: no mallopt to set")
def test_reuse_freed_memory_can_be_switched_back():
    # In a child process: the setting is process-wide and this test process should keep its own.
    code = ("from overfeat_np.memory import reuse_freed_memory as r; "
            "print(r(True), r(False))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_reuse_freed_memory_reports_whether_it_applied(monkeypatch):
    from overfeat_np import memory

    monkeypatch.setattr(memory, "_mallopt", lambda: None)
    assert reuse_freed_memory() is False
