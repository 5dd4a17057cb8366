import os

# The bench's clients are one user opening hundreds of streams (capacity, fan-out, the
# reconnect storm): the per-user stream limit (REALTIME_MAX_STREAMS_PER_USER) is raised
# for every server it starts, which inherit this environment.
os.environ.setdefault("REALTIME_MAX_STREAMS_PER_USER", "1000000")
