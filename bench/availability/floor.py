"""The framework floor: a bare Django view (no DRF, no auth, no serializers) that runs the SQL the availability
endpoint needs and writes JSON — what any Django implementation of the endpoint would at least have to pay.

Same body as POST /api/v1/availability/: {"lat", "lon", "lines": [{"sku", "qty"}], "radius_km", "limit"}.
1. stores in the bounding box, great-circle distance, nearest `limit` within `radius_km` (one query, distance in SQL);
2. stock rows of the cart's SKUs at those stores (one query, ATP in SQL);
3. json.dumps. No opening hours, no expired-hold correction, no validation beyond what a KeyError gives.
"""

import json
import math

from django.db import connection
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from o2o.prepared import PreparedCursor

KM_PER_DEGREE_LAT = 111.32

STORES_SQL = """
    SELECT id, code, name, lat, lon, delivery_radius_km, offers_delivery, offers_pickup, offers_returns, distance_km
    FROM (
        SELECT id, code, name, lat, lon, delivery_radius_km, offers_delivery, offers_pickup, offers_returns,
               2 * 6371.0088 * asin(sqrt(power(sin(radians(lat - %(lat)s) / 2), 2)
                   + cos(radians(%(lat)s)) * cos(radians(lat)) * power(sin(radians(lon - %(lon)s) / 2), 2)))
                   AS distance_km
        FROM inventory_store
        WHERE is_active AND lat BETWEEN %(south)s AND %(north)s AND lon BETWEEN %(west)s AND %(east)s
    ) candidates
    WHERE distance_km <= %(radius)s
    ORDER BY distance_km
    LIMIT %(limit)s
"""

STOCK_SQL = """
    SELECT s.store_id, p.sku, GREATEST(0, s.on_hand - s.reserved - s.safety - s.unavailable)
    FROM inventory_stock s JOIN inventory_product p ON p.id = s.product_id
    WHERE s.store_id = ANY(%(stores)s) AND p.sku = ANY(%(skus)s) AND p.is_active
"""


@csrf_exempt
def floor_availability(request):
    with connection.cursor() as cursor:
        return _availability(request, cursor)


@csrf_exempt
def floor_availability_prepared(request):
    """The same floor with its two statements prepared once per connection (o2o.prepared, as the endpoint does):
    the floor for an implementation that also skips PostgreSQL's per-request planning."""
    with PreparedCursor() as cursor:
        return _availability(request, cursor)


def _availability(request, cursor):
    body = json.loads(request.body)
    lat, lon = float(body["lat"]), float(body["lon"])
    radius = float(body.get("radius_km", 10))
    limit = int(body.get("limit", 20))
    lines = {}
    for line in body["lines"]:
        lines[line["sku"]] = lines.get(line["sku"], 0) + int(line["qty"])
    dlat = radius / KM_PER_DEGREE_LAT
    dlon = radius / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    cursor.execute(
        STORES_SQL,
        {"lat": lat, "lon": lon, "south": lat - dlat, "north": lat + dlat, "west": lon - dlon, "east": lon + dlon,
         "radius": radius, "limit": limit},
    )
    stores = cursor.fetchall()
    cursor.execute(STOCK_SQL, {"stores": [row[0] for row in stores], "skus": list(lines)})
    atp = {(store_id, sku): units for store_id, sku, units in cursor.fetchall()}
    out = []
    for store_id, code, name, s_lat, s_lon, s_radius, delivery, pickup, returns, distance in stores:
        available = {sku: atp.get((store_id, sku), 0) for sku in lines}
        out.append({
            "store": {
                "code": code, "name": name, "lat": s_lat, "lon": s_lon, "delivery_radius_km": s_radius,
                "services": [n for n, on in (("delivery", delivery), ("pickup", pickup), ("returns", returns)) if on],
                "distance_km": round(distance, 3),
            },
            "serves_whole_cart": all(available[sku] >= qty for sku, qty in lines.items()),
            "available": available,
        })
    payload = {"point": {"lat": lat, "lon": lon}, "lines": lines, "stores": out}
    return HttpResponse(json.dumps(payload, ensure_ascii=False), content_type="application/json")
