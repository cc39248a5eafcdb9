"""The training and evaluation jobs, each a module a user can launch without a checkout of the repository.

Why a package: the jobs are what a user runs, so a pip-installed nda must carry them. Each module is one job that
reads top to bottom (a ``RunConfig`` dataclass, ``validate``, ``main`` on :class:`nda.run.Run`, ``run`` for the
command line) and is launched as::

    nda-gan --steps 700                          # console script (pip install)
    python -m nda.jobs.gan --steps 700           # the same
    accelerate launch -m nda.jobs.gan ...        # many processes / GPUs / nodes
    python tasks/gan.py --steps 700              # from a checkout (tasks/ holds 3-line shims)

Jobs never import jobs: what two jobs share lives in the layers below (``nda.run``, ``nda.models``, ...).
"""

JOBS = ("gan", "moco", "sentence", "classify", "tour", "eval_gan", "eval_repr", "eval_sentence", "eval_sts",
        "train_cifar_classifier")
