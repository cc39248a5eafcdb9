"""``python tasks/gan.py`` from a checkout. The job is :mod:`nda.jobs.gan`: ``nda-gan`` or
``python -m nda.jobs.gan`` from a pip install, ``accelerate launch -m nda.jobs.gan`` on many processes."""

import sys

from nda.jobs import gan as job

if __name__ == "__main__":
    job.run("tasks/gan.py")
else:  # ``from tasks import gan`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
