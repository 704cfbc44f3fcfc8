"""Personal data (ID-card and mobile numbers) never reaches a log line in clear."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from core.logging import MaskingFilter, mask_personal_data

ID_NUMBER = "110101199003071234"
ID_NUMBER_X = "31010419851231002X"
MOBILE = "13812345678"


@pytest.mark.parametrize(("text", "masked"), [
    (f"身份证号{ID_NUMBER}，请核实", "身份证号110101********1234，请核实"),
    (f"id={ID_NUMBER_X}", "id=310104********002X"),
    (f"id {ID_NUMBER_X.lower()}", "id 310104********002x"),
    (f"手机{MOBILE}。", "手机138****5678。"),
    (f"tel:+86 {MOBILE}", "tel:+86 138****5678"),
    (f"{ID_NUMBER} and {MOBILE}", "110101********1234 and 138****5678"),
    (f"两个号码 {MOBILE}、19987654321", "两个号码 138****5678、199****4321"),
    # as people write them: grouped, with the country code glued on, or in full-width digits
    ("手机+86 139 1234 5678", "手机+86 139 **** 5678"),
    ("手机+8613912345678", "手机+86139****5678"),
    ("电话 139-1234-5678", "电话 139-****-5678"),
    ("手机１３９１２３４５６７８", "手机139****5678"),
    ("身份证 310101 19900101 1234", "身份证 310101 ******** 1234"),
    ("身份证３１０１０４１９８５１２３１００２Ｘ", "身份证310104********002X"),
])
def test_id_card_and_mobile_numbers_are_masked(text, masked):
    assert mask_personal_data(text) == masked
    assert ID_NUMBER not in masked and MOBILE not in masked


@pytest.mark.parametrize("text", [
    "请拨打12345市民服务热线",
    "座机 021-62345678 或 02162345678",
    "订单号 202401011234567890123",          # 21 digits: longer than an ID number
    "流水号 1381234567812",                  # 13 digits starting like a mobile
    "编号 11010119900307123",                # 17 digits: one short of an ID number
    "编号 1101011990030712345",              # 19 digits
    "旧手机号 12812345678",                  # 12x is not a mobile prefix
    "2024-01-01 09:00:00 耗时 1234 ms",
    "银行卡 6222 1391 2345 6789",           # grouped in fours, not a mobile's 3-4-4
    "座机 021-6234-5678",
])
def test_other_numbers_are_left_alone(text):
    assert mask_personal_data(text) == text


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with a masking handler writing to a buffer (not the root logger)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("tests.masking")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logger.propagate = True


def test_arguments_are_masked_in_the_formatted_line(captured):
    logger, buffer = captured
    logger.info("citizen %s called from %s about %d items", ID_NUMBER, MOBILE, 3)
    line = buffer.getvalue()
    assert line == "INFO citizen 110101********1234 called from 138****5678 about 3 items\n"


def test_mapping_arguments_are_masked(captured):
    logger, buffer = captured
    logger.warning("mobile %(mobile)s", {"mobile": MOBILE})
    assert buffer.getvalue() == "WARNING mobile 138****5678\n"


def test_exception_text_is_masked(captured):
    logger, buffer = captured
    try:
        raise ValueError(f"no citizen with ID {ID_NUMBER} (mobile {MOBILE})")
    except ValueError:
        logger.exception("lookup failed for %s", MOBILE)
    out = buffer.getvalue()
    assert "Traceback" in out and "ValueError: no citizen with ID 110101********1234" in out
    assert "lookup failed for 138****5678" in out
    assert ID_NUMBER not in out and MOBILE not in out


def test_every_handler_sees_the_masked_record(captured):
    # the filter rewrites the record itself, so a second handler cannot leak the clear text
    logger, first = captured
    second = io.StringIO()
    plain = logging.StreamHandler(second)
    logger.addHandler(plain)
    try:
        logger.error("call %s", MOBILE)
    finally:
        logger.removeHandler(plain)
    assert "138****5678" in first.getvalue()
    assert MOBILE not in second.getvalue()


def test_a_broken_format_string_is_passed_on_not_dropped():
    # the filter must neither raise nor swallow the record: logging's own error report follows
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "two %s %s", ("only one",), None)
    assert MaskingFilter().filter(record) is True
    assert (record.msg, record.args) == ("two %s %s", ("only one",))


def test_lines_without_personal_data_are_unchanged(captured):
    logger, buffer = captured
    logger.info("imported %d records from %s", 464, "config/kb")
    assert buffer.getvalue() == "INFO imported 464 records from config/kb\n"
