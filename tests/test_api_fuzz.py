"""The API fuzzed from its own OpenAPI document with schemathesis: no 5xx, and answers as documented.

A bounded run in the suite (SPYGLASS_FUZZ_EXAMPLES per operation, default 25); `make fuzz`
runs a long one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from conftest import MEDIA
from spyglass.indexer.job import run_index
from spyglass.search.settings import Settings
from spyglass.web import create_app

EXAMPLES = int(os.environ.get("SPYGLASS_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# The app exists when the module is collected (schemathesis reads its document then; its lazy
# fixture loader does not run on pytest 9). Building it touches nothing: the fixture below
# indexes into this folder before the first request.
WORK = Path(tempfile.gettempdir()) / f"spyglass-fuzz-{os.getpid()}"
APP_SETTINGS = Settings(home=WORK / "home")
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", create_app(APP_SETTINGS))


@pytest.fixture(scope="module", autouse=True)
def indexed_library(tiny_model, encoder):
    shutil.copytree(MEDIA, WORK / "media", dirs_exist_ok=True)
    run_index(APP_SETTINGS.override(model=str(tiny_model[0]), pretrained=str(tiny_model[1]), device="cpu"),
              [str(WORK / "media")], encoder=encoder, progress=False)
    yield
    shutil.rmtree(WORK, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_every_generated_request_as_documented(case):
    case.call_and_validate(checks=CHECKS)


# The same document fuzzed against a server with accounts, as a person who sees one folder: the
# credentials ride on every request, so the generated requests reach the routes behind the check.
ACCOUNT_SETTINGS = Settings(home=WORK / "home", auth="accounts")
accounts_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", create_app(ACCOUNT_SETTINGS))
TOKEN: list[str] = []


@pytest.fixture(scope="module")
def account_token(indexed_library):
    from spyglass.search.accounts.directory import Accounts
    from spyglass.search.catalog.db import create_db_engine, session_factory

    engine = create_db_engine(ACCOUNT_SETTINGS.db_url, writer=True)
    accounts = Accounts(session_factory(engine))
    accounts.add_user("fuzzer", "a long enough password", folders=["nested"])
    TOKEN.append(accounts.create_token("fuzzer")[1])
    engine.dispose()
    return TOKEN[0]


@accounts_schema.parametrize()
@settings(max_examples=max(5, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck))
def test_authenticated_requests_are_answered_as_documented(case, account_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {account_token}"}, checks=CHECKS)
