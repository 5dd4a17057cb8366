"""Offline extractive AI: works with no network, no keys and no downloaded models."""

import re
from collections import Counter
from collections.abc import Iterator

from django.conf import settings
from nltk.tokenize.punkt import PunktSentenceTokenizer
from sumy.models.dom import ObjectDocumentModel
from sumy.nlp.stemmers import Stemmer
from sumy.parsers.plaintext import PlaintextParser
from sumy.summarizers.lex_rank import LexRankSummarizer
from sumy.summarizers.text_rank import TextRankSummarizer
from sumy.utils import get_stop_words

from contents.ai import AIProviderError, QAPair, generate_qa, summarize

WORD = re.compile(r"\w+(?:'\w+)?")
# LexRank is quadratic in sentences; a long article is cut to its first part.
MAX_SENTENCES = 300
DEFINITION = re.compile(r"^(?:The |An? )?(?P<subject>[\w][\w\s'-]{1,60}?) (?P<verb>is|are|was|were) (?P<rest>.{3,})$")


def prose_only(text: str) -> str:
    """One paragraph per line, without heading-like lines (short, no closing
    punctuation), which sumy would otherwise glue onto the next sentence."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    prose = [line for line in lines if line[-1] in ".!?。…\"'”)" or len(line.split()) >= 8]
    return "\n\n".join(prose or lines)


class OfflineTokenizer:
    """sumy's own tokenizer needs NLTK's punkt data from the network; an untrained
    Punkt model and a word regex need nothing (and handle non-Latin scripts)."""

    language = "english"
    _sentences = PunktSentenceTokenizer()

    def to_sentences(self, text: str) -> list[str]:
        sentences: list[str] = []
        for paragraph in text.splitlines():
            sentences.extend(s.strip() for s in self._sentences.tokenize(paragraph) if WORD.search(s))
        return sentences[:MAX_SENTENCES]

    def to_words(self, sentence: str) -> list[str]:
        return WORD.findall(sentence)


class EmbeddedProvider:
    def __init__(self) -> None:
        self.tokenizer = OfflineTokenizer()
        self.stop_words = frozenset(get_stop_words("english"))

    def _document(self, text: str) -> ObjectDocumentModel:
        document = PlaintextParser.from_string(prose_only(text), self.tokenizer).document
        if not document.sentences:
            raise AIProviderError("The text has no sentences to summarize.")
        return document

    def stream_summary(self, text: str, *, title: str = "") -> Iterator[str]:
        """LexRank ranks the whole text first (it needs every sentence); then the chosen
        sentences, in the text's order, come out one at a time."""
        document = self._document(text)
        summarizer = LexRankSummarizer(Stemmer("english"))
        summarizer.stop_words = self.stop_words
        chosen = [str(s) for s in summarizer(document, settings.AI_SUMMARY_SENTENCES)]
        for count in range(1, len(chosen) + 1):
            yield " ".join(chosen[:count])

    def stream_qa(self, text: str, *, summary: str, count: int) -> Iterator[list[QAPair]]:
        """A pair as soon as its question is made, the key sentences ranked first."""
        document = self._document(text)
        summarizer = TextRankSummarizer(Stemmer("english"))
        summarizer.stop_words = self.stop_words
        key_sentences = [str(s) for s in summarizer(document, count)]
        frequencies = Counter(
            w.lower() for w in WORD.findall(text) if len(w) > 3 and w.lower() not in self.stop_words and not w.isdigit()
        )
        pairs: list[QAPair] = []
        asked: set[str] = set()
        for sentence in key_sentences:
            question = self._question_for(sentence, frequencies, asked)
            if question.lower() not in asked:
                asked.add(question.lower())
                pairs.append({"question": question, "answer": sentence})
                yield list(pairs)
        if not pairs:
            yield []  # none could be made: the (empty) result all the same

    def summarize(self, text: str, *, title: str = "") -> str:
        return summarize(self, text, title=title)

    def generate_qa(self, text: str, *, summary: str, count: int) -> list[QAPair]:
        return generate_qa(self, text, summary=summary, count=count)

    def _question_for(self, sentence: str, frequencies: Counter, asked: set[str]) -> str:
        match = DEFINITION.match(sentence.rstrip(".!?"))
        if match and len(match["subject"].split()) <= 6:
            question = f"What {match['verb']} {match['subject'].strip()}?"
            if question.lower() not in asked:
                return question
        # The sentence's most frequent content word not asked about yet.
        words = sorted(
            {w for w in WORD.findall(sentence) if w.lower() in frequencies},
            key=lambda w: (-frequencies[w.lower()], -len(w), w),
        )
        for keyword in words:
            question = f"What does the text say about {keyword.lower() if not keyword.isupper() else keyword}?"
            if question.lower() not in asked:
                return question
        return f"What does the text say in: \"{sentence[:60]}\"?"
