"""Answers ahead of the framework: the unchanged poll at the cost of one Redis round trip.

A client that polls with If-None-Match is told "unchanged" (304) nearly every time,
and that answer needs little: whose token it is (the token cache), whether the client
may ask again (the throttle), whether they may read what they ask about and whether it
changed (the app's caches). Through Django (its middleware, DRF's authentication,
throttle and view) it cost ~2.2 ms of CPU and five Redis calls. Here an app registers a
handler for one route (register_fast_path, in its AppConfig.ready()); FastPaths, an
ASGI middleware in front of Django (config/asgi.py), gives it the request, and the
handler reads everything in one round trip (gated_read: a Lua script that reads the
keys, checks each, and counts the throttle only when every check passed). The answer
goes out with the headers Django's middleware would have added (framework_headers).

Never a different answer: a fast answer is sent only when the full path would send
exactly the same one (status, headers, body; the access line, the metrics and the
throttle's count alike), and anything the fast path cannot be sure of goes to Django
untouched: a cookie, a body, an unknown host, an https redirect, a CSP nonce, a
missing cache entry, a throttled client, an unreachable Redis, a middleware in
settings.MIDDLEWARE whose effect on a response is not reproduced here (an app declares
its own middleware neutral with register_neutral_middleware), ... tests/test_fast_poll.py
sends each case to both paths and compares what comes back.

Switched off by POLL_FAST_PATH=0 (every request then goes to Django).
"""

import asyncio
import hashlib
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from corsheaders.conf import conf as cors_conf
from corsheaders.middleware import CorsMiddleware
from corsheaders.signals import check_request_enabled
from django.conf import settings
from django.conf.urls.i18n import is_language_prefix_patterns_used
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host
from django.utils import translation
from django.utils.csp import CSP, build_policy
from prometheus_client import Counter
from redis.exceptions import RedisError, ResponseError

from core import metrics
from core.fast_redis import LeanClient, RedisPyClient, client_for
from core.request_log import note_route, note_user
from core.throttling import COUNT_IF_ALLOWED_FUNCTION, Window

logger = logging.getLogger(__name__)

FAST_PATH_ANSWERS = Counter(
    "aistatus_fast_path_requests",
    "Requests to a route with a fast path (core.fast_path), by route and result: answered ahead of the framework, "
    "or handed to it: declined (not a request the fast path answers: no If-None-Match, no bearer token, a cookie, "
    "...), cache_miss (an entry it needs is missing or says no), throttled, unreachable (Redis).",
    ["route", "result"],
)

# Why a request was handed to Django (FAST_PATH_ANSWERS' result label).
Fallback = Literal["declined", "cache_miss", "throttled", "unreachable"]
DECLINED: Fallback = "declined"
CACHE_MISS: Fallback = "cache_miss"
THROTTLED: Fallback = "throttled"
UNREACHABLE: Fallback = "unreachable"

# After Redis could not be reached, the fast path stays out of the way this long: the
# full path has its own answer to an unreachable cache (core.cache).
REDIS_PAUSE_SECONDS = 5.0


# --- The request, as Django would see it ---------------------------------------------


class FastRequest:
    """An ASGI request's path match and headers, the headers keyed as Django's META is
    (ASGIRequest: HTTP_<NAME>, CONTENT_TYPE, CONTENT_LENGTH; a repeated header joined
    with commas, as Django joins it), so that every check reads what Django would read."""

    __slots__ = ("match", "meta", "query_string", "scope")

    def __init__(self, scope: dict[str, Any], match: re.Match[str]) -> None:
        self.scope = scope
        self.match = match
        self.query_string: bytes = scope.get("query_string", b"")
        meta: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1")
            if name == "content-length":
                key = "CONTENT_LENGTH"
            elif name == "content-type":
                key = "CONTENT_TYPE"
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            meta[key] = meta[key] + "," + value if key in meta else value
        self.meta = meta


@dataclass(frozen=True)
class FastAnswer:
    """What a handler answers: status and the view's own headers (the framework's are
    added by FastPaths), the user it authenticated (for the access line) and the cache
    key families the full path would have counted as hits (core.metrics.cache_family).
    A fast answer has no body (a 304)."""

    status: int
    headers: list[tuple[str, str]]
    user_id: Any
    cache_hits: tuple[str, ...] = ()


Handler = Callable[[FastRequest], Awaitable[FastAnswer | Fallback]]


@dataclass(frozen=True)
class _Route:
    name: str  # the URL's name, as the full path's metrics and access line call it
    pattern: re.Pattern[str]
    handler: Handler


_routes: list[_Route] = []
_neutral_middleware: set[str] = set()


def register_fast_path(route_name: str, path_pattern: str, handler: Handler) -> None:
    """GET requests whose path matches `path_pattern` (whole) are offered to `handler`
    first. It answers (FastAnswer) only when the full path would answer the same, and
    otherwise says why not (a Fallback): the request then goes to Django."""
    _routes.append(_Route(route_name, re.compile(path_pattern), handler))


def register_neutral_middleware(dotted_path: str) -> None:
    """An app's middleware (a settings.MIDDLEWARE entry) that adds nothing to a response
    a fast path answers (no header, no cookie, no refusal), declared by its app."""
    _neutral_middleware.add(dotted_path)


# --- The headers Django's middleware adds ----------------------------------------------

# settings.MIDDLEWARE entries whose effect on a fast answer framework_headers reproduces
# (or, for a request it answers, is none: a GET without cookie or body).
_REPRODUCED_MIDDLEWARE = frozenset({
    "core.metrics.RequestMetricsMiddleware",  # counted by FastPaths (_count_answer)
    "core.request_log.RequestLogMiddleware",  # the user noted by FastPaths; the route resolved by AccessLog
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "core.content_type.ContentTypeMiddleware",  # reads only a body's Content-Type: none here
    "whitenoise.middleware.WhiteNoiseMiddleware",  # serves STATIC_URL only
    "django.contrib.sessions.middleware.SessionMiddleware",  # no cookie: no session, no Vary: Cookie
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",  # a GET, no cookie: nothing
    "django.contrib.auth.middleware.AuthenticationMiddleware",  # a lazy user, never read
    "django.contrib.messages.middleware.MessageMiddleware",  # no message stored: nothing
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.ServiceUnavailableMiddleware",  # only on exceptions
})
_CORS = "corsheaders.middleware.CorsMiddleware"
_LOCALE = "django.middleware.locale.LocaleMiddleware"


class _State:
    """What a process learns once (the stack's check, the cache backend) or for a while
    (Redis away)."""

    stack_checked: tuple[tuple[str, ...], bool] | None = None
    backend: RedisCache | None = None
    paused_until = 0.0


_state = _State()


def _stack_reproduced() -> bool:
    """Whether settings.MIDDLEWARE is a stack whose response headers framework_headers
    reproduces: only known (or app-declared neutral) middleware, CORS outside the locale
    (their Vary order), no language-prefixed URLs."""
    stack = tuple(settings.MIDDLEWARE)
    if _state.stack_checked is not None and _state.stack_checked[0] == stack:
        return _state.stack_checked[1]
    unknown = [entry for entry in stack if entry not in _REPRODUCED_MIDDLEWARE | _neutral_middleware]
    ordered = _CORS not in stack or _LOCALE not in stack or stack.index(_CORS) < stack.index(_LOCALE)
    prefixed = _LOCALE in stack and is_language_prefix_patterns_used(settings.ROOT_URLCONF)[0]
    reproduced = not unknown and ordered and not prefixed
    if not reproduced:
        logger.warning(
            "The fast paths are off: settings.MIDDLEWARE has %s, whose effect on a response core.fast_path does not "
            "reproduce; every request goes to Django.", unknown or "a middleware order or URL language prefix",
        )
    _state.stack_checked = (stack, reproduced)
    return reproduced


class _LanguageRequest:
    """What Django's get_language_from_request reads: no cookie (a request with one is
    not answered here), the Accept-Language header."""

    COOKIES: dict[str, str] = {}

    def __init__(self, meta: dict[str, str]) -> None:
        self.META = meta


def _is_secure(request: FastRequest) -> bool:
    """HttpRequest.is_secure() of the ASGI request (its scheme, or the trusted proxy's header)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = request.meta.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return request.scope.get("scheme") == "https"


def _host_allowed(request: FastRequest) -> bool:
    """HttpRequest.get_host() would not raise DisallowedHost (CommonMiddleware asks it)."""
    if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in request.meta:
        return False
    host = request.meta.get("HTTP_HOST")
    if host is None:  # Django would make one of the server's name and port: not worth reproducing
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


_csp_built: dict[str, tuple[Any, str | None]] = {}


def _policy(header: str, config: Any) -> str | Literal[False] | None:
    """The CSP header's value for `config` (None: no header), False when it holds a nonce
    (a value of its own per request)."""
    if not config:
        return None
    built = _csp_built.get(header)
    if built is not None and built[0] is config:
        return built[1]
    if any(
        value == CSP.NONCE or (isinstance(value, list | tuple | set) and CSP.NONCE in value) for value in config.values()
    ):
        return False
    policy = build_policy(config) or None
    _csp_built[header] = (config, policy)
    return policy


_cors = CorsMiddleware(lambda request: None)  # type: ignore[arg-type]  # only its origin check is used


def _cors_headers(request: FastRequest, path: str) -> list[tuple[str, str]] | None:
    """django-cors-headers' response headers (CorsMiddleware.add_response_headers); None
    when its check_request_enabled signal has receivers (they decide per request)."""
    if check_request_enabled.receivers:
        return None
    if not re.match(cors_conf.CORS_URLS_REGEX, path):
        return []
    origin = request.meta.get("HTTP_ORIGIN")
    if not origin:
        return []
    try:
        url = urlsplit(origin)
    except ValueError:
        return []
    if not cors_conf.CORS_ALLOW_ALL_ORIGINS and not _cors.origin_found_in_white_lists(origin, url):
        return []
    allowed = "*" if cors_conf.CORS_ALLOW_ALL_ORIGINS and not cors_conf.CORS_ALLOW_CREDENTIALS else origin
    headers = [("access-control-allow-origin", allowed)]
    if cors_conf.CORS_ALLOW_CREDENTIALS:
        headers.append(("access-control-allow-credentials", "true"))
    if len(cors_conf.CORS_EXPOSE_HEADERS):
        headers.append(("access-control-expose-headers", ", ".join(cors_conf.CORS_EXPOSE_HEADERS)))
    if cors_conf.CORS_ALLOW_PRIVATE_NETWORK and request.meta.get("HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK") == "true":
        headers.append(("access-control-allow-private-network", "true"))
    return headers


def framework_headers(request: FastRequest) -> list[tuple[str, str]] | None:
    """The headers settings.MIDDLEWARE adds to a GET answered by a view (one without
    headers of its own of these names), or None when the request is one the middleware
    might answer otherwise, or whose headers this does not reproduce."""
    meta = request.meta
    if not _stack_reproduced() or request.scope.get("root_path"):
        return None
    # A cookie (a session, a CSRF token, a language) or a body: what they change is left to Django.
    if "HTTP_COOKIE" in meta or "CONTENT_TYPE" in meta or "CONTENT_LENGTH" in meta or "HTTP_TRANSFER_ENCODING" in meta:
        return None
    # CommonMiddleware: refused user agents, the host, a www. redirect.
    if settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW or not _host_allowed(request):
        return None
    # SecurityMiddleware: an https redirect (exempt paths aside: not worth reproducing).
    secure = _is_secure(request)
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None
    headers: list[tuple[str, str]] = []
    path: str = request.scope["path"]
    vary = []
    stack = settings.MIDDLEWARE
    if "django.middleware.common.CommonMiddleware" in stack:
        headers.append(("Content-Length", "0"))  # a fast answer has no body
    if "django.middleware.clickjacking.XFrameOptionsMiddleware" in stack:
        headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    if _LOCALE in stack:
        # LocaleMiddleware: the language it activates, from Accept-Language (no cookie here).
        language = settings.LANGUAGE_CODE
        if settings.USE_I18N:
            asked = translation.get_language_from_request(cast(HttpRequest, _LanguageRequest(meta)))
            language = translation.to_language(asked)
        vary.append("Accept-Language")
        headers.append(("Content-Language", language))
    if _CORS in stack:
        cors = _cors_headers(request, path)
        if cors is None:
            return None
        if re.match(cors_conf.CORS_URLS_REGEX, path):
            vary.append("origin")
        headers += cors
    if vary:
        headers.append(("Vary", ", ".join(vary)))
    if "django.middleware.csp.ContentSecurityPolicyMiddleware" in stack:
        for header, config in ((CSP.HEADER_ENFORCE, settings.SECURE_CSP), (CSP.HEADER_REPORT_ONLY, settings.SECURE_CSP_REPORT_ONLY)):
            policy = _policy(str(header), config)
            if policy is False:
                return None
            if policy is not None:
                headers.append((str(header), policy))
    if "django.middleware.security.SecurityMiddleware" in stack:
        headers += _security_headers(secure)
    return headers


def _security_headers(secure: bool) -> list[tuple[str, str]]:
    """SecurityMiddleware.process_response's headers."""
    headers = []
    if settings.SECURE_HSTS_SECONDS and secure:
        value = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            value += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            value += "; preload"
        headers.append(("Strict-Transport-Security", value))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return headers


# --- One Redis round trip --------------------------------------------------------------

# KEYS: the gated keys, then (with a throttle) its two window counters. ARGV: the number
# of gates, '1' with a throttle, count_if_allowed's weight, limit and lifetime, then a
# rule and an operand per gate: 'present', 'equal' (to the operand), 'differ' (from it;
# the key must exist). Returns {0, i} when gate i failed, {2} when throttled (nothing
# counted), else {1, the gated values...} with the request counted.
_GATED_READ = COUNT_IF_ALLOWED_FUNCTION + """
local gates = tonumber(ARGV[1])
local values = {}
for i = 1, gates do
  local value = redis.call('GET', KEYS[i])
  local rule, operand = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  if value == false or (rule == 'equal' and value ~= operand) or (rule == 'differ' and value == operand) then
    return {0, i}
  end
  values[i] = value
end
if ARGV[2] == '1' then
  local counted = count_if_allowed(KEYS[gates + 1], KEYS[gates + 2], ARGV[3], ARGV[4], ARGV[5])
  if counted[1] == 0 then
    return {2}
  end
end
return {1, unpack(values)}
"""


@dataclass(frozen=True)
class Gate:
    """A cache key (as given to django.core.cache) a fast answer depends on, and what
    its stored value must be."""

    key: str
    rule: Literal["present", "equal", "differ"] = "present"
    operand: bytes = b""


class _Redis:
    """The cache's Redis for this event loop (a client's connections belong to a loop)."""

    def __init__(self) -> None:
        config: dict[str, Any] = settings.CACHES["default"]
        location = config["LOCATION"]
        servers = re.split("[;,]", location) if isinstance(location, str) else list(location)
        options = config.get("OPTIONS", {})
        # The first server: Django's RedisCache writes there (the throttle writes).
        self.client = client_for(
            servers[0], timeout=options.get("socket_timeout"), connect_timeout=options.get("socket_connect_timeout")
        )


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Redis] = weakref.WeakKeyDictionary()
_GATED_READ_SHA = hashlib.sha1(_GATED_READ.encode()).hexdigest()  # noqa: S324 - Redis names scripts by their SHA-1


def _cache() -> RedisCache:
    """The default cache's backend, for its key function and serializer only: one per
    process (django.core.cache.cache builds one per request context under ASGI)."""
    if _state.backend is None:
        _state.backend = cast(RedisCache, caches.create_connection("default"))
    return _state.backend


def _connection() -> _Redis:
    loop = asyncio.get_running_loop()
    connection = _loops.get(loop)
    if connection is None:
        connection = _loops[loop] = _Redis()
    return connection


def redis_client() -> LeanClient | RedisPyClient:
    """The cache's Redis, for a handler's own call (this loop's client)."""
    return _connection().client


def cache_key(key: str) -> str:
    """The cache's full key for `key` (its prefix and version). Not validated as
    cache.get() would (a warning for a key memcached could not hold): the keys are the
    apps' own, the ones their full paths read."""
    return _cache().make_key(key)


def stored(value: Any) -> bytes:
    """`value` as the cache stores it (Django's RedisSerializer: an int as its digits,
    anything else pickled)."""
    dumped = _cache()._cache._serializer.dumps(value)  # type: ignore[attr-defined]  # Django's RedisCacheClient's own
    return str(dumped).encode() if isinstance(dumped, int) else dumped


def loaded(raw: bytes) -> Any:
    """A stored value as cache.get() returns it."""
    return _cache()._cache._serializer.loads(raw)  # type: ignore[attr-defined]  # Django's RedisCacheClient's own


@dataclass(frozen=True)
class Read:
    """The gated values, and the throttle window the request was counted in (if any)."""

    values: list[bytes]
    window: Window | None

    async def give_back(self) -> None:
        """Uncount the request: its handler found a reason to hand it to Django after
        all (which counts it again if it gets that far)."""
        if self.window is not None:
            try:
                await redis_client().call("DECR", self.window.current_key)
            except REDIS_ERRORS as error:
                logger.warning("Could not give back a throttle count (%s): %s", self.window.current_key, error)


def redis_paused() -> bool:
    return time.monotonic() < _state.paused_until


# What a call of the asyncio client raises when Redis is away, slow or refuses.
REDIS_ERRORS = (RedisError, OSError)


def redis_failed(error: BaseException) -> Fallback:
    """A handler's Redis call failed: the fast paths step aside for REDIS_PAUSE_SECONDS."""
    _state.paused_until = time.monotonic() + REDIS_PAUSE_SECONDS
    logger.warning("Fast paths paused for %.0f s: Redis: %s", REDIS_PAUSE_SECONDS, error)
    return UNREACHABLE


async def gated_read(gates: list[Gate], window: Window | None) -> Read | Fallback:
    """Every gate's value, in one round trip, with the request counted in `window` (the
    client's throttle) only when every gate held and the throttle allows it."""
    client = redis_client()
    keys = [cache_key(gate.key) for gate in gates]
    args: list[Any] = [len(gates), "1" if window else "0", *(window.args if window else (0, 0, 0))]
    for gate in gates:
        args += [gate.rule, gate.operand]
    if window is not None:
        keys += [window.current_key, window.previous_key]
    try:
        try:
            result = await client.call("EVALSHA", _GATED_READ_SHA, len(keys), *keys, *args)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            # Redis lost its scripts (a restart, SCRIPT FLUSH): once more, loading it.
            await client.call("SCRIPT", "LOAD", _GATED_READ)
            result = await client.call("EVALSHA", _GATED_READ_SHA, len(keys), *keys, *args)
    except REDIS_ERRORS as error:
        return redis_failed(error)
    if result[0] == 0:
        return CACHE_MISS
    if result[0] == 2:
        return THROTTLED
    return Read(list(result[1:]), window)


# --- The ASGI middleware ---------------------------------------------------------------


class FastPaths:
    """ASGI middleware in front of Django: a GET to a route with a fast path is offered
    to its handler, and answered by it or handed on untouched (module docstring)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and _routes and settings.POLL_FAST_PATH and not redis_paused():
            path = scope["path"]
            for route in _routes:
                match = route.pattern.fullmatch(path)
                if match is not None:
                    if await _answer(route, FastRequest(scope, match), receive, send):
                        return
                    break
        await self.app(scope, receive, send)


async def _answer(
    route: _Route,
    request: FastRequest,
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> bool:
    started = time.perf_counter()
    framework = framework_headers(request)
    if framework is None:
        _child(FAST_PATH_ANSWERS, route.name, DECLINED).inc()
        return False
    try:
        answer = await route.handler(request)
    except Exception:
        # A bug here must cost a fast answer, not the request: Django answers it.
        logger.exception("The fast path of %s failed; handing the request to Django", route.name)
        return False
    if not isinstance(answer, FastAnswer):
        _child(FAST_PATH_ANSWERS, route.name, answer).inc()
        return False
    # The request's (empty) body read, as Django reads it before answering: a server
    # keeps the connection for the next request once the request is consumed.
    message = await receive()
    while message["type"] == "http.request" and message.get("more_body"):
        message = await receive()
    headers = [*answer.headers, *framework]
    # Before the response starts: AccessLog writes its line then.
    note_route(route.name)
    note_user(answer.user_id)
    await send({
        "type": "http.response.start",
        "status": answer.status,
        "headers": [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers],
    })
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    _count_answer(route.name, answer, headers, time.perf_counter() - started)
    return True


_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """metric.labels(*labels), kept: a fast answer counts seven series."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def _count_answer(route: str, answer: FastAnswer, headers: Iterable[tuple[str, str]], seconds: float) -> None:
    """What core.metrics counts of the same answer on the full path (RequestMetricsMiddleware,
    and the cache's hits)."""
    _child(FAST_PATH_ANSWERS, route, "answered").inc()
    _child(metrics.HTTP_REQUEST_SECONDS, route, "GET", f"{answer.status // 100}xx").observe(seconds)
    if any(name == "X-Poll-Interval" for name, _ in headers):
        _child(metrics.POLLS, route, str(answer.status)).inc()
    for family in answer.cache_hits:
        _child(metrics.CACHE_LOOKUPS, family, "hit").inc()
