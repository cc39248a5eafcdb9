"""``python tasks/moco.py`` from a checkout. The job is :mod:`nda.jobs.moco`: ``nda-moco`` or
``python -m nda.jobs.moco`` from a pip install, ``accelerate launch -m nda.jobs.moco`` on many processes."""

import sys

from nda.jobs import moco as job

if __name__ == "__main__":
    job.run("tasks/moco.py")
else:  # ``from tasks import moco`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
