"""A pytest plugin that logs the process's memory mappings and peak RSS after every test.

Written to find why a full test run died with a segmentation fault near its end: the
mappings of the compiled XLA programs approached the kernel's ``vm.max_map_count``. Use::

    PYTHONPATH=benchmarks python -m pytest -p pytest_maps          # log to maps.log
    MAPS_LOG=/tmp/maps.log PYTHONPATH=benchmarks python -m pytest -p pytest_maps
    sort -n maps.log | tail -1                                      # the peak mapping count

Each line holds: mapping count (lines of ``/proc/self/maps``), peak RSS in MB, current
VmSize and VmRSS in kB, and the test id. Linux only.
"""

from __future__ import annotations

import os
import resource


def _mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def pytest_runtest_logfinish(nodeid, location):
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    with open("/proc/self/status") as f:
        now = [line.split()[1] for line in f if line.startswith(("VmSize", "VmRSS"))]
    with open(os.environ.get("MAPS_LOG", "maps.log"), "a") as f:
        f.write(f"{_mappings()}\t{peak_mb}\t{' '.join(now)}\t{nodeid}\n")
