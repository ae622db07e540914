"""Addresses to coordinates.

The offline gazetteer (fixtures/demo_chain/gazetteer.json: cities, districts, wards, landmarks with aliases) answers
first-class for the demo and the tests, which never call out. With O2O_GEOCODER=nominatim, geopy's Nominatim is
asked first and the gazetteer is the fallback when it fails or finds nothing.
"""

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from inventory.exceptions import AddressNotFound

logger = logging.getLogger(__name__)

# The most specific match wins when an address names several places ("Phường Bến Nghé, Quận 1, TP.HCM").
_KIND_RANK = {"landmark": 0, "ward": 1, "district": 2, "city": 3}


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    label: str
    source: str  # "gazetteer" or the online geocoder's name


def normalise(text: str) -> str:
    """Lower case, Vietnamese diacritics and punctuation removed: 'Quận 1, TP.HCM' -> 'quan 1 tp hcm'."""
    text = text.replace("đ", "d").replace("Đ", "D")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[^0-9a-zA-Z]+", " ", text.lower())
    return " ".join(text.split())


def gazetteer_path() -> Path:
    return Path(getattr(settings, "O2O_GAZETTEER", settings.BASE_DIR / "fixtures" / "demo_chain" / "gazetteer.json"))


@lru_cache(maxsize=4)
def _load(path: str) -> list[tuple[str, int, dict]]:
    """(normalised name, rank, entry) for every name and alias, longest names first."""
    with open(path, encoding="utf-8") as fh:
        entries = json.load(fh)
    names = []
    for entry in entries:
        rank = _KIND_RANK.get(entry.get("kind", "city"), 3)
        for name in [entry["name"], *entry.get("aliases", [])]:
            norm = normalise(name)
            if norm:
                names.append((norm, rank, entry))
    names.sort(key=lambda item: (-len(item[0]), item[1]))
    return names


def geocode_offline(address: str) -> Place | None:
    query = f" {normalise(address)} "
    if not query.strip():
        return None
    matches = [(rank, -len(name), entry) for name, rank, entry in _load(str(gazetteer_path())) if f" {name} " in query]
    if not matches:
        return None
    # Ward and street names repeat across cities: when the address also names a city or a district, keep only the
    # places inside it. Then the most specific kind wins, then the longest name.
    for kind, field in (("city", "city"), ("district", "district")):
        named = {entry[field] for rank, _, entry in matches if entry.get("kind") == kind}
        inside = [m for m in matches if m[2].get(field) in named]
        if named and inside:
            matches = inside
    rank, _, entry = min(matches, key=lambda m: (m[0], m[1]))
    label = ", ".join(part for part in (entry["name"], entry.get("district"), entry.get("city")) if part and part != entry["name"])
    return Place(float(entry["lat"]), float(entry["lon"]), f"{entry['name']}, {label}".rstrip(", "), "gazetteer")


def _geocode_online(address: str) -> Place | None:
    from geopy.exc import GeopyError
    from geopy.geocoders import Nominatim

    geocoder = Nominatim(user_agent=settings.O2O_GEOCODER_USER_AGENT, timeout=3)
    try:
        location = geocoder.geocode(address, country_codes="vn")
    except GeopyError as exc:  # network down, rate limited, ...: the gazetteer still answers
        logger.warning("online geocoding failed, using the gazetteer: %s", exc)
        return None
    if location is None:
        return None
    return Place(location.latitude, location.longitude, location.address, "nominatim")


def geocode(address: str) -> Place:
    """Coordinates of an address in the chain's cities; raises AddressNotFound."""
    place = None
    if settings.O2O_GEOCODER == "nominatim":
        place = _geocode_online(address)
    place = place or geocode_offline(address)
    if place is None:
        raise AddressNotFound(details={"address": address})
    return place


def locate(*, lat: float | None, lon: float | None, address: str | None) -> Place:
    """The point a caller means: explicit coordinates win; otherwise the address, geocoded."""
    if lat is not None and lon is not None:
        return Place(lat, lon, f"{lat:.5f},{lon:.5f}", "coordinates")
    return geocode(address or "")
