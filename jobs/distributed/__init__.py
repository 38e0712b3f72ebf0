"""Beyond one host (issue 22): the web front enqueues on Redis, Celery workers on each host run the jobs with their own
supervisor, the job's truth stays in the job store (PostgreSQL) and its files in a store every host sees.

``front.DistributedJobQueue`` is the front's implementation of the job-queue seam (``jobs.queue.JobQueue``);
``host.JobHost`` runs one job on a host under a lease; ``bus`` carries progress, ends, cancels and host heartbeats over
Redis (transport only: nothing there is the truth); ``routing`` names the queues; ``celery_app`` is the Celery glue."""
