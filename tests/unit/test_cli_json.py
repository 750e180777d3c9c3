"""The ``--json`` output of the ``taskq`` commands is valid JSON, whatever
floats the data holds."""

from __future__ import annotations

import json
import math

import pytest

from taskq_cli.common import json_text
from tests.conftest import strict_loads


def test_strict_loads_refuses_what_json_dumps_writes_by_default() -> None:
    with pytest.raises(ValueError, match="not JSON: NaN"):
        strict_loads(json.dumps([math.nan]))


@pytest.mark.parametrize("indent", [2, None])
def test_json_text_writes_nan_and_the_infinities_as_null(indent: int | None) -> None:
    data = {"nan": math.nan, "list": [math.inf, (-math.inf, 1.5)], 3: {"deep": [{"x": math.nan}]},
            "finite": [0.0, -2.5, 1e308], "flag": True, math.inf: "key"}
    text = json_text(data, indent)
    assert strict_loads(text) == {"nan": None, "list": [None, [None, 1.5]], "3": {"deep": [{"x": None}]},
                                  "finite": [0.0, -2.5, 1e308], "flag": True, "Infinity": "key"}
    assert ("\n" in text) == (indent is not None)  # None: one document per line
