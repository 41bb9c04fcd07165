"""The machine's float32 FMA peak, measured with a register-only FMA loop in C (OpenMP for several threads)."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
typedef float vec __attribute__((vector_size(LANES * 4)));
#define ACCS 12
int main(int argc, char **argv)
{
    const long iters = atol(argv[1]);
    double best = 0.0;
    for (int rep = 0; rep < 5; ++rep) {
        double t0 = omp_get_wtime();
        float sink = 0.0f;
#pragma omp parallel reduction(+:sink)
        {
            vec a, b;
            for (int i = 0; i < LANES; ++i) { a[i] = 1.0f + 1e-7f * i; b[i] = 1e-7f; }
            vec c0 = a, c1 = a * 2, c2 = a * 3, c3 = a * 4, c4 = a * 5, c5 = a * 6;
            vec c6 = a * 7, c7 = a * 8, c8 = a * 9, c9 = a * 10, c10 = a * 11, c11 = a * 12;
            for (long i = 0; i < iters; ++i) {
                c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
                c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
                c8 = c8 * a + b; c9 = c9 * a + b; c10 = c10 * a + b; c11 = c11 * a + b;
            }
            vec s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
            sink += s[0];
        }
        double s = omp_get_wtime() - t0;
        double flops = 2.0 * LANES * ACCS * (double)iters * omp_get_max_threads();
        if (flops / s > best) best = flops / s;
        if (sink == 12345.0f) puts("");
    }
    printf("%.3f\n", best / 1e9);
    return 0;
}
"""


def fma_peak_gflops(threads: int, target=None, iters: int = 20_000_000) -> float:
    """Best of 5 runs of ACCS independent FMA chains of the target's vector width (zmm for AVX-512, ymm for
    AVX2) per thread, built with the target's -march, in GFLOP/s (all threads together)."""
    import compiler
    target = compiler.Target.from_march("native") if target is None else target
    import os
    with tempfile.TemporaryDirectory(prefix="convc-peak-") as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(SOURCE)
        subprocess.run(["cc", "-O2", *target.cflags(), f"-DLANES={target.lanes}", "-fopenmp", str(src), "-o", str(exe)], check=True,
                       capture_output=True)
        out = subprocess.run([str(exe), str(iters)], check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return float(out.stdout.strip())
