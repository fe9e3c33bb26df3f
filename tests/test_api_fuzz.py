"""Schema-driven fuzzing of the JSON API: schemathesis generates requests
from the OpenAPI document (valid and invalid ones) and checks that none
gets a 500 and every answer matches the document.

Derandomized so CI explores the same cases every run; explore new ones by
hand with `pytest tests/test_api_fuzz.py -p no:playwright --hypothesis-seed=N`
(remove `derandomize`), as was done for seeds 1-25.
"""

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from imagejobs.tokens import create_token

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture
def fuzz_token(django_user_model) -> str:
    user = django_user_model.objects.get_or_create(username="fuzzer")[0]
    return create_token(user, "fuzz")[1]


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_never_answers_500_and_keeps_to_its_document(case, fuzz_token):
    excluded = []
    if _names_a_model(case.body):
        # Which models exist is known only when asked (what the live workers
        # offer; none here), so a well-formed name may still get a 400.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_token}"}, excluded_checks=excluded
    )


def _names_a_model(body: object) -> bool:
    parameters = body.get("parameters") if isinstance(body, dict) else None
    return isinstance(parameters, dict) and bool(parameters.get("model"))
