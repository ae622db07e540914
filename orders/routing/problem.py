"""The routing problem: typed representation and validation of the JSON contract (shared/design/routing-problem.md).

`parse_problem` is the only way in: everything downstream (candidates, greedy, CP-SAT, validator) relies on the
invariants it checks (unique ids, positive quantities, known stores in stock rows), so they are not re-checked there.

Workloads are kept in integer milli-units (`*_milli`) everywhere: the CP-SAT model needs integers, and using the same
integers in the greedy, the baselines and the validator means the hard capacity limit is one exact comparison, with
no float rounding that could let a plan pass one check and fail another.

Returns (courier collections choosing a receiving store) will be another problem `kind` with its own candidate rule
and limits (receiving capacity instead of stock); `kind` is read here so that such a file is refused clearly today.
"""

from __future__ import annotations

import marshal
import math
from dataclasses import dataclass, field, fields
from typing import Any

METHODS = ("delivery", "pickup")
MILLI = 1000  # workload and capacity resolution: 0.001 workload unit


class ProblemError(ValueError):
    """The problem is not valid. `message` says what and where; `code` is stable for API error mapping."""

    code = "invalid_routing_problem"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Weights:
    unserved: float = 1_000_000.0
    shipment: float = 500.0
    cost: float = 1.0
    balance: float = 0.0


@dataclass(frozen=True, slots=True)
class Settings:
    time_limit_s: float = 5.0
    weights: Weights = field(default_factory=Weights)
    candidates_k: int = 8  # nearest whole-capable stores kept per order (plus what a split needs)
    cost_per_km: float = 1.0  # distance cost model when an order has no explicit options
    cost_fixed: float = 0.0
    default_radius_km: float = 10.0  # for stores that give no delivery_radius_km
    # CP-SAT portfolio size. Measured on 2 cores: 8 workers (time-sliced) prove optimality on 200-order waves that
    # 2 workers leave at a 9% gap, because the bound comes from subsolvers a 2-worker portfolio does not run.
    num_workers: int = 8
    explain: bool = True  # include per-assignment candidates in the plan


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    lat: float
    lon: float
    capacity_milli: int
    methods: frozenset[str]
    radius_km: float


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class Option:
    store: str
    cost: float | None
    workload_milli: int | None


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    method: str
    lines: tuple[Line, ...]
    allow_split: bool
    workload_milli: int
    lat: float | None = None
    lon: float | None = None
    pickup_store: str | None = None
    options: tuple[Option, ...] | None = None

    @property
    def splittable(self) -> bool:
        """Pickup orders are never split: the customer collects one parcel at the store they chose."""
        return self.allow_split and self.method == "delivery"


@dataclass(slots=True)
class Problem:
    stores: tuple[Store, ...]
    stock: dict[tuple[str, str], int]  # (store id, sku) -> units the router may use (already net of safety stock)
    orders: tuple[Order, ...]
    settings: Settings
    store_index: dict[str, int]
    _stock_by_index: dict[tuple[int, str], int] | None = field(default=None, init=False, repr=False, compare=False)

    def stock_of(self, store: str, sku: str) -> int:
        return self.stock.get((store, sku), 0)

    def stock_by_index(self) -> dict[tuple[int, str], int]:
        """(store index, sku) -> units, built once: every Residual starts from it (a route() makes four or more).
        The caller must not modify it; like the rest of the Problem it is not modified after parsing."""
        if self._stock_by_index is None:
            si = self.store_index
            self._stock_by_index = {(si[s], sku): q for (s, sku), q in self.stock.items()}
        return self._stock_by_index


def slot_setters(cls: type, names: tuple[str, ...]) -> list[Any]:
    """The slot setters of a frozen slots dataclass, for the hot loops that build thousands of its instances: the
    generated __init__ calls object.__setattr__ once per field, and setting the slots directly (object.__new__,
    then each setter) builds the same instance in half the time. `names` must be every field, in order, so that
    a field added later fails here at import rather than leaving an instance half built."""
    if tuple(f.name for f in fields(cls)) != names or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: fields {names} expected, no __post_init__")
    return [cls.__dict__[n].__set__ for n in names]


_new = object.__new__
_st_id, _st_lat, _st_lon, _st_cap, _st_methods, _st_radius = slot_setters(
    Store, ("id", "lat", "lon", "capacity_milli", "methods", "radius_km")
)
_op_store, _op_cost, _op_workload = slot_setters(Option, ("store", "cost", "workload_milli"))


def _make_store(sid: str, lat: float, lon: float, capacity_milli: int, methods: frozenset[str], radius: float) -> Store:
    s = _new(Store)
    _st_id(s, sid)
    _st_lat(s, lat)
    _st_lon(s, lon)
    _st_cap(s, capacity_milli)
    _st_methods(s, methods)
    _st_radius(s, radius)
    return s


def _make_option(store: str, cost: float | None, workload_milli: int | None) -> Option:
    o = _new(Option)
    _op_store(o, store)
    _op_cost(o, cost)
    _op_workload(o, workload_milli)
    return o


def line_workloads(workload_milli: int, n_lines: int) -> list[int]:
    """Share an order's workload over its lines in integers that add up exactly (a split shipment carries the
    workload of the lines it picks; all of them together cost exactly the order's workload)."""
    base, extra = divmod(workload_milli, n_lines)
    return [base + (1 if i < extra else 0) for i in range(n_lines)]


# --- parsing ------------------------------------------------------------------------------------------------------

_MEMO_SIZE = 64


def exact_key(raw: Any) -> bytes | None:
    """Bytes that determine `raw` exactly, or None if it holds anything but plain JSON-like values. marshal (version
    2: no back-references, no interning flags, floats as their exact bits) writes the exact type of every value (dict
    and list, not subclasses; True, not 1; 1, not 1.0), in order, and refuses anything else, so equal keys mean
    inputs that parsing cannot tell apart."""
    try:
        return marshal.dumps(raw, 2)
    except ValueError:
        return None


def _num(value: Any, where: str, *, minimum: float | None = 0.0, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    # bool is an int in Python; `"capacity": true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProblemError(f"{where} must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ProblemError(f"{where} must be >= {minimum:g}, got {value!r}")
    return float(value)


def _int(value: Any, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        raise ProblemError(f"{where} must be an integer, got {value!r}")
    if value < minimum:
        raise ProblemError(f"{where} must be >= {minimum}, got {value!r}")
    return int(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProblemError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProblemError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(container: dict[str, Any], key: str, where: str, *, required: bool = True) -> list[Any]:
    if key not in container:
        if required:
            raise ProblemError(f"{where}: missing field {key!r}")
        return []
    value = container[key]
    if not isinstance(value, list):
        raise ProblemError(f"{where}.{key} must be a list, got {type(value).__name__}")
    return value


def _milli(value: float) -> int:
    return int(round(value * MILLI))


def _lat_lon(raw: dict[str, Any], where: str) -> tuple[float, float]:
    for key in ("lat", "lon"):
        if key not in raw:
            raise ProblemError(f"{where}: missing field {key!r}")
    lat = _num(raw["lat"], f"{where}.lat", minimum=-90.0)
    lon = _num(raw["lon"], f"{where}.lon", minimum=-180.0)
    if lat > 90 or lon > 180:
        raise ProblemError(f"{where}: lat/lon out of range ({lat}, {lon})")
    return lat, lon


_SETTINGS_MEMO: dict[bytes | None, Settings] = {}


def _parse_settings(raw: Any) -> Settings:
    # Every checkout problem carries the same few settings: parse each distinct one once. The key is exact (types
    # and float bits included), so a memoised Settings is the one parsing would build; only valid settings are kept.
    key = exact_key(raw)
    if key is not None:
        memo = _SETTINGS_MEMO.get(key)
        if memo is not None:
            return memo
    settings = _parse_settings_raw(raw)
    if key is not None:
        if len(_SETTINGS_MEMO) >= _MEMO_SIZE:
            _SETTINGS_MEMO.clear()
        _SETTINGS_MEMO[key] = settings
    return settings


def _parse_settings_raw(raw: Any) -> Settings:
    raw = _obj(raw, "settings") if raw is not None else {}
    defaults = Settings()
    w_raw = _obj(raw.get("weights") or {}, "settings.weights")
    unknown = set(w_raw) - {"unserved", "shipment", "cost", "balance"}
    if unknown:
        raise ProblemError(f"settings.weights: unknown weight(s) {sorted(unknown)}")
    dw = Weights()
    weights = Weights(**{k: _num(w_raw.get(k, getattr(dw, k)), f"settings.weights.{k}") for k in dw.__slots__})
    k = _int(raw.get("candidates_k", defaults.candidates_k), "settings.candidates_k", minimum=1)
    workers = _int(raw.get("num_workers", defaults.num_workers), "settings.num_workers", minimum=1)
    explain = raw.get("explain", defaults.explain)
    if not isinstance(explain, bool):
        raise ProblemError("settings.explain must be true or false")
    return Settings(
        time_limit_s=_num(raw.get("time_limit_s", defaults.time_limit_s), "settings.time_limit_s"),
        weights=weights,
        candidates_k=k,
        cost_per_km=_num(raw.get("cost_per_km", defaults.cost_per_km), "settings.cost_per_km"),
        cost_fixed=_num(raw.get("cost_fixed", defaults.cost_fixed), "settings.cost_fixed"),
        default_radius_km=_num(raw.get("default_radius_km", defaults.default_radius_km), "settings.default_radius_km"),
        num_workers=workers,
        explain=explain,
    )


_NUMBER = (int, float)
_METHOD_SETS: dict[tuple[str, ...], frozenset[str]] = {}
# Below this a number is certainly finite and converts to float: the inline checks compare against it instead of
# calling math.isfinite (an int too large for a float goes to the helpers, which fail on it as before).
_BIG = 1e300


def _fast_store(raw: Any, default_radius_km: float = math.nan) -> Store | None:
    """The common, valid store row checked inline: at checkout a 1,000-store chain is parsed for every order, and
    the helper-per-field path below (kept for its precise messages) would take most of the routing time."""
    if type(raw) is not dict:
        return None
    sid, lat, lon, cap = raw.get("id"), raw.get("lat"), raw.get("lon"), raw.get("capacity")
    methods, radius = raw.get("methods", METHODS), raw.get("delivery_radius_km")
    if not (
        type(sid) is str
        and sid.strip()
        and type(lat) in _NUMBER
        and -90 <= lat <= 90
        and type(lon) in _NUMBER
        and -180 <= lon <= 180
        and type(cap) in _NUMBER
        and 0 <= cap < math.inf
        and (radius is None or (type(radius) in _NUMBER and 0 <= radius < math.inf))
        and type(methods) in (list, tuple)
    ):
        return None
    key = tuple(methods)
    mset = _METHOD_SETS.get(key)
    if mset is None:
        if any(m not in METHODS for m in key):
            return None
        mset = _METHOD_SETS[key] = frozenset(key)
    return _make_store(
        sid,
        float(lat),
        float(lon),
        int(math.floor(cap * MILLI + 1e-6)),
        mset,
        float(radius) if radius is not None else default_radius_km,
    )


def _parse_store(raw: Any, i: int) -> Store:
    where = f"stores[{i}]"
    raw = _obj(raw, where)
    sid = _str(raw.get("id"), f"{where}.id")
    where = f"store {sid!r}"
    lat, lon = _lat_lon(raw, where)
    if "capacity" not in raw:
        # Capacity is a hard limit: an absent one is more likely a bug in the file than "unlimited".
        raise ProblemError(f"{where}: missing field 'capacity'")
    capacity = _num(raw["capacity"], f"{where}.capacity")
    methods = raw.get("methods", list(METHODS))
    if not isinstance(methods, list) or any(m not in METHODS for m in methods):
        raise ProblemError(f"{where}.methods must be a list drawn from {list(METHODS)}, got {methods!r}")
    radius = _num(raw.get("delivery_radius_km"), f"{where}.delivery_radius_km", allow_none=True)
    return Store(
        id=sid,
        lat=lat,
        lon=lon,
        # floor, not round: rounding a capacity up would let a plan exceed the real limit
        capacity_milli=int(math.floor(capacity * MILLI + 1e-6)),
        methods=frozenset(methods),
        radius_km=radius if radius is not None else math.nan,  # NaN: filled from settings below
    )


def _fast_number(value: Any, minimum: float) -> bool:
    return type(value) in _NUMBER and minimum <= value < _BIG


def _fast_order(raw: Any) -> Order | None:
    """The common, valid order checked inline (the checkout's one order carries a dozen or more options), building
    exactly what _parse_order builds; None sends anything unusual to _parse_order for its precise messages."""
    if type(raw) is not dict:
        return None
    oid, method, raw_lines = raw.get("id"), raw.get("method", "delivery"), raw.get("lines")
    allow_split = raw.get("allow_split", False)
    if not (
        type(oid) is str
        and oid.strip()
        and method in METHODS
        and type(raw_lines) is list
        and raw_lines
        and (allow_split is True or allow_split is False)
    ):
        return None
    merged: dict[str, int] = {}
    for rl in raw_lines:
        if type(rl) is not dict:
            return None
        sku, qty = rl.get("sku"), rl.get("qty")
        if not (type(sku) is str and type(qty) is int and qty >= 1 and sku.strip()):
            return None
        merged[sku] = merged.get(sku, 0) + qty
    lines = tuple(Line(sku, qty) for sku, qty in merged.items())
    workload = raw.get("workload", len(lines))
    if not (_fast_number(workload, 0) and workload > 0):
        return None
    options = None
    raw_opts = raw.get("options")
    if raw_opts is not None:
        if type(raw_opts) is not list:
            return None
        seen: set[str] = set()
        opts = []
        for ro in raw_opts:
            if type(ro) is not dict:
                return None
            store, cost, wl = ro.get("store"), ro.get("cost"), ro.get("workload")
            if not (
                type(store) is str
                and store not in seen
                and store.strip()
                and (cost is None or _fast_number(cost, 0))
                and (wl is None or (_fast_number(wl, 0) and wl > 0))
            ):
                return None
            seen.add(store)
            opts.append(
                _make_option(
                    store,
                    float(cost) if cost is not None else None,
                    int(round(float(wl) * MILLI)) if wl is not None else None,
                )
            )
        options = tuple(opts)
    lat = lon = pickup_store = None
    if method == "delivery":
        if options is None or "lat" in raw or "lon" in raw:
            lat, lon = raw.get("lat"), raw.get("lon")
            if not (_fast_number(lat, -90.0) and lat <= 90 and _fast_number(lon, -180.0) and lon <= 180):
                return None
            lat, lon = float(lat), float(lon)
    else:
        pickup_store = raw.get("pickup_store")
        if not (type(pickup_store) is str and pickup_store.strip()):
            return None
    return Order(
        id=oid,
        method=method,
        lines=lines,
        allow_split=allow_split,
        workload_milli=max(1, int(round(float(workload) * MILLI))),
        lat=lat,
        lon=lon,
        pickup_store=pickup_store,
        options=options,
    )


def _parse_order(raw: Any, i: int) -> Order:
    where = f"orders[{i}]"
    raw = _obj(raw, where)
    oid = _str(raw.get("id"), f"{where}.id")
    where = f"order {oid!r}"
    method = raw.get("method", "delivery")
    if method not in METHODS:
        raise ProblemError(f"{where}.method must be one of {list(METHODS)}, got {method!r}")
    raw_lines = _list(raw, "lines", where)
    if not raw_lines:
        raise ProblemError(f"{where}: no lines")
    merged: dict[str, int] = {}
    for j, rl in enumerate(raw_lines):
        rl = _obj(rl, f"{where}.lines[{j}]")
        sku = _str(rl.get("sku"), f"{where}.lines[{j}].sku")
        qty = _int(rl.get("qty"), f"{where}.lines[{j}].qty", minimum=1)
        # A cart may carry the same SKU twice (two promotions); for picking it is one line.
        merged[sku] = merged.get(sku, 0) + qty
    lines = tuple(Line(sku, qty) for sku, qty in merged.items())
    allow_split = raw.get("allow_split", False)
    if not isinstance(allow_split, bool):
        raise ProblemError(f"{where}.allow_split must be true or false")
    workload = _num(raw.get("workload", len(lines)), f"{where}.workload")
    if workload <= 0:
        raise ProblemError(f"{where}.workload must be > 0")
    options = None
    if raw.get("options") is not None:
        raw_opts = _list(raw, "options", where)
        seen: set[str] = set()
        opts = []
        for j, ro in enumerate(raw_opts):
            ro = _obj(ro, f"{where}.options[{j}]")
            store = _str(ro.get("store"), f"{where}.options[{j}].store")
            if store in seen:
                raise ProblemError(f"{where}: store {store!r} listed twice in options")
            seen.add(store)
            cost = _num(ro.get("cost"), f"{where}.options[{j}].cost", allow_none=True)
            wl = _num(ro.get("workload"), f"{where}.options[{j}].workload", allow_none=True)
            if wl is not None and wl <= 0:
                raise ProblemError(f"{where}.options[{j}].workload must be > 0")
            opts.append(Option(store, cost, _milli(wl) if wl is not None else None))
        options = tuple(opts)
    lat = lon = None
    pickup_store = None
    if method == "delivery":
        if options is None or "lat" in raw or "lon" in raw:
            lat, lon = _lat_lon(raw, where)
    else:
        pickup_store = _str(raw.get("pickup_store"), f"{where}.pickup_store")
    return Order(
        id=oid,
        method=method,
        lines=lines,
        allow_split=allow_split,
        workload_milli=max(1, _milli(workload)),
        lat=lat,
        lon=lon,
        pickup_store=pickup_store,
        options=options,
    )


def _fast_stock(rows: list[Any], store_index: dict[str, int]) -> dict[tuple[str, str], int] | None:
    """The stock rows when every one is a plain valid row of a known store and no (store, sku) comes twice; None
    otherwise, and the row-by-row loop in parse_problem finds the first bad row and says what is wrong with it."""
    stock: dict[tuple[str, str], int] = {}
    for row in rows:
        if type(row) is not dict:
            return None
        store, sku, qty = row.get("store"), row.get("sku"), row.get("qty")
        if not (type(store) is str and type(sku) is str and type(qty) is int and qty >= 0 and sku and store in store_index):
            return None
        stock[(store, sku)] = qty
    return stock if len(stock) == len(rows) else None


def _parse_stock(rows: list[Any], store_index: dict[str, int]) -> dict[tuple[str, str], int]:
    stock: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        # A chain sends tens of thousands of rows: the common valid row is checked inline, the helpers (with their
        # precise messages) only run when something is off.
        store = row.get("store") if type(row) is dict else None
        sku = row.get("sku") if store is not None else None
        qty = row.get("qty") if sku is not None else None
        if not (type(store) is str and type(sku) is str and type(qty) is int and qty >= 0 and store and sku):
            where = f"stock[{i}]"
            row = _obj(row, where)
            store = _str(row.get("store"), f"{where}.store")
            sku = _str(row.get("sku"), f"{where}.sku")
            qty = _int(row.get("qty"), f"{where}.qty (store {store!r}, sku {sku!r})", minimum=0)
        if store not in store_index:
            raise ProblemError(f"stock[{i}]: unknown store {store!r}")
        if (store, sku) in stock:
            where = f"stock[{i}]"
            raise ProblemError(f"{where}: duplicate stock row for store {store!r}, sku {sku!r}")
        stock[(store, sku)] = qty
    return stock


def parse_problem(raw: Any) -> Problem:
    """Validate a problem in the JSON contract and return its typed form. Raises ProblemError with a message that
    names the offending store/order/row. Unknown stores in an order's options or pickup_store are not errors: the
    order is reported unassigned with reason `unknown_store` (an operations what-if may remove a store)."""
    if isinstance(raw, Problem):
        return raw
    raw = _obj(raw, "problem")
    kind = raw.get("kind", "fulfilment")
    if kind != "fulfilment":
        raise ProblemError(f"unsupported problem kind {kind!r} (only 'fulfilment')")
    settings = _parse_settings(raw.get("settings"))

    stores: list[Store] = []
    store_index: dict[str, int] = {}
    default_radius = settings.default_radius_km
    for i, rs in enumerate(_list(raw, "stores", "problem")):
        store = _fast_store(rs, default_radius) or _parse_store(rs, i)
        if store.id in store_index:
            raise ProblemError(f"duplicate store id {store.id!r}")
        if math.isnan(store.radius_km):
            store = Store(
                store.id, store.lat, store.lon, store.capacity_milli, store.methods, settings.default_radius_km
            )
        store_index[store.id] = len(stores)
        stores.append(store)

    rows = _list(raw, "stock", "problem", required=False)
    stock = _fast_stock(rows, store_index)
    if stock is None:
        stock = _parse_stock(rows, store_index)

    orders: list[Order] = []
    seen: set[str] = set()
    for i, ro in enumerate(_list(raw, "orders", "problem")):
        order = _fast_order(ro) or _parse_order(ro, i)
        if order.id in seen:
            raise ProblemError(f"duplicate order id {order.id!r}")
        seen.add(order.id)
        orders.append(order)

    return Problem(tuple(stores), stock, tuple(orders), settings, store_index)

