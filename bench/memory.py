"""Peak resident memory of a process that only loads a compiled model and runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
import numpy as np
import runtime

def hwm():  # peak RSS of this process image in KiB (ru_maxrss would include the parent's, inherited over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

base = hwm()
model = runtime.load(sys.argv[1])
shape = model.input_shapes[model.input_names[0]]
for batch in (1, int(sys.argv[2])):
    model(np.zeros((batch, *shape), np.float32))
peak = hwm()
print(json.dumps({"before_kib": base, "peak_kib": peak}))
"""


def peak_rss(library: Path, batch: int) -> dict:
    """{"before_kib", "peak_kib"}: max RSS after importing numpy + runtime, and after running batch 1 and `batch`."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", CHILD, str(library), str(batch)], capture_output=True, text=True,
                         cwd=root)
    if out.returncode != 0:
        raise RuntimeError(f"the memory probe failed (exit {out.returncode}) on {library}: {out.stderr[-1500:]}")
    return json.loads(out.stdout)
