"""RQ entry points for AI jobs: thin, calling the runner and the sweep. The services
enqueue `run_job` by its path (aijobs.lifecycle.AI_JOB.task), never importing this."""

from aijobs import runner, services


def run_job(job_id: str) -> str | None:
    return runner.run(job_id)


def sweep_stalled_jobs() -> dict[str, int]:
    return services.job_sweep()
