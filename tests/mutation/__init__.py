"""A curated mutation run: small deliberate bugs in the product, each of which the tests must
catch.

    python -m tests.mutation --jobs 2             # every mutant; report in docs/testing.md
    python -m tests.mutation --only engine-sql.dequeue  # the mutants whose name contains this
    python -m tests.mutation --list               # what each mutant changes
    python -m tests.mutation --tests-rev REV      # the same mutants against an older suite

Each mutant (``mutants.py``) names its change as a snippet of the source and its
replacement, never a line number, so the list survives edits: a snippet no longer found
makes the mutant "stale" (fix the list), not "killed". The runner copies the repository to
a scratch directory, checks that the selected tests pass there unmutated, then applies one
mutant at a time, runs the tests it names (``-x``, with a timeout) and reports each mutant
killed, survived or timeout. The working tree is never touched. Not run in CI: a full run
takes tens of minutes.
"""
