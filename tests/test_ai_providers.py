import pytest

from contents.ai import AIProviderError, get_provider
from contents.ai.embedded import EmbeddedProvider
from contents.ai.openai import OpenAICompatibleProvider
from tests.helpers import make_user, run_burst_worker
from tests.openai_stub import OpenAICompatibleServer

TEXT = (
    "A tide pool is a rocky pool on the shore. Tide pools are home to anemones and starfish. "
    "Starfish pry open mussels with their arms. Anemones catch shrimp with stinging tentacles. "
    "Visitors should step only on bare rock."
)


@pytest.fixture
def ai_server():
    server = OpenAICompatibleServer()
    yield server
    server.close()


def test_the_openai_provider_sends_a_chat_completion_and_reads_the_answer(ai_server):
    provider = OpenAICompatibleProvider(base_url=ai_server.url("/v1"), api_key="sk-test", model="tiny", timeout=5)

    summary = provider.summarize(TEXT, title="Tide pools")
    qa = provider.generate_qa(TEXT, summary=summary, count=3)

    assert summary == "Tide pools are rocky pools full of life."
    assert qa == [{"question": "Where do tide pools form?", "answer": "On rocky shores."}]
    first = ai_server.bodies[0]
    assert first["authorization"] == "Bearer sk-test"
    assert first["body"]["model"] == "tiny"
    assert "Tide pools" in first["body"]["messages"][1]["content"]


def test_the_openai_provider_reports_an_error_answer_readably(http_server):
    http_server.routes["/v1/chat/completions"] = (500, {"Content-Type": "application/json"}, b'{"error": "overloaded"}')
    provider = OpenAICompatibleProvider(base_url=http_server.url("/v1"), api_key="", model="m", timeout=5)
    with pytest.raises(AIProviderError, match="HTTP 500"):
        provider.summarize(TEXT)


def test_the_openai_provider_gives_up_after_its_timeout():
    slow = OpenAICompatibleServer(delay=3)
    try:
        provider = OpenAICompatibleProvider(base_url=slow.url("/v1"), api_key="", model="m", timeout=0.5)
        with pytest.raises(AIProviderError, match="did not answer"):
            provider.summarize(TEXT)
    finally:
        slow.close()


def test_the_embedded_provider_summarizes_offline_with_sentences_of_the_text():
    provider = EmbeddedProvider()
    summary = provider.summarize(TEXT)
    qa = provider.generate_qa(TEXT, summary=summary, count=3)
    assert summary
    assert all(sentence.rstrip(".") in TEXT for sentence in summary.split(". "))
    assert len(qa) >= 2
    assert all(pair["question"].endswith("?") and pair["answer"] in TEXT for pair in qa)


def test_the_provider_setting_chooses_the_implementation(settings):
    settings.AI_PROVIDER = "openai"
    assert isinstance(get_provider(), OpenAICompatibleProvider)
    settings.AI_PROVIDER = "embedded"
    assert isinstance(get_provider(), EmbeddedProvider)
    settings.AI_PROVIDER = "nonsense"
    with pytest.raises(AIProviderError):
        get_provider()


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_runs_on_an_openai_compatible_server(ai_server, settings, client_for):
    settings.AI_PROVIDER = "openai"
    settings.AI_BASE_URL = ai_server.url("/v1")
    client = client_for(make_user())
    channel_id = client.post("/api/channels", {"name": "llm"}, format="json").json()["id"]
    content_id = client.post("/api/contents", {"channel_id": channel_id, "title": "Pools", "description": TEXT}, format="json").json()["id"]

    run_burst_worker()

    body = client.get(f"/api/contents/{content_id}").json()
    assert body["status"] == "complete"
    assert body["ai_gen_metadata"] == {
        "summary": "Tide pools are rocky pools full of life.",
        "qa_list": [{"question": "Where do tide pools form?", "answer": "On rocky shores."}],
    }
