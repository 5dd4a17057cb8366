"""Password guessing: failed logins are throttled per account and per client address,
on the token endpoint, the login pages and the password change form's old password;
successful logins have a rate of their own per client, and never count as failures.
The client's address (tests/test_client_address.py) is the socket's unless trusted
proxies of our own forwarded it."""


import pytest
from django.core.cache import cache
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.login_throttle import login_retry_after
from tests.helpers import MidWindowClock, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def limits(settings, monkeypatch):
    import accounts.login_throttle

    monkeypatch.setattr(accounts.login_throttle, "time", MidWindowClock())
    cache.clear()
    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 8
    settings.LOGIN_SUCCESSES_PER_ADDRESS = 30
    settings.TRUSTED_PROXY_COUNT = 0
    yield settings
    cache.clear()


def token_login(username: str, password: str, *, address: str = "198.51.100.1", forwarded_for: str | None = None):
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return APIClient().post("/v1/auth/token", {"username": username, "password": password}, format="json",
                            headers=headers, REMOTE_ADDR=address)


# --- the token endpoint ------------------------------------------------------------------


def test_one_account_is_throttled_after_its_failures_whatever_address_they_come_from():
    make_user("victim")
    # A guesser rotating X-Forwarded-For and its own address.
    statuses = [token_login("victim", f"guess-{n}", address=f"203.0.113.{n}", forwarded_for=f"192.0.2.{n}").status_code
                for n in range(8)]
    assert statuses == [401] * 4 + [429] * 4
    # Not even the right password gets in now, from anywhere; the answer says when to retry.
    refused = token_login("victim", "pw-victim", address="198.51.100.200")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["errors"][0]["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 900
    # Other accounts are not affected.
    make_user("bystander")
    assert token_login("bystander", "pw-bystander", address="198.51.100.200").status_code == 201


def test_one_address_is_throttled_after_its_failures_whatever_accounts_it_tries():
    for n in range(12):
        make_user(f"member-{n}")
    statuses = [token_login(f"member-{n}", "guess", address="203.0.113.7").status_code for n in range(10)]
    assert statuses == [401] * 7 + [429] * 3
    assert token_login("member-11", "pw-member-11", address="203.0.113.7").status_code == 429
    # Another address logs in to the same kind of account at once.
    assert token_login("member-11", "pw-member-11", address="203.0.113.8").status_code == 201


def test_rotating_x_forwarded_for_does_not_escape_the_address_count():
    """The old throttle keyed on the client-supplied X-Forwarded-For."""
    for n in range(10):
        make_user(f"target-{n}")
    statuses = [token_login(f"target-{n}", "guess", address="203.0.113.9", forwarded_for=f"192.0.2.{n}").status_code
                for n in range(10)]
    assert statuses[-1] == 429 and statuses.count(401) == 7


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    for n in range(10):
        make_user(f"office-{n}")
    # Everyone arrives from the proxy's address; the proxy says who they are.
    statuses = [token_login(f"office-{n}", "typo", address="10.0.0.2", forwarded_for=f"192.0.2.{n}").status_code
                for n in range(10)]
    assert statuses == [401] * 10
    # One client through the proxy that keeps failing is throttled.
    statuses = [token_login(f"office-{n % 10}", "guess", address="10.0.0.2", forwarded_for="6.6.6.6, 192.0.2.99").status_code
                for n in range(9)]
    assert statuses[-1] == 429



def test_one_ipv6_network_is_one_address_for_the_failure_count(settings):
    """63 wrong passwords from 63 addresses of one /64, 9 an account (under the
    account's limit): the network is throttled at LOGIN_FAILURES_PER_ADDRESS. Another
    /64 is another client."""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_FAILURES_PER_ACCOUNT = 10
    settings.LOGIN_FAILURES_PER_ADDRESS = 50
    for n in range(7):
        make_user(f"v6-{n}")
    statuses = [
        token_login(f"v6-{n % 7}", f"guess-{n}", address="10.0.0.2", forwarded_for=f"2001:db8:64:1:{n:x}::{n + 1:x}").status_code
        for n in range(63)
    ]
    # The 50th failure is answered 429 (as the account limit is: the count is read after it).
    assert statuses == [401] * 49 + [429] * 14
    # Any account's right password from the same network waits too; from the next /64 it gets in.
    make_user("v6-other")
    assert token_login("v6-other", "pw-v6-other", address="10.0.0.2", forwarded_for="2001:db8:64:1::beef").status_code == 429
    assert token_login("v6-other", "pw-v6-other", address="10.0.0.2", forwarded_for="2001:db8:64:2::1").status_code == 201


def test_successful_logins_are_not_counted_as_failures():
    """An office behind one address logs in all day; an older throttle counted every
    login per address as the failures are and locked them all out."""
    for n in range(3):
        make_user(f"colleague-{n}")
    statuses = [token_login(f"colleague-{n % 3}", f"pw-colleague-{n % 3}", address="203.0.113.50").status_code
                for n in range(20)]
    assert statuses == [201] * 20
    assert token_login("colleague-0", "typo", address="203.0.113.50").status_code == 401


# --- the login pages ---------------------------------------------------------------------


def page_login(client: Client, username: str, password: str, *, path: str = "/accounts/login/", address: str = "198.51.100.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_login_page_is_throttled_too():
    make_user("reader")
    client = Client()
    statuses = [page_login(client, "reader", f"guess-{n}", address=f"203.0.113.{n}").status_code for n in range(6)]
    assert statuses == [200] * 4 + [429] * 2
    refused = page_login(client, "reader", "pw-reader", address="198.51.100.77")
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_login_page_and_the_token_endpoint_share_the_count():
    make_user("shared")
    for n in range(3):
        token_login("shared", f"guess-{n}")
    client = Client()
    assert page_login(client, "shared", "guess-3").status_code == 200
    assert page_login(client, "shared", "guess-4").status_code == 429
    assert token_login("shared", "pw-shared").status_code == 429


def test_the_admin_login_refuses_a_throttled_account():
    make_user("boss", is_staff=True, is_superuser=True)
    for n in range(5):
        token_login("boss", f"guess-{n}")
    client = Client()
    response = page_login(client, "boss", "pw-boss", path="/admin/login/")
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    cache.clear()
    response = page_login(client, "boss", "pw-boss", path="/admin/login/")
    assert response.status_code == 302 and client.session["_auth_user_id"]


def test_a_login_page_success_is_not_counted():
    make_user("daily")
    for _ in range(12):
        client = Client()
        assert page_login(client, "daily", "pw-daily", address="203.0.113.60").status_code == 302


# --- the rate of successful logins ---------------------------------------------------------


def test_successful_logins_have_a_rate_per_client_then_429_and_no_token(settings):
    """Each login costs a password hash (~0.36 s of CPU): one client logging in without
    end took the workers' CPU."""
    settings.LOGIN_SUCCESSES_PER_ADDRESS = 5
    make_user("busy")
    statuses = [token_login("busy", "pw-busy", address="203.0.113.70").status_code for _ in range(5)]
    assert statuses == [201] * 5
    tokens = AuthToken.objects.count()
    refused = token_login("busy", "pw-busy", address="203.0.113.70")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["errors"][0]["code"] == "throttled"
    assert "Too many logins from this address" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert AuthToken.objects.count() == tokens  # no token issued
    # Nor is a wrong password checked now, nor counted against the account (whose limit is 5).
    assert [token_login("busy", f"guess-{n}", address="203.0.113.70").status_code for n in range(6)] == [429] * 6
    # The client is limited, not the account: elsewhere it logs in, with no failures on record.
    assert token_login("busy", "pw-busy", address="203.0.113.71").status_code == 201
    assert login_retry_after(None, "busy") == 0


def test_the_login_rate_holds_on_the_login_pages_too(settings):
    settings.LOGIN_SUCCESSES_PER_ADDRESS = 3
    make_user("staffer", is_staff=True, is_superuser=True)
    for _ in range(3):
        assert token_login("staffer", "pw-staffer", address="203.0.113.80").status_code == 201
    page = Client()
    response = page_login(page, "staffer", "pw-staffer", address="203.0.113.80")
    assert response.status_code == 429
    assert "Too many logins from your address" in response.content.decode()
    assert "_auth_user_id" not in page.session
    admin = Client()
    response = page_login(admin, "staffer", "pw-staffer", path="/admin/login/", address="203.0.113.80")
    assert response.status_code == 200 and "_auth_user_id" not in admin.session
    # None of the refusals counted as a failure: the account logs in from elsewhere.
    assert page_login(Client(), "staffer", "pw-staffer", address="203.0.113.81").status_code == 302


# --- the password change form ----------------------------------------------------------------


def change_password(client: Client, old: str, new: str = "a-new-password-2", *, address: str = "198.51.100.1"):
    return client.post("/accounts/password_change/", {"old_password": old, "new_password1": new, "new_password2": new},
                       REMOTE_ADDR=address)


def test_wrong_old_passwords_on_the_password_change_form_count_as_failed_logins():
    """A signed-in browser (a borrowed laptop) was an unthrottled password oracle."""
    user = make_user("borrowed")
    client = Client()
    client.force_login(user)
    statuses = [change_password(client, f"guess-{n}", address=f"203.0.113.{n}").status_code for n in range(6)]
    assert statuses == [200] * 4 + [429] * 2
    # Throttled: the right old password is not checked either, and nothing changes.
    refused = change_password(client, "pw-borrowed")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 900
    assert "Too many failed logins" in refused.content.decode()
    user.refresh_from_db()
    assert user.check_password("pw-borrowed")
    # The same count as the logins': the token endpoint refuses the account too.
    assert token_login("borrowed", "pw-borrowed", address="198.51.100.99").status_code == 429
    # Once the window has passed the right password changes it.
    cache.clear()
    assert change_password(client, "pw-borrowed").status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-new-password-2")


def test_wrong_old_passwords_count_for_the_client_across_accounts():
    statuses = []
    for n in range(9):
        client = Client()
        client.force_login(make_user(f"laptop-{n}"))
        statuses.append(change_password(client, "guess", address="203.0.113.90").status_code)
    assert statuses == [200] * 7 + [429] * 2
