"""A training run's life, from ``python train.py`` to its last checkpoint.

- ``training.py``   the job: build everything from the config, then fit; the end-of-run summary
- ``layout.py``     the run directory: the one place that knows where a run keeps its files
- ``resume.py``     ``resume=RUN_DIR|last`` and ``ckpt_path=``: the checkpoint to continue from, checked
- ``signals.py``    stop on a signal with ``last.ckpt``; SLURM requeue on its warning signals
- ``divergence.py`` stop on a nan/inf loss, keeping the last good checkpoint
- ``exact_resume.py`` RNG states and the data position in every checkpoint
- ``atomic_io.py``  checkpoint files written atomically; a full disk named
- ``internals.py``  the few private members of Lightning the guards need, in one place
- ``slurm.py``      what a job needs to know about the SLURM cluster it runs on
- ``loggers.py``    CSV and W&B loggers that continue a resumed run; the logger contract
- ``startup.py``    what a run shows at start and at its end
"""
