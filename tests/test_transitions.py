import threading

import pytest
from django.db import IntegrityError, connection, transaction

from contents.lifecycle import ALLOWED_TRANSITIONS
from contents.models import Content, ContentStatus, ProcessingStatus, StageRun
from contents.services import content_move as transition
from core.lifecycle import TransitionNotAllowed
from realtime.models import Event
from tests.factories import make_content

Stage = ProcessingStatus
ALL_STAGES = list(Stage)
EDGES = [(a, b) for a in ALL_STAGES for b in ALL_STAGES if b in ALLOWED_TRANSITIONS.get(a, ())]
NON_EDGES = [(a, b) for a in ALL_STAGES for b in ALL_STAGES if b not in ALLOWED_TRANSITIONS.get(a, ())]
EXPECTED_STATUS = {
    Stage.UPLOADING: ContentStatus.IDLE,
    Stage.SUMMARIZING: ContentStatus.GENERATING,
    Stage.QA_GENERATING: ContentStatus.GENERATING,
    Stage.COMPLETED: ContentStatus.COMPLETE,
    Stage.FAILED: ContentStatus.ERROR,
}


def content_in(stage: ProcessingStatus) -> Content:
    content = make_content()
    Content.objects.filter(id=content.id).update(status=EXPECTED_STATUS[stage], processing_status=stage)
    return Content.objects.get(id=content.id)


def test_the_allowed_edges_are_exactly_the_pipeline_retry_and_regenerate():
    assert set(EDGES) == {
        (Stage.UPLOADING, Stage.SUMMARIZING), (Stage.UPLOADING, Stage.FAILED),
        (Stage.SUMMARIZING, Stage.QA_GENERATING), (Stage.SUMMARIZING, Stage.FAILED),
        (Stage.QA_GENERATING, Stage.COMPLETED), (Stage.QA_GENERATING, Stage.FAILED),
        (Stage.FAILED, Stage.UPLOADING), (Stage.COMPLETED, Stage.UPLOADING),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), EDGES)
def test_an_allowed_transition_moves_both_columns_raises_version_and_writes_an_event(source, target):
    content = content_in(source)
    before = content.version

    moved = transition(content, to=target, error_message="boom")

    assert moved is not None
    row = Content.objects.get(id=content.id)
    assert (row.status, row.processing_status) == (EXPECTED_STATUS[target], target)
    assert row.version == before + 1 == moved.version
    event = Event.objects.filter(stream=f"channel:{row.channel_id}").order_by("-seq").first()
    assert event is not None
    assert event.payload["version"] == row.version
    assert event.payload["processing_status"] == target
    expected_type = {Stage.COMPLETED: "processing_complete", Stage.FAILED: "processing_error"}.get(target, "content_status_update")
    assert event.type == expected_type
    if target == Stage.FAILED:
        assert row.error_message == "boom"
    if target == Stage.COMPLETED:
        assert row.progress == 100


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), NON_EDGES)
def test_a_refused_transition_changes_nothing(source, target):
    content = content_in(source)
    events_before = Event.objects.count()

    with pytest.raises(TransitionNotAllowed):
        transition(content, to=target)

    row = Content.objects.get(id=content.id)
    assert row.processing_status == source
    assert row.version == content.version
    assert Event.objects.count() == events_before


@pytest.mark.django_db
def test_a_stale_read_moves_nothing_and_overwrites_nothing():
    content = content_in(Stage.SUMMARIZING)
    stale = Content.objects.get(id=content.id)
    assert transition(content, to=Stage.QA_GENERATING, changes={"ai_gen_metadata": {"summary": "first"}})

    assert transition(stale, to=Stage.FAILED, error_message="late worker") is None

    row = Content.objects.get(id=content.id)
    assert row.processing_status == Stage.QA_GENERATING
    assert row.ai_gen_metadata == {"summary": "first"}
    assert row.error_message == ""


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_transitions_of_one_content_one_wins():
    content = content_in(Stage.SUMMARIZING)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def attempt(name: str, target: str, changes: dict) -> None:
        try:
            mine = Content.objects.get(id=content.id)
            barrier.wait()
            results[name] = transition(mine, to=target, changes=changes, error_message=name)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=attempt, args=("a", Stage.QA_GENERATING, {"ai_gen_metadata": {"summary": "from a"}})),
        threading.Thread(target=attempt, args=("b", Stage.FAILED, {})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    winners = [name for name, result in results.items() if result is not None]
    assert len(winners) == 1
    row = Content.objects.get(id=content.id)
    assert row.version == content.version + 1
    if winners == ["a"]:
        assert (row.processing_status, row.ai_gen_metadata, row.error_message) == (Stage.QA_GENERATING, {"summary": "from a"}, "")
    else:
        assert (row.processing_status, row.ai_gen_metadata, row.error_message) == (Stage.FAILED, None, "b")
    assert Event.objects.filter(stream=f"channel:{row.channel_id}", payload__version=row.version).count() == 1


@pytest.mark.django_db
def test_a_transition_whose_transaction_rolls_back_leaves_no_event_and_no_change():
    content = content_in(Stage.UPLOADING)
    events_before = Event.objects.count()

    def move_then_fail() -> None:
        with transaction.atomic():
            transition(Content.objects.get(id=content.id), to=Stage.SUMMARIZING)
            raise RuntimeError("the caller's transaction fails after the transition")

    with pytest.raises(RuntimeError):
        move_then_fail()

    assert Content.objects.get(id=content.id).processing_status == Stage.UPLOADING
    assert Event.objects.count() == events_before


@pytest.mark.django_db
def test_leaving_a_stage_records_how_long_it_took():
    content = content_in(Stage.SUMMARIZING)
    transition(content, to=Stage.QA_GENERATING)
    run = StageRun.objects.get(content=content)
    assert run.stage == Stage.SUMMARIZING
    assert run.seconds >= 0


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "stage"), [("complete", "uploading"), ("idle", "completed"), ("generating", "failed"), ("error", "summarizing")])
def test_the_database_refuses_an_inconsistent_status_pair(status, stage):
    content = make_content()
    with pytest.raises(IntegrityError), transaction.atomic():
        Content.objects.filter(id=content.id).update(status=status, processing_status=stage)
