"""schemathesis against /api/schema/: every operation of the schema is called with
generated input (valid and invalid) through the real ASGI application (the one
`make run` serves, middleware and all) as a real user with a bearer token, against
seeded rows that the generated ids often hit. No answer is a 5xx, and every answer
is one the schema documents: its status code, content type, headers and body.

The budget is MAX_EXAMPLES per operation (plus schemathesis's deterministic
coverage cases); the whole module runs in about two minutes on 2 cores."""

import collections
import os
import time
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.management import call_command
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.asgi import application
from tests.seeded import World, bearer_token, seed_world

# SCHEMATHESIS_MAX_EXAMPLES runs a deeper search locally; make test keeps the budget.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "50"))

# Ids of the seeded rows (filled by the `world` fixture): a generated uuid is one of
# them about half of the time, so paths and batches reach real rows, mine and others'.
SEEDED_IDS: list[str] = []
schemathesis.openapi.format(
    "uuid",
    st.one_of(
        st.uuids().map(str),
        st.integers(min_value=0, max_value=10_000).map(
            lambda n: SEEDED_IDS[n % len(SEEDED_IDS)] if SEEDED_IDS else "00000000-0000-4000-8000-000000000000"
        ),
    ),
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Loaded at import, before the test environment allows the test client's own host name.
schema = schemathesis.openapi.from_asgi("/api/schema/", application, headers={"Host": "localhost"})

# (operation, status) -> count, and the time spent, for the summary printed at the end.
ANSWERS: collections.Counter[tuple[str, int]] = collections.Counter()
SPENT = [0.0]


# The marker has the test database set up; each test's own transaction is empty (the
# application answers from threads and connections of its own, and commits).
pytestmark = pytest.mark.django_db

# DELETE /v1/auth/token revokes the token it is called with: each such case gets one
# of these, never the token every other case uses.
SPARE_TOKENS: list[str] = []


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """One seeded world for every operation, committed (the ASGI application reads
    it from its own threads), and removed at the end."""
    with django_db_blocker.unblock():
        world = seed_world()
        SEEDED_IDS[:] = world.ids()
        SPARE_TOKENS[:] = [bearer_token(world.me.user) for _ in range(4 * MAX_EXAMPLES)]
        try:
            yield world
        finally:
            SEEDED_IDS.clear()
            call_command("flush", interactive=False, verbosity=0)
            by_status: collections.Counter[int] = collections.Counter()
            for (_, code), count in ANSWERS.items():
                by_status[code] += count
            for label in sorted({op for op, _ in ANSWERS}):
                print(label, {code: n for (op, code), n in sorted(ANSWERS.items()) if op == label})
            print(
                f"\nschemathesis: {sum(ANSWERS.values())} cases over {len({op for op, _ in ANSWERS})} operations "
                f"in {SPENT[0]:.1f} s; answers by status: {dict(sorted(by_status.items()))}"
            )


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_the_schema_says(case, world):
    headers = dict(world.me.headers)
    if (case.method, case.path) == ("DELETE", "/v1/auth/token"):
        headers = {"Authorization": f"Bearer {SPARE_TOKENS.pop()}"}
    started = time.monotonic()
    try:
        # An event stream that is allowed goes on until cut at the read timeout.
        response = case.call(headers=headers, timeout=2)
    finally:
        SPENT[0] += time.monotonic() - started
    ANSWERS[(case.operation.label, response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)
