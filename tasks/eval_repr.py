"""``python tasks/eval_repr.py`` from a checkout. The job is :mod:`nda.jobs.eval_repr`: ``nda-eval-repr`` or
``python -m nda.jobs.eval_repr`` from a pip install, ``accelerate launch -m nda.jobs.eval_repr`` on many processes."""

import sys

from nda.jobs import eval_repr as job

if __name__ == "__main__":
    job.run("tasks/eval_repr.py")
else:  # ``from tasks import eval_repr`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
