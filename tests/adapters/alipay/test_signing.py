"""RSA2 as Alipay uses it: Alipay's own signed notifications verify, altered ones do not; keys,
the gateway's signed XML answers, the JSON answers' signed member; the form and XML parsers."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from adapters.alipay.config import AlipayConfig
from adapters.alipay.gateway import GatewayError, parse_form, parse_message
from adapters.alipay.sender import split_text
from adapters.alipay.signing import (
    BadKey, BadSignature, load_private_key, load_public_key, public_key_base64,
    response_member, rsa2_sign, rsa2_verify, sign_content, sign_params, signed_response,
    verify_params, verifygw_response,
)

from . import vectors
from .conftest import form, message_xml, private_pem, signed_params

V1 = load_public_key(vectors.PUBLIC_KEY_V1)
V2 = load_public_key(vectors.PUBLIC_KEY_V2)


# -- Alipay's own notifications -------------------------------------------------------------


def test_the_sign_content_is_built_byte_for_byte_as_alipay_builds_it():
    assert sign_content(vectors.PAYMENT_NOTIFY, ("sign", "sign_type")) == vectors.PAYMENT_SIGNED
    assert sign_content(vectors.GATEWAY_NOTIFY, ("sign",)) == vectors.GATEWAY_SIGNED


def test_alipays_real_notifications_verify_each_under_its_rule():
    # payment notification: sign and sign_type left out (rsaCheckV1)
    assert verify_params(vectors.PAYMENT_NOTIFY, V1) == "v1"
    # app-gateway notification: only sign left out (rsaCheckV2)
    assert verify_params(vectors.GATEWAY_NOTIFY, V2) == "v2"
    # and not under the other rule, so both really are needed
    sign_a, sign_b = vectors.PAYMENT_NOTIFY["sign"], vectors.GATEWAY_NOTIFY["sign"]
    assert not rsa2_verify(sign_content(vectors.PAYMENT_NOTIFY, ("sign",)), sign_a, V1)
    assert not rsa2_verify(sign_content(vectors.GATEWAY_NOTIFY, ("sign", "sign_type")),
                           sign_b, V2)


@pytest.mark.parametrize("params,key", [(vectors.PAYMENT_NOTIFY, V2),
                                        (vectors.GATEWAY_NOTIFY, V1)])
def test_a_notification_does_not_verify_with_another_key(params, key):
    with pytest.raises(BadSignature, match="does not match"):
        verify_params(params, key)


@pytest.mark.parametrize("change", [
    {"service_code": "58621634111"},             # one parameter changed
    {"title": "麦禾商城模板"},                     # one character of a Chinese value
    {"phone": ""},                                # a signed parameter emptied (so left out)
    {"extra": "1"},                               # a parameter added
    {"sign": vectors.PAYMENT_NOTIFY["sign"]},     # the sign of another notification
])
def test_altered_copies_are_refused(change):
    with pytest.raises(BadSignature):
        verify_params({**vectors.GATEWAY_NOTIFY, **change}, V2)


@pytest.mark.parametrize("sign_type,reason", [("RSA", "must be RSA2"), ("", "must be RSA2"),
                                              ("rsa2", "must be RSA2")])
def test_only_rsa2_is_accepted(sign_type, reason):
    # even under rule V1, where sign_type is not signed, SHA-1 RSA is never downgraded to
    with pytest.raises(BadSignature, match=reason):
        verify_params({**vectors.PAYMENT_NOTIFY, "sign_type": sign_type}, V1)


def test_empty_values_are_left_out_and_a_missing_sign_is_refused():
    assert verify_params({**vectors.GATEWAY_NOTIFY, "blank": ""}, V2) == "v2"
    with pytest.raises(BadSignature, match="not signed"):
        verify_params({k: v for k, v in vectors.GATEWAY_NOTIFY.items() if k != "sign"}, V2)
    # a '+' of the base64 sign that arrived as a space (form decoding) still verifies
    spaced = vectors.GATEWAY_NOTIFY["sign"].replace("+", " ")
    assert verify_params({**vectors.GATEWAY_NOTIFY, "sign": spaced}, V2) == "v2"


def test_a_posted_real_notification_parses_back_to_what_was_signed():
    for params, key in ((vectors.PAYMENT_NOTIFY, V1), (vectors.GATEWAY_NOTIFY, V2)):
        assert verify_params(parse_form(form(params)), key) in ("v1", "v2")


# -- charsets -------------------------------------------------------------------------------


def test_gbk_notifications_are_decoded_and_verified_in_gbk(keys):
    biz = message_xml(text="居住证签注怎么办？")
    for charset in ("GBK", "gb2312", "UTF-8", "utf-8"):
        body = form(signed_params(keys.alipay, biz, charset=charset), charset)
        params = parse_form(body)
        assert params["biz_content"] == biz
        assert verify_params(params, keys.alipay.public_key()) == "v2"
        assert parse_message(params["biz_content"]).text == "居住证签注怎么办？"
    gbk = form(signed_params(keys.alipay, biz, charset="GBK"), "GBK")
    assert "%BE%D3" in gbk.decode()  # 居 in GBK, percent-encoded
    # the same bytes read as UTF-8 would be wrong: the charset parameter decides
    with pytest.raises(GatewayError, match="not valid UTF-8"):
        parse_form(gbk.replace(b"charset=GBK", b"charset=UTF-8"))


@pytest.mark.parametrize("body,code", [
    (b"", "empty_body"),
    (b"charset=latin9&sign=x", "unsupported_charset"),
    (b"charset=UTF-8&a=%FF%FE", "bad_encoding"),
    (b"charset=UTF-8&a=1&a=2", "duplicate_parameter"),
    (b"charset=UTF-8&a=%00", "control_characters"),
    (b"charset=UTF-8&&a", "malformed_form"),
    (b"&".join([b"a%d=1" % i for i in range(100)]), "malformed_form"),
])
def test_malformed_forms_are_refused_with_a_reason(body, code):
    with pytest.raises(GatewayError) as err:
        parse_form(body)
    assert err.value.status == 400 and err.value.code == code and err.value.message


# -- biz_content ----------------------------------------------------------------------------


def test_messages_parse_into_their_fields():
    msg = parse_message(message_xml("2088000000000001", "社保卡怎么补办", msg_id="m1",
                                    created_ms=1700000000000))
    assert (msg.from_user_id, msg.msg_type, msg.text, msg.msg_id, msg.create_time,
            msg.app_id) == ("2088000000000001", "text", "社保卡怎么补办", "m1", 1700000000000,
                            "2021000000000001")
    event = parse_message(message_xml(msg_type="event", event="follow", text=None))
    assert (event.msg_type, event.event_type, event.text) == ("event", "follow", "")
    escaped = parse_message("<XML><FromUserId>u1</FromUserId><MsgType>text</MsgType>"
                            "<Text><Content>a &lt;b&gt; &amp; c</Content></Text></XML>")
    assert escaped.text == "a <b> & c"


@pytest.mark.parametrize("xml,code", [
    ('<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><XML><FromUserId>&a;</FromUserId></XML>',
     "xml_dtd_refused"),
    ('<!DOCTYPE XML SYSTEM "file:///etc/passwd"><XML/>', "xml_dtd_refused"),
    ("<XML><FromUserId>u1</FromUserId>", "malformed_xml"),
    ("<XML><FromUserId>u 1</FromUserId><MsgType>text</MsgType></XML>", "bad_user"),
    ("<XML><FromUserId>u1</FromUserId><MsgId>a b</MsgId></XML>", "bad_field"),
    ("<XML><FromUserId>u1</FromUserId><CreateTime>yesterday</CreateTime></XML>", "bad_field"),
])
def test_unsafe_or_malformed_xml_is_refused(xml, code):
    with pytest.raises(GatewayError) as err:
        parse_message(xml)
    assert err.value.status == 400 and err.value.code == code


def test_a_text_over_the_limit_is_413_with_the_limit():
    with pytest.raises(GatewayError) as err:
        parse_message(message_xml(text="办" * 2001))
    assert err.value.status == 413 and "2000" in err.value.message


# -- keys and our own signatures ------------------------------------------------------------


def test_keys_load_from_pem_or_bare_base64_and_short_or_broken_keys_are_refused(keys):
    pem = private_pem(keys.app)
    bare = "".join(pem.strip().splitlines()[1:-1])
    pkcs1 = base64.b64encode(keys.app.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())).decode()
    for text in (pem, bare, pkcs1):
        assert load_private_key(text).private_numbers() == keys.app.private_numbers()
    public_b64 = public_key_base64(keys.app)
    assert load_public_key(public_b64).public_numbers() == keys.app.public_key().public_numbers()
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BadKey, match="1024 bits"):
        load_private_key(private_pem(small))
    with pytest.raises(BadKey):
        load_public_key("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqObrdC7hrgAV")
    with pytest.raises(BadKey):
        load_private_key("not a key at all!")


def test_a_bad_key_in_the_config_names_the_field(keys):
    good = {"name": "a", "app_id": "2021000000000001", "alipay_public_key":
            vectors.PUBLIC_KEY_V2, "app_private_key": private_pem(keys.app)}
    AlipayConfig.model_validate({"apps": [good]})
    with pytest.raises(ValidationError) as err:
        AlipayConfig.model_validate({"apps": [{**good, "app_private_key": "MIIE-broken"}]})
    assert err.value.errors()[0]["loc"] == ("apps", 0, "app_private_key")
    assert "MIIE" not in str(err.value)  # the secret is not echoed back
    with pytest.raises(ValidationError) as err:
        AlipayConfig.model_validate({"apps": [good, {**good, "name": "b"}]})
    assert "app_id" in str(err.value)
    with pytest.raises(ValidationError):
        AlipayConfig.model_validate({"apps": [{**good, "gateway": "ftp://x"}]})


def test_the_gateways_answers_are_signed_over_the_response_element(keys):
    public = keys.app.public_key()
    for charset in ("GBK", "UTF-8"):
        xml = verifygw_response(keys.app, charset)
        assert xml.startswith(f'<?xml version="1.0" encoding="{charset}"?><alipay><response>')
        inner = re.search(r"<response>(.*)</response>", xml).group(1)
        sign = re.search(r"<sign>(.*)</sign>", xml).group(1)
        assert inner == (f"<success>true</success><biz_content>{public_key_base64(keys.app)}"
                         "</biz_content>")
        assert rsa2_verify(inner, sign, public, charset)
        assert "<sign_type>RSA2</sign_type>" in xml
    ack = signed_response("<XML><MsgType>ack</MsgType></XML>", keys.app)
    assert rsa2_verify("<XML><MsgType>ack</MsgType></XML>",
                       re.search(r"<sign>(.*)</sign>", ack).group(1), public, "GBK")


def test_requests_are_signed_over_all_sorted_parameters_sign_type_included(keys):
    params = {"app_id": "1", "method": "m", "charset": "utf-8", "sign_type": "RSA2",
              "biz_content": '{"text":{"content":"您好"}}', "empty": ""}
    sign = sign_params(params, keys.app)
    content = ('app_id=1&biz_content={"text":{"content":"您好"}}&charset=utf-8&method=m'
               "&sign_type=RSA2")
    assert rsa2_verify(content, sign, keys.app.public_key())
    assert rsa2_sign(content, keys.app) == sign  # PKCS#1 v1.5 is deterministic


def test_the_signed_member_of_a_json_answer_is_cut_out_exactly():
    raw = ('{"alipay_open_public_message_custom_send_response" : {"code":"10000",'
           '"msg":"Success","nested":{"a":"}"}},"sign":"abc"}')
    member, sign = response_member(raw, "alipay.open.public.message.custom.send")
    assert member == '{"code":"10000","msg":"Success","nested":{"a":"}"}}' and sign == "abc"
    member, sign = response_member('{"error_response":{"code":"40002"}}', "x.y")
    assert member == '{"code":"40002"}' and sign is None
    assert response_member("not json", "x.y") == (None, None)


def test_long_texts_are_split_at_line_ends():
    text = "\n\n".join(["第一段" * 30, "第二段" * 30, "第三段" * 30])
    pieces = split_text(text, 200)
    assert all(len(p) <= 200 for p in pieces) and len(pieces) == 2
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
    assert split_text("短", 200) == ["短"]
    assert all(len(p) <= 150 for p in split_text("长" * 1000, 150))
