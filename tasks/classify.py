"""``python tasks/classify.py`` from a checkout. The job is :mod:`nda.jobs.classify`: ``nda-classify`` or
``python -m nda.jobs.classify`` from a pip install, ``accelerate launch -m nda.jobs.classify`` on many processes."""

import sys

from nda.jobs import classify as job

if __name__ == "__main__":
    job.run("tasks/classify.py")
else:  # ``from tasks import classify`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
