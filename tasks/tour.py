"""``python tasks/tour.py`` from a checkout. The job is :mod:`nda.jobs.tour`: ``nda-tour`` or
``python -m nda.jobs.tour`` from a pip install, ``accelerate launch -m nda.jobs.tour`` on many processes."""

import sys

from nda.jobs import tour as job

if __name__ == "__main__":
    job.run("tasks/tour.py")
else:  # ``from tasks import tour`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
