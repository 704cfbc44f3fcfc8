"""Intent classification: a scikit-learn pipeline trained at start-up from config/intents.yaml.

Features are jieba words and character 1–3-grams (TF-IDF); the model is a class-balanced
logistic regression, whose probabilities the dialog policy compares with retrieval confidence.
The ``ask`` class is also trained on the KB's own questions and aliases, so everything the KB can
answer reads as a service question. Out-of-scope examples carry their category (涉法, 涉诉, 投诉,
举报, 信访) as the label ``out_of_scope:<category>``, so one model also says where to send them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from ..errors import ConfigError
from ..paths import config_dir
from .text import Analyzer

INTENTS = ("greet", "thanks", "goodbye", "ask", "request_human", "out_of_scope", "smalltalk",
           "feedback")
#: at most this many KB questions/aliases join the `ask` examples (keeps training ~1 s)
MAX_KB_ASK_EXAMPLES = 1500


class OutOfScopeCategory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    reply: str
    examples: list[str] = Field(min_length=1)


class IntentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    examples: list[str] = Field(default_factory=list)
    categories: dict[str, OutOfScopeCategory] = Field(default_factory=dict)


class IntentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    intents: dict[str, IntentSpec]
    replies: dict[str, list[str]] = Field(default_factory=dict)


def load_intents(path: Path | None = None) -> IntentsFile:
    path = path or config_dir() / "intents.yaml"
    try:
        spec = IntentsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load intents ({exc})") from exc
    unknown = set(spec.intents) - set(INTENTS)
    if unknown:
        raise ConfigError(f"{path}: unknown intents {sorted(unknown)} (known: {INTENTS})")
    return spec


@dataclass(frozen=True, slots=True)
class IntentResult:
    intent: str
    confidence: float
    category: str | None = None  # out_of_scope category

    @property
    def label(self) -> str:
        return f"{self.intent}:{self.category}" if self.category else self.intent


class IntentClassifier(Protocol):
    def classify(self, text: str) -> IntentResult: ...


class SklearnIntentClassifier:
    def __init__(self, analyzer: Analyzer, spec: IntentsFile | None = None,
                 kb_questions: Iterable[str] = (), seed: int = 13) -> None:
        self.spec = spec or load_intents()
        texts, labels = [], []
        for name, intent in self.spec.intents.items():
            for ex in intent.examples:
                texts.append(ex)
                labels.append(name)
            for cat, c in intent.categories.items():
                texts.extend(c.examples)
                labels.extend([f"{name}:{cat}"] * len(c.examples))
        kb = list(dict.fromkeys(kb_questions))
        random.Random(seed).shuffle(kb)
        texts.extend(kb[:MAX_KB_ASK_EXAMPLES])
        labels.extend(["ask"] * min(len(kb), MAX_KB_ASK_EXAMPLES))

        words = analyzer.words

        def word_tokens(text: str) -> list[str]:
            return words(text) or [text]

        self.pipeline = Pipeline([
            ("features", FeatureUnion([
                ("words", TfidfVectorizer(analyzer=word_tokens, sublinear_tf=True)),
                ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3),
                                          sublinear_tf=True, min_df=1)),
            ])),
            ("model", LogisticRegression(C=8.0, max_iter=2000, class_weight="balanced")),
        ])
        self.pipeline.fit(texts, labels)
        self.classes: list[str] = list(self.pipeline.classes_)

    def classify(self, text: str) -> IntentResult:
        return self.classify_many([text])[0]

    def classify_many(self, texts: list[str]) -> list[IntentResult]:
        probs = self.pipeline.predict_proba(texts)
        out = []
        for row in probs:
            # out_of_scope's confidence is the sum over its categories: "is it OOS at all"
            totals: dict[str, float] = {}
            for label, p in zip(self.classes, row, strict=True):
                totals[label.split(":")[0]] = totals.get(label.split(":")[0], 0.0) + float(p)
            intent = max(totals, key=totals.get)
            category = None
            if intent == "out_of_scope":
                best = max((i for i, c in enumerate(self.classes) if c.startswith("out_of_scope:")),
                           key=lambda i: row[i])
                category = self.classes[best].split(":", 1)[1]
            out.append(IntentResult(intent, totals[intent], category))
        return out

    def reply(self, intent: str, pick: int = 0) -> str | None:
        options = self.spec.replies.get(intent) or []
        return options[pick % len(options)] if options else None

    def out_of_scope(self, category: str | None) -> dict[str, Any]:
        cats = self.spec.intents.get("out_of_scope", IntentSpec()).categories
        c = cats.get(category or "") or next(iter(cats.values()), None)
        return {"label": c.label, "reply": c.reply} if c else {"label": "", "reply": ""}
