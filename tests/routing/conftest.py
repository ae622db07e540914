"""Builders for small routing problems (plain dicts in the JSON contract). No database anywhere in tests/routing."""

import pytest

# Around District 1, HCMC: 0.01 degree of latitude is about 1.1 km.
LAT, LON = 10.7769, 106.7009


def store(sid, dlat=0.0, dlon=0.0, *, capacity=10, methods=("delivery", "pickup"), radius=8):
    return {
        "id": sid,
        "lat": LAT + dlat,
        "lon": LON + dlon,
        "capacity": capacity,
        "methods": list(methods),
        "delivery_radius_km": radius,
    }


def order(oid, lines, dlat=0.0, dlon=0.0, **extra):
    o = {
        "id": oid,
        "method": "delivery",
        "lat": LAT + dlat,
        "lon": LON + dlon,
        "lines": [{"sku": s, "qty": q} for s, q in lines.items()],
    }
    o.update(extra)
    return o


def problem(stores, stock, orders, **settings):
    return {
        "stores": stores,
        "stock": [{"store": s, "sku": k, "qty": q} for (s, k), q in stock.items()],
        "orders": orders,
        "settings": settings,
    }


@pytest.fixture
def build():
    """`build.store(...)`, `build.order(...)`, `build.problem(...)` in tests."""

    class B:
        pass

    b = B()
    b.store, b.order, b.problem = store, order, problem
    return b
