"""``python tasks/train_cifar_classifier.py`` from a checkout. The job is :mod:`nda.jobs.train_cifar_classifier`: ``nda-train-cifar-classifier`` or
``python -m nda.jobs.train_cifar_classifier`` from a pip install, ``accelerate launch -m nda.jobs.train_cifar_classifier`` on many processes."""

import sys

from nda.jobs import train_cifar_classifier as job

if __name__ == "__main__":
    job.run("tasks/train_cifar_classifier.py")
else:  # ``from tasks import train_cifar_classifier`` is the job module itself, so what a test patches is what the job runs
    sys.modules[__name__] = job
