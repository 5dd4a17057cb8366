"""The AI pipeline of one content, run by an RQ worker.

It resumes at whatever stage the content is in, so a retried job (after a crash or
a sweep) simply continues; every stage only computes, and its result is written
by the transition that leaves it, so running a stage twice is harmless. A database
connection that dies under a transition is replaced and the transition tried once
more (core.db), so a restart or failover does not leave the content to the sweep.
"""

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from contents.ai import AIProviderError, get_provider
from contents.extract import StageFailed, gather_source
from contents.lifecycle import CONTENT
from contents.models import ACTIVE_STAGES, Content, ProcessingStatus
from contents.services import content_move_again_if_lost as move
from core import lifecycle, metrics
from core.db import read_again_if_lost

logger = logging.getLogger(__name__)
Stage = ProcessingStatus

NEXT_STAGE: dict[str, str] = {Stage.UPLOADING: Stage.SUMMARIZING, Stage.SUMMARIZING: Stage.QA_GENERATING, Stage.QA_GENERATING: Stage.COMPLETED}
STAGE_WORDS: dict[str, str] = {Stage.UPLOADING: "fetching the content", Stage.SUMMARIZING: "summarizing", Stage.QA_GENERATING: "generating questions"}


def upload_stage(content: Content) -> dict[str, Any]:
    return gather_source(
        url=content.url, img_url=content.img_url, video_url=content.video_url,
        title=content.title, description=content.description,
    )


def summarize_stage(content: Content) -> dict[str, Any]:
    summary = get_provider().summarize(content.source_text, title=content.title)
    return {"ai_gen_metadata": {"summary": summary, "qa_list": []}}


def qa_stage(content: Content) -> dict[str, Any]:
    summary = (content.ai_gen_metadata or {}).get("summary", "")
    qa_list = get_provider().generate_qa(content.source_text, summary=summary, count=settings.AI_QA_COUNT)
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
