"""The protocol pieces on the platforms' own samples: signatures, decryption, the deterministic
encrypted reply, safe XML parsing, rendering. No app, no network."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from adapters.wechat.config import WeChatConfig
from adapters.wechat.crypto import AccountCrypto, BadPayload, BadSignature, signature
from adapters.wechat.inbound import Malformed, message, parse, parse_xml, to_inbound
from adapters.wechat.render import MAX_BYTES, pack, parts, passive_xml, render_text, split
from core.dialog.models import Outbound, QuickReply, RatingRequest

from . import vectors as v

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><ToUserName>gh</ToUserName><Content>&lol3;</Content></xml>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><Content>&xxe;</Content></xml>"""


def test_signatures_of_the_published_samples():
    assert signature(v.MP_TOKEN, v.MP_GET["timestamp"], v.MP_GET["nonce"]) == \
        v.MP_GET["signature"]
    assert signature(v.MP_TOKEN, v.MP_PLAIN_POST["timestamp"], v.MP_PLAIN_POST["nonce"]) == \
        v.MP_PLAIN_POST["signature"]
    mp = AccountCrypto(v.MP_TOKEN, v.MP_APPID, v.MP_AES_KEY)
    s = v.MP_SAFE_POST
    mp.check_signature(s["signature"], s["timestamp"], s["nonce"])
    mp.check_msg_signature(s["msg_signature"], s["timestamp"], s["nonce"], v.MP_SAFE_ENCRYPT)
    with pytest.raises(BadSignature):
        mp.check_msg_signature(s["msg_signature"], s["timestamp"], s["nonce"],
                               v.MP_SAFE_ENCRYPT[:-4] + "AAA=")
    with pytest.raises(BadSignature):
        mp.check_signature(None, s["timestamp"], s["nonce"])
    oa = AccountCrypto(v.OA_TOKEN, v.OA_APPID, v.OA_AES_KEY)
    oa.check_msg_signature(v.OA_MSG_SIGNATURE, v.OA_TIMESTAMP, v.OA_NONCE, v.OA_ENCRYPT)
    oa.check_signature(v.OA_SIGNATURE, v.OA_TIMESTAMP, v.OA_NONCE)


def test_decrypting_the_samples():
    mp = AccountCrypto(v.MP_TOKEN, v.MP_APPID, v.MP_AES_KEY)
    assert mp.decrypt(v.MP_SAFE_ENCRYPT) == v.MP_SAFE_PLAINTEXT
    oa = AccountCrypto(v.OA_TOKEN, v.OA_APPID, v.OA_AES_KEY)
    assert oa.decrypt(v.OA_ENCRYPT) == v.OA_PLAINTEXT
    # the same ciphertext for another AppID, garbage, truncated: one clear refusal each
    with pytest.raises(BadPayload, match="another AppID"):
        AccountCrypto(v.OA_TOKEN, "wx0000000000000000", v.OA_AES_KEY).decrypt(v.OA_ENCRYPT)
    for bad in ("not base64!", v.OA_ENCRYPT[:50], "QUJD", ""):
        with pytest.raises(BadPayload):
            oa.decrypt(bad)
    with pytest.raises(BadPayload):
        AccountCrypto(v.OA_TOKEN, v.OA_APPID, None).decrypt(v.OA_ENCRYPT)


def test_the_encrypted_reply_sample_is_reproduced_exactly():
    mp = AccountCrypto(v.MP_TOKEN, v.MP_APPID, v.MP_AES_KEY)
    r = v.MP_REPLY
    sealed = json.loads(mp.seal(r["msg"], fmt="json", timestamp=r["TimeStamp"],
                                nonce=r["Nonce"], random16=r["random16"]))
    assert sealed == {"Encrypt": r["Encrypt"], "MsgSignature": r["MsgSignature"],
                      "TimeStamp": r["TimeStamp"], "Nonce": r["Nonce"]}
    assert mp.decrypt(sealed["Encrypt"]) == r["msg"]
    # the inbound sample round-trips with its own random bytes too
    assert mp.encrypt(v.MP_SAFE_PLAINTEXT, random16=v.MP_SAFE_RANDOM16) == v.MP_SAFE_ENCRYPT
    # XML envelope (Official Accounts): signed over the same four values
    xml = parse_xml(mp.seal(r["msg"], fmt="xml", timestamp=r["TimeStamp"], nonce=r["Nonce"],
                            random16=r["random16"]).encode())
    assert xml == {"Encrypt": r["Encrypt"], "MsgSignature": r["MsgSignature"],
                   "TimeStamp": r["TimeStamp"], "Nonce": r["Nonce"]}
    # without a fixed value the random part is random: two seals differ, both decrypt
    a, b = mp.encrypt("x"), mp.encrypt("x")
    assert a != b and mp.decrypt(a) == mp.decrypt(b) == "x"


@pytest.mark.parametrize("body", [
    BILLION_LAUGHS, EXTERNAL_ENTITY,
    b"<!doctype xml><xml><a>1</a></xml>",
    b"<?xml version='1.0'?><!-- x --><!DOCTYPE  xml SYSTEM 'http://127.0.0.1:9/x.dtd'><xml/>",
    b"<xml><Content>&undefined;</Content></xml>",
    b"<xml><a>unclosed</xml>",
    b"<other><a>1</a></other>",
    b"<xml>" + b"<a>" * 10 + b"x" + b"</a>" * 10 + b"</xml>",
    "<?xml version='1.0' encoding='UTF-16'?><!DOCTYPE x><xml/>".encode("utf-16"),
])
def test_dtds_entities_and_malformed_xml_are_refused(body):
    with pytest.raises(Malformed):
        parse(body) if body.lstrip()[:1] in (b"<", b"{") else parse_xml(body)


def test_plain_xml_and_json_parse_to_the_same_message():
    fmt, data = parse(v.OA_PLAINTEXT.encode())
    assert fmt == "xml"
    msg = message(data)
    assert (msg.FromUserName, msg.MsgType, msg.Content, msg.MsgId) == (
        "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "text", "abcdteT", "6054768590064713728")
    assert parse_xml(b"<xml><A>&lt;&amp;&gt;</A><A>2</A></xml>") == {"A": ["<&>", "2"]}
    fmt, data = parse(json.dumps({"ToUserName": "gh", "FromUserName": "o1", "CreateTime": 1,
                                  "MsgType": "text", "Content": "你好", "MsgId": 42}).encode())
    assert fmt == "json" and message(data).MsgId == "42"
    for bad in (b"[1]", b"{\"a\":", b"\xff{", b"hello", b"{" * 100_000):
        with pytest.raises(Malformed):
            parse(bad)
    with pytest.raises(Malformed, match="FromUserName"):
        message({"ToUserName": "gh", "FromUserName": "../x", "CreateTime": 1, "MsgType": "text"})


def test_messages_become_inbounds():
    def inbound(**fields):
        base = {"ToUserName": "gh", "FromUserName": "oABC", "CreateTime": 1700000000}
        return to_inbound("oa", "wxapp", "wechat", message({**base, **fields}))

    text = inbound(MsgType="text", Content=" 居住证怎么办 ", MsgId="123")
    assert (text.channel_user, text.text, text.msg_id) == ("oa:oABC", "居住证怎么办", "wxapp:123")
    long = inbound(MsgType="text", Content="长" * 3000, MsgId="124")
    assert len(long.text) == 2000 and long.meta == {"truncated": "1"}
    image = inbound(MsgType="image", MediaId="media_1", PicUrl="http://x", MsgId="125")
    assert image.kind == "image" and image.attachments[0].url == "wechat-media:oa/media_1"
    voice = inbound(MsgType="voice", MediaId="m2", Format="speex", Recognition="社保卡",
                    MsgId="126")
    assert (voice.kind, voice.text, voice.attachments[0].mime) == ("voice", "社保卡",
                                                                    "audio/speex")
    welcome = inbound(MsgType="event", Event="subscribe")
    assert welcome.kind == "event" and welcome.msg_id == "wxapp:ev:oABC:1700000000"
    assert inbound(MsgType="event", Event="unsubscribe") is None
    assert inbound(MsgType="video", MediaId="m3", MsgId="127") is None


def test_rendering_for_a_text_only_channel():
    menu = Outbound(action="clarify", text="您想问哪一个？", quick_replies=[
        QuickReply(label="居住证签注", payload="pick:a"), QuickReply(label="居住证办理", payload="pick:b")])
    assert render_text(menu) == "您想问哪一个？\n\n1. 居住证签注\n2. 居住证办理\n（回复 1、2 选择）"
    levels = [QuickReply(label=str(n), payload=f"rate:{n}") for n in range(1, 6)]
    rating = Outbound(action="rating", text="请为本次服务评价", quick_replies=levels,
                      rating=RatingRequest(segment="agent", prompt="请为市公安局本次人工服务评价：",
                                           target="h1", options=levels))
    text = render_text(rating)
    assert "回复1-5" in text and text.startswith("请为市公安局本次人工服务评价：") and "1. " not in text
    assert render_text(Outbound(action="agent", text="a\x00b")) == "ab"
    # packing: short texts share a message; a long one is cut at line ends within the limit
    assert pack(["一", "二"]) == ["一\n\n二"]
    long = "\n".join("第%d行" % i + "字" * 100 for i in range(40))
    pieces = split(long)
    assert len(pieces) > 1 and all(len(p.encode()) <= MAX_BYTES for p in pieces)
    assert "".join(pieces).replace("\n", "") == long.replace("\n", "")
    assert all(len(p.encode()) <= MAX_BYTES for p in split("字" * 5000))
    xml = parse_xml(passive_xml("o1", "gh", "a]]>b<c>").encode())
    assert xml["Content"] == "a]]>b<c>" and xml["ToUserName"] == "o1"


NOTE = "（本渠道暂不能显示图片或语音，如需查看请告诉工作人员）"


def test_an_agents_pictures_and_playable_voice_become_media_parts_the_rest_is_announced():
    from core.dialog.models import Attachment

    def stored(kind: str, mime: str, size: int = 10, n: str = "a") -> Attachment:
        return Attachment(kind=kind, url=f"/attachments/a{n * 31}", mime=mime, size=size)

    pic = stored("image", "image/png", n="1")
    amr, mp3 = stored("voice", "audio/amr", n="2"), stored("voice", "audio/mpeg", n="3")
    webm, ogg = stored("voice", "audio/webm", n="4"), stored("voice", "audio/ogg", n="5")
    big = stored("voice", "audio/mpeg", size=2_000_001, n="6")  # over WeChat's 2 MB
    outs = [Outbound(action="agent", text="您好"),
            Outbound(action="agent", text="看图听音", attachments=[pic, amr, webm]),
            Outbound(action="agent", text="还有两段", attachments=[ogg, mp3, big]),
            Outbound(action="agent", text="还有问题吗")]
    assert parts(outs) == [
        f"您好\n\n看图听音\n\n[语音]{NOTE}", {"image": "a" + "1" * 31}, {"voice": "a" + "2" * 31},
        f"还有两段\n\n[语音][语音]{NOTE}", {"voice": "a" + "3" * 31}, "还有问题吗"]
    # rendered alone (as for one passive text) the picture and voice would only be announced,
    # so a reply with either, and what follows it, never go in the passive reply but by the API
    assert render_text(outs[1]).endswith(f"[图片][语音][语音]{NOTE}")
    from adapters.wechat import WeChatAdapter

    assert WeChatAdapter._fit(outs) == outs[:1]
    voice_only = Outbound(action="agent", text="请听", attachments=[mp3])
    assert WeChatAdapter._fit([voice_only, outs[0]]) == []
    # a voice WeChat cannot play is only ever text: it may go in the passive reply
    unplayable = Outbound(action="agent", text="请听", attachments=[webm, big])
    assert WeChatAdapter._fit([unplayable]) == [unplayable]
    assert render_text(unplayable) == f"请听\n\n[语音][语音]{NOTE}"


def test_configuration_is_checked():
    ok = {"name": "oa", "app_id": "wx1", "app_secret": "s", "token": "tok123"}
    WeChatConfig.model_validate({"accounts": [ok]})
    for bad in ({**ok, "name": "OA/1"}, {**ok, "token": "t"}, {**ok, "encoding_aes_key": "x"},
                {**ok, "api_base": "ftp://x"}, {**ok, "replay_window_s": -1}):
        with pytest.raises(ValidationError):
            WeChatConfig.model_validate({"accounts": [bad]})
    with pytest.raises(ValidationError, match="used twice"):
        WeChatConfig.model_validate({"accounts": [ok, ok]})
    with pytest.raises(ValidationError):
        WeChatConfig.model_validate({"reply_budget_s": 5})
    assert "s3cret" not in repr(WeChatConfig.model_validate(
        {"accounts": [{**ok, "app_secret": "s3cret"}]}))
