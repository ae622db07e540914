import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")

application = get_wsgi_application()


def _freeze_the_loaded_app() -> None:
    """Load what the first requests would (URL conf and views, the router and OR-Tools, the broker's client), then
    move every object that exists so far out of the garbage collector's reach. A full collection otherwise walks
    the whole loaded framework (hundreds of thousands of objects) every so often, in the middle of a request: that
    was the slowest 1 % of order placements at any load. Under `gunicorn --preload` the frozen objects are also
    never written to again, so the workers keep sharing the master's memory pages."""
    import importlib

    from django.conf import settings
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module
    for module in ("orders.routing.cpsat", "ortools.sat.python.cp_model", "kombu.transport.redis"):
        try:
            importlib.import_module(module)
        except ImportError:  # an optional part (another broker): nothing to load
            pass
    if getattr(settings, "O2O_GC_FREEZE", True):
        gc.collect()
        gc.freeze()


_freeze_the_loaded_app()
