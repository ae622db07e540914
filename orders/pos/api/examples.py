"""Request and response examples of the POS contract (v1), shown in the OpenAPI schema next to each endpoint.

They are the answers the service gives for these requests (tests/pos/test_openapi.py checks that every POS operation
has them and that the SKUs and shapes match the serializers)."""

from drf_spectacular.utils import OpenApiExample

CONTRACT_VERSION = "1.1"
# 1.1: prices. POST /api/v1/pos/prices/ (the online till's price call: the website quote's breakdown) and
#      GET /api/v1/pos/pricing/snapshot/ (the store's policy for offline tills: versioned, ETag, signed); a receipt
#      may carry `codes`, `promotions` and a `price_override`, and its result `policy_total_vnd` and
#      `price_exceptions` (checked against the policy, never refused for prices).
# 1.0: the contract as of issue 18.

RECEIPT = {
    "receipt_id": "Q1-T2-000123",
    "sold_at": "2025-06-01T10:15:00+07:00",
    "lines": [
        {"sku": "AO-THUN-001-M", "qty": 2, "unit_price_vnd": 199000, "discount_vnd": 20000},
        {"sku": "NON-LA-01", "qty": 1, "unit_price_vnd": 85000},
    ],
    "tenders": [{"type": "cash", "amount_vnd": 453000}, {"type": "points", "points": 100}],
    "member_phone": "0901234567",
}
RECEIPT_RESULT = {
    "receipt_id": "Q1-T2-000123",
    "sold_at": "2025-06-01T10:15:00+07:00",
    "total_vnd": 463000,
    # No promotion in force: the policy charges the base prices, and the shirts' 20,000 ₫ discount is one exception.
    "policy_total_vnd": 483000,
    "price_exceptions": 1,
    "lines": [
        {"sku": "AO-THUN-001-M", "qty": 2, "shortfall": 0, "late_for_count": False},
        {"sku": "NON-LA-01", "qty": 1, "shortfall": 0, "late_for_count": False},
    ],
    "needs_count": False,
    "taken_from_online": [],
    "points": {"member": "+84901234567", "earned": 45, "redeemed": 100, "available": 245},
}
SALES_REQUEST = {
    "receipts": [
        RECEIPT,
        {"receipt_id": "Q1-T2-000124", "sold_at": "2025-06-01T10:17:00+07:00",
         "lines": [{"sku": "XYZ", "qty": 1, "unit_price_vnd": 10000}], "tenders": [{"type": "cash", "amount_vnd": 10000}]},
        {"receipt_id": "Q1-T2-000125", "sold_at": "2025-06-01T10:19:00+07:00",
         "lines": [{"sku": "NON-LA-01", "qty": -1, "unit_price_vnd": 85000}],
         "tenders": [{"type": "bitcoin", "amount_vnd": 85000}]},
    ]
}
SALES_ANSWER = {
    "results": [
        {"receipt_id": "Q1-T2-000123", "status": "applied", "result": RECEIPT_RESULT},
        {"receipt_id": "Q1-T2-000124", "status": "rejected", "reason": "unknown_sku",
         "message": "Unknown or inactive SKU: XYZ.", "details": {"skus": ["XYZ"]}},
        {"receipt_id": "Q1-T2-000125", "status": "rejected", "reason": "invalid", "message": "Invalid receipt.",
         "details": {"lines": {"0": {"qty": ["Ensure this value is greater than or equal to 1."]}},
                     "tenders": {"0": {"type": ["\"bitcoin\" is not a valid choice."]}}}},
    ],
    "summary": {"applied": 1, "duplicate": 0, "rejected": 2},
}
SALES_REPLAY = {
    "results": [
        {"receipt_id": "Q1-T2-000123", "status": "duplicate", "result": RECEIPT_RESULT},
        {"receipt_id": "Q1-T2-000126", "status": "rejected", "reason": "receipt_id_reused",
         "message": "This id was already used with different content.", "details": {"receipt_id": "Q1-T2-000126"}},
    ],
    "summary": {"applied": 0, "duplicate": 1, "rejected": 1},
}
TOO_LARGE = {
    "code": "batch_too_large", "message": "Too many receipts (or too many bytes) in one sync call.",
    "details": {"max_receipts": 1000, "max_bytes": 2097152, "receipts": 100000},
}
VOID_RESULT = {
    "receipt_id": "Q1-T2-000123", "kind": "void", "amount_vnd": 463000, "points": {"reversed": 45, "given_back": 100},
    "lines": [{"sku": "AO-THUN-001-M", "qty": 2, "restocked": 2}, {"sku": "NON-LA-01", "qty": 1, "restocked": 1}],
}
REFUND_REQUEST = {"refund_id": "Q1-T2-RF-0007", "lines": [{"sku": "AO-THUN-001-M", "qty": 1, "resellable": False}]}
REFUND_RESULT = {
    "receipt_id": "Q1-T2-000123", "refund_id": "Q1-T2-RF-0007", "kind": "refund", "amount_vnd": 189000,
    "lines": [{"sku": "AO-THUN-001-M", "qty": 1, "resellable": False}], "points": {"reversed": 18, "given_back": 40},
}
RECEIPT_DETAIL = {
    "receipt_id": "Q1-T2-000123", "status": "applied", "sold_at": "2025-06-01T10:15:00+07:00",
    "received_at": "2025-06-01T10:41:07+07:00", "total_vnd": 463000, "member_phone": "+84901234567",
    "result": RECEIPT_RESULT, "refunds": [REFUND_RESULT],
}
COUNT_REQUEST = {
    "count_id": "Q1-CC-2025-06-01", "counted_at": "2025-06-01T21:30:00+07:00",
    "lines": [{"sku": "AO-THUN-001-M", "counted": 7, "expected_on_hand": 8}, {"sku": "NON-LA-01", "counted": 0}],
}
COUNT_RESULT = {
    "count_id": "Q1-CC-2025-06-01", "counted_at": "2025-06-01T21:30:00+07:00",
    "lines": [
        {"sku": "AO-THUN-001-M", "counted": 7, "ledger_as_of": 8, "on_hand_before": 8, "adjustment": -1,
         "on_hand_after": 7, "taken_from_online": 0, "from_quarantine": 0, "kept_for_packed": 0,
         "shortfall_before": 0, "shortfall_after": 0},
        {"sku": "NON-LA-01", "counted": 0, "ledger_as_of": 1, "on_hand_before": 1, "adjustment": -1, "on_hand_after": 0,
         "taken_from_online": 1, "from_quarantine": 0, "kept_for_packed": 0, "shortfall_before": 0,
         "shortfall_after": 0},
    ],
}
STALE = {
    "code": "stale_quantity", "message": "The expected previous quantity does not match the ledger.",
    "details": {"lines": [{"sku": "AO-THUN-001-M", "expected_on_hand": 8, "on_hand": 6}]},
}
GOODS_REQUEST = {"receipt_id": "DN-2025-000881", "source": "DC Bình Dương", "lines": [{"sku": "AO-THUN-001-M", "qty": 24}]}
GOODS_RESULT = {"receipt_id": "DN-2025-000881", "source": "DC Bình Dương", "received_at": "2025-06-01T07:02:11+07:00",
                "lines": [{"sku": "AO-THUN-001-M", "qty": 24}]}
TRANSFER_REQUEST = {"transfer_id": "TR-000042", "to_store": "HCM-Q3-01", "lines": [{"sku": "NON-LA-01", "qty": 5}],
                    "note": "rebalance before the weekend"}
TRANSFER_SHIPPED = {
    "id": 42, "transfer_id": "TR-000042", "from_store": "HCM-Q1-01", "to_store": "HCM-Q3-01", "status": "in_transit",
    "shipped_at": "2025-06-01T09:00:00+07:00", "received_at": None,
    "lines": [{"sku": "NON-LA-01", "shipped_qty": 5, "received_qty": None, "discrepancy": None}],
}
RECEIVE_REQUEST = {"lines": [{"sku": "NON-LA-01", "qty": 4}]}
TRANSFER_RECEIVED = {
    **TRANSFER_SHIPPED, "status": "received", "received_at": "2025-06-01T15:20:00+07:00",
    "lines": [{"sku": "NON-LA-01", "shipped_qty": 5, "received_qty": 4, "discrepancy": 1}],
}
PICKUP = {
    "code": "K7P2QX", "order": "O-250601-0042", "customer_name": "Trần Thị B", "customer_phone": "+84912345678",
    "status": "ready_for_pickup", "payment_state": "paid", "total_vnd": 398000,
    "lines": [{"sku": "AO-THUN-001-M", "name": "Áo thun cotton trắng M", "qty": 2}],
}
STOCK = {
    "sku": "NON-LA-01", "name": "Nón lá Huế", "on_hand": 0, "reserved": 0, "safety": 0, "unavailable": 0,
    "shortfall": 0, "sellable_at_till": 0, "available_online": 0, "needs_count": False,
    "nearby": [{"store": "HCM-Q1-02", "name": "Q1 Nguyễn Huệ", "address": "72 Nguyễn Huệ, Bến Nghé, Quận 1",
                "distance_km": 0.8, "open_now": True, "available": 3}],
}
BALANCE = {
    "phone": "+84901234567", "name": "Nguyễn Văn A", "tier": "silver", "available": 245, "available_value_vnd": 24500,
    "pending": 0, "expiring_soon": 20, "expiring_soon_until": "2025-07-01T00:00:00+07:00",
}
NOT_FOUND = {"code": "receipt_not_found", "message": "No receipt with this id at this store.",
             "details": {"receipt_id": "B-000001"}}


def request(name: str, value: dict) -> OpenApiExample:
    return OpenApiExample(name, value=value, request_only=True)


def response(name: str, value, status: int = 200) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=[str(status)])


def not_found(value: dict | None = None) -> OpenApiExample:
    return response("Another store's id (or none)", value or NOT_FOUND, 404)
DAMAGE_REQUEST = {"report_id": "DMG-000017", "lines": [{"sku": "NON-LA-01", "qty": 2}], "note": "crushed in the aisle"}
DAMAGE_RESULT = {
    "report_id": "DMG-000017", "reported_at": "2025-06-01T10:12:00+07:00", "note": "crushed in the aisle",
    "lines": [{"sku": "NON-LA-01", "qty": 2, "quarantined": 2, "taken_from_online": 1, "shortfall": 0}],
    "needs_count": False,
}


# --- prices (1.1) --------------------------------------------------------------------------------------------------
# The policy of these examples: the shirt at 179,000 ₫ on the chain-wide price list summer-2025 (199,000 ₫ base), 10 %
# off the hat (promotion hat-10), and the single-use coupon SUMMER20K for 20,000 ₫ off the cart (coupon-20k), both
# promotions for the website and the tills alike (tests/pos/conftest.py: example_policy).

PRICE_REQUEST = {
    "lines": [{"sku": "AO-THUN-001-M", "qty": 2}, {"sku": "NON-LA-01", "qty": 1}],
    "member_phone": "0901234567", "codes": ["SUMMER20K"], "at": "2025-06-01T10:15:00+07:00",
}
PRICE_ANSWER = {
    "policy_version": 42,
    "lines": [
        {"sku": "AO-THUN-001-M", "qty": 2, "base_price_vnd": 199000, "unit_price_vnd": 179000,
         "price_source": "summer-2025", "gross_vnd": 358000, "discount_vnd": 16479, "net_vnd": 341521,
         "discounts": [{"promotion": "coupon-20k#SUMMER20K", "amount_vnd": 16479}]},
        {"sku": "NON-LA-01", "qty": 1, "base_price_vnd": 85000, "unit_price_vnd": 85000, "price_source": "base",
         "gross_vnd": 85000, "discount_vnd": 12021, "net_vnd": 72979,
         "discounts": [{"promotion": "coupon-20k#SUMMER20K", "amount_vnd": 3521},
                       {"promotion": "hat-10", "amount_vnd": 8500}]},
    ],
    "promotions": [
        {"promotion": "hat-10", "name": "10% off the hat", "kind": "percent_off", "code": None, "discount_vnd": 8500,
         "rule": "10% off", "lines": [{"sku": "NON-LA-01", "discount_vnd": 8500}]},
        {"promotion": "coupon-20k", "name": "20,000 ₫ off with a coupon", "kind": "amount_off", "code": "SUMMER20K",
         "discount_vnd": 20000, "rule": "20000 VND off the cart",
         "lines": [{"sku": "AO-THUN-001-M", "discount_vnd": 16479}, {"sku": "NON-LA-01", "discount_vnd": 3521}]},
    ],
    "codes": [{"code": "SUMMER20K", "promotion": "coupon-20k", "applied": True, "reason": ""}],
    "subtotal_vnd": 443000, "discount_vnd": 28500, "total_vnd": 414500, "delivery_fee_vnd": 0,
    "delivery_fee_rule": None, "delivery_fee_reason": "pickup", "grand_total_vnd": 414500,
}
PRICE_CODE_USED = {"code": "code_used_up", "message": "This code has already been used.",
                   "details": {"code": "SUMMER20K"}}

# The key SNAPSHOT's signature was computed with (an example only): a till checks its canonical JSON against it.
SNAPSHOT_EXAMPLE_KEY = "Ab12Cd34.example-only-never-a-real-key-0001"
SNAPSHOT = {
    "version": 42, "changed": True, "store": "HCM-Q1-01", "channel": "store", "timezone": "Asia/Ho_Chi_Minh",
    "generated_at": "2025-06-01T06:00:00+00:00",
    "policy": {
        "version": 42,
        "base_prices": {"AO-THUN-001-M": 199000, "NON-LA-01": 85000},
        "categories": {"AO-THUN-001-M": "ao-thun", "NON-LA-01": "non"},
        "price_lists": [{"code": "summer-2025", "priority": 0, "channels": [], "stores": None, "starts_at": None,
                         "ends_at": None, "prices": {"AO-THUN-001-M": 179000}}],
        "promotions": [
            {"code": "coupon-20k", "name": "20,000 ₫ off with a coupon", "kind": "amount_off", "target": "cart",
             "skus": [], "categories": [], "percent": 0, "amount_vnd": 20000, "buy_qty": 0, "get_qty": 0,
             "bundle": [], "bundle_price_vnd": 0, "min_spend_vnd": 0, "channels": ["website", "store"],
             "stores": None, "tiers": [], "starts_at": None, "ends_at": None, "weekdays": [], "from_time": None,
             "until_time": None, "exclusive": False, "priority": 0, "requires_code": True, "max_uses": None,
             "max_uses_per_member": None, "max_discount_vnd": None},
            {"code": "hat-10", "name": "10% off the hat", "kind": "percent_off", "target": "sku",
             "skus": ["NON-LA-01"], "categories": [], "percent": 10, "amount_vnd": 0, "buy_qty": 0, "get_qty": 0,
             "bundle": [], "bundle_price_vnd": 0, "min_spend_vnd": 0, "channels": ["website", "store"],
             "stores": None, "tiers": [], "starts_at": None, "ends_at": None, "weekdays": [], "from_time": None,
             "until_time": None, "exclusive": False, "priority": 0, "requires_code": False, "max_uses": None,
             "max_uses_per_member": None, "max_discount_vnd": None},
        ],
        "fee_rules": [],
    },
    "signature": "v1=4ace7f160e0213a46a4f5b6fec3798bb0527dbf5240e7ae2959012ea3c2c03db",
}
SNAPSHOT_UNCHANGED = {"version": 42, "changed": False}

# A receipt the till priced as the policy does (the coupon's share on each line, as the engine shares it), except the
# hat: a manager sold it at 50,000 ₫ (a damaged brim). The shirts match the policy; the hat is one `override`
# exception; the code is consumed.
SALES_PRICED_REQUEST = {
    "receipts": [{
        "receipt_id": "Q1-T2-000130", "sold_at": "2025-06-01T10:25:00+07:00",
        "lines": [{"sku": "AO-THUN-001-M", "qty": 2, "unit_price_vnd": 179000, "discount_vnd": 16479},
                  {"sku": "NON-LA-01", "qty": 1, "unit_price_vnd": 85000, "discount_vnd": 35000}],
        "tenders": [{"type": "cash", "amount_vnd": 391521}],
        "codes": ["SUMMER20K"],
        "promotions": [{"promotion": "coupon-20k", "code": "SUMMER20K", "discount_vnd": 20000}],
        "price_override": {"reason": "damaged brim, sold as seen", "staff_id": "QL-0042"},
    }],
}
SALES_PRICED_ANSWER = {
    "results": [{"receipt_id": "Q1-T2-000130", "status": "applied", "result": {
        "receipt_id": "Q1-T2-000130", "sold_at": "2025-06-01T10:25:00+07:00", "total_vnd": 391521,
        "policy_total_vnd": 414500, "price_exceptions": 1,
        "lines": [{"sku": "AO-THUN-001-M", "qty": 2, "shortfall": 0, "late_for_count": False},
                  {"sku": "NON-LA-01", "qty": 1, "shortfall": 0, "late_for_count": False}],
        "needs_count": False, "taken_from_online": [], "points": None,
    }}],
    "summary": {"applied": 1, "duplicate": 0, "rejected": 0},
}

