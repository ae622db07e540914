"""Generate a synthetic store chain at scale: stores, opening hours, products and opening stock, with bulk inserts."""

import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import time as dtime

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections, transaction
from django.db.models import Q
from tqdm import tqdm

from inventory import services
from inventory.models import OpeningHours, Product, Reservation, Stock, StockMovement, Store

STORE_PREFIX = "GEN-"  # store codes GEN-HCM-0001 ...; the demo chain's are HCM-Q1-001 ...
SKU_PREFIX = "GEN-"  # SKUs GEN-AT-000001 ...; the demo chain's are AT-COT-TRG-S ...
BARCODE_PREFIX = "8939"  # GS1 Viet Nam (893), then a block the demo chain (8936...) does not use
ACTOR = "generate_chain"
KM_PER_DEGREE_LAT = 111.32

# code, city name, centre, radius (km), weight, districts
CITIES = {
    "hcm": (
        "HCM", "Ho Chi Minh City", (10.7769, 106.7009), 12.0, 55,
        ["Quận 1", "Quận 3", "Quận 4", "Quận 5", "Quận 6", "Quận 7", "Quận 8", "Quận 10", "Quận 11", "Quận 12",
         "Bình Thạnh", "Phú Nhuận", "Gò Vấp", "Tân Bình", "Tân Phú", "Bình Tân", "Thủ Đức"],
    ),
    "hn": (
        "HN", "Hà Nội", (21.0285, 105.8542), 10.0, 35,
        ["Hoàn Kiếm", "Ba Đình", "Đống Đa", "Hai Bà Trưng", "Tây Hồ", "Cầu Giấy", "Thanh Xuân", "Hoàng Mai",
         "Long Biên", "Nam Từ Liêm", "Bắc Từ Liêm", "Hà Đông"],
    ),
    "dn": (
        "DN", "Đà Nẵng", (16.0544, 108.2022), 6.0, 10,
        ["Hải Châu", "Thanh Khê", "Sơn Trà", "Ngũ Hành Sơn", "Liên Chiểu", "Cẩm Lệ"],
    ),
}
STREETS = ["Nguyễn Huệ", "Lê Lợi", "Trần Hưng Đạo", "Hai Bà Trưng", "Lý Thường Kiệt", "Nguyễn Trãi", "Lê Duẩn",
           "Điện Biên Phủ", "Cách Mạng Tháng Tám", "Phan Đình Phùng", "Hoàng Diệu", "Quang Trung", "Bạch Đằng",
           "Nguyễn Văn Linh", "Võ Văn Kiệt", "Trường Chinh", "Lạc Long Quân", "Tôn Đức Thắng"]
BRANDS = ["Sóng", "Mây", "Sen", "Lúa", "Tre", "Gió"]

# slug, noun, short code, price range (VND), sizes
CATEGORIES = [
    ("ao-thun", "Áo thun", "AT", (99_000, 349_000), ["S", "M", "L", "XL"]),
    ("ao-so-mi", "Áo sơ mi", "SM", (249_000, 699_000), ["S", "M", "L", "XL"]),
    ("quan-jean", "Quần jean", "QJ", (349_000, 899_000), ["28", "29", "30", "31", "32", "34"]),
    ("quan-kaki", "Quần kaki", "QK", (299_000, 699_000), ["28", "30", "32", "34"]),
    ("vay", "Váy", "VA", (299_000, 999_000), ["S", "M", "L"]),
    ("ao-dai", "Áo dài", "AD", (599_000, 2_499_000), ["S", "M", "L"]),
    ("giay", "Giày", "GI", (399_000, 1_899_000), ["38", "39", "40", "41", "42", "43"]),
    ("dep", "Dép", "DE", (59_000, 299_000), ["38", "39", "40", "41", "42"]),
    ("tui-xach", "Túi xách", "TX", (299_000, 1_499_000), [""]),
    ("mu-non", "Mũ nón", "MN", (79_000, 349_000), [""]),
    ("do-lot", "Đồ lót", "DL", (49_000, 249_000), ["S", "M", "L"]),
    ("do-ngu", "Đồ ngủ", "DN", (149_000, 499_000), ["S", "M", "L"]),
    ("khau-trang", "Khẩu trang", "KT", (19_000, 89_000), [""]),
    ("phu-kien", "Phụ kiện", "PK", (39_000, 299_000), [""]),
    ("gia-dung", "Gia dụng", "GD", (49_000, 899_000), [""]),
]
MATERIALS = ["cotton", "lụa", "linen", "thun lạnh", "kaki", "da", "vải bố", "len", "tre", "jean"]
COLOURS = ["trắng", "đen", "xanh navy", "be", "đỏ đô", "xám", "xanh rêu", "hồng pastel", "vàng nghệ", "nâu"]
STYLES = ["cơ bản", "dáng rộng", "ôm", "cổ tròn", "cổ bẻ", "họa tiết", "thêu tay", "basic", "thể thao", "công sở"]

# Opening hours patterns, as (weekday, opens, closes) generators.
HOURS = [
    (0.55, [(d, dtime(8), dtime(22)) for d in range(7)]),
    (0.20, [(d, dtime(9), dtime(21, 30)) for d in range(7)]),
    (0.10, [(d, dtime(7), dtime(23)) for d in range(5)] + [(d, dtime(8), dtime(22)) for d in (5, 6)]),
    # a small shop with a lunch break, closed on Sunday
    (0.10, [(d, o, c) for d in range(6) for o, c in ((dtime(8), dtime(12)), (dtime(13, 30), dtime(21)))]),
    (0.05, [(d, dtime(0), dtime(23, 59, 59)) for d in range(7)]),  # 24/7
]


def ean13(first12: str) -> str:
    """An EAN-13 code: the 12 digits and their check digit."""
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


def split_counts(total: int, weights: list[int]) -> list[int]:
    """`total` shared in proportion to `weights` (largest remainder), so 1,000 stores are exactly 550/350/100."""
    wsum = sum(weights)
    exact = [total * w / wsum for w in weights]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def point_in_disc(rng: random.Random, lat: float, lon: float, radius_km: float) -> tuple[float, float]:
    """A uniformly random point within `radius_km` of (lat, lon)."""
    r = radius_km * math.sqrt(rng.random())
    theta = rng.uniform(0, 2 * math.pi)
    dlat = r * math.cos(theta) / KM_PER_DEGREE_LAT
    dlon = r * math.sin(theta) / (KM_PER_DEGREE_LAT * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def generated_stores():
    return Store.objects.filter(code__startswith=STORE_PREFIX)


def generated_products():
    return Product.objects.filter(sku__startswith=SKU_PREFIX)


class Command(BaseCommand):
    help = (
        "Generate a synthetic chain at scale: N stores (codes GEN-HCM-0001 ...) over Ho Chi Minh City (~55 %), "
        "Hà Nội (~35 %) and Đà Nẵng (~10 %) with opening hours and services, M products (SKUs GEN-..., EAN-13 "
        "barcodes 8939...), and opening stock for every store x SKU with its opening-balance movement (so the "
        "inventory audit holds). Deterministic for a seed. On PostgreSQL stock is generated server-side in batches "
        "of stores (1,000 x 10,000 = 10 M rows in a few minutes); on SQLite through the ordinary loader (small "
        "sizes only). --replace first deletes the previously generated chain INCLUDING its stock ledger "
        "(movements) and reservations: acceptable only because the chain is synthetic; never use the GEN- "
        "prefixes for real stores or products."
    )

    def add_arguments(self, parser):
        parser.add_argument("--stores", type=int, required=True)
        parser.add_argument("--skus", type=int, required=True)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--cities", default="hcm,hn,dn", help="comma-separated subset of hcm,hn,dn")
        parser.add_argument("--replace", action="store_true", help="delete the previous generated chain first")
        parser.add_argument("--batch-stores", type=int, default=25, help="stores per stock INSERT (PostgreSQL)")
        parser.add_argument(
            "--jobs", type=int, default=min(2, os.cpu_count() or 1),
            help="stock batches loaded at once on PostgreSQL, each in its own connection (default: up to 2)",
        )
        parser.add_argument("--sqlite-max-rows", type=int, default=200_000, help=("refuse larger chains on SQLite"))

    def handle(self, *args, stores: int, skus: int, seed: int, cities: str, replace: bool, batch_stores: int,
               sqlite_max_rows: int, jobs: int, **options):
        city_keys = [c.strip().lower() for c in cities.split(",") if c.strip()]
        unknown = [c for c in city_keys if c not in CITIES]
        if unknown or not city_keys:
            raise CommandError(f"unknown cities {unknown}; choose from {','.join(CITIES)}")
        if stores < 1 or skus < 1 or stores > 9999 or skus > 999_999:
            raise CommandError("need 1 <= stores <= 9999 and 1 <= skus <= 999999")
        postgres = connection.vendor == "postgresql"
        if not postgres and stores * skus > sqlite_max_rows:
            raise CommandError(
                f"{stores * skus} stock rows is too many for SQLite (limit {sqlite_max_rows}); use PostgreSQL"
            )
        self.progress = options.get("verbosity", 1) >= 1
        started = time.perf_counter()
        if generated_stores().exists() or generated_products().exists():
            if not replace:
                raise CommandError("a generated chain already exists; pass --replace to delete it first")
            self._delete_generated()
        t_deleted = time.perf_counter()
        rng = random.Random(seed)
        with transaction.atomic():
            store_ids = self._create_stores(rng, stores, city_keys)
            product_ids = self._create_products(rng, skus)
        t_catalogue = time.perf_counter()
        if connection.in_atomic_block:
            jobs = 1  # other connections would not see the uncommitted stores (e.g. inside a test transaction)
        created = self._load_stock(
            store_ids, product_ids, seed=seed, postgres=postgres, batch_stores=batch_stores, jobs=max(1, jobs)
        )
        t_stock = time.perf_counter()
        if postgres:
            with connection.cursor() as cursor:
                for model in (Store, OpeningHours, Product, Stock, StockMovement):
                    cursor.execute(f"ANALYZE {model._meta.db_table}")
        done = time.perf_counter()
        if self.progress:
            self.stdout.write(
                self.style.SUCCESS(
                    f"generated chain: {len(store_ids)} stores, {len(product_ids)} products, {created} stock rows "
                    f"(delete {t_deleted - started:.1f} s, catalogue {t_catalogue - t_deleted:.1f} s, "
                    f"stock {t_stock - t_catalogue:.1f} s, analyze {done - t_stock:.1f} s, total {done - started:.1f} s)"
                )
            )

    # --- deletion --------------------------------------------------------------------------------------------------

    def _delete_generated(self) -> None:
        """Delete the generated chain with its ledger. Refused (nothing deleted) if orders or other records still
        point at its stores or products."""
        store_ids = list(generated_stores().values_list("pk", flat=True))
        product_ids = list(generated_products().values_list("pk", flat=True))
        t0 = time.perf_counter()
        with transaction.atomic():
            touching = Q(store_id__in=store_ids) | Q(product_id__in=product_ids)
            Reservation.objects.filter(touching).delete()
            with connection.cursor() as cursor:
                # Raw DELETEs: the ORM would fetch 10 M ids first. Ledger rows are deleted only because the chain
                # is synthetic.
                for table in (StockMovement._meta.db_table, Stock._meta.db_table):
                    cursor.execute(
                        f"DELETE FROM {table} WHERE store_id = ANY(%s) OR product_id = ANY(%s)", [store_ids, product_ids]
                    )
            OpeningHours.objects.filter(store_id__in=store_ids).delete()
            from django.db.models.deletion import ProtectedError, RestrictedError

            try:
                Store.objects.filter(pk__in=store_ids).delete()
                Product.objects.filter(pk__in=product_ids).delete()
            except (ProtectedError, RestrictedError) as exc:
                raise CommandError(
                    f"cannot delete the generated chain: other records refer to it ({exc.args[0]}); nothing deleted"
                ) from exc
        if self.progress:
            self.stderr.write(
                f"deleted the generated chain ({len(store_ids)} stores, {len(product_ids)} products) "
                f"in {time.perf_counter() - t0:.1f} s"
            )

    # --- catalogue -------------------------------------------------------------------------------------------------

    def _create_stores(self, rng: random.Random, count: int, city_keys: list[str]) -> list[int]:
        counts = split_counts(count, [CITIES[c][4] for c in city_keys])
        stores, hours = [], []
        hour_weights = [w for w, _ in HOURS]
        for key, n in zip(city_keys, counts, strict=True):
            short, city_name, (lat, lon), radius, _w, districts = CITIES[key]
            for i in range(1, n + 1):
                s_lat, s_lon = point_in_disc(rng, lat, lon, radius)
                district = rng.choice(districts)
                kind = rng.random()
                delivery, pickup, returns = (True, True, True) if kind < 0.85 else (
                    (False, True, True) if kind < 0.95 else (False, True, False)
                )
                stores.append(
                    Store(
                        code=f"{STORE_PREFIX}{short}-{i:04d}",
                        name=f"{rng.choice(BRANDS)} {district} {i:04d}",
                        address=f"{rng.randint(1, 399)} {rng.choice(STREETS)}, {district}",
                        district=district,
                        city=city_name,
                        lat=s_lat,
                        lon=s_lon,
                        timezone="Asia/Ho_Chi_Minh",
                        offers_delivery=delivery,
                        offers_pickup=pickup,
                        offers_returns=returns,
                        delivery_radius_km=rng.choice([5, 5.5, 6, 6.5, 7, 7.5, 8, 8.5, 9, 9.5, 10]),
                        picking_capacity_per_hour=rng.randint(10, 60),
                    )
                )
                hours.append(rng.choices(range(len(HOURS)), weights=hour_weights)[0])
        created = Store.objects.bulk_create(stores, batch_size=1000)
        if connection.vendor != "postgresql" or any(s.pk is None for s in created):
            by_code = dict(generated_stores().values_list("code", "pk"))
            for s in created:
                s.pk = by_code[s.code]
        OpeningHours.objects.bulk_create(
            [
                OpeningHours(store_id=s.pk, weekday=d, opens=o, closes=c)
                for s, pattern in zip(created, hours, strict=True)
                for d, o, c in HOURS[pattern][1]
            ],
            batch_size=5000,
        )
        return [s.pk for s in created]

    def _create_products(self, rng: random.Random, count: int) -> list[int]:
        taken = set(Product.objects.filter(barcode__startswith=BARCODE_PREFIX).values_list("barcode", flat=True))
        # A permutation of 0..10^8-1 (multiplier coprime with 10), so barcodes are unique and look random.
        multiplier, offset = 7_919_113, rng.randrange(10**8)
        products, n = [], 0
        for i in range(1, count + 1):
            slug, noun, short, (low, high), sizes = rng.choice(CATEGORIES)
            size = rng.choice(sizes)
            name = f"{noun} {rng.choice(MATERIALS)} {rng.choice(STYLES)} {rng.choice(COLOURS)}" + (
                f" - {size}" if size else ""
            )
            while True:
                barcode = ean13(f"{BARCODE_PREFIX}{(n * multiplier + offset) % 10**8:08d}")
                n += 1
                if barcode not in taken:
                    break
            price = round(math.exp(rng.uniform(math.log(low), math.log(high))) / 1000) * 1000
            products.append(
                Product(
                    sku=f"{SKU_PREFIX}{short}-{i:06d}",
                    name=name,
                    barcode=barcode,
                    price_vnd=max(1000, price),
                    category=slug,
                )
            )
        created = Product.objects.bulk_create(products, batch_size=2000)
        if any(p.pk is None for p in created):
            by_sku = dict(generated_products().values_list("sku", "pk"))
            for p in created:
                p.pk = by_sku[p.sku]
        return [p.pk for p in created]

    # --- stock -----------------------------------------------------------------------------------------------------

    def _load_stock(self, store_ids, product_ids, *, seed: int, postgres: bool, batch_stores: int, jobs: int) -> int:
        bar = tqdm(total=len(store_ids) * len(product_ids), unit="row", unit_scale=True, desc="stock",
                   disable=not self.progress, file=self.stderr._out, smoothing=0.1)
        created = 0
        try:
            if not postgres:
                return services.load_opening_balances(
                    rows=self._python_stock(store_ids, product_ids, seed, bar), actor=ACTOR
                )
            batches = [store_ids[i : i + batch_stores] for i in range(0, len(store_ids), batch_stores)]

            def load(batch: list[int]) -> int:
                try:
                    return services.load_synthetic_stock_postgres(
                        store_ids=batch, product_ids=product_ids, seed=seed, actor=ACTOR
                    )
                finally:
                    if jobs > 1:
                        connections.close_all()  # this worker thread's own connection

            if jobs == 1:
                for batch in batches:
                    created += load(batch)
                    bar.update(len(batch) * len(product_ids))
            else:
                # Each batch is its own transaction on its own connection: PostgreSQL works on two at once.
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    futures = {pool.submit(load, batch): len(batch) for batch in batches}
                    for future in as_completed(futures):
                        created += future.result()
                        bar.update(futures[future] * len(product_ids))
        finally:
            bar.close()
        return created

    def _python_stock(self, store_ids, product_ids, seed: int, bar):
        """SQLite: the same shape as the PostgreSQL generator (a fifth of SKUs scarce), from a seeded RNG."""
        rng = random.Random(f"{seed}:stock")
        scarce = {p: rng.random() < 0.2 for p in product_ids}
        for store_id in store_ids:
            for product_id in product_ids:
                on_hand = rng.randint(0, 2) if scarce[product_id] else rng.randint(0, 40)
                yield store_id, product_id, on_hand, rng.randint(0, 2), 20
            bar.update(len(product_ids))
