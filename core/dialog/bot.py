"""小申's policy: from what the citizen said (and the live context) to what the bot does.

Pure computation over a knowledge snapshot — no I/O — so `bangban ask`, `bangban eval`, the
benchmarks and the live service all run exactly the same decisions.

The order of concerns: a tapped quick reply or a numbered choice; then intents that must win
over retrieval (out of scope — 涉法/涉诉/投诉 are never answered as service questions — and
asking for a person); then retrieval, whose calibrated confidence decides between answering,
offering the closest candidates (clarify) and admitting it does not know (fallback). Social
intents (greet, thanks …) answer only when retrieval has nothing better.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from ..kb.models import KbEntryBase
from ..kb.richtext import html_to_text
from ..knowledge import Snapshot
from ..reference import load_matters
from ..nlu.index import Hit, combine
from ..nlu.text import Analyzer, normalise, numbered_choice
from ..config import BotSettings as BotPolicy
from .models import Action, AnswerMeta, Link, QuickReply

#: longest plain-text answer before "详见链接" (text-only channels truncate anyway)
MAX_TEXT = 900
#: a short message the intent model is this sure is social ("小申你好") is not a question
SURE_SOCIAL, SHORT_SOCIAL = 0.8, 10
#: how far below a term a guide of the same matter may score and still be preferred
GUIDE_OVER_TERM = 0.2
_DEFINITION = re.compile(r"是什么|什么是|什么意思|啥意思|指什么|什么叫|何为|定义|含义|啥是")
RESOLVED = [QuickReply(label="已解决", payload="resolved:yes"),
            QuickReply(label="未解决", payload="resolved:no")]
HUMAN_REPLY = QuickReply(label="转人工帮办", payload="human")
HOTLINE_LINK = Link(title="拨打12345市民服务热线", url="tel:12345")


class Context(BaseModel):
    """The live context of one conversation (kept in Redis with a TTL)."""

    matter: str | None = None
    suggestions: list[str] = Field(default_factory=list)
    #: payloads of the last reply's quick replies, so "1"/"第二个" work on text-only channels
    options: list[str] = Field(default_factory=list)
    last_entry: str | None = None
    last_question: str | None = None
    #: message id of the last answer, which a 已解决/未解决 rates
    last_answer_message: str | None = None
    turns: int = 0
    #: region code the citizen chose when human help asked for their district
    district: str | None = None
    #: human help is waiting for the citizen's district or department choice
    pending_handoff: str | None = None
    #: the agent service awaiting the citizen's rating (see core.handoff.rating)
    rating: dict[str, Any] | None = None


@dataclass
class BotReply:
    action: Action
    text: str
    html: str | None = None
    quick_replies: list[QuickReply] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    meta: AnswerMeta = field(default_factory=AnswerMeta)
    #: "fallback", "unsure" or "unresolved": the service records the question on the KB gap list
    unanswered: str | None = None
    #: the service must start human help (handoff)
    handoff: bool = False
    #: ask the citizen to rate this answer (已解决 / 未解决)
    rate: bool = False
    #: the citizen rated the last answer: resolved (True) or not (False)
    rated: bool | None = None
    #: further Outbound parts as stored (e.g. ``queue``, ``rating``, ``sender_name``)
    body: dict[str, Any] = field(default_factory=dict)


def calibrate(score: float, policy: BotPolicy, length: int | None = None) -> float:
    """P(right answer | score), as a logistic in the score whose midpoint depends on the
    question's length in characters (see BotSettings.length_slope)."""
    mid = policy.midpoint
    if length and policy.length_slope:
        lo, hi = policy.midpoint_range
        mid = min(hi, max(lo, mid - policy.length_slope * math.log2(length
                                                                    / policy.length_reference)))
    return 1.0 / (1.0 + math.exp(-policy.slope * (score - mid)))


def shared_matters(hits: list[Hit]) -> list[str]:
    """The matters every one of these hits belongs to, in the first hit's order."""
    rest = [set(h.matters) for h in hits[1:]]
    return [m for m in hits[0].matters if all(m in r for r in rest)]


def answer_body(entry: KbEntryBase) -> str:
    """The official wording (口径) of an entry, as sanitised HTML.

    Rich-text fields are already sanitised; plain-text fields (names, phones, addresses) are
    escaped here before they are put into HTML.
    """
    t, e = entry.type, html.escape
    if t == "faq":
        return entry.answer
    if t in ("guide", "policy_interpretation"):
        return entry.content
    if t == "term":
        return f"<p><strong>{e(entry.term)}</strong></p>{entry.explanation}"
    if t == "hotline":
        parts = [f"<p><strong>{e(entry.unit_name)}</strong>：{e(entry.phone)}</p>"]
        parts += [f"<p>{e(x)}</p>" for x in (entry.description, entry.remark) if x]
        return "".join(parts)
    if t == "department":
        lines = [f"<p><strong>{e(entry.name)}</strong></p>"]
        if entry.description:
            lines.append(f"<p>{e(entry.description)}</p>")
        lines.append(f"<p>联系电话：{e(entry.phone)}<br>地址：{e(entry.address)}"
                     f"（{e(entry.postcode)}）</p>")
        return "".join(lines)
    if t == "policy_original":
        return f"<p>《{e(entry.name)}》（{e(entry.doc_number)}）</p>{entry.body}"
    if t == "policy_project":
        return entry.guide
    return getattr(entry, "body", "") or ""


class Bot:
    def __init__(self, snapshot: Callable[[], Snapshot], policy: BotPolicy | None = None,
                 link_for: Callable[[KbEntryBase], str] | None = None) -> None:
        self._snapshot = snapshot
        self.policy = policy or BotPolicy()
        self._link_for = link_for or (lambda e: getattr(e, "source_url", None) or "")
        self.matter_names = {m.code: m.name for m in load_matters().matters}

    # -- entry point --------------------------------------------------------------------------
    def respond(self, text: str, ctx: Context, payload: str | None = None) -> BotReply:
        reply = self._respond(text, ctx, payload)
        ctx.options = [q.payload for q in reply.quick_replies]
        return reply

    def _respond(self, text: str, ctx: Context, payload: str | None) -> BotReply:
        snap = self._snapshot()
        ctx.turns += 1
        if payload:
            reply = self._payload(payload, ctx, snap)
            if reply is not None:
                return reply
        choice = numbered_choice(text)
        if choice is not None:
            # a number picks from the options the last reply offered (a clarification's
            # questions, 已解决/未解决, 转人工 …): text-only channels show them as a menu
            if choice <= len(ctx.options):
                reply = self._payload(ctx.options[choice - 1], ctx, snap)
                if reply is not None:
                    return reply
            return BotReply("system", "请直接输入您想咨询的问题，例如“居住证签注需要什么材料？”。")
        return self._understand(text, ctx, snap)

    def _payload(self, payload: str, ctx: Context, snap: Snapshot) -> BotReply | None:
        kind, _, arg = payload.partition(":")
        if kind == "pick" and (entry := snap.entry(arg)) is not None:
            return self._answer(entry, 1.0, ctx, snap, question=ctx.last_question)
        if kind == "matter" and (guide := snap.guides.get(arg)) is not None:
            return self._answer(guide, 1.0, ctx, snap)
        if kind == "human":
            return self._handoff(ctx)
        if kind == "resolved" and arg == "yes":
            return BotReply("rating", "感谢您的评价！很高兴能帮到您，还有其他问题可以继续问小申。",
                            meta=AnswerMeta(entry_id=ctx.last_entry), rated=True)
        if kind == "resolved" and arg == "no":
            return BotReply(
                "rating",
                "很抱歉没能解决您的问题。您可以换个说法再问一次，也可以转线上人工帮办，"
                "或拨打12345市民服务热线。",
                quick_replies=[HUMAN_REPLY], links=[HOTLINE_LINK],
                meta=AnswerMeta(entry_id=ctx.last_entry), unanswered="unresolved", rated=False)
        return None

    # -- understanding free text --------------------------------------------------------------
    def _understand(self, text: str, ctx: Context, snap: Snapshot) -> BotReply:
        p = self.policy
        if text.isascii() and (spelt := snap.spelling.hanzi(text)):
            text = spelt  # typed in pinyin ("zhuan rengong"): read as the words it spells
        intent = snap.intents.classify(text)
        # Asking for a person is honoured even when the KB has a page about human help, so the
        # KB need not be searched at all: the citizen reaches an agent ~7 ms sooner.
        if intent.intent == "request_human" and intent.confidence >= p.intent_confidence:
            return self._handoff(ctx, AnswerMeta(intent=intent.label))
        # "人社系统里…" / "税务登记…": the department named says whose matter it is; "…做居住登记"
        # the matter itself
        agency = combine(snap.agencies.boost(text, p.agency_boost),
                         snap.names.boost(text, p.name_boost))
        hits = snap.index.search(text, top=5, boost=agency)
        if ctx.matter and not snap.index.names_a_matter(text):
            # A follow-up ("那要带什么材料？") names no matter: read it as being about the
            # conversation's matter, as a person would.
            matter = self.matter_names.get(ctx.matter, "")
            boost = snap.index.boost_for(ctx.matter, p.context_boost)
            boosted = snap.index.search(f"{matter} {text}", top=5,
                                        boost=combine(boost, agency))
            if boosted:
                hits = boosted
        conf = calibrate(self._match_score(text, hits, snap), p,
                         len(Analyzer.chars(normalise(text)))) if hits else 0.0
        meta = AnswerMeta(intent=intent.label, confidence=round(conf, 4))

        # An out-of-scope request (涉法/涉诉/投诉) is never answered as a service question. A cue
        # (起诉, 仲裁, 举报 …) decides unless the KB row that matched uses the same words ("酒证
        # 不予许可能申诉吗" is a question the KB answers); otherwise the classifier decides,
        # unless the KB match is strong and the classifier unsure.
        cue = snap.intents.cue(text)
        if cue is not None and not (hits and conf >= p.answer_confidence
                                    and cue.pattern.search(normalise(hits[0].row))):
            return self._out_of_scope(cue.category, snap, meta.model_copy(
                update={"intent": f"out_of_scope:{cue.category}"}))
        # Without a cue, a question naming a service no matter covers ("交通卡余额怎么退",
        # "湿垃圾干垃圾怎么分") is a service question the classifier misread as a dispute (离婚
        # 财产怎么分): the fallback below names the service. Every real complaint or lawsuit
        # about such a service in the question sets carries a cue (举报, 告, 维权, 信访).
        if intent.intent == "out_of_scope" and intent.confidence >= p.intent_confidence and (
            conf < p.strong_answer or intent.confidence >= 0.8
        ) and snap.outside(text, "") is None:
            return self._out_of_scope(intent.category, snap, meta)
        # A question about a service no matter covers ("明天会下雨吗", "你好 护照怎么办") is not
        # chat: the fallback below names the service and offers a person and 12345.
        if intent.intent in ("greet", "thanks", "goodbye", "smalltalk", "feedback") and (
            intent.confidence >= p.intent_confidence
            and (conf < p.answer_confidence or not snap.index.names_a_matter(text)
                 or (intent.confidence >= SURE_SOCIAL and len(text) <= SHORT_SOCIAL))
        ) and snap.outside(text, "") is None:
            action: Action = "smalltalk" if intent.intent == "smalltalk" else intent.intent
            return BotReply(action, snap.intents.reply(intent.intent, ctx.turns) or "您好！",
                            meta=meta)

        ctx.last_question = text
        if not hits or conf < p.answer_confidence:
            if intent.intent == "request_human":
                # the best reading is "I want a person", only less sure ("能不能安排个工作人员
                # 一步一步教我"), and the KB has nothing: a person is what helps
                return self._handoff(ctx, AnswerMeta(intent=intent.label))
            topic = snap.outside(text, "")
            if topic is None and conf >= p.suggest_confidence and len(hits) >= 3 and (
                matter := shared_matters(hits[:3])
            ):
                # not sure which question it is, but the best three are all one matter's
                # ("发飘票种合定网上怎么提交"): offering them helps more than giving up, and on
                # the question sets it never offered them for a question no matter covers
                return self._clarify(hits[:3], ctx, meta, snap, unsure_of=matter[0])
            # say which service it is, when it is a known one
            return self._fallback(ctx, meta, hits, snap, topic=topic)
        outside = snap.outside(text, "")
        mentioned = outside is not None and snap.outside(text, hits[0].entry_id) is None
        if outside is not None and not (mentioned and not hits[0].matters) \
                and not snap.index.anchored(text, hits[0], specific=3 if mentioned else 2):
            # "护照丢了怎么补办" matches "居住证丢了怎么补办" on every word but one, and that one
            # names a service no KB entry covers (config/not_covered.yaml); "出国签证要无犯罪
            # 记录证明" names its matter too, and the 签证 is only why they need it. A matter's
            # entry that mentions the service in passing (租房提取's 公租房 rent) answers only a
            # question that names its matter as well: "公租房怎么申请" is not about 公积金, "公租房
            # 的租金能用公积金付吗" is (a word of up to three matters will do here, since the
            # entry itself speaks of the service). An entry of no matter that mentions it is
            # the KB starting to cover the service: it answers.
            return self._fallback(ctx, meta, hits, snap, topic=outside)
        close = [h for h in hits if hits[0].score - h.score <= p.clarify_margin]
        if len(close) > 1 and not shared_matters(close):
            return self._clarify(close[:3], ctx, meta, snap)
        best = hits[0]
        if best.type == "term" and not _DEFINITION.search(text):
            # "居住证签注怎么办": the how-to beats the definition unless a definition was asked
            guide = next((h for h in hits if h.type == "guide" and set(h.matters) & set(
                best.matters) and h.score >= best.score - GUIDE_OVER_TERM), None)
            best = guide or best
        return self._answer(snap.entries[best.entry_id], conf, ctx, snap, question=text,
                            meta=meta, hits=hits)

    def _match_score(self, text: str, hits: list[Hit], snap: Snapshot) -> float:
        """The score confidence is calibrated from: the best hit's, less a penalty when it
        matched only an answer's text on a word no KB question uses (see answer_only_words)."""
        best = hits[0]
        if best.body and snap.index.answer_only_words(text):
            return best.score - self.policy.answer_only_penalty
        return best.score

    # -- the actions --------------------------------------------------------------------------
    def _answer(self, entry: KbEntryBase, conf: float, ctx: Context, snap: Snapshot,
                question: str | None = None, meta: AnswerMeta | None = None,
                hits: list[Hit] | None = None) -> BotReply:
        html = answer_body(entry)
        text = html_to_text(html)
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT].rstrip() + "……（详见链接）"
        links = []
        for matter in entry.matters[:1]:
            guide = snap.guides.get(matter)
            if guide is not None:
                url = self._link_for(guide)
                if url:
                    links.append(Link(title=f"办事指引：{guide.display_title}", url=url))
        if entry.type != "guide" and (own := self._link_for(entry)) and own not in {
            link.url for link in links
        }:
            links.append(Link(title="查看原文", url=own))
        ctx.matter = entry.matters[0] if entry.matters else ctx.matter
        ctx.last_entry, ctx.suggestions = entry.id, []
        if question:
            ctx.last_question = question
        meta = (meta or AnswerMeta()).model_copy(update={
            "entry_id": entry.id, "entry_type": entry.type, "matters": entry.matters,
            "confidence": round(conf, 4),
            "suggestions": [h.entry_id for h in (hits or [])[1:3]],
        })
        return BotReply("answer", text, html=html, quick_replies=list(RESOLVED), links=links,
                        meta=meta, rate=True)

    def _clarify(self, hits: list[Hit], ctx: Context, meta: AnswerMeta, snap: Snapshot,
                 *, unsure_of: str | None = None) -> BotReply:
        """The candidates as choices: close ones of different matters, or the best three of
        the one matter ``unsure_of`` when none is sure enough to answer; then, as a fallback
        would, the way to a person is offered too."""
        ctx.suggestions = [h.entry_id for h in hits]
        labels = [snap.entries[h.entry_id].display_title for h in hits]
        # the matters of the best guess, so `ask --json` and eval read one answer's matters
        meta = meta.model_copy(update={"suggestions": ctx.suggestions, "matters": hits[0].matters,
                                       "entry_id": hits[0].entry_id,
                                       "entry_type": hits[0].type})
        choices = [QuickReply(label=label[:60], payload=f"pick:{h.entry_id}")
                   for label, h in zip(labels, hits, strict=True)]
        if unsure_of:
            # all three are one matter's: that is the conversation's matter now, so 转人工帮办
            # goes to the unit responsible for it (and a follow-up is read as about it)
            ctx.matter = unsure_of
            # on the gap list too (reason "unsure", with the best guess): whichever the citizen
            # picks, the KB lacked a phrasing close to theirs, which an operator can add
            return BotReply("clarify", "小申不太确定您问的是哪一个，请选择；都不是的话，"
                            "可以换个说法再问，或转线上人工帮办。",
                            quick_replies=[*choices, HUMAN_REPLY], meta=meta,
                            unanswered="unsure")
        return BotReply("clarify", "您想问的是以下哪一个问题？", quick_replies=choices, meta=meta)

    def _fallback(self, ctx: Context, meta: AnswerMeta, hits: list[Hit], snap: Snapshot,
                  topic: str | None = None) -> BotReply:
        ctx.suggestions = []
        head = (f"抱歉，{topic}不在小申目前服务的事项范围内，小申无法为您解答。" if topic else
                "抱歉，小申暂时没能找到这个问题的答案。您可以换个说法再问一次；")
        return BotReply(
            "fallback",
            head + "您也可以转线上人工帮办（工作日工作时间），或拨打12345市民服务热线咨询。",
            quick_replies=[HUMAN_REPLY], links=[HOTLINE_LINK],
            meta=meta.model_copy(update={"suggestions": [h.entry_id for h in hits[:3]]}),
            unanswered="fallback")

    def _out_of_scope(self, category: str | None, snap: Snapshot, meta: AnswerMeta) -> BotReply:
        reply = snap.intents.out_of_scope(category)["reply"]
        return BotReply("out_of_scope", reply, links=[HOTLINE_LINK], meta=meta)

    def _handoff(self, ctx: Context, meta: AnswerMeta | None = None) -> BotReply:
        return BotReply("handoff", "好的，正在为您转接线上人工帮办。",
                        meta=(meta or AnswerMeta()).model_copy(
                            update={"matters": [ctx.matter] if ctx.matter else []}),
                        handoff=True)
