"""o2o: omnichannel inventory, order routing and loyalty for store-based retail chains."""

from .celery import app as celery_app

__all__ = ["celery_app"]
