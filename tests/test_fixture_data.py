"""The demo chain's data is plausible: stores inside their cities and districts, unique codes, valid barcodes, sane
hours, and a gazetteer the offline geocoder can use without ambiguity.

Plain json + stdlib: no database, no models. The last group drives the real offline geocoder
(inventory/geocoding.py) over the gazetteer file and is skipped if that module cannot be imported.
"""

import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "fixtures" / "demo_chain"
BOXES = {  # south, north, west, east: generous boxes around each city's administrative area
    "Ho Chi Minh City": (10.35, 11.20, 106.35, 107.05),
    "Hanoi": (20.85, 21.25, 105.70, 105.95),
    "Da Nang": (15.95, 16.15, 108.10, 108.30),
}
CITY_CODES = {"HCM": "Ho Chi Minh City", "HN": "Hanoi", "DN": "Da Nang"}
DAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}


def load(name):
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def inside(entry):
    south, north, west, east = BOXES[entry["city"]]
    return south <= entry["lat"] <= north and west <= entry["lon"] <= east


def km(a, b):
    """Great-circle distance between two {lat, lon} mappings."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a["lat"], a["lon"], b["lat"], b["lon"]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def normalise(text):
    """Same key as the geocoder: lower case, no diacritics, punctuation collapsed to single spaces."""
    text = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^0-9a-zA-Z]+", " ", text.lower()).split())


def minutes(hhmm):
    assert re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", hhmm), hhmm
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


@pytest.fixture(scope="module")
def stores():
    return load("stores.json")


@pytest.fixture(scope="module")
def products():
    return load("products.json")


@pytest.fixture(scope="module")
def gazetteer():
    return load("gazetteer.json")


@pytest.fixture(scope="module")
def districts(gazetteer):
    return {(g["city"], g["name"]): g for g in gazetteer if g["kind"] == "district"}


# --- stores ----------------------------------------------------------------------------------------------------------


def test_store_counts_and_codes(stores):
    assert len(stores) >= 40
    per_city = Counter(s["city"] for s in stores)
    assert set(per_city) == set(BOXES) and min(per_city.values()) >= 5, per_city
    assert len({s["code"] for s in stores}) == len(stores)
    for s in stores:
        match = re.fullmatch(r"(HCM|HN|DN)-[A-Z0-9]{2,4}-\d{3}", s["code"])
        assert match and CITY_CODES[match.group(1)] == s["city"], s["code"]
        assert len(s["code"]) <= 32 and 0 < len(s["name"]) <= 200 and 0 < len(s["address"]) <= 300


def test_stores_lie_in_their_city_and_district(stores, gazetteer, districts):
    wards = {(g["city"], g["district"], g["name"]): g for g in gazetteer if g["kind"] == "ward"}
    for s in stores:
        assert inside(s), s["code"]
        district = districts.get((s["city"], s["district"]))
        assert district is not None, s["code"]
        assert km(s, district) < 10, s["code"]
        assert s["district"] in s["address"], s["code"]
        ward = re.search(r"Phường [^,]+", s["address"])
        assert ward, s["code"]
        ward_entry = wards.get((s["city"], s["district"], ward.group(0)))
        assert ward_entry is not None, (s["code"], ward.group(0))
        assert km(s, ward_entry) < 2.5, (s["code"], round(km(s, ward_entry), 2))


def test_store_services_and_capacity(stores):
    for s in stores:
        assert s["timezone"] == "Asia/Ho_Chi_Minh"
        for flag in ("offers_delivery", "offers_pickup", "offers_returns", "is_active"):
            assert isinstance(s[flag], bool), (s["code"], flag)
        assert isinstance(s["delivery_radius_km"], int) and 5 <= s["delivery_radius_km"] <= 10, s["code"]
        assert isinstance(s["picking_capacity_per_hour"], int) and 10 <= s["picking_capacity_per_hour"] <= 60
        assert s["offers_delivery"] or s["offers_pickup"], s["code"]
    assert any(not s["offers_delivery"] and s["offers_pickup"] for s in stores)  # pickup-only kiosks
    assert 1 <= sum(not s["is_active"] for s in stores) <= 3
    assert sum(s["is_active"] and s["offers_delivery"] for s in stores) >= 30


def test_opening_hours_are_well_formed(stores):
    for s in stores:
        hours = s["opening_hours"]
        assert hours and set(hours) <= DAYS, s["code"]
        for day, intervals in hours.items():
            previous_close = -1
            for interval in intervals:
                opens, closes = interval
                assert previous_close < minutes(opens) < minutes(closes), (s["code"], day, interval)
                previous_close = minutes(closes)
    patterns = {json.dumps(s["opening_hours"], sort_keys=True) for s in stores}
    assert len(patterns) >= 4  # malls, street stores, closed Sunday morning, ...
    assert any(s["opening_hours"].get("sun", [["00:00"]])[0][0] >= "12:00" for s in stores)


# --- products and categories -----------------------------------------------------------------------------------------


def ean13_ok(code):
    if not re.fullmatch(r"\d{13}", code):
        return False
    digits = [int(d) for d in code]
    return (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits[:12])) % 10) % 10 == digits[12]


def test_ean13_checker():
    assert ean13_ok("8934588012228") and ean13_ok("4006381333931")
    assert not ean13_ok("8934588012227") and not ean13_ok("893458801222")


def test_products(products):
    categories = {c["slug"] for c in load("categories.json")}
    assert len(products) >= 300
    assert len({p["sku"] for p in products}) == len(products)
    assert len({p["barcode"] for p in products}) == len(products)
    for p in products:
        assert re.fullmatch(r"[A-Z0-9]+(-[A-Z0-9]+)*", p["sku"]) and len(p["sku"]) <= 40, p["sku"]
        assert p["category"] in categories and p["name"].strip(), p["sku"]
        assert type(p["price_vnd"]) is int and 49_000 <= p["price_vnd"] <= 1_500_000 and p["price_vnd"] % 1000 == 0
        assert p["barcode"].startswith("893") and ean13_ok(p["barcode"]), p["sku"]
        assert isinstance(p["is_active"], bool)
    assert 1 <= sum(not p["is_active"] for p in products) <= 20
    assert any(not p["name"].isascii() for p in products)  # Vietnamese names, with diacritics


def test_categories(products):
    categories = load("categories.json")
    slugs = [c["slug"] for c in categories]
    assert len(set(slugs)) == len(slugs)
    for c in categories:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", c["slug"]) and c["name"].strip()
        assert type(c["return_days"]) is int and 0 <= c["return_days"] <= 60
        assert c["returnable"] == (c["return_days"] > 0), c["slug"]
    by_slug = {c["slug"]: c for c in categories}
    assert not by_slug["khau-trang"]["returnable"] and not by_slug["do-lot"]["returnable"]
    assert {p["category"] for p in products} == set(slugs)  # no empty category


# --- gazetteer ---------------------------------------------------------------------------------------------------------


def test_gazetteer_shape(gazetteer, districts):
    assert len(gazetteer) >= 250
    assert {e["kind"] for e in gazetteer} == {"city", "district", "ward", "landmark"}
    assert {e["city"] for e in gazetteer if e["kind"] == "city"} == set(BOXES)
    for e in gazetteer:
        assert e["name"].strip() and isinstance(e["aliases"], list), e
        assert isinstance(e["lat"], float) and isinstance(e["lon"], float), e["name"]
        if e["kind"] in ("ward", "district"):
            assert (e["city"], e["district"]) in districts, e["name"]
        if e["kind"] == "landmark" and e["district"] is not None:
            assert (e["city"], e["district"]) in districts, e["name"]
        if not e["name"].isascii():  # a name with diacritics can also be typed without them
            assert any(a.isascii() for a in e["aliases"]), e["name"]
    wards_per_district = Counter((e["city"], e["district"]) for e in gazetteer if e["kind"] == "ward")
    assert all(wards_per_district[key] >= 3 for key in districts), wards_per_district
    assert wards_per_district[("Ho Chi Minh City", "Quận 1")] >= 8 and wards_per_district[("Hanoi", "Hoàn Kiếm")] >= 8
    assert len([e for e in gazetteer if e["kind"] == "landmark"]) >= 40


def test_gazetteer_covers_the_cities_districts(districts):
    hcm = {f"Quận {n}" for n in (1, 3, 4, 5, 6, 7, 8, 10, 11, 12)} | {
        "Bình Thạnh",
        "Phú Nhuận",
        "Tân Bình",
        "Tân Phú",
        "Gò Vấp",
        "Bình Tân",
        "Thủ Đức",
    }
    hanoi = {
        "Hoàn Kiếm",
        "Ba Đình",
        "Đống Đa",
        "Hai Bà Trưng",
        "Cầu Giấy",
        "Tây Hồ",
        "Thanh Xuân",
        "Long Biên",
        "Hoàng Mai",
        "Nam Từ Liêm",
        "Bắc Từ Liêm",
        "Hà Đông",
    }
    da_nang = {"Hải Châu", "Thanh Khê", "Sơn Trà", "Ngũ Hành Sơn", "Cẩm Lệ", "Liên Chiểu"}
    for city, expected in (("Ho Chi Minh City", hcm), ("Hanoi", hanoi), ("Da Nang", da_nang)):
        assert expected <= {name for c, name in districts if c == city}, city


def test_gazetteer_entries_lie_in_their_city_and_district(gazetteer, districts):
    for e in gazetteer:
        assert inside(e), e["name"]
        if e["kind"] == "ward":
            limit = 30 if e["name"].startswith(("Xã", "Thị trấn")) else 10  # rural districts are large
            assert km(e, districts[(e["city"], e["district"])]) < limit, e["name"]


def test_gazetteer_has_the_usual_spellings(gazetteer):
    keys = defaultdict(set)
    for e in gazetteer:
        for name in [e["name"], *e["aliases"]]:
            keys[(e["kind"], e["name"])].add(name)
    for kind, name, spellings in [
        ("city", "Ho Chi Minh City", {"TP.HCM", "HCMC", "Saigon", "Sài Gòn"}),
        ("city", "Hanoi", {"Hà Nội", "Hanoi", "Ha Noi"}),
        ("city", "Da Nang", {"Đà Nẵng", "Da Nang"}),
        ("district", "Quận 1", {"Q1", "Q.1", "Quận 1", "District 1"}),
        ("district", "Thủ Đức", {"Thu Duc", "Quận 2", "District 2", "Quận 9"}),
        ("ward", "Phường Bến Nghé", {"Ben Nghe", "P. Bến Nghé", "Phuong Ben Nghe"}),
    ]:
        assert spellings <= keys[(kind, name)], (name, spellings - keys[(kind, name)])


def test_gazetteer_names_are_unambiguous(gazetteer):
    """What the geocoder keys on must not point at two different places where that would mislead it.

    City and district names are unique across all three cities (an address need not name its city); landmark names
    are unique within their city; a ward name is unique within its district (numbered wards repeat across districts:
    the geocoder keeps only the places inside the district an address names) and never equals a city, district or
    landmark name of the same city.
    """
    places = defaultdict(set)  # normalised name -> places it names
    for e in gazetteer:
        for name in {normalise(n) for n in [e["name"], *e["aliases"]]}:
            assert name, e["name"]
            places[name].add((e["kind"], e["city"], e["district"], e["name"]))
    for name, named in places.items():
        big = {p for p in named if p[0] in ("city", "district")}
        assert len(big) <= 1, (name, big)
        for kind, city, district, _ in named:
            same_city = {p for p in named if p[1] == city}
            if kind == "landmark":
                assert len(same_city) == 1, (name, same_city)
            if kind == "ward":
                assert len({p for p in same_city if p[0] == "ward" and p[2] == district}) == 1, (name, same_city)
                assert not {p for p in same_city if p[0] != "ward"}, (name, same_city)


# --- the offline geocoder over this gazetteer ------------------------------------------------------------------------


@pytest.fixture
def geocode(monkeypatch):
    try:
        from inventory import geocoding
    except Exception as exc:  # the app (or its settings) not importable here: the data tests above still ran
        pytest.skip(f"inventory.geocoding not importable: {exc}")
    monkeypatch.setattr(geocoding, "gazetteer_path", lambda: DATA / "gazetteer.json")  # no settings needed
    return geocoding.geocode_offline


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Chợ Bến Thành, Quận 1", "Chợ Bến Thành"),
        ("72 Nguyễn Huệ, Phường Bến Nghé, Quận 1, TP.HCM", "Phường Bến Nghé"),
        ("Q7", "Quận 7"),
        ("quan 3, tphcm", "Quận 3"),
        ("District 2", "Thủ Đức"),
        ("Hồ Gươm", "Hồ Gươm"),
        ("Cau Giay, Ha Noi", "Cầu Giấy"),
        ("An Hải Bắc, Sơn Trà, Đà Nẵng", "Phường An Hải Bắc"),
        ("Saigon", "Ho Chi Minh City"),
        ("Tân Phú, TP.HCM", "Tân Phú"),
        ("Phường Tân Phú, Quận 7", "Phường Tân Phú"),
        ("45 Kỳ Đồng, P.9, Q.3, Sài Gòn", "Phường 9, Quận 3"),
        ("Cầu Rồng", "Cầu Rồng"),
        ("Landmark 81", "Landmark 81"),
        ("Sân bay Nội Bài", "Sân bay Nội Bài"),
    ],
)
def test_offline_geocoding(geocode, address, expected):
    place = geocode(address)
    assert place is not None and place.label.startswith(expected) and place.source == "gazetteer", place


def test_offline_geocoding_unknown(geocode):
    assert geocode("1600 Amphitheatre Parkway") is None
    assert geocode("") is None


def test_every_store_address_geocodes_near_the_store(geocode, stores):
    for s in stores:
        place = geocode(f"{s['address']}, {s['city']}")
        assert place is not None, s["code"]
        assert km(s, {"lat": place.lat, "lon": place.lon}) < 2.5, (s["code"], place.label)


def test_every_landmark_geocodes_to_itself(geocode, gazetteer):
    for e in gazetteer:
        if e["kind"] == "landmark":
            place = geocode(f"{e['name']}, {e['city']}")
            assert place is not None and place.label.startswith(e["name"]), (e["name"], place)
