"""The test suite's settings: chosen explicitly by pytest's configuration
(pyproject.toml, `--ds=config.settings_test`) and passed by name to every server and
worker process the suite starts (tests/live.py). Nothing here is switched on by
sniffing the environment, and no other run gets any of it.

The suite runs the production configuration (DEBUG off, the problem-details error
pages) with what a test needs: its own Redis database, media folder and metrics
directory, a fast password hash, plain http on 127.0.0.1.
"""

import atexit
import os
import shutil
import tempfile

# Values the base settings read from the environment are given there, as defaults,
# before it is imported: whatever the base derives from them (the cache, the queue,
# the channel layer) then agrees, and so does every process the suite starts, which
# inherits this environment. DATABASE_URL, TEST_REDIS_URL, REDIS_URL and MEDIA_ROOT
# set by the caller win, so that concurrent runs keep apart.
os.environ.setdefault("DJANGO_ENV", "production")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment-5f0c9a7e2b41d8")
# Its own Redis database, so that a running `make run` and the tests never share queues
# (the suite empties it before every test).
os.environ.setdefault("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
os.environ.setdefault("MEDIA_ROOT", "/tmp/aistatus-test-media")  # noqa: S108 - a default only; conftest checks TESTING before emptying it
# Uploads live on the local disk and the app serves them, as under `make run`.
os.environ.setdefault("SERVE_MEDIA", "1")
# prometheus_client reads this when it is imported: a directory of the session's own,
# which the servers and workers it starts share, removed when the session ends.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="aistatus-test-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

from config.settings import *  # noqa: F403 - the test settings are the base ones and these changes
from config.settings import CHANNEL_LAYERS, DATABASES

# What conftest checks before it empties a Redis database and a media folder.
TESTING = True

# The suite creates hundreds of users; a deliberately slow hash would dominate it.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "aistatus-test"

# The suite's clients and servers speak plain http on 127.0.0.1 (tests/test_settings.py
# checks the production transport settings themselves).
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0

# Each process of the suite (this one, and every server and worker it starts) names its
# database connections after itself, so that a test acts on its own connections only,
# whatever an earlier test's processes still hold while they shut down.
DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = f"aistatus-test-{os.getpid()}"
