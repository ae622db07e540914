"""A seeded, self-contained Ho Chi Minh City scenario: stores in the districts, scarce stock, picking capacity per
slot, online orders at customer points. Pure Python (random), reproducible from the seed alone.

Scarcity is what makes routing matter: a Zipf-like SKU popularity means best-sellers sit in most stores while the long
tail is held by a few, so multi-line orders often have no single store nearby holding everything, and stores near
the centre run out of picking capacity before the outskirts do.
"""

from __future__ import annotations

import math
import random
from typing import Any

# District centres (approximate) and a weight for how many stores / customers each gets.
DISTRICTS: list[tuple[str, float, float, float]] = [
    ("Q1", 10.7756, 106.7019, 3.0),
    ("Q3", 10.7843, 106.6844, 2.5),
    ("Q4", 10.7579, 106.7013, 1.2),
    ("Q5", 10.7540, 106.6634, 1.8),
    ("Q6", 10.7480, 106.6352, 1.2),
    ("Q7", 10.7340, 106.7216, 2.0),
    ("Q8", 10.7240, 106.6286, 1.2),
    ("Q10", 10.7746, 106.6680, 1.8),
    ("Q11", 10.7629, 106.6502, 1.2),
    ("Q12", 10.8671, 106.6413, 1.0),
    ("BTH", 10.8106, 106.7091, 2.2),  # Binh Thanh
    ("GVP", 10.8387, 106.6653, 1.8),  # Go Vap
    ("PNH", 10.7991, 106.6802, 1.5),  # Phu Nhuan
    ("TBN", 10.8015, 106.6526, 2.0),  # Tan Binh
    ("TPH", 10.7900, 106.6282, 1.4),  # Tan Phu
    ("BTN", 10.7650, 106.6030, 1.4),  # Binh Tan
    ("TDC", 10.8494, 106.7537, 2.0),  # Thu Duc
    ("NBE", 10.6950, 106.7400, 0.5),  # Nha Be
]
KM_PER_DEG_LAT = 111.2


def _jitter(rng: random.Random, lat: float, lon: float, sigma_km: float) -> tuple[float, float]:
    dlat = rng.gauss(0, sigma_km) / KM_PER_DEG_LAT
    dlon = rng.gauss(0, sigma_km) / (KM_PER_DEG_LAT * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def chain(seed: int, n_stores: int, n_skus: int, *, capacity: tuple[int, int] = (4, 14)) -> dict[str, Any]:
    """Stores and stock (no orders)."""
    rng = random.Random(seed)
    names, weights = [d[0] for d in DISTRICTS], [d[3] for d in DISTRICTS]
    by_name = {d[0]: d for d in DISTRICTS}
    stores, counters = [], {}
    for _ in range(n_stores):
        name = rng.choices(names, weights)[0]
        counters[name] = counters.get(name, 0) + 1
        _, lat, lon, _ = by_name[name]
        lat, lon = _jitter(rng, lat, lon, 1.6)
        methods = ["delivery", "pickup"] if rng.random() < 0.9 else ["pickup"]
        stores.append(
            {
                "id": f"HCM-{name}-{counters[name]:03d}",
                "lat": lat,
                "lon": lon,
                "capacity": rng.randint(*capacity),
                "methods": methods,
                "delivery_radius_km": rng.choice([4, 5, 6, 8]),
            }
        )
    skus = [f"SKU-{i:05d}" for i in range(n_skus)]
    # share of stores holding SKU i: best-sellers in ~60% of stores, the tail in a few
    stock = []
    for i, sku in enumerate(skus):
        share = max(0.7 / (1 + i / 25) ** 0.7, 8 / max(n_stores, 1))
        for st in stores:
            if rng.random() < share:
                stock.append({"store": st["id"], "sku": sku, "qty": rng.choice([1, 1, 2, 2, 3, 5])})
    return {"stores": stores, "stock": stock, "skus": skus}


def orders(seed: int, ch: dict[str, Any], n_orders: int, *, prefix: str = "WEB") -> list[dict[str, Any]]:
    rng = random.Random(seed * 7919 + 1)
    names, weights = [d[0] for d in DISTRICTS], [d[3] for d in DISTRICTS]
    by_name = {d[0]: d for d in DISTRICTS}
    skus = ch["skus"]
    sku_w = [1 / (1 + i / 15) ** 0.9 for i in range(len(skus))]
    pickup_stores = [s for s in ch["stores"] if "pickup" in s["methods"]]
    out = []
    for n in range(n_orders):
        _, lat, lon, _ = by_name[rng.choices(names, weights)[0]]
        lat, lon = _jitter(rng, lat, lon, 2.2)
        n_lines = rng.choices([1, 2, 3, 4, 5], [40, 25, 15, 12, 8])[0]
        lines: dict[str, int] = {}
        while len(lines) < n_lines:
            lines[rng.choices(skus, sku_w)[0]] = rng.choice([1, 1, 1, 2])
        order: dict[str, Any] = {"id": f"{prefix}-{n:05d}", "lines": [{"sku": s, "qty": q} for s, q in lines.items()]}
        if rng.random() < 0.12 and pickup_stores:
            near = min(pickup_stores, key=lambda s: (s["lat"] - lat) ** 2 + (s["lon"] - lon) ** 2)
            order.update(method="pickup", pickup_store=near["id"])
        else:
            order.update(method="delivery", lat=lat, lon=lon, allow_split=rng.random() < 0.6)
        out.append(order)
    return out


def problem(
    seed: int,
    n_stores: int,
    n_orders: int,
    *,
    n_skus: int | None = None,
    time_limit_s: float = 5.0,
    capacity: tuple[int, int] = (4, 14),
) -> dict[str, Any]:
    n_skus = n_skus or max(50, n_stores // 2)
    ch = chain(seed, n_stores, n_skus, capacity=capacity)
    return {
        "stores": ch["stores"],
        "stock": ch["stock"],
        "orders": orders(seed, ch, n_orders),
        "settings": {"time_limit_s": time_limit_s},
    }
