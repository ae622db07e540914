"""The demo chain's data is plausible: stores inside their cities, unique codes, valid barcodes, sane hours."""

import json
import re
from pathlib import Path

import pytest

from inventory.geocoding import geocode_offline

DATA = Path(__file__).resolve().parent.parent / "fixtures" / "demo_chain"
BOXES = {  # south, north, west, east
    "Ho Chi Minh City": (10.35, 11.20, 106.35, 107.05),
    "Hanoi": (20.85, 21.25, 105.70, 105.95),
    "Da Nang": (15.95, 16.15, 108.10, 108.30),
}


def load(name):
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def inside(entry):
    south, north, west, east = BOXES[entry["city"]]
    return south <= entry["lat"] <= north and west <= entry["lon"] <= east


def test_stores():
    stores = load("stores.json")
    assert len(stores) >= 40 and {s["city"] for s in stores} == set(BOXES)
    assert len({s["code"] for s in stores}) == len(stores)
    districts = {(g["city"], g["name"]) for g in load("gazetteer.json") if g["kind"] == "district"}
    for store in stores:
        assert inside(store), store["code"]
        assert (store["city"], store["district"]) in districts, store["code"]
        for intervals in store["opening_hours"].values():
            for opens, closes in intervals:
                assert re.fullmatch(r"\d\d:\d\d", opens) and re.fullmatch(r"\d\d:\d\d", closes) and opens < closes


def test_products():
    products = load("products.json")
    categories = {c["slug"] for c in load("categories.json")}
    assert len(products) >= 300
    assert len({p["sku"] for p in products}) == len(products)
    assert len({p["barcode"] for p in products}) == len(products)
    for p in products:
        assert re.fullmatch(r"[A-Z0-9-]{1,40}", p["sku"]) and p["category"] in categories
        assert isinstance(p["price_vnd"], int) and p["price_vnd"] > 0 and p["price_vnd"] % 1000 == 0
        digits = [int(d) for d in p["barcode"]]
        assert len(digits) == 13 and p["barcode"].startswith("893")
        assert (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits[:12])) % 10) % 10 == digits[12]


def test_gazetteer_entries_lie_in_their_city():
    entries = load("gazetteer.json")
    assert {e["kind"] for e in entries} == {"city", "district", "ward", "landmark"}
    for entry in entries:
        if entry["kind"] != "landmark" or "Sân bay" not in entry["name"]:  # airports sit outside the core box
            assert inside(entry), entry["name"]


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
    ],
)
def test_offline_geocoding(address, expected):
    place = geocode_offline(address)
    assert place is not None and place.label.startswith(expected) and place.source == "gazetteer"


def test_offline_geocoding_unknown():
    assert geocode_offline("1600 Amphitheatre Parkway") is None
    assert geocode_offline("") is None
