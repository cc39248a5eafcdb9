"""``python tasks/eval_gan.py`` from a checkout. The job is :mod:`nda.jobs.eval_gan`: ``nda-eval-gan`` or
``python -m nda.jobs.eval_gan`` from a pip install, ``accelerate launch -m nda.jobs.eval_gan`` on many processes."""

import sys

from nda.jobs import eval_gan as job

if __name__ == "__main__":
    job.run("tasks/eval_gan.py")
else:  # ``from tasks import eval_gan`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
