"""convc's benchmark: convc vs onnxruntime vs PyTorch eager on four CNNs, interleaved in one run.

    python -m bench            # the full table -> docs/benchmarks.md
    python -m bench --quick    # fewer iterations, batch 1 only

onnxruntime and PyTorch are optional dependencies of the benchmark only (pip install '.[bench]').
"""
