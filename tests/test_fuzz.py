"""Schemathesis fuzzes every operation of the OpenAPI schema against a real uvicorn server:
0 server errors and 0 conformance failures (status codes, content types, bodies and headers as
documented). A bounded number of cases runs by default; `pytest -m slow tests/test_fuzz.py` runs
at least 1,000 per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from serving.http.app import create_app
from serving.settings import Settings
from tests.served import MODELS

pytestmark = pytest.mark.e2e


# Schema-valid requests may still be refused: the schema cannot say which feature names, series
# lengths or horizons the model being served takes (that changes with the version), so 422 naming
# the field is a documented answer to schema-valid data, and so is 404 for an unknown model name.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}}}
)
# the app's own schema (building the app starts nothing; the server under test is `server`)
schema = schemathesis.openapi.from_dict(create_app(Settings(models=MODELS)).openapi(), config=CONFIG)


def fuzz(cases: int, derandomize: bool) -> settings:
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=derandomize,  # the default suite replays the same cases; on demand explores anew
        database=None,
    )


@schema.parametrize()
@fuzz(25, derandomize=True)
def test_every_operation_conforms_bounded(case, server):
    case.call_and_validate(base_url=server["url"])


@pytest.mark.slow
@schema.parametrize()
@fuzz(1000, derandomize=False)
def test_every_operation_conforms_thorough(case, server):
    case.call_and_validate(base_url=server["url"])
