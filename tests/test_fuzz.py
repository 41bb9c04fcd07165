"""Bounded fuzzing: random descriptions, valid and broken, through load -> compile -> call.

Every outcome must be a result equal to the interpreter's or a documented convc exception
(fuzzing.ALLOWED_ERRORS); any other exception fails the test and a segfault kills the run.
The examples are derandomized so CI is reproducible; scripts/fuzz.py runs long random campaigns.
"""
import collections
import faulthandler

from hypothesis import HealthCheck, given, settings

from fuzzing import ALLOWED_ERRORS, descriptions, opt_levels, run_description

FUZZ_EXAMPLES = 120
HANG_SECONDS = 300  # one example (load, compile, two runs) taking longer is a hang: fail with tracebacks


def test_fuzz_outcomes_are_results_or_documented_errors():
    counts: collections.Counter[str] = collections.Counter()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(descriptions(), opt_levels)
    def one(case, opt_level):
        desc, mutated = case
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        try:
            counts[(run_description(desc, opt_level=opt_level), mutated)] += 1
        finally:
            faulthandler.cancel_dump_traceback_later()

    one()
    ok = sum(n for (outcome, _), n in counts.items() if outcome == "ok")
    errors = sum(n for (outcome, _), n in counts.items() if outcome != "ok")
    # The fuzzer must exercise both paths, or it proves nothing.
    assert ok >= FUZZ_EXAMPLES // 5 and errors >= FUZZ_EXAMPLES // 5, dict(counts)
    assert {outcome for outcome, _ in counts} <= {"ok"} | {e.__name__ for e in ALLOWED_ERRORS}


TEXT_EXAMPLES = 80
SEED_TEXT = """name: text
input: {name: x, shape: [2, 7, 6]}
layers:
  - {name: c1, op: conv2d, filters: 3, kernel: 3, padding: 1}
  - {op: relu}
  - {name: p, op: maxpool2d, kernel: 2}
  - {name: c2, op: conv2d, filters: 4, kernel: [1, 2], inputs: [p]}
  - {op: flatten}
  - {op: dense, units: 5}
  - {op: softmax}
"""


def test_fuzz_description_text():
    """Byte edits of a valid YAML file: a result equal to the interpreter's or a ModelError naming the file."""
    import tempfile
    from pathlib import Path

    from hypothesis import strategies as st

    edits = st.lists(st.tuples(st.integers(0, len(SEED_TEXT)), st.integers(0, 3),
                               st.sampled_from(list("{}[]:,-&*!|>'\"#%@`\n\t 0123456789xyz") + ["\0", "\u2028"])),
                     min_size=0, max_size=4)
    counts: collections.Counter[str] = collections.Counter()
    folder = Path(tempfile.mkdtemp(prefix="convc-text-fuzz-"))

    @settings(max_examples=TEXT_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(edits)
    def one(changes):
        text = SEED_TEXT
        for pos, drop, insert in changes:  # replace `drop` characters at `pos` with `insert`
            pos = min(pos, len(text))
            text = text[:pos] + insert + text[pos + drop:]
        path = folder / "m.yaml"
        path.write_text(text, encoding="utf-8")
        counts[run_description(path)] += 1

    one()
    # strict parsing makes most edits errors; the unedited text (always tried) must still compile and match
    assert counts["ok"] >= 1 and counts["ModelError"] + counts["ShapeError"] >= TEXT_EXAMPLES // 2, dict(counts)
