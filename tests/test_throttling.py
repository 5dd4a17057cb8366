"""The API's rate limits (core.throttling): counted in Redis per window, exact under
concurrency, and one Redis round trip per request."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis.connection
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts.models import User
from core import throttling
from tests.helpers import api_client_for, make_user

# The user throttle keys on the request's user alone; any view will do.
VIEW = APIView()


def request_of(user: User) -> Request:
    request = Request(APIRequestFactory().get("/v1/auth/me"))
    request.user = user
    return request


@pytest.fixture
def user_rate(monkeypatch):
    def set_rate(rate: str) -> None:
        monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "user": rate})

    return set_rate


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


def test_a_user_gets_exactly_the_rate_then_429_with_retry_after(db, user_rate):
    user_rate("5/min")
    client = api_client_for(make_user("limited"))
    codes = [client.get("/v1/auth/me").status_code for _ in range(8)]
    assert codes == [200] * 5 + [429] * 3
    refused = client.get("/v1/auth/me")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 120


def test_refused_requests_are_not_counted_and_other_users_are_not_affected(db, user_rate):
    user_rate("3/min")
    first, second = make_user("first"), make_user("second")
    client = api_client_for(first)
    for _ in range(10):
        client.get("/v1/auth/me")
    assert [api_client_for(second).get("/v1/auth/me").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_concurrent_requests_cannot_both_take_the_last_slot(db, user_rate):
    user_rate("20/min")
    user = make_user("racer")
    throttle = throttling.UserRateThrottle()

    request = request_of(user)

    def attempt(_: int) -> bool:
        return throttling.UserRateThrottle().allow_request(request, VIEW)

    with ThreadPoolExecutor(16) as pool:
        allowed = list(pool.map(attempt, range(60)))
    assert sum(allowed) == 20
    assert throttle.allow_request(request, VIEW) is False


def test_the_previous_window_still_counts_by_its_overlap(db, user_rate, monkeypatch):
    user_rate("10/min")
    user = make_user("slider")

    request = request_of(user)
    now = [600.0 * 1000]  # the start of a window
    monkeypatch.setattr(throttling.SlidingWindowCounterMixin, "timer", staticmethod(lambda: now[0]))
    assert all(throttling.UserRateThrottle().allow_request(request, VIEW) for _ in range(10))
    now[0] += 60 + 15  # a quarter into the next window: 7.5 of the previous 10 still count: room for 3
    allowed = sum(throttling.UserRateThrottle().allow_request(request, VIEW) for _ in range(10))
    assert allowed == 3
    now[0] += 30  # three quarters in: 25% of 10 = 2.5 plus the 3 just counted, 5.5: room for 5 more
    assert sum(throttling.UserRateThrottle().allow_request(request, VIEW) for _ in range(10)) == 5


def test_one_redis_round_trip_per_throttled_request(db, user_rate, monkeypatch):
    user_rate("1000/min")
    user = make_user("counted")

    request = request_of(user)
    throttling.UserRateThrottle().allow_request(request, VIEW)  # loads the script
    sent: list[str] = []
    original = redis.connection.AbstractConnection.send_command

    def recording(connection, *args, **kwargs):
        sent.append(str(args[0]))
        return original(connection, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", recording)
    assert throttling.UserRateThrottle().allow_request(request, VIEW)
    assert sent == ["EVALSHA"]
