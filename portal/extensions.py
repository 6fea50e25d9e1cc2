"""Flask extension objects, created once and bound to an app in ``create_app``."""

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
# No default limits: only the routes that name a limit (login) are limited.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
