"""The stored schemas (telemetry.schema): made without pyarrow until one is asked for, and
the same in arro3's types as in pyarrow's."""

from __future__ import annotations

import subprocess
import sys

import arro3.core
import pytest

from telemetry import schema


@pytest.mark.parametrize("dataset", schema.DATASETS)
def test_arro3s_schema_is_pyarrows(dataset: schema.Dataset) -> None:
    """Fields, types, nullability, the names inside lists and maps, and the metadata: what
    a file written with the pyarrow schema holds, read by arro3."""
    from_pyarrow = arro3.core.Schema.from_arrow(schema.SCHEMAS[dataset])
    made = schema.arro3_schema(dataset)
    assert made == from_pyarrow
    assert made.metadata == from_pyarrow.metadata
    assert [made.field(i).nullable for i in range(len(made))] == [
        f.nullable for f in schema.SCHEMAS[dataset]
    ]


def test_the_schemas_load_pyarrow_at_the_first_look() -> None:
    code = (
        "import sys\n"
        "import telemetry.storage, telemetry.schema as s\n"
        "before = 'pyarrow' in sys.modules\n"
        "names = s.SCHEMAS['targets'].names\n"
        "print(before, 'pyarrow' in sys.modules, names[:2], len(s.SESSIONS_SCHEMA))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == "False True ['session_id', 'target'] 20\n"
