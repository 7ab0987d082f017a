import os

from config.memory import limit_malloc_arenas

# Before Django and the server's threads allocate: see config/memory.py.
limit_malloc_arenas()

from django.core.wsgi import get_wsgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

# Imported once Django is set up (it reads settings and models).
from config.bearer_path import BearerPath  # noqa: E402
from config.lean_path import LeanProtocolPath  # noqa: E402
from config.protocol_handler import ProtocolPathDispatch  # noqa: E402
from config.request_limits import BodyWithoutLength  # noqa: E402

# Discovery and JWKS are answered before Django's request cycle (config/lean_path.py), and so
# are successful userinfo and introspection requests of a plain shape (config/bearer_path.py);
# a body sent without Content-Length is bounded before Django sees it (config/request_limits.py);
# the protocol endpoints go through a shorter request cycle (config/protocol_handler.py).
application = LeanProtocolPath(
    BearerPath(
        BodyWithoutLength(ProtocolPathDispatch(django_application)),
        handler_class=type(django_application),
    )
)
