"""The content pipeline, run by a real RQ worker (burst mode) against Postgres and Redis."""

import base64

import pytest

from contents.models import Content, ContentStatus, ProcessingStatus
from realtime.models import Event
from tests.helpers import make_user, run_burst_worker

pytestmark = pytest.mark.django_db(transaction=True)

ARTICLE = b"""<!doctype html><html><head>
<title>Tide pools explained</title>
<meta property="og:title" content="Tide pools, explained">
<meta property="og:description" content="What lives in the rocky pools the sea leaves behind.">
<meta property="og:image" content="/images/pool.jpg">
<meta property="og:site_name" content="Shore Notes">
</head><body><nav>Home | About</nav><article>
<h1>Tide pools, explained</h1>
<p>A tide pool is a rocky pool on the shore that the sea fills at high tide and leaves behind at low tide.
Tide pools are home to anemones, starfish, crabs and small fish that can survive hours in warm, salty water.</p>
<p>Starfish pry open mussels with their arms and digest them outside their own bodies.
Anemones catch passing shrimp with stinging tentacles and close up when the water leaves.</p>
<p>Visitors should step only on bare rock, because every patch of seaweed may shelter animals.
Turning a stone over and putting it back the same way keeps the creatures beneath it alive.</p>
</article><footer>Copyright Shore Notes</footer></body></html>"""

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def owner_client(client_for):
    owner = make_user("owner")
    client = client_for(owner)
    channel_id = client.post("/api/channels", {"name": "pipeline"}, format="json").json()["id"]
    return client, channel_id


def submit(client, channel_id, **fields):
    response = client.post("/api/contents", {"channel_id": channel_id, **fields}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["processing_status"]) == ("idle", "uploading")
    return body["id"]


def stages_published(content_id):
    return [
        (e.payload["status"], e.payload["processing_status"], e.payload["progress"])
        for e in Event.objects.filter(payload__content_id=str(content_id)).order_by("seq")
    ]


def test_a_title_and_description_reach_complete_with_a_summary_and_questions(owner_client):
    client, channel_id = owner_client
    content_id = submit(
        client, channel_id, title="Tide pools",
        description=ARTICLE.decode().split("<article>")[1].split("</article>")[0]
        .replace("<p>", "").replace("</p>", "").replace("<h1>Tide pools, explained</h1>", ""),
    )

    run_burst_worker()

    body = client.get(f"/api/contents/{content_id}").json()
    assert (body["status"], body["processing_status"], body["progress"]) == ("complete", "completed", 100)
    summary = body["ai_gen_metadata"]["summary"]
    assert "tide" in summary.lower() or "starfish" in summary.lower()
    assert len(body["ai_gen_metadata"]["qa_list"]) >= 2
    for pair in body["ai_gen_metadata"]["qa_list"]:
        assert pair["question"].endswith("?")
        assert pair["answer"] in body["description"]
    assert stages_published(content_id) == [
        ("idle", "uploading", 0),
        ("generating", "summarizing", 30),
        ("generating", "qa_generating", 65),
        ("complete", "completed", 100),
    ]
    assert body["version"] == 4


def test_a_link_is_fetched_previewed_and_summarized(owner_client, http_server, allow_loopback_fetch):
    client, channel_id = owner_client
    http_server.routes["/article"] = (200, {"Content-Type": "text/html; charset=utf-8"}, ARTICLE)
    content_id = submit(client, channel_id, url=http_server.url("/article"))

    run_burst_worker()

    body = client.get(f"/api/contents/{content_id}").json()
    assert body["status"] == "complete", body["error_message"]
    assert body["link_preview_metadata"] == {
        "title": "Tide pools, explained",
        "description": "What lives in the rocky pools the sea leaves behind.",
        "image_url": http_server.url("/images/pool.jpg"),
        "site_name": "Shore Notes",
    }
    text = body["ai_gen_metadata"]["summary"]
    assert "Home | About" not in text and "Copyright" not in text
    assert any(word in text for word in ("tide", "Tide", "anemone", "Anemone", "Starfish", "starfish"))


def test_a_link_that_answers_404_ends_in_error_with_a_readable_message(owner_client, http_server, allow_loopback_fetch):
    client, channel_id = owner_client
    content_id = submit(client, channel_id, url=http_server.url("/missing"))

    run_burst_worker()

    body = client.get(f"/api/contents/{content_id}").json()
    assert (body["status"], body["processing_status"]) == ("error", "failed")
    assert "HTTP 404" in body["error_message"]
    assert stages_published(content_id)[-1] == ("error", "failed", 0)


def test_a_link_to_a_private_address_ends_in_error(owner_client):
    client, channel_id = owner_client
    content_id = submit(client, channel_id, url="http://169.254.169.254/latest/meta-data/")

    run_burst_worker()

    body = client.get(f"/api/contents/{content_id}").json()
    assert body["status"] == "error"
    # Neither the address nor the reason: the same words as for a port that refuses.
    assert body["error_message"] == "Could not fetch the link."


def test_an_image_url_is_checked_for_what_it_claims(owner_client, http_server, allow_loopback_fetch):
    client, channel_id = owner_client
    http_server.routes["/real.png"] = (200, {"Content-Type": "image/png"}, PNG)
    http_server.routes["/fake.png"] = (200, {"Content-Type": "image/png"}, b"<html>not an image</html>")
    good = submit(client, channel_id, img_url=http_server.url("/real.png"), title="A pixel", description="One single red pixel.")
    bad = submit(client, channel_id, img_url=http_server.url("/fake.png"), title="A fake", description="Not really a picture.")

    run_burst_worker()

    assert client.get(f"/api/contents/{good}").json()["status"] == "complete"
    failed = client.get(f"/api/contents/{bad}").json()
    assert failed["status"] == "error"
    assert "is not an image" in failed["error_message"]


def test_a_failed_content_is_retried_and_a_complete_one_regenerated(owner_client, http_server, allow_loopback_fetch):
    client, channel_id = owner_client
    content_id = submit(client, channel_id, url=http_server.url("/later"))
    run_burst_worker()
    assert client.get(f"/api/contents/{content_id}").json()["status"] == "error"

    http_server.routes["/later"] = (200, {"Content-Type": "text/html"}, ARTICLE)
    retried = client.post(f"/api/contents/{content_id}/regenerate")
    assert retried.status_code == 202
    assert (retried.json()["status"], retried.json()["error_message"]) == ("idle", None)
    run_burst_worker()
    complete = client.get(f"/api/contents/{content_id}").json()
    assert complete["status"] == "complete"

    regenerated = client.post(f"/api/contents/{content_id}/regenerate").json()
    assert (regenerated["status"], regenerated["ai_gen_metadata"]) == ("idle", None)
    assert regenerated["version"] == complete["version"] + 1
    run_burst_worker()
    again = client.get(f"/api/contents/{content_id}").json()
    assert again["status"] == "complete"
    assert again["version"] == complete["version"] + 4


def test_a_content_with_nothing_to_read_fails_clearly(owner_client, http_server, allow_loopback_fetch):
    client, channel_id = owner_client
    http_server.routes["/empty"] = (200, {"Content-Type": "text/html"}, b"<html><body></body></html>")
    content_id = submit(client, channel_id, url=http_server.url("/empty"))

    run_burst_worker()

    body = client.get(f"/api/contents/{content_id}").json()
    assert body["status"] == "error"
    assert "no text to summarize" in body["error_message"]


def test_estimated_completion_comes_from_recorded_stage_times(owner_client):
    client, channel_id = owner_client
    first = submit(client, channel_id, title="One", description="Cats sleep a lot. Dogs run fast. Birds sing.")
    assert client.get(f"/api/contents/{first}").json()["estimated_completion"] is None
    run_burst_worker()

    from contents.eta import forget_stage_averages

    forget_stage_averages()
    second = submit(client, channel_id, title="Two", description="Rain falls. Sun shines. Wind blows.")
    body = client.get(f"/api/contents/{second}").json()
    assert body["estimated_completion"] is not None
    assert body["estimated_completion"] >= body["created_at"]
    assert Content.objects.get(id=second).status == ContentStatus.IDLE
    assert body["processing_status"] == ProcessingStatus.UPLOADING
