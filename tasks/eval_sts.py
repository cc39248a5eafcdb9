"""``python tasks/eval_sts.py`` from a checkout. The job is :mod:`nda.jobs.eval_sts`: ``nda-eval-sts`` or
``python -m nda.jobs.eval_sts`` from a pip install, ``accelerate launch -m nda.jobs.eval_sts`` on many processes."""

import sys

from nda.jobs import eval_sts as job

if __name__ == "__main__":
    job.run("tasks/eval_sts.py")
else:  # ``from tasks import eval_sts`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
