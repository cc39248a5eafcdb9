"""``python tasks/sentence.py`` from a checkout. The job is :mod:`nda.jobs.sentence`: ``nda-sentence`` or
``python -m nda.jobs.sentence`` from a pip install, ``accelerate launch -m nda.jobs.sentence`` on many processes."""

import sys

from nda.jobs import sentence as job

if __name__ == "__main__":
    job.run("tasks/sentence.py")
else:  # ``from tasks import sentence`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
