"""The torchvision table: every zoo model × both torch.onnx exporters through convc, compared with onnxruntime.

    python scripts/zoo_table.py -o zoo_table.md                       # all 24 models × 2 exporters, full size
    python scripts/zoo_table.py --models resnet18,convnext_tiny --exporters dynamo --size 64

Runs exactly what tests/test_torchvision_zoo.py runs (bench/torchvision_zoo.py: random weights with randomized
batchnorm statistics, export, convc at the default opt level, onnxruntime on the same file, a random batch of 2),
one case after another, and prints a markdown table: the outcome (ok; refused: convc raised a ModelError;
mismatch: another shape, or max|convc - ort| / max|ort| > 1e-4; error: anything else raised, such as the exporter
or cc failing), that error, the cold compile time (compiler.load + compiler.compile with an empty cache directory
of its own, so cc always runs) and convc's message. Each row is also printed to stderr as it is done. It needs
torch, onnx, onnxscript, onnxruntime and torchvision (see README's Testing section).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.torchvision_zoo import EXPORTERS, MODELS, REL_TOL, Outcome, run  # noqa: E402

HEADER = ["model", "exporter", "input", "batch axis", "outcome", "max abs err / max abs ort", "compile, cold (s)",
          "convc's message"]


def row(result: Outcome) -> list[str]:
    error = "" if math.isnan(result.rel_error) else f"{result.rel_error:.1e}"
    seconds = "" if math.isnan(result.compile_seconds) else f"{result.compile_seconds:.1f}"
    message = " ".join(result.message.split()).replace("|", "\\|")
    size = f"{result.size}×{result.size}"
    return [result.name, result.exporter, size, result.batch_axis, result.outcome, error, seconds, message]


def measure(name: str, exporter: str, size: int | None) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="convc-zoo-cache-") as cache:
        try:
            return run(name, exporter, size, cache_dir=cache)
        except Exception as error:  # noqa: BLE001 - the exporter, onnxruntime or cc failed: a row, not the end
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return Outcome(name, exporter, size or MODELS[name].size, outcome="error",
                           message=f"{type(error).__name__}: {first}"[:300])


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all 24)")
    parser.add_argument("--exporters", default=",".join(EXPORTERS), help="torchscript, dynamo or both")
    parser.add_argument("--size", type=int, default=None, help="input height and width (default: each model's own)")
    parser.add_argument("-o", "--output", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    names, exporters = args.models.split(","), args.exporters.split(",")
    unknown = sorted(set(names) - set(MODELS)) + sorted(set(exporters) - set(EXPORTERS))
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}; models are {', '.join(MODELS)}; exporters {EXPORTERS}")
    rows, counts, start = [], {}, time.perf_counter()
    for name in names:
        for exporter in exporters:
            result = measure(name, exporter, args.size)
            rows.append(row(result))
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    text = (f"{markdown(rows)}\n\n{len(rows)} cases: {summary} (tolerance {REL_TOL:g}; "
            f"{time.perf_counter() - start:.0f} s in all)\n")
    print(text, end="")
    if args.output:
        args.output.write_text(text)
    return 0 if counts.get("ok", 0) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
