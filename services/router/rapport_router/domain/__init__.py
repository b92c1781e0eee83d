"""Pure routing logic: eligibility, relaxation, scoring, assignment, queue rules. No I/O."""
