"""Bad input is a 4xx, never a 500 or Django's debug page: event ids that Python's
`isdigit()` takes but `int()` or the database do not, JSON nested without end, a JSON
body over the size limit, forged pagination cursors, token bytes that are not UTF-8,
a NUL in a page form's field, a form body in a charset that is not a text encoding."""

import base64
import json
import logging
import re
import uuid

import httpx
import pytest
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient
from websockets.sync.client import connect

from accounts.views import MeView
from contents.models import Channel
from contents.services import channel_create
from realtime.event_ids import MAX_EVENT_ID, InvalidEventId, parse_event_id
from tests.helpers import api_client_for, make_user
from tests.live import Daphne, Granian
from tests.media import make_video
from tests.stream_clients import status_of, ticket
from videos.services import video_upload

# Digits to str.isdigit(), and what became of them before: '²' and 5,000 digits raised
# in int() (500), 25 digits passed and failed in PostgreSQL (a stream that died at once),
# Arabic-Indic and Bengali digits were read as numbers.
BAD_EVENT_IDS = ["١٢", "৩", "²", "9" * 5000, "9" * 25, str(MAX_EVENT_ID + 1), "-1", "+1", " 1", "1 ", "1\n", "1.0", "0x1", "abc"]


@pytest.mark.parametrize("value", [*BAD_EVENT_IDS, -1, MAX_EVENT_ID + 1, 10**30, 1.5, True, None, [1], {"a": 1}])
def test_what_is_not_an_event_id(value):
    with pytest.raises(InvalidEventId):
        parse_event_id(value)


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("42", 42), (str(MAX_EVENT_ID), MAX_EVENT_ID), (7, 7), (MAX_EVENT_ID, MAX_EVENT_ID)])
def test_what_is_an_event_id(value, expected):
    assert parse_event_id(value) == expected


@pytest.fixture
def live(transactional_db):
    """A daphne, a channel, its owner's API client."""
    owner = make_user("owner")
    api = api_client_for(owner)
    channel = channel_create(owner=owner, name="hostile")
    # The probes come faster than a client's messages may (REALTIME_WS_MAX_MESSAGES_PER_SECOND):
    # what is tested here is each message's answer, not the rate.
    server = Daphne(REALTIME_WS_MAX_MESSAGES_PER_SECOND="1000")
    yield server, api, str(channel.id)
    server.stop()


def test_bad_event_ids_on_sse_are_400_problems(live):
    server, api, channel_id = live
    url = server.url(f"/api/contents/{channel_id}/events")
    answers = []
    for value in BAD_EVENT_IDS:
        # As the header (UTF-8 on the wire; a header value cannot start or end with
        # white space) and as the query parameter.
        # (query parameters, headers) of each way
        ways: list[tuple[dict[str, str], dict[bytes, bytes]]] = [({"last_event_id": value}, {})]
        if value == value.strip():
            ways.append(({}, {b"Last-Event-ID": value.encode()}))
        for params, headers in ways:
            with httpx.stream("GET", url, params={**params, "ticket": ticket(api)},
                              headers=headers, timeout=10) as response:
                answers.append((value[:12], response.status_code, response.headers["content-type"]))
                if response.status_code == 400:
                    assert json.loads(response.read())["errors"][0]["attr"] == "Last-Event-ID"
    assert all(status == 400 and kind == "application/problem+json" for _, status, kind in answers), answers
    assert "Traceback" not in server.output()
    # A good one still streams.
    assert status_of(url, params={"ticket": ticket(api), "last_event_id": "0"}) == 200


def test_bad_since_and_deep_json_on_a_websocket_are_errors_and_the_socket_lives_on(live):
    server, api, channel_id = live
    replies = []
    with connect(server.ws_url(f"/api/contents/{channel_id}/ws?ticket={ticket(api)}"), origin=server.origin, open_timeout=10) as ws:
        for value in [*BAD_EVENT_IDS, 10**30, -1, 1.5]:
            ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id, "since": value}))
            replies.append(json.loads(ws.recv(timeout=10)))
        nested = json.dumps({"type": "subscribe", "since": 1, "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})
        # 5,000 deep fits a WebSocket message (REALTIME_WS_MAX_MESSAGE_BYTES, 16 KiB); a
        # larger message closes the socket before it is parsed (tests/test_connection_bounds.py).
        for deep in ("[" * 5_000 + "]" * 5_000, nested):
            ws.send(deep)
            replies.append(json.loads(ws.recv(timeout=10)))
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id, "since": "0"}))
        subscribed = json.loads(ws.recv(timeout=10))
    codes = [(r["type"], r.get("code")) for r in replies]
    assert codes == [("error", "invalid_since")] * (len(BAD_EVENT_IDS) + 3) + [("error", "invalid_json")] * 2, codes
    assert subscribed["type"] == "subscribed"
    assert "Traceback" not in server.output()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    ["[" * 100_000 + "]" * 100_000, '{"name": ' + "[" * 2_000 + "]" * 2_000 + "}", '{"name": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"],
    ids=["100000 deep", "2000 deep", "41 deep"],
)
def test_deeply_nested_json_bodies_are_400_problems(body):
    response = api_client_for(make_user()).post("/api/channels", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    assert "nested more than" in response.json()["detail"]


@pytest.mark.django_db
def test_json_within_the_nesting_bound_is_read():
    response = api_client_for(make_user()).post("/api/channels", '{"name": "fine"}', content_type="application/json")
    assert response.status_code == 201


@pytest.mark.django_db
def test_a_json_body_over_the_size_limit_is_a_413_problem(settings):
    """Django's own check of a body it reads whole (DATA_UPLOAD_MAX_MEMORY_SIZE), as an
    in-process request meets it, behind whatever refused bigger bodies earlier."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "x" * 5000})
    response = api_client_for(make_user()).post("/api/channels", body, content_type="application/json")
    assert response.status_code == 413, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["code"] == "too_large"
    # Outside DRF (the login page's form): the same answer, not a 400 or a 500.
    form = APIClient().post("/accounts/login/", {"username": "x" * 2000, "password": "y"})
    assert form.status_code == 413 and form["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_an_unhandled_error_is_a_500_problem_not_the_debug_page(monkeypatch):
    def explode(self, request):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(MeView, "get", explode)
    client = api_client_for(make_user())
    client.raise_request_exception = False
    response = client.get("/v1/auth/me")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert "secret internals" not in response.content.decode() and "Traceback" not in response.content.decode()
    missing = APIClient().get("/no-such-page")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/problem+json"



# --- forged pagination cursors ---------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# A position that is no timestamp (the 500 of before), an empty or naive one, a date
# that does not exist, a NUL; offsets and directions that are not numbers; no base64.
# (Characters outside base64's alphabet are skipped by its decoder: "!!!" is the first page.)
BAD_CURSORS = [
    _b64(b"p=x"), _b64(b"p="), _b64(b"p=2024-01-01"), _b64(b"p=2024-13-45 00:00:00+00:00"), _b64(b"p=\x00"),
    _b64(b"o=-1"), _b64(b"r=x"), _b64(b"o=" + b"9" * 5000), _b64(b"p=x&o=1&r=1"), _b64(b"\xff\xfe"), "abc",
]


def cursor_lists(schema: dict) -> list[str]:
    """Every GET operation of the schema that takes a `cursor`: a list added later is covered."""
    return [
        path for path, operations in schema["paths"].items()
        if any(parameter["name"] == "cursor" for parameter in operations.get("get", {}).get("parameters", []))
    ]


@pytest.mark.django_db
def test_a_forged_cursor_is_a_400_problem_on_every_cursor_list(caplog):
    owner = make_user("lister")
    api = api_client_for(owner)
    ids = {
        "channel_id": str(channel_create(owner=owner, name="listed").id),
        "video_id": str(video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title="Clip").id),
    }
    lists = cursor_lists(APIClient().get("/api/schema/?format=json").json())
    assert len(lists) >= 6, lists  # the feed, comments, contents, AI jobs, notifications, blocks
    anonymous = APIClient()
    answers = []
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for path in lists:
            url = path.format(**ids)
            for cursor in BAD_CURSORS:
                response = api.get(url, {"cursor": cursor})
                body = response.json()
                attr = body["errors"][0]["attr"] if "errors" in body else None
                answers.append((path, cursor[:12], response.status_code, response["Content-Type"], attr))
                # Anonymous callers reach the public lists' pagination (the feed, comments); the others answer 401.
                assert anonymous.get(url, {"cursor": cursor}).status_code in {400, 401}
    assert all(status == 400 and kind == "application/problem+json" and attr == "cursor"
               for _, _, status, kind, attr in answers), [a for a in answers if a[2:] != (400, "application/problem+json", "cursor")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], "a traceback was logged"


@pytest.mark.django_db
def test_a_cursor_from_a_next_link_still_pages():
    owner = make_user()
    for title in ("one", "two"):
        video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title=title)
    first = APIClient().get("/v1/videos/feed", {"page_size": 1}).json()
    second = APIClient().get(first["next"])
    assert second.status_code == 200
    assert [v["title"] for v in first["results"] + second.json()["results"]] == ["two", "one"]



# --- token bytes that are not a token ----------------------------------------------------------

# As the header arrives (Django decodes header bytes as latin-1): bytes that are not
# UTF-8 (a 500 before, on every endpoint), a NUL (which PostgreSQL refuses in a query),
# UTF-8 that is not ASCII.
BAD_TOKENS = ["\xff\xfe\xfd", "ab\x00cd", "\xc3\xa9t\xc3\xa9"]


@pytest.mark.django_db
def test_a_bearer_token_of_bytes_that_are_no_token_is_a_401_on_every_operation(caplog):
    """Every operation of the schema, the anonymous ones included (with made-up ids:
    the credentials are refused before any id is looked at)."""
    schema = APIClient().get("/api/schema/?format=json").json()
    client = APIClient()
    answers = []
    with caplog.at_level(logging.WARNING):
        for path, operations in schema["paths"].items():
            if path.endswith("/ws"):
                continue  # WebSocket routes: plain HTTP gets 426 there (tests/test_realtime.py)
            url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            for method in operations.keys() & {"get", "post", "put", "patch", "delete"}:
                for token in BAD_TOKENS:
                    response = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Bearer {token}")
                    answers.append((method, path, response.status_code, response["Content-Type"]))
    assert len(answers) > 60
    assert all(status == 401 and kind == "application/problem+json" for _, _, status, kind in answers), (
        [a for a in answers if a[2:] != (401, "application/problem+json")]
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], "a traceback was logged"



# --- a NUL in a page form's field ---------------------------------------------------------------


def _no_traceback(caplog, *, but_for: tuple[type[Exception], ...] = ()) -> None:
    """Nothing logged as an error, nor with a traceback (but for refusals Django always
    logs with theirs, a 403 of the admin's)."""
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR or (r.exc_info and not isinstance(r.exc_info[1], but_for))]
    assert not logged, [r.getMessage() for r in logged]


@pytest.mark.django_db
def test_a_nul_in_the_channel_form_is_a_400_page_as_the_api_answers(caplog):
    """The page form stored the name as given: PostgreSQL refused it, a 500."""
    client = Client()
    client.force_login(make_user("former"))
    response = client.post("/app/channels/new", {"name": "tide\x00pools"})
    assert response.status_code == 400
    assert "Null characters are not allowed" in response.content.decode()
    assert "\x00" not in response.content.decode()
    assert not Channel.objects.exists()
    assert api_client_for(make_user()).post("/api/channels", {"name": "tide\x00pools"}, format="json").status_code == 400
    _no_traceback(caplog)


@pytest.mark.django_db
def test_a_nul_in_any_field_of_any_page_form_is_never_a_500(caplog):
    """Every form of the pages (the site's, Django's account pages, the admin's login),
    a NUL in every field; the admin's object pages with a NUL in the id, its searches."""
    boss = make_user("boss", is_staff=True, is_superuser=True)
    signed_in = Client()
    signed_in.force_login(boss)
    nul = "x\x00y"
    forms = {
        "/accounts/login/": ["username", "password", "next"],
        "/admin/login/": ["username", "password", "next"],
        "/accounts/password_reset/": ["email"],
        "/accounts/password_change/": ["old_password", "new_password1", "new_password2"],
        "/app/channels/new": ["name"],
        "/i18n/setlang/": ["language", "next"],
    }
    answers = []
    for path, fields in forms.items():
        response = signed_in.post(path, dict.fromkeys(fields, nul))
        answers.append((path, response.status_code))
        answers.append((path, Client().post(path, dict.fromkeys(fields, nul)).status_code))
    for model in admin.site._registry:
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        answers.append((changelist, signed_in.get(changelist, {"q": nul}).status_code))
        for page in ("change", "delete", "history"):
            url = f"{changelist}x%00y/{page}/"
            answers.append((url, signed_in.get(url).status_code))
    assert all(status < 500 for _, status in answers), [a for a in answers if a[1] >= 500]
    assert not Channel.objects.exists()
    _no_traceback(caplog, but_for=(PermissionDenied,))


# --- a form body in a charset that is no text encoding ------------------------------------------

NON_TEXT_CHARSETS = ["bz2", "rot13", "zlib", "base64", "hex", "uu", "quopri"]
MULTIPART = b'--B\r\nContent-Disposition: form-data; name="username"\r\n\r\nx\r\n--B\r\nContent-Disposition: form-data; name="password"\r\n\r\ny\r\n--B--\r\n'


@pytest.mark.django_db
def test_a_body_in_a_charset_that_is_no_text_encoding_is_a_400_problem_everywhere(caplog):
    """Django took bz2 or rot13 for the form's encoding: a 500 on every page that reads
    a form. Pages, the admin and the API answer the same 400 problem."""
    client = Client()
    client.force_login(make_user("writer"))
    answers = []
    for path in ("/accounts/login/", "/admin/login/", "/accounts/password_change/", "/app/channels/new", "/v1/auth/token", "/api/channels"):
        for charset in NON_TEXT_CHARSETS:
            for kind, body in (("multipart/form-data; boundary=B", MULTIPART), ("application/x-www-form-urlencoded", b"username=x&password=y"),
                               ("application/json", b'{"name": "x"}')):
                response = client.generic("POST", path, body, content_type=f"{kind}; charset={charset}")
                answers.append((path, charset, kind[:20], response.status_code, response["Content-Type"]))
    assert all(status == 400 and content_type == "application/problem+json" for *_, status, content_type in answers), (
        [a for a in answers if a[3:] != (400, "application/problem+json")]
    )
    _no_traceback(caplog)


@pytest.mark.django_db
def test_forms_django_cannot_read_as_declared_are_400_problems_without_a_traceback(caplog):
    """Django refused these itself (400), but logged each with a traceback as it would a bug."""
    client = Client()
    for content_type, body in [
        ("application/x-www-form-urlencoded; charset=latin-1", b"username=x"),
        ("multipart/form-data", MULTIPART),
        ("multipart/form-data; boundary=", MULTIPART),
    ]:
        response = client.generic("POST", "/accounts/login/", body, content_type=content_type)
        assert (response.status_code, response["Content-Type"]) == (400, "application/problem+json"), content_type
    _no_traceback(caplog)
    # Text charsets are read as ever.
    make_user("reader")
    for content_type in ("application/x-www-form-urlencoded; charset=utf-8", "application/x-www-form-urlencoded"):
        response = client.generic("POST", "/accounts/login/", b"username=reader&password=pw-reader", content_type=content_type)
        assert response.status_code == 302
    response = client.generic("POST", "/accounts/login/", MULTIPART.replace(b"\r\nx\r\n", b"\r\nreader\r\n").replace(b"\r\ny\r\n", b"\r\npw-reader\r\n"),
                              content_type="multipart/form-data; boundary=B; charset=utf-8")
    assert response.status_code == 302



# --- the four, from outside, against the production server ---------------------------------------


@pytest.fixture
def granian(transactional_db):
    server = Granian()
    yield server
    server.close()


def _csrf_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_from_outside_the_four_malformed_inputs_are_4xx_problems_and_log_no_traceback(granian):
    """As the issue sent them to `make run`'s granian: a forged cursor (anonymously, on
    the feed), token bytes that are not UTF-8 (REST, anonymous REST and a stream), a NUL
    in the channel form, a multipart login form in bz2 and rot13."""
    owner = make_user("outsider")
    channel_id = str(channel_create(owner=owner, name="outside").id)
    with httpx.Client(base_url=granian.url(""), timeout=10) as web:
        feed = web.get("/v1/videos/feed", params={"cursor": _b64(b"p=x")})
        assert (feed.status_code, feed.headers["content-type"]) == (400, "application/problem+json")

        for path in ("/v1/auth/me", "/v1/videos/feed", f"/api/contents/channel/{channel_id}"):
            response = web.get(path, headers={b"Authorization": b"Bearer \xff\xfe\xfd"})
            assert (response.status_code, response.headers["content-type"]) == (401, "application/problem+json"), path
        stream = web.get(f"/api/contents/{channel_id}/events", headers={b"Authorization": b"Bearer \xff\xfe\xfd"})
        assert stream.status_code in {401, 403}

        # As a browser would send it: with the CSRF cookie, and the token in the form.
        token = _csrf_token(web.get("/accounts/login/"))
        form = MULTIPART.replace(b"--B--", b'--B\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
                                 + token.encode() + b"\r\n--B--")
        for charset in ("bz2", "rot13"):
            login = web.post("/accounts/login/", content=form,
                             headers={"Content-Type": f"multipart/form-data; boundary=B; charset={charset}"})
            assert (login.status_code, login.headers["content-type"]) == (400, "application/problem+json"), charset

        signed_in = web.post("/accounts/login/", data={"username": "outsider", "password": "pw-outsider",
                                                       "csrfmiddlewaretoken": token})
        assert signed_in.status_code == 302
        token = _csrf_token(web.get("/app/"))
        created = web.post("/app/channels/new", data={"name": "tide\x00pools", "csrfmiddlewaretoken": token})
        assert created.status_code == 400 and "Null characters are not allowed" in created.text
    assert Channel.objects.filter(owner=owner).count() == 1
    assert "Traceback" not in granian.output()
