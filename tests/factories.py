"""factory-boy factories shared by the test suite."""

from datetime import time

import factory

from inventory.models import OpeningHours, Product, Store
from o2o.models import SalesChannel


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store
        skip_postgeneration_save = True

    code = factory.Sequence(lambda n: f"HCM-T-{n:04d}")
    name = factory.Sequence(lambda n: f"Cửa hàng thử {n}")
    city = "Ho Chi Minh City"
    district = "Quận 1"
    lat = 10.7769
    lon = 106.7009
    delivery_radius_km = 8
    picking_capacity_per_hour = 30

    @factory.post_generation
    def hours(self, create, extracted, **kwargs):
        if not create or extracted is False:
            return
        OpeningHours.objects.bulk_create(
            [OpeningHours(store=self, weekday=d, opens=time(0, 0), closes=time(23, 59, 59)) for d in range(7)]
        )


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Sản phẩm {n}")
    barcode = factory.Sequence(lambda n: f"893{n:010d}")
    price_vnd = 199_000
    category = "ao-thun"


class SalesChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SalesChannel
        django_get_or_create = ("code",)

    code = "website"
    name = "Website"
