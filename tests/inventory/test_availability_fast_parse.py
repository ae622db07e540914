"""The availability endpoint reads plainly valid bodies without DRF's nested serializer (a hot path): wherever that
fast reader accepts a body, the serializer must accept it too with exactly the same data and types, so the two can
never answer differently."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory.api.serializers import CartAvailabilityInput, plain_cart_availability_input

numbers = st.one_of(
    st.integers(-200, 200), st.floats(-200, 200), st.sampled_from([float("nan"), float("inf")]), st.booleans(),
    st.none(),
    st.text(max_size=5), st.sampled_from([0, 0.1, 0.05, 10, 100, 100.5, -90, 90, 180, -180]),
)
skus = st.one_of(st.sampled_from(["AT-COT-TRG-M", "SKU-1", " SKU-2", "SKU-3 ", "", "x" * 64, "x" * 65, "A\nB"]),
                 st.text(max_size=70), st.integers(), st.none())
quantities = st.one_of(st.integers(-2, 10_002), st.floats(0, 3), st.booleans(), st.text(max_size=3), st.none())
lines = st.lists(
    st.one_of(st.fixed_dictionaries({"sku": skus, "qty": quantities}), st.integers(), st.none(),
              st.fixed_dictionaries({"sku": skus})),
    max_size=6,
)
bodies = st.fixed_dictionaries(
    {"lat": numbers, "lon": numbers, "lines": st.one_of(lines, st.none(), st.text(max_size=3))},
    optional={
        "radius_km": numbers, "limit": numbers, "only_whole_cart": st.one_of(st.booleans(), st.integers(0, 1), st.none()),
        "service": st.one_of(st.sampled_from(["delivery", "pickup", "returns", "nope"]), st.integers()),
        "address": st.text(max_size=10),
    },
)

# Mostly valid bodies, near the bounds, so the fast reader's accepting side is exercised as much as its refusals.
plain_bodies = st.fixed_dictionaries(
    {"lat": st.one_of(st.floats(-90, 90), st.integers(-90, 90)), "lon": st.one_of(st.floats(-180, 180), st.integers(-180, 180)),
     "lines": st.lists(st.fixed_dictionaries({"sku": st.sampled_from(["AT-1", "AT-2", "ÁO-3"]),
                                              "qty": st.integers(0, 10_001)}), min_size=1, max_size=4)},
    optional={"radius_km": st.one_of(st.floats(0, 120), st.integers(0, 120)), "limit": st.integers(0, 101),
              "only_whole_cart": st.booleans(), "service": st.sampled_from(["delivery", "pickup", "returns"])},
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(bodies, plain_bodies))
def test_fast_reader_agrees_with_the_serializer(body):
    fast = plain_cart_availability_input(body)
    if fast is None:
        return  # the serializer decides, as before
    serializer = CartAvailabilityInput(data=body)
    assert serializer.is_valid(), (body, serializer.errors)
    slow = dict(serializer.validated_data)
    assert fast == slow
    assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in slow.items()}


def test_a_plain_body_takes_the_fast_path():
    body = {"lat": 10.7769, "lon": 106.7009, "radius_km": 5, "lines": [{"sku": "AT-COT-TRG-M", "qty": 1}]}
    serializer = CartAvailabilityInput(data=body)
    assert serializer.is_valid()
    assert plain_cart_availability_input(body) == dict(serializer.validated_data)
