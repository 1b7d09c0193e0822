# The front door: each recipe is a thin line over a command anyone can also type.
set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Run the whole test suite, a worker per CPU (arguments go to pytest, e.g. `just test -k
# storage`; `just test -n 0` runs it in this process alone). A test file runs whole on one
# worker, so what its module fixtures install or build is done once.
test *ARGS:
    python -m pytest -n auto --dist loadfile {{ARGS}}

# A long fuzz run: every property test (parsers, ingest in columns, in segments and by line,
# times ahead of the clock, compaction, recent without polars, the command line) with N
# examples.
fuzz N="3000":
    HYPOTHESIS_EXAMPLES={{N}} python -m pytest tests/test_properties.py tests/ingest/test_columnar.py::test_plain_streams_are_read_in_columns_with_the_line_by_line_result tests/ingest/test_columnar.py::test_an_input_read_a_segment_at_a_time_is_read_as_line_by_line tests/ingest/test_columnar.py::test_times_far_ahead_are_refused_alike_by_both_readings tests/test_compaction.py::test_a_compacted_store_answers_exactly_as_one_file_per_build_does tests/test_recent_route.py::test_the_newest_builds_are_the_analyzers tests/test_hostile_values.py::test_any_command_line_is_carried_out_or_refused_with_one_error

# The attacks on the store (races of writers and maintenance, endless and hostile input,
# damaged files, a full disk) at N times the size the test suite runs them at.
torture N="10":
    TORTURE_SCALE={{N}} python -m pytest -m torture

# Lint, check formatting and types.
lint:
    ruff check .
    ruff format --check .
    mypy

# Format the code in place.
fmt:
    ruff format .
    ruff check --fix .

# Ingest the bundled build history into a temporary store; print the summary and recent builds.
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    python data-fixtures/generate.py --output "$work/history.jsonl"
    export BUILDER_TELEMETRY_DIR="$work/telemetry"
    builder telemetry ingest "$work/history.jsonl"
    builder telemetry jobs run all
    echo
    builder telemetry summary
    echo
    builder telemetry recent 5

# Regenerate the command-line reference in docs/cli.md from --help.
docs:
    python -m telemetry.cli.reference > docs/cli.md

# The benchmarks: a table of medians and bench-results.json (e.g. `just bench --large`).
bench *ARGS:
    python -m bench.run {{ARGS}}
