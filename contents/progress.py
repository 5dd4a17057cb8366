"""A running stage's partial result and progress, written while the stage works.

The stage's run offers what it has produced so far (the summary's text, the Q&A pairs,
the bytes of a page read); `PartialWriter` writes it on the content through the one
lifecycle (contents.services.content_record_progress: fenced by the run id, version + 1,
a `content_status_update` event in the same transaction), but only:

- at a boundary: a summary is cut after its last complete sentence, Q&A pairs are
  written whole, and nothing is written until that cut (or the progress) has grown;
- at most once per AI_PARTIAL_INTERVAL seconds per content (counted from the run's
  first offer), so a 2,000-token summary costs tens of rows and events, not one per
  token, and a stage that produces everything at once writes no partial at all. What
  is left when the stage ends is written by the transition that leaves it.

Progress rises inside the stage from what was produced against what is expected (the
recent average of what the stage produced, learned like the ETA in contents.eta),
never backwards and always below the next stage's entry progress; the estimated
completion is refined from the rate this run produces at.
"""

import re
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone

from contents.eta import output_averages, refine_completion
from contents.lifecycle import PROGRESS_ON_ENTRY
from contents.models import Content, ProcessingStatus
from contents.services import content_record_progress

Stage = ProcessingStatus
NEXT_ENTRY: dict[str, int] = {
    Stage.UPLOADING: PROGRESS_ON_ENTRY[Stage.SUMMARIZING],
    Stage.SUMMARIZING: PROGRESS_ON_ENTRY[Stage.QA_GENERATING],
    Stage.QA_GENERATING: PROGRESS_ON_ENTRY[Stage.COMPLETED],
}
# What a stage is expected to produce before any run of it was recorded: a summary of a
# few sentences (characters), the Q&A pairs asked for.
DEFAULT_SUMMARY_CHARS = 400
# The end of a sentence: its mark (and closing quotes or brackets), then a space or the
# end of the text; the CJK full stops need no space after them.
SENTENCE_END = re.compile(r"(?:[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s|$)|[\u3002\uff01\uff1f][\u300d\u300f\u201d)]*)")


class Fenced(Exception):
    """The content was moved on, or handed to another run: this run must stop."""


def complete_sentences(text: str) -> str:
    """`text` up to the end of its last complete sentence ("" if none is complete yet)."""
    end = 0
    for match in SENTENCE_END.finditer(text):
        end = match.end()
    return text[:end]


def expected_output(stage: str) -> float:
    """What a run of `stage` is expected to produce (see module doc)."""
    learned = output_averages().get(stage)
    if learned:
        return learned
    return float(settings.AI_QA_COUNT if stage == Stage.QA_GENERATING else DEFAULT_SUMMARY_CHARS)


def progress_within(stage: str, produced: float, expected: float) -> int:
    """The stage's entry progress, plus its share of the way to the next stage's for
    `produced` of `expected`; past 90 % of what was expected it slows, as the stage may
    run longer than its average, and never reaches the next stage's entry."""
    entry, ceiling = PROGRESS_ON_ENTRY[stage], NEXT_ENTRY[stage] - 1
    if expected <= 0 or produced <= 0:
        return entry
    ratio = produced / expected
    share = ratio if ratio < 0.9 else 1.0 - 0.1 * (0.9 / ratio)
    return min(ceiling, entry + int(share * (ceiling - entry)))


class PartialWriter:
    """Writes one stage run's partial results, coalesced (see module doc)."""

    def __init__(self, content: Content, *, expected: float, interval: float | None = None) -> None:
        self.content = content
        self.stage = content.processing_status
        self.expected = expected
        self.interval = settings.AI_PARTIAL_INTERVAL if interval is None else interval
        self.started = time.monotonic()
        self.first_offer: float | None = None
        self.last_write: float | None = None
        self.last_changes: Mapping[str, Any] | None = None
        self.writes = 0

    def reset_leftovers(self, changes: Mapping[str, Any], *, leftover: bool) -> None:
        """A new run of the stage: a partial result (`leftover`) or progress a dead run
        left is replaced at once by `changes` (the stage's empty result) at the entry
        progress, with a higher version, so the two runs' outputs are never mixed."""
        entry = PROGRESS_ON_ENTRY[self.stage]
        if leftover or self.content.progress != entry:
            self._write({**changes, "progress": entry, "updated_at": timezone.now()})
            self.last_changes = changes

    def offer(self, produced: float, changes: Mapping[str, Any]) -> None:
        """What the run has produced so far (`produced` units, `changes` the fields that
        show it); written if the coalescing lets it through."""
        now = time.monotonic()
        if self.first_offer is None:
            self.first_offer = now
        # The clock starts at the first offer: what a provider hands out all at once (the
        # embedded one's ranked sentences, a server that does not stream) is not written
        # piecemeal, only by the transition that ends the stage.
        if now - (self.last_write if self.last_write is not None else self.first_offer) < self.interval:
            return
        progress = max(self.content.progress, progress_within(self.stage, produced, self.expected))
        # A result is written only at a new boundary; a download's progress when it rose.
        nothing_new = changes == self.last_changes if changes else progress <= self.content.progress
        if nothing_new:
            return
        values: dict[str, Any] = {**changes, "progress": progress, "updated_at": timezone.now()}
        estimate = refine_completion(
            self.stage, produced=produced, expected=self.expected, elapsed=now - self.started, now=timezone.now()
        )
        if estimate is not None:
            values["estimated_completion"] = estimate
        self._write(values)
        self.last_changes = changes

    def _write(self, values: Mapping[str, Any]) -> None:
        if content_record_progress(self.content, changes=values) is None:
            raise Fenced(f"content {self.content.id} left {self.stage} or was handed to another run")
        self.last_write = time.monotonic()
        self.writes += 1
