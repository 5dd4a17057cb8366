import os

# The bench's clients are one user opening hundreds of streams (capacity, fan-out, the
# reconnect storm): the per-user stream limit (REALTIME_MAX_STREAMS_PER_USER) is raised
# for every server it starts, which inherit this environment.
os.environ.setdefault("REALTIME_MAX_STREAMS_PER_USER", "1000000")
# Likewise all its clients are one address (127.0.0.1) holding thousands of requests and
# streams open: the per-client bound (WEB_MAX_OPEN_PER_CLIENT, core.connection_limit)
# is lifted for the servers it starts, which measure capacity, not abuse.
os.environ.setdefault("WEB_MAX_OPEN_PER_CLIENT", "0")
