import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mesh_site.settings")
application = get_wsgi_application()

from mesh_site.heap import freeze_loaded_heap  # noqa: E402 - once Django is set up

freeze_loaded_heap()
