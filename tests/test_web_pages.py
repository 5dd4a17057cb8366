"""The pages (web/): who sees them, their language, their form, the translations,
and the demo data `make run` loads. What the pages do in a browser is in
tests/test_browser_pages.py."""

import json
import re

import pytest
from django.test import Client
from django.utils import translation

from aijobs.models import AIJob, JobStatus
from contents.lifecycle import CONTENT
from contents.models import Channel, Content, ContentStatus, ProcessingStatus
from core import lifecycle
from notifications.models import Notification
from tests.factories import make_channel, make_content, moved
from tests.helpers import make_user
from videos.models import Video
from web.demo import PARKED_QUEUE, finish_parked, seed_demo
from web.strings import page_strings


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_config(response) -> dict:
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "the page hands its config to its scripts as json_script"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_the_pages_ask_for_a_login_and_come_back_after_it():
    for path in ("/", "/app/", "/app/studio/", f"/app/channels/{Channel().id}/"):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.django_db
def test_a_channel_page_is_its_readers_only():
    owner, stranger = make_user("owner"), make_user("stranger")
    channel = make_channel(owner, name="Mine")
    response = logged_in(owner).get(f"/app/channels/{channel.id}/")
    assert response.status_code == 200
    assert page_config(response) == {
        "userId": str(owner.id), "username": "owner", "channelId": str(channel.id), "transport": "sse",
    }
    assert logged_in(stranger).get(f"/app/channels/{channel.id}/").status_code == 404
    assert page_config(logged_in(owner).get(f"/app/channels/{channel.id}/?transport=websocket"))["transport"] == "websocket"
    assert page_config(logged_in(owner).get(f"/app/channels/{channel.id}/?transport=gopher"))["transport"] == "sse"


@pytest.mark.django_db
def test_a_channel_name_is_escaped_on_the_pages():
    owner = make_user("owner")
    channel = make_channel(owner, name='<img src=x onerror="alert(1)">')
    for path in ("/app/", f"/app/channels/{channel.id}/"):
        body = logged_in(owner).get(path).content.decode()
        assert "<img src=x" not in body
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in body


@pytest.mark.django_db
def test_a_new_channel_needs_a_name_and_a_bad_one_changes_nothing():
    owner = make_user("owner")
    client = logged_in(owner)
    for name in ("", "   ", "x" * 201):
        response = client.post("/app/channels/new", {"name": name})
        assert response.status_code == 400
        assert "at most 200 characters" in response.content.decode()
    assert not Channel.objects.exists()
    response = client.post("/app/channels/new", {"name": "  Tide pools  "})
    channel = Channel.objects.get()
    assert (channel.name, channel.owner) == ("Tide pools", owner)
    assert response["Location"] == f"/app/channels/{channel.id}/"
    assert client.get("/app/channels/new").status_code == 405


@pytest.mark.django_db
def test_the_browsers_language_picks_korean_and_the_switch_overrides_it():
    owner = make_user("owner")
    client = logged_in(owner)
    english = client.get("/app/studio/")
    assert '<html lang="en">' in english.content.decode() or '<html lang="en-us">' in english.content.decode()
    assert "Studio" in english.content.decode()

    korean = client.get("/app/studio/", HTTP_ACCEPT_LANGUAGE="ko-KR,ko;q=0.9,en;q=0.5")
    body = korean.content.decode()
    assert '<html lang="ko">' in body
    assert "스튜디오" in body and "내 영상" in body
    strings = re.search(r'<script id="strings" type="application/json">(.*?)</script>', body)
    assert strings is not None, body
    assert json.loads(strings.group(1))["generating_note"] == "이 콘텐츠는 아직 생성 중입니다."

    # The switch (Django's set_language) wins over the browser's language.
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/app/studio/"}, HTTP_ACCEPT_LANGUAGE="ko-KR")
    assert response.status_code == 302 and response["Location"] == "/app/studio/"
    assert '<html lang="en' in client.get("/app/studio/", HTTP_ACCEPT_LANGUAGE="ko-KR").content.decode()


def test_every_string_of_the_pages_scripts_is_translated_into_korean():
    with translation.override("en"):
        english = page_strings()
    with translation.override("ko"):
        korean = page_strings()
    untranslated = [key for key in english if korean[key] == english[key]]
    assert untranslated == []
    # Placeholders survive translation, or the scripts would show a hole.
    for key, text in english.items():
        assert sorted(re.findall(r"%\((\w+)\)s", text)) == sorted(re.findall(r"%\((\w+)\)s", korean[key])), key


@pytest.mark.django_db
def test_the_login_page_is_translated():
    body = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "로그인" in body and "사용자 이름" in body and "비밀번호" in body


# --- make run's demo data ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_demo_shows_every_state_at_once_and_a_second_run_adds_nothing():
    report = seed_demo()
    contents = Content.objects.filter(channel=report.channel)
    by_status = {status: contents.filter(status=status).count() for status in ContentStatus.values}
    assert by_status == {"idle": 1, "generating": 1, "complete": 2, "error": 1}
    assert contents.get(status="generating").processing_status == ProcessingStatus.SUMMARIZING
    assert all(c.ai_gen_metadata and c.ai_gen_metadata["summary"] for c in contents.filter(status="complete"))
    assert Video.objects.filter(owner=report.user).count() == 1
    job = AIJob.objects.get(owner=report.user)
    assert job.status == JobStatus.COMPLETED and job.result_file
    types = set(Notification.objects.filter(recipient=report.user, is_read=False).values_list("type", flat=True))
    assert types == {"like", "comment", "ai_job_completed", "content_complete", "content_error"}
    assert report.user.check_password("demo-password")

    # The two in progress stay so: their jobs wait in a queue no worker of `make run`
    # serves, and the sweep leaves a content whose job is waiting alone.
    import django_rq
    from rq import Queue

    parked = Queue(PARKED_QUEUE, connection=django_rq.get_connection("default"))
    active = contents.filter(status__in=["idle", "generating"])
    assert sorted(parked.job_ids) == sorted(c.job_id for c in active)
    assert not set(parked.job_ids) & set(django_rq.get_queue("default").job_ids)
    from datetime import timedelta

    from django.utils import timezone

    later = timezone.now() + timedelta(minutes=10)
    assert lifecycle.requeue_lost(CONTENT, later) == 0
    assert lifecycle.sweep_stalled(CONTENT, later) == {"retried": 0, "failed": 0}
    assert {c.status for c in contents.filter(id__in=[c.id for c in active])} == {"idle", "generating"}

    again = seed_demo()
    assert again.created == []
    assert Content.objects.filter(channel=report.channel).count() == 5

    # `seed_demo --finish` runs the two to the end; the next run parks two new ones.
    assert finish_parked() == 2
    assert sorted(contents.values_list("status", flat=True)) == ["complete", "complete", "complete", "complete", "error"]
    assert seed_demo().created == ["a generating content (summarizing)", "a waiting content"]


@pytest.mark.django_db
def test_a_links_notification_names_it_by_its_page_title_or_else_its_url():
    from contents.services import content_move

    provider = make_user("provider")
    channel = make_channel(provider)
    link = make_content(channel, title="", description="", url="https://example.com/pools")
    content_move(link, to="summarizing", changes={"link_preview_metadata": {"title": "Tide pools", "site_name": None}})
    broken = content_move(make_content(channel, title="", description="", url="https://example.com/gone"),
                        to="failed", error_message="The link answered 404.")
    assert broken is not None
    for stage in ("qa_generating", "completed"):
        link = moved(content_move(link, to=stage))
    titles = dict(Notification.objects.filter(recipient=provider).values_list("type", "data__title"))
    assert titles == {"content_complete": "Tide pools", "content_error": "https://example.com/gone"}
