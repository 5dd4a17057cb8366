"""The AI pipeline of one content, run by an RQ worker.

It resumes at whatever stage the content is in, so a retried job (after a crash or
a sweep) simply continues; a stage's final result is written by the transition that
leaves it, so running a stage twice is harmless. While it works, a stage writes its
partial result and progress (contents.progress), fenced by its run id: a retried
run first replaces what a dead run left, and a run handed to another stops. A database
connection that dies under a transition is replaced and the transition tried once
more (core.db), so a restart or failover does not leave the content to the sweep.
"""

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from contents.ai import AIProviderError, QAPair, get_provider
from contents.extract import StageFailed, gather_source
from contents.lifecycle import CONTENT
from contents.models import ACTIVE_STAGES, Content, ProcessingStatus
from contents.progress import Fenced, PartialWriter, complete_sentences, expected_output
from contents.services import content_move_again_if_lost as move
from core import lifecycle, metrics
from core.db import read_again_if_lost

logger = logging.getLogger(__name__)
Stage = ProcessingStatus

NEXT_STAGE: dict[str, str] = {Stage.UPLOADING: Stage.SUMMARIZING, Stage.SUMMARIZING: Stage.QA_GENERATING, Stage.QA_GENERATING: Stage.COMPLETED}
STAGE_WORDS: dict[str, str] = {Stage.UPLOADING: "fetching the content", Stage.SUMMARIZING: "summarizing", Stage.QA_GENERATING: "generating questions"}


def upload_stage(content: Content) -> dict[str, Any]:
    """The link's bytes read against its Content-Length, where it sends one, move the
    progress while the page downloads."""
    writer: PartialWriter | None = None

    def read(received: int, total: int | None) -> None:
        nonlocal writer
        if not total:
            return
        if writer is None:
            writer = PartialWriter(content, expected=float(total))
        writer.offer(received, {})

    return gather_source(
        url=content.url, img_url=content.img_url, video_url=content.video_url,
        title=content.title, description=content.description, on_read=read,
    )


def summarize_stage(content: Content) -> dict[str, Any]:
    """The summary grows on the content sentence by sentence while the provider writes it."""
    writer = PartialWriter(content, expected=expected_output(Stage.SUMMARIZING))
    empty = {"ai_gen_metadata": {"summary": "", "qa_list": []}}
    writer.reset_leftovers(empty, leftover=bool((content.ai_gen_metadata or {}).get("summary")))
    summary = ""
    for summary in get_provider().stream_summary(content.source_text, title=content.title):
        sentences = complete_sentences(summary)
        if sentences:
            writer.offer(len(summary), {"ai_gen_metadata": {"summary": sentences, "qa_list": []}})
    if not summary:
        raise AIProviderError("The AI provider returned no summary.")
    return {"ai_gen_metadata": {"summary": summary, "qa_list": []}}


def qa_stage(content: Content) -> dict[str, Any]:
    """The Q&A pairs appear on the content one by one as the provider completes them."""
    summary = (content.ai_gen_metadata or {}).get("summary", "")
    writer = PartialWriter(content, expected=expected_output(Stage.QA_GENERATING))
    writer.reset_leftovers(
        {"ai_gen_metadata": {"summary": summary, "qa_list": []}},
        leftover=bool((content.ai_gen_metadata or {}).get("qa_list")),
    )
    qa_list: list[QAPair] | None = None
    for qa_list in get_provider().stream_qa(content.source_text, summary=summary, count=settings.AI_QA_COUNT):
        writer.offer(len(qa_list), {"ai_gen_metadata": {"summary": summary, "qa_list": qa_list}})
    if qa_list is None:
        raise AIProviderError("The AI provider returned no questions.")
    return {"ai_gen_metadata": {"summary": summary, "qa_list": qa_list}}


STAGES: dict[str, Callable[[Content], dict[str, Any]]] = {
    Stage.UPLOADING: upload_stage,
    Stage.SUMMARIZING: summarize_stage,
    Stage.QA_GENERATING: qa_stage,
}


def run(content_id: uuid.UUID | str) -> str | None:
    """Advance the content through its remaining stages; returns the stage it ends in."""
    close_old_connections()
    content = read_again_if_lost(lambda: Content.objects.filter(id=content_id).first(), doing=f"reading content {content_id}")
    while content is not None and content.processing_status in ACTIVE_STAGES:
        stage = content.processing_status
        try:
            with (
                lifecycle.keep_alive(CONTENT, content),
                metrics.stage_timer("content", stage),
            ):
                changes = STAGES[stage](content)
        except Fenced:
            logger.info("Content %s was moved or handed to another run during %s; leaving it", content.id, stage)
            return None
        except (StageFailed, AIProviderError) as exc:
            move(content, to=Stage.FAILED, error_message=str(exc))
            return Stage.FAILED
        except Exception:
            logger.exception("Stage %s of content %s crashed", stage, content.id)
            move(content, to=Stage.FAILED, error_message=f"An unexpected error stopped the pipeline while {STAGE_WORDS[stage]}.")
            return Stage.FAILED
        moved = move(content, to=NEXT_STAGE[stage], changes=changes)
        if moved is None:
            logger.info("Content %s was moved by someone else during %s; leaving it", content.id, stage)
            return None
        content = moved
    return content.processing_status if content else None
