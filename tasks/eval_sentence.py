"""``python tasks/eval_sentence.py`` from a checkout. The job is :mod:`nda.jobs.eval_sentence`: ``nda-eval-sentence`` or
``python -m nda.jobs.eval_sentence`` from a pip install, ``accelerate launch -m nda.jobs.eval_sentence`` on many processes."""

import sys

from nda.jobs import eval_sentence as job

if __name__ == "__main__":
    job.run("tasks/eval_sentence.py")
else:  # ``from tasks import eval_sentence`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
