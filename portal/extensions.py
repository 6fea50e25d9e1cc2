"""Flask extension objects, created once and bound to an app in ``create_app``."""

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_talisman import Talisman
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
# No default limits: only the routes that name a limit (sign-in, API tokens) are limited.
# Every answer of a limited route says its limit; a 429 says when to try again (Retry-After).
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
talisman = Talisman()  # security headers: portal.security_headers
