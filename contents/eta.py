"""Estimated completion from how long recent contents actually took in each stage."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from contents.models import ACTIVE_STAGES, ProcessingStatus, StageRun

CACHE_KEY = "contents:stage-averages"
CACHE_SECONDS = 30


def stage_averages() -> dict[str, float]:
    """{stage: mean seconds over its last ETA_SAMPLE_SIZE runs}; cached briefly, as
    the estimate needs no second-by-second precision."""
    cached = cache.get(CACHE_KEY)
    if cached is not None:
        return cached
    recent = (
        StageRun.objects.annotate(
            rank=Window(RowNumber(), partition_by=[F("stage")], order_by=F("finished_at").desc())
        )
        .filter(rank__lte=settings.ETA_SAMPLE_SIZE)
        .values_list("stage", "seconds")
    )
    totals: dict[str, list[float]] = {}
    for stage, seconds in recent:
        totals.setdefault(stage, []).append(seconds)
    averages = {stage: sum(values) / len(values) for stage, values in totals.items()}
    cache.set(CACHE_KEY, averages, CACHE_SECONDS)
    return averages


OUTPUT_CACHE_KEY = "contents:stage-output-averages"


def output_averages() -> dict[str, float]:
    """{stage: mean of what its last ETA_SAMPLE_SIZE runs produced} (summary
    characters, Q&A pairs), learned as the durations are: a running stage's progress
    is what it has produced so far against this."""
    cached = cache.get(OUTPUT_CACHE_KEY)
    if cached is not None:
        return cached
    recent = (
        StageRun.objects.filter(produced__isnull=False)
        .annotate(rank=Window(RowNumber(), partition_by=[F("stage")], order_by=F("finished_at").desc()))
        .filter(rank__lte=settings.ETA_SAMPLE_SIZE)
        .values_list("stage", "produced")
    )
    totals: dict[str, list[int]] = {}
    for stage, produced in recent:
        if produced is not None:  # filtered out above; the type does not know it
            totals.setdefault(stage, []).append(produced)
    averages = {stage: sum(values) / len(values) for stage, values in totals.items()}
    cache.set(OUTPUT_CACHE_KEY, averages, CACHE_SECONDS)
    return averages


def forget_stage_averages() -> None:
    cache.delete_many([CACHE_KEY, OUTPUT_CACHE_KEY])


def refine_completion(stage: str, *, produced: float, expected: float, elapsed: float, now: datetime) -> datetime | None:
    """When a content now in `stage` should be done, from the rate its run has produced
    at so far (`produced` units in `elapsed` seconds, `expected` in all) and the recorded
    durations of the stages after it; None when there is no rate yet or a later stage
    has no recorded runs (the caller keeps the estimate it has)."""
    if stage not in ACTIVE_STAGES or produced <= 0 or elapsed <= 0:
        return None
    averages = stage_averages()
    later = ACTIVE_STAGES[ACTIVE_STAGES.index(ProcessingStatus(stage)) + 1:]
    if any(s not in averages for s in later):
        return None
    left_here = max(expected - produced, 0.0) / (produced / elapsed)
    return now + timedelta(seconds=left_here + sum(averages[s] for s in later))


def estimate_completion(stage: str, *, stage_started_at: datetime, now: datetime) -> datetime | None:
    """When a content now in `stage` (since `stage_started_at`) should be done; None
    when a stage it still has to pass has no recorded runs."""
    if stage not in ACTIVE_STAGES:
        return None
    averages = stage_averages()
    remaining_stages = ACTIVE_STAGES[ACTIVE_STAGES.index(ProcessingStatus(stage)):]
    if any(s not in averages for s in remaining_stages):
        return None
    elapsed = (now - stage_started_at).total_seconds()
    seconds = max(averages[stage] - elapsed, 0.0) + sum(averages[s] for s in remaining_stages[1:])
    return now + timedelta(seconds=seconds)


__all__ = ["estimate_completion", "forget_stage_averages", "output_averages", "refine_completion", "stage_averages"]
