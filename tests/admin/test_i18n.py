"""The admin in Vietnamese and English: the language selector, the catalogue, VND and points grouped the way the
language writes numbers, and times in the staff member's stores' time zone."""

import ast
import gettext
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone, translation

from inventory.models import Stock, Store
from inventory.staff.middleware import StoreTimeZoneMiddleware, staff_time_zone
from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, STORE_STAFF, make_staff
from loyalty import services as loyalty
from loyalty.services import PostingSource
from o2o.templatetags.money import format_points, format_vnd
from tests.admin.conftest import PASSWORD
from tests.factories import StoreFactory

pytestmark = pytest.mark.django_db
CATALOGUE = Path(settings.LOCALE_PATHS[0]) / "vi" / "LC_MESSAGES"


def _vi(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "vi"
    return client


# --- money and points ----------------------------------------------------------------------------------------------


def test_vnd_and_points_are_grouped_the_way_the_language_writes_numbers():
    template = Template("{% load money %}{{ price|vnd }} | {{ n|points }} | {{ one|points }} | {{ none|vnd }}")
    context = Context({"price": 1_398_000, "n": 2000, "one": 1, "none": None})
    with translation.override("en"):
        assert template.render(context) == "1,398,000 ₫ | 2,000 points | 1 point | -"
        assert format_vnd(-25_000) == "-25,000 ₫"
    with translation.override("vi"):
        assert template.render(context) == "1.398.000 ₫ | 2.000 điểm | 1 điểm | -"
        assert format_points(-12_345) == "-12.345 điểm"


def _rich_member():
    member, _ = loyalty.get_or_create_member(phone="0901234567", name="Nguyễn Văn A", channel="website")
    source = PostingSource(channel="pos", store="HCM-Q1-001", reference="R-1", actor="pos:HCM-Q1-001")
    # 123,450,000 ₫ paid: 12,345 points at the base rate (1 point per 10,000 ₫)
    loyalty.earn_points(member=member, amount_paid_vnd=123_450_000, source=source, idempotency_key="i18n:earn")
    return member


def test_member_page_in_vietnamese_shows_points_and_vnd_with_dots(admin_client):
    member = _rich_member()
    url = reverse("admin:loyalty_member_change", args=[member.pk])
    html = _vi(admin_client).get(url).content.decode()
    assert 'lang="vi"' in html
    assert "khả dụng 12.345 điểm (= 1.234.500 ₫)" in html
    # the tier's spend counts from the last recompute (a nightly task): none yet
    assert "Thành viên (×1), chi tiêu 12 tháng 0 ₫; cần thêm 5.000.000 ₫ để lên hạng Bạc" in html
    assert "Điều chỉnh điểm" in html and "Bút toán sổ điểm (chỉ xem)" in html
    adjust = admin_client.get(reverse("admin:loyalty_member_adjust", args=[member.pk])).content.decode()
    assert "Khả dụng 12.345 điểm (trị giá 1.234.500 ₫)" in adjust and "Ghi điều chỉnh" in adjust


def test_member_page_in_english_shows_commas(admin_client):
    member = _rich_member()
    html = admin_client.get(reverse("admin:loyalty_member_change", args=[member.pk])).content.decode()
    assert 'lang="en"' in html
    assert "available 12,345 points (= 1,234,500 ₫), pending 0 points" in html
    assert "Member (×1), spend 12 months 0 ₫; 5,000,000 ₫ more for Silver" in html
    adjust = admin_client.get(reverse("admin:loyalty_member_adjust", args=[member.pk])).content.decode()
    assert "Available 12,345 points (worth 1,234,500 ₫)" in adjust


def test_accept_language_vi_is_honoured_too(admin_client):
    html = admin_client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="vi").content.decode()
    assert 'lang="vi"' in html and "Ngôn ngữ" in html


# --- the operations screens --------------------------------------------------------------------------------------


def test_board_and_queue_in_vietnamese(client, two_stores, head_office, staff_a):
    _vi(client).force_login(head_office)
    board = client.get(reverse("admin:orders_order_board")).content.decode()
    for text in (
        "Bảng điều hành toàn chuỗi",
        "đơn trễ hẹn",
        "đến hạn trong 30 phút, chưa đóng gói",
        "Đơn hàng hôm nay theo trạng thái",
        "Phục vụ đúng hẹn, theo cửa hàng",
        "Hàng đợi cửa hàng",
    ):
        assert text in board, text
    client.force_login(staff_a)
    queue = client.get(reverse("admin:orders_fulfillment_queue")).content.decode()
    for text in ("Việc cần làm ngay, hẹn sớm nhất lên trước", "hẹn trước", "bước tiếp theo", "Lấy thiếu hàng…"):
        assert text in queue, text
    pick = two_stores["day_a"]["pickup_f"]
    short = client.get(reverse("admin:orders_fulfillment_short_pick", args=[pick.pk])).content.decode()
    assert "Số lượng tìm thấy trên kệ" in short and "Ghi nhận lấy thiếu" in short


def test_board_in_english(client, two_stores, head_office):
    client.force_login(head_office)
    board = client.get(reverse("admin:orders_order_board")).content.decode()
    assert "promises late" in board and "Today's orders by state" in board
    assert "Bảng điều hành" not in board


def test_stock_adjust_page_in_vietnamese(client, two_stores, regional):
    stock = Stock.objects.filter(store=two_stores["a"]).first()
    _vi(client).force_login(regional)
    html = client.get(reverse("admin:inventory_stock_adjust", args=[stock.pk])).content.decode()
    assert "tồn thực tế" in html and "Ghi nhận điều chỉnh" in html and "Hoặc đặt mức mới" in html


# --- the language selector ---------------------------------------------------------------------------------------


def test_language_selector_round_trip(admin_client):
    index = reverse("admin:index")
    page = admin_client.get(index).content.decode()
    assert f'action="{reverse("set_language")}"' in page and 'value="vi" lang="vi">Tiếng Việt</option>' in page
    switched = admin_client.post(reverse("set_language"), {"language": "vi", "next": index})
    assert switched.status_code == 302 and switched.url == index
    assert admin_client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "vi"
    page = admin_client.get(index).content.decode()
    assert 'lang="vi"' in page and 'value="vi" lang="vi" selected>' in page
    assert "Đổi ngôn ngữ" in page  # the selector's own button, from our catalogue
    back = admin_client.post(reverse("set_language"), {"language": "en", "next": index})
    assert back.status_code == 302
    assert 'lang="en"' in admin_client.get(index).content.decode()


# --- time zones --------------------------------------------------------------------------------------------------


def _zone_seen(user, path="/admin/"):
    seen = {}
    request = RequestFactory().get(path)
    request.user = user

    def view(req):
        seen["zone"] = timezone.get_current_timezone_name()
        return HttpResponse()

    StoreTimeZoneMiddleware(view)(request)
    return seen["zone"], timezone.get_current_timezone_name()


def test_middleware_activates_the_stores_zone_for_the_admin_only(db, django_assert_num_queries):
    tokyo = StoreFactory(timezone="Asia/Tokyo")
    tokyo_2 = StoreFactory(timezone="Asia/Tokyo")
    hcm = StoreFactory()
    staff = make_staff(username="yuki", password=PASSWORD, role=STORE_STAFF, stores=[tokyo])
    assert _zone_seen(staff) == ("Asia/Tokyo", settings.TIME_ZONE)  # and deactivated after the response
    assert _zone_seen(staff, "/api/v1/stores/")[0] == settings.TIME_ZONE  # the API is not touched
    same = make_staff(username="ken", password=PASSWORD, role=REGIONAL_MANAGER, stores=[tokyo, tokyo_2])
    assert _zone_seen(same)[0] == "Asia/Tokyo"
    mixed = make_staff(username="an", password=PASSWORD, role=REGIONAL_MANAGER, stores=[tokyo, hcm])
    assert _zone_seen(mixed)[0] == settings.TIME_ZONE
    office = make_staff(username="hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    office.staff_scope.stores.add(tokyo)  # all stores wins over a list
    assert _zone_seen(office)[0] == settings.TIME_ZONE
    nobody = make_staff(username="new", password=PASSWORD, role=STORE_STAFF)
    assert _zone_seen(nobody)[0] == settings.TIME_ZONE
    assert _zone_seen(AnonymousUser())[0] == settings.TIME_ZONE
    request = RequestFactory().get("/admin/")
    request.user = same
    with django_assert_num_queries(1):
        assert staff_time_zone(request) == staff_time_zone(request) == "Asia/Tokyo"  # cached on the request
    Store.objects.filter(pk=tokyo.pk).update(timezone="Mars/Olympus")
    assert _zone_seen(make_staff(username="typo", password=PASSWORD, role=STORE_STAFF, stores=[tokyo]))[0] == (
        settings.TIME_ZONE
    )


def test_board_times_shift_to_the_stores_zone(client, two_stores, staff_a, head_office):
    Store.objects.filter(pk=two_stores["a"].pk).update(timezone="Asia/Tokyo")
    client.force_login(staff_a)
    page = client.get(reverse("admin:orders_order_board"))
    now = page.context["board"].now
    tokyo = timezone.localtime(now, ZoneInfo("Asia/Tokyo"))
    assert f"now {tokyo:%H:%M}" in page.content.decode()
    assert timezone.localtime(page.context["board"].day_start, ZoneInfo("Asia/Tokyo")).hour == 0  # Tokyo's day
    client.force_login(head_office)
    page = client.get(reverse("admin:orders_order_board"))
    home = timezone.localtime(page.context["board"].now, ZoneInfo(settings.TIME_ZONE))
    assert f"now {home:%H:%M}" in page.content.decode()


def test_queue_rows_show_each_stores_own_zone(client, two_stores):
    a, b = two_stores["a"], two_stores["b"]
    Store.objects.filter(pk=a.pk).update(timezone="Asia/Tokyo")
    both = make_staff(username="vy", password=PASSWORD, role=REGIONAL_MANAGER, stores=[a, b])
    client.force_login(both)
    html = client.get(reverse("admin:orders_fulfillment_queue")).content.decode()
    assert f"(times in {settings.TIME_ZONE} unless marked" in html  # mixed zones: the chain's zone
    f_a, f_b = two_stores["day_a"]["pickup_f"], two_stores["day_b"]["pickup_f"]
    row_a = re.search(rf'data-fulfillment="{f_a.pk}">\s*<td>(.*?)</td>', html, re.S).group(1)
    row_b = re.search(rf'data-fulfillment="{f_b.pk}">\s*<td>(.*?)</td>', html, re.S).group(1)
    assert (
        row_a == f'{f_a.promised_by.astimezone(ZoneInfo("Asia/Tokyo")):%d/%m %H:%M} <span class="tz">Asia/Tokyo</span>'
    )
    assert row_b == f"{f_b.promised_by.astimezone(ZoneInfo(settings.TIME_ZONE)):%d/%m %H:%M}"


# --- the catalogue -----------------------------------------------------------------------------------------------


def _read_po(path: Path) -> tuple[dict, list[str]]:
    """The .po's messages keyed as gettext keys them in a .mo, and the msgids marked fuzzy or left untranslated."""
    entries, problems = {}, []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        fuzzy = False
        for line in block.strip().splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            if line.startswith("#"):
                continue
            if line.startswith('"'):
                fields[current] += ast.literal_eval(line)
                continue
            current, _, value = line.partition(" ")
            fields[current] = ast.literal_eval(value)
        if "msgid" not in fields:
            continue
        msgid = fields["msgid"]
        if "msgctxt" in fields:
            msgid = f"{fields['msgctxt']}\x04{msgid}"
        strings = {k: v for k, v in fields.items() if k.startswith("msgstr")}
        if msgid and (fuzzy or not all(strings.values())):
            problems.append(fields["msgid"])
        if "msgid_plural" in fields:
            for key, value in strings.items():
                entries[(msgid, int(key[len("msgstr[") : -1]))] = value
        else:
            entries[msgid] = strings["msgstr"]
    return entries, problems


def test_catalogue_is_complete_and_its_mo_is_up_to_date():
    po, problems = _read_po(CATALOGUE / "django.po")
    assert problems == [], "untranslated or fuzzy: translate them in the .po, then manage.py update_catalogue --compile"
    with open(CATALOGUE / "django.mo", "rb") as handle:
        mo = gettext.GNUTranslations(handle)._catalog
    # the header differs by design (msgfmt drops POT-Creation-Date): compare the messages
    stale = {key for key in po.keys() | mo.keys() if key and po.get(key) != mo.get(key)}
    assert stale == set(), "the .mo is older than the .po: run manage.py update_catalogue --compile"
    placeholders = re.compile(r"%\(\w+\)s")
    for key, text in po.items():
        msgid = key[0] if isinstance(key, tuple) else key
        if msgid:
            assert sorted(placeholders.findall(text)) == sorted(placeholders.findall(msgid.split("\x04")[-1])), msgid


def test_role_names_listed_for_translation_match_the_roles():
    from inventory.staff.admin import ROLE_NAMES

    assert set(ROLE_NAMES) == {HEAD_OFFICE, REGIONAL_MANAGER, STORE_STAFF}
    with translation.override("vi"):
        assert translation.gettext(STORE_STAFF) == "Nhân viên cửa hàng"
