"""Offline extractive AI: works with no network, no keys and no downloaded models."""

import re
from collections import Counter

from django.conf import settings
from nltk.tokenize.punkt import PunktSentenceTokenizer
from sumy.nlp.stemmers import Stemmer
from sumy.parsers.plaintext import PlaintextParser
from sumy.summarizers.lex_rank import LexRankSummarizer
from sumy.summarizers.text_rank import TextRankSummarizer
from sumy.utils import get_stop_words

from contents.ai import AIProviderError, QAPair

WORD = re.compile(r"\w+(?:'\w+)?")
# LexRank is quadratic in sentences; a long article is cut to its first part.
MAX_SENTENCES = 300
DEFINITION = re.compile(r"^(?:The |An? )?(?P<subject>[\w][\w\s'-]{1,60}?) (?P<verb>is|are|was|were) (?P<rest>.{3,})$")


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

    def _document(self, text: str):  # type: ignore[no-untyped-def]
        document = PlaintextParser.from_string(text, self.tokenizer).document
        if not document.sentences:
            raise AIProviderError("The text has no sentences to summarize.")
        return document

    def summarize(self, text: str, *, title: str = "") -> str:
        document = self._document(text)
        summarizer = LexRankSummarizer(Stemmer("english"))
        summarizer.stop_words = self.stop_words
        sentences = summarizer(document, settings.AI_SUMMARY_SENTENCES)
        return " ".join(str(s) for s in sentences)

    def generate_qa(self, text: str, *, summary: str, count: int) -> list[QAPair]:
        document = self._document(text)
        summarizer = TextRankSummarizer(Stemmer("english"))
        summarizer.stop_words = self.stop_words
        key_sentences = [str(s) for s in summarizer(document, count)]
        frequencies = Counter(
            w.lower() for w in WORD.findall(text) if len(w) > 3 and w.lower() not in self.stop_words and not w.isdigit()
        )
        pairs: list[QAPair] = []
        for sentence in key_sentences:
            question = self._question_for(sentence, frequencies)
            if question and all(p["question"] != question for p in pairs):
                pairs.append({"question": question, "answer": sentence})
        return pairs

    def _question_for(self, sentence: str, frequencies: Counter) -> str:
        match = DEFINITION.match(sentence.rstrip(".!?"))
        if match and len(match["subject"].split()) <= 6:
            return f"What {match['verb']} {match['subject'].strip()}?"
        words = [w for w in WORD.findall(sentence) if w.lower() in frequencies]
        if not words:
            return f"What does the text say in: \"{sentence[:60]}\"?"
        keyword = max(words, key=lambda w: (frequencies[w.lower()], len(w)))
        return f"What does the text say about {keyword}?"
