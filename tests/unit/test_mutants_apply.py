"""The curated mutants (``python -m tests.mutation``) still apply to the code: each edit's
snippet occurs exactly once in its file, and every test selection exists. The run itself is
too slow for the suite; this keeps its list from rotting silently when the code moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_edit_applies_once_and_its_tests_exist(mutant: Mutant) -> None:
    for edit in mutant.edits:
        text = (ROOT / edit.file).read_text()
        assert text.count(edit.old) == 1, f"{edit.file}: {edit.old[:60]!r}"
        assert edit.old != edit.new
    for selection in mutant.tests:
        path, _, test = selection.partition("::")
        assert (ROOT / path).exists(), selection
        if test:
            assert f"def {test.split('[')[0]}(" in (ROOT / path).read_text(), selection


def test_mutant_names_are_unique() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
