"""Services the KB does not cover (config/not_covered.yaml): a question about one is not
answered with a look-alike entry, while questions that only mention one in passing, or that the
KB does cover, are still answered."""

from __future__ import annotations

import jieba
import pytest

from core.dialog.bot import Context
from core.errors import ConfigError
from core.nlu.coverage import Coverage, Licences, Topic


@pytest.mark.parametrize(("question", "named"), [
    ("护照丢了怎么补办", "护照"),
    ("港澳通行证过期了在哪里续签", "港澳台通行证"),
    ("驾照扣分了怎么处理", "驾驶证"),
    ("残疾证怎么办理", "残疾人证"),
    # a word an entry's FAQ uses (教师资格认定's 体检, 出生一件事's 户口本) does not make the
    # question about that matter: only the words the matter is called by do
    ("驾驶证换证的体检在哪里做", "驾驶证"),
    ("婚姻登记处要带户口本吗", "婚姻登记"),
    # read as chat by the intent model, but it asks for a service: it is told where it stands
    ("后天上海会下雨吗", "天气"),
    # read as a dispute by the intent model ("离婚财产怎么分"), but no speech act of one: a
    # service question about something no matter covers
    ("湿垃圾干垃圾怎么分", "垃圾分类"),
    ("交通卡不用了 余额怎么退", "交通出行"),
    ("打车的发票丢了能补吗", "交通出行"),
    ("结婚证丢了怎么补", "婚姻登记"),
    ("教师招聘考试在哪报名", "招聘"),
    ("公司想注册个商标 去哪里申请", "知识产权"),
    # a licence the KB never names, listed nowhere: another department's (食品经营许可证 is ours)
    ("开药店要办药品经营许可证 怎么申请", "药品经营许可证"),
    ("烟草专卖许可证去哪办", "烟草专卖许可证"),
    ("户口本丢了怎么补办", "户口本"),
    ("外地孩子在上海上初中要什么条件", "入学"),
    # an entry mentions it in passing (租房提取 pays 公租房 rent too), but the question is
    # about the service itself, not about that entry's matter
    ("公租房怎么申请 要什么条件", "保障性住房"),
    ("社保卡丢了怎么补办", "社保卡"),
])
def test_a_service_no_entry_covers_is_said_to_be_outside(bot, question, named):
    reply = bot.respond(question, Context())
    assert reply.action == "fallback", (reply.action, reply.meta.entry_id, reply.text)
    assert named in reply.text and "不在小申目前服务的事项范围内" in reply.text
    assert "12345" in reply.text and reply.unanswered == "fallback"
    assert [q.payload for q in reply.quick_replies] == ["human"]


@pytest.mark.parametrize(("question", "matter"), [
    # the service is only why they need it: the question names its matter
    ("出国签证要开无犯罪记录证明 随申办上能直接开吗", "M06"),
    # the answering entry covers it: foreign employees' social insurance needs their 护照
    ("外籍员工办社保参保登记要提供护照吗", "M08"),
    # 结婚证 as a document another matter asks for, not the marriage registration service
    ("办居住证需要结婚证吗", "M04"),
    # the licence we cover, named with everyday words around it
    ("我们公司想办食品经营许可证 要什么材料", "M22"),
    # 落户 is why they need the record, not what they ask about
    ("落户要个税完税记录 个税APP里怎么开", "M34"),
    # the entry that mentions the service answers a question naming its matter too
    ("住公租房的 房租能不能用公积金来付", "M15"),
    # the baby's card is part of 出生一件事; only replacing one is another service
    ("孩子的社保卡多久能拿到", "M20"),
])
def test_a_mention_in_passing_or_a_covered_one_is_still_answered(bot, question, matter):
    reply = bot.respond(question, Context())
    assert reply.action in ("answer", "clarify"), (reply.action, reply.text)
    assert matter in reply.meta.matters, reply.meta


def test_the_first_listed_service_is_named_and_covered_entries_are_not_outside():
    cov = Coverage([Topic(name="出入境证件", pattern="护照|港澳通行证"),
                    Topic(name="车驾管", pattern="驾照")])
    assert cov.outside("港澳通行证和驾照都丢了", "居住证丢了怎么补办") == "出入境证件"
    assert cov.outside("护照丢了", "外籍人员需提供护照信息") is None
    assert cov.outside("居住证丢了", "居住证丢了怎么补办") is None


def test_a_licence_is_unknown_when_the_kb_never_names_it():
    licences = Licences(["食品经营许可证 酒类商品零售许可证", "专票"], jieba.lcut)
    assert licences.unknown("开药店要办药品经营许可证吗") == "药品经营许可证"
    # everyday words and verbs before it are not part of its name
    assert licences.unknown("我们公司想办食品经营许可证") is None
    assert licences.unknown("能办食品经营许可证吗") is None
    # what comes before a name the KB knows does not make it another licence
    assert licences.unknown("员工健康证还没下来，能先提交食品经营许可申请吗") is None
    assert licences.unknown("员工健康证还没下来，能先提交药品经营许可申请吗") == "药品经营许可"
    # a head alone, or with one character before it, names nothing in particular
    assert licences.unknown("那个许可证到期了") is None
    assert licences.unknown("证件和许可") is None


def test_the_file_is_validated_with_the_field_named(tmp_path):
    bad = tmp_path / "not_covered.yaml"
    bad.write_text("topics:\n  - name: 护照\n    pattern: '护照('\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"topics\.0\.pattern.*not a regular expression"):
        Coverage.load(bad)
    bad.write_text("topics:\n  - name: 护照\n    patern: 护照\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="topics.0"):
        Coverage.load(bad)
    assert Coverage.load().outside("护照怎么办", "") is not None  # the shipped file loads
