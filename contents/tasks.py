"""RQ entry points: thin, calling the pipeline and the sweep. The services enqueue
`run_pipeline` by its path (contents.lifecycle.CONTENT.task), never importing this."""

from contents import pipeline, services


def run_pipeline(content_id: str) -> str | None:
    return pipeline.run(content_id)


def sweep_stalled_contents() -> dict[str, int]:
    return services.content_sweep()
