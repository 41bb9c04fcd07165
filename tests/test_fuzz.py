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
