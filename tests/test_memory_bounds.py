"""A long-lived process stays bounded (scripts/memory_bounds.py, smaller counts): RSS flat over many calls of
one model, nothing growing over repeated loads of one library, and a fixed, small cost per distinct model
compiled, loaded and dropped (the library stays mapped: -z nodelete). The figures are in docs/SECURITY.md."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

if not os.path.exists("/proc/self/statm"):
    pytest.skip("the measurements read Linux's /proc", allow_module_level=True)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "memory_bounds.py"), "--calls", "30000",
                           "--loads", "300", "--models", "30",
                           "--cache-dir", str(tmp_path_factory.mktemp("cache"))],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def test_rss_is_flat_over_many_calls(measured):
    calls = measured["repeated_calls"]
    assert calls["growth_fraction"] < 0.01, calls


def test_reloading_one_library_grows_nothing(measured):
    per_load = measured["repeated_loads"]["per_load"]
    assert per_load["python_objects"] < 1 and per_load["map_regions"] < 0.1 and per_load["open_fds"] == 0, per_load
    assert per_load["rss_bytes"] < 4096, per_load  # under a page per load: nothing kept per load


def test_each_dropped_model_costs_a_bounded_amount(measured):
    models = measured["many_models"]
    per_model = models["per_model"]
    # What stays per distinct library: its mapping (5 regions of one file) and cffi's handle, as documented
    assert per_model["mapped_files"] <= 1.05 and per_model["map_regions"] <= 6, per_model
    assert per_model["open_fds"] == 0 and per_model["threads"] == 0, per_model
    assert per_model["python_objects"] <= 80, per_model
    assert per_model["rss_bytes"] <= models["library_bytes"] + 96 * 1024, per_model
