"""Order placement and promises read plainly valid bodies without DRF's nested serializers (the hot write path):
wherever a fast reader accepts a body, the serializer must accept it too with exactly the same data and types, down
to the nested dicts, so the two can never answer differently. Every other body goes through the serializer, whose
400 is then the answer, unchanged. No database: validation reads none."""

import uuid

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orders.api.serializers import OrderInput, PromiseInput, plain_order_input, plain_promise_input
from orders.models import PaymentState

PROMISE_ID = "0b7e7dd2-6c3f-4b0e-9d0a-3f1c2b8e5a41"

numbers = st.one_of(
    st.integers(-200, 200), st.floats(-200, 200), st.sampled_from([float("nan"), float("inf"), 10**400]),
    st.booleans(), st.none(), st.text(max_size=5), st.sampled_from(["10.5", -90, 90, -180, 180, 90.0001, -180.5]),
)
# Strings as clients send them, trimmed or not, blank, at and over the length limits, with control, format and
# unusual space characters, and not strings at all.
texts = st.one_of(
    st.sampled_from(["Nguyễn Văn A", " padded ", "\tTab\n", "", "   ", "x" * 32, "x" * 33, " " + "x" * 32 + " ",
                     "x" * 64, "x" * 65, "x" * 200, "x" * 201, "A\nB", "A\x00B", "A\u200bB", "\xa0nbsp\xa0",
                     "0901 234 567", "+84901234567", "HCM-Q1-001"]),
    st.text(max_size=40), st.integers(-5, 5), st.floats(0, 10), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
)
skus = st.one_of(st.sampled_from(["AO-THUN-M", "TUI-VAI", " TUI-VAI", "TUI-VAI ", "", "x" * 64, "x" * 65, "A\nB"]),
                 st.text(max_size=70), st.integers(), st.none())
quantities = st.one_of(st.integers(-2, 10_002), st.floats(0, 3), st.booleans(), st.text(max_size=3), st.none())
lines = st.one_of(
    st.lists(st.one_of(st.fixed_dictionaries({"sku": skus, "qty": quantities}), st.integers(), st.none(),
                       st.fixed_dictionaries({"sku": skus})), max_size=5),
    st.none(), st.text(max_size=3), st.just({"sku": "AO-THUN-M", "qty": 1}),
    st.lists(st.just({"sku": "AO-THUN-M", "qty": 1}), min_size=99, max_size=102),
)
destinations = st.one_of(
    st.fixed_dictionaries({}, optional={"lat": numbers, "lon": numbers, "address": texts, "extra": texts}),
    st.none(), st.text(max_size=3), st.lists(st.integers(), max_size=2),
)
promises = st.one_of(
    st.sampled_from([PROMISE_ID, PROMISE_ID.upper(), PROMISE_ID.replace("-", ""), "{" + PROMISE_ID + "}",
                     "urn:uuid:" + PROMISE_ID, PROMISE_ID[:-1], "", "not-a-uuid", " " + PROMISE_ID]),
    st.uuids().map(str), st.integers(0, 2**128), st.integers(-3, 3), st.none(), st.booleans(),
)
choices = st.one_of(
    st.sampled_from(["delivery", "pickup", "Delivery", " pickup", "", "pending", "authorized", "paid", "cod", "PAID"]),
    st.text(max_size=8), st.integers(), st.none(),
)
flags = st.one_of(st.booleans(), st.integers(0, 1), st.sampled_from(["true", "false", "1", ""]), st.none())
loyalties = st.one_of(
    st.fixed_dictionaries({}, optional={"phone": texts, "hold_id": st.one_of(st.integers(-2, 2**64), numbers)}),
    st.none(), st.text(max_size=3),
)
customers = st.one_of(
    st.fixed_dictionaries({}, optional={"name": texts, "phone": texts, "email": texts}), st.none(), st.text(max_size=3),
)
codes = st.one_of(
    st.lists(texts, max_size=3), st.lists(st.just("TET2025"), min_size=10, max_size=11), st.just(["x" * 40]),
    st.just(["x" * 41]), st.none(), st.text(max_size=5), st.just({"code": "TET2025"}),
)

order_bodies = st.fixed_dictionaries(
    {},
    optional={
        "lines": lines, "customer": customers, "method": choices, "destination": destinations, "pickup_store": texts,
        "promise": promises, "option": texts, "payment_state": choices, "allow_split": flags, "loyalty": loyalties,
        "codes": codes, "note": texts,
    },
)

# Mostly valid bodies, near the bounds, so the fast reader's accepting side is exercised as much as its refusals,
# the serializer's cross-field rules included (a promise without an option, a pickup without a store, ...).


def mostly(valid, invalid):
    """valid about seven times in eight: a dozen fields each going wrong half the time would leave almost no valid
    body."""
    return st.integers(0, 7).flatmap(lambda i: invalid if i == 0 else valid)


plain_line = st.fixed_dictionaries({"sku": st.sampled_from(["AO-THUN-M", "TUI-VAI", " TUI-VAI", "ÁO-3"]),
                                    "qty": st.integers(1, 10_000)})
plain_lines = mostly(
    st.lists(plain_line, min_size=1, max_size=4),
    st.one_of(st.just([]), st.lists(plain_line, max_size=2).flatmap(
        lambda good: st.sampled_from([0, 10_001]).map(lambda qty: [*good, {"sku": "TUI-VAI", "qty": qty}]))),
)
plain_texts = mostly(
    st.sampled_from(["Nguyễn Văn A", "0901 234 567", " padded ", "HCM-Q1-001", "opt-express_1h-0", "x" * 32]),
    st.sampled_from(["x" * 33, " " * 3]),
)
plain_destinations = mostly(
    st.fixed_dictionaries({"lat": st.one_of(st.floats(-90, 90), st.integers(-90, 90)),
                           "lon": st.one_of(st.floats(-180, 180), st.integers(-180, 180))},
                          optional={"address": plain_texts}),
    st.one_of(
        st.fixed_dictionaries({"address": st.sampled_from(["12 Lê Lợi, Quận 1", "  ", " Bến Thành "])}),
        st.fixed_dictionaries({"lat": st.floats(-90, 90)}), st.just({}),
        st.fixed_dictionaries({"lat": st.floats(-91, 91), "lon": st.floats(-181, 181)}),
    ),
)
plain_customers = st.fixed_dictionaries({"name": plain_texts, "phone": plain_texts})
plain_codes = mostly(
    st.lists(st.sampled_from(["TET2025", " tet2025 ", "VABCD2345", "x" * 40]), max_size=3),
    st.sampled_from([[""], [" "], ["x" * 41], ["TET2025"] * 11, [None]]),
)
plain_extras = {
    "promise": st.one_of(st.uuids().map(str), st.just(PROMISE_ID.upper())), "option": plain_texts,
    "payment_state": st.sampled_from(["pending", "authorized", "paid", "cod"]), "allow_split": st.booleans(),
    "loyalty": st.fixed_dictionaries({}, optional={"phone": plain_texts, "hold_id": st.integers(0, 10**6)}),
    "codes": plain_codes,
}
plain_order_bodies = st.one_of(
    st.fixed_dictionaries(  # the website's delivery order
        {"lines": plain_lines, "customer": plain_customers, "method": st.just("delivery"),
         "destination": plain_destinations},
        optional=plain_extras,
    ),
    st.fixed_dictionaries(  # and its pickup order
        {"lines": plain_lines, "customer": plain_customers, "method": st.just("pickup"), "pickup_store": plain_texts},
        optional=plain_extras,
    ),
    st.fixed_dictionaries(  # anything missing or combined, for the cross-field rules
        {"lines": plain_lines, "customer": plain_customers, "method": st.sampled_from(["delivery", "pickup"])},
        optional={"destination": plain_destinations, "pickup_store": plain_texts, **plain_extras},
    ),
)

promise_bodies = st.fixed_dictionaries(
    {}, optional={"lines": lines, "destination": destinations, "pickup_store": texts, "allow_split": flags,
                  "customer": customers, "member_phone": texts, "codes": codes},
)
plain_promise_bodies = st.fixed_dictionaries(
    {"lines": plain_lines},
    optional={"destination": plain_destinations, "pickup_store": plain_texts, "allow_split": st.booleans(),
              "member_phone": plain_texts, "codes": plain_codes},
)
other_shapes = st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=3), st.integers())


def shape(value):
    """The value with the type of everything in it, recursively: equal values of other types (1 and 1.0, a str and a
    str enum member, a dict and an OrderedDict) must not pass for the same answer."""
    if isinstance(value, dict):
        return type(value), {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return type(value), [shape(v) for v in value]
    return type(value), value


def assert_same_as_serializer(serializer_class, body, fast):
    serializer = serializer_class(data=body)
    assert serializer.is_valid(), (body, serializer.errors)
    slow = dict(serializer.validated_data)
    assert fast == slow
    assert shape(fast) == shape(slow)


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(order_bodies, plain_order_bodies, plain_order_bodies, other_shapes))
def test_fast_order_reader_agrees_with_the_serializer(body):
    fast = plain_order_input(body)
    event("fast path" if fast is not None else "serializer")
    if fast is None:
        return  # the serializer decides, as before
    assert_same_as_serializer(OrderInput, body, fast)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(promise_bodies, plain_promise_bodies, plain_promise_bodies, other_shapes))
def test_fast_promise_reader_agrees_with_the_serializer(body):
    fast = plain_promise_input(body)
    event("fast path" if fast is not None else "serializer")
    if fast is None:
        return
    assert_same_as_serializer(PromiseInput, body, fast)


def test_typical_order_bodies_take_the_fast_path():
    delivery = {
        "lines": [{"sku": "AO-THUN-M", "qty": 2}, {"sku": "TUI-VAI", "qty": 1}, {"sku": "AO-THUN-M", "qty": 1}],
        "customer": {"name": "Nguyễn Văn A", "phone": "0901 234 567"},
        "method": "delivery",
        "destination": {"lat": 10.7725, "lon": 106.698},
    }
    fast = plain_order_input(delivery)
    assert fast == {
        "lines": {"AO-THUN-M": 3, "TUI-VAI": 1}, "customer": {"name": "Nguyễn Văn A", "phone": "0901 234 567"},
        "method": "delivery", "destination": {"lat": 10.7725, "lon": 106.698},
        "payment_state": PaymentState.PENDING, "allow_split": True,
    }
    assert fast["payment_state"] is PaymentState.PENDING
    assert_same_as_serializer(OrderInput, delivery, fast)

    promised = {**delivery, "promise": PROMISE_ID, "option": "express_1h-0", "payment_state": "paid",
                "allow_split": False, "loyalty": {"hold_id": 17}}
    fast = plain_order_input(promised)
    assert fast["promise"] == uuid.UUID(PROMISE_ID) and fast["loyalty"] == {"hold_id": 17}
    assert_same_as_serializer(OrderInput, promised, fast)

    pickup = {"lines": [{"sku": "NON-LA", "qty": 1}], "customer": {"name": " Trần Thị B ", "phone": "0912345678"},
              "method": "pickup", "pickup_store": "HCM-Q1-001", "loyalty": {"phone": "0912345678"}}
    fast = plain_order_input(pickup)
    assert fast["customer"]["name"] == "Trần Thị B"  # trimmed, as DRF trims
    assert_same_as_serializer(OrderInput, pickup, fast)

    coded = {**pickup, "codes": [" TET2025", "VABCD2345"]}
    fast = plain_order_input(coded)
    assert fast["codes"] == ["TET2025", "VABCD2345"] and "codes" not in plain_order_input(pickup)
    assert_same_as_serializer(OrderInput, coded, fast)


def test_bodies_the_cross_field_rules_refuse_go_to_the_serializer():
    base = {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "customer": {"name": "A", "phone": "0901234567"}}
    refused = [
        {**base, "method": "delivery", "promise": PROMISE_ID},  # a promise without an option
        {**base, "method": "pickup"},  # no store, no promise
        {**base, "method": "delivery"},  # no destination, no promise
        {**base, "method": "delivery", "destination": {"lat": 10.7}},  # lat without lon
        {**base, "method": "delivery", "destination": {"address": "  "}},  # blank address
    ]
    for body in refused:
        assert plain_order_input(body) is None
        assert not OrderInput(data=body).is_valid()
    assert plain_promise_input({"lines": base["lines"]}) is None
    assert not PromiseInput(data={"lines": base["lines"]}).is_valid()


def test_typical_promise_bodies_take_the_fast_path():
    for body in (
        {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "destination": {"lat": 10.7725, "lon": 106}},
        {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "pickup_store": "HCM-Q1-001", "allow_split": False},
        {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "pickup_store": "HCM-Q1-001", "member_phone": "0901 234 567",
         "codes": [" tet2025 ", "VABCD2345"]},
    ):
        fast = plain_promise_input(body)
        assert fast is not None
        assert_same_as_serializer(PromiseInput, body, fast)
