"""What every part of dgmlab uses: the user errors and small validators (``errors.py``), per-image
seeds (``seeding.py``), pixels and image files (``images.py``), precision from the hardware
(``precision.py``), progress bars outside training (``progress.py``), atomic writes and file digests
(``files.py``), paths as a user reads them (``paths.py``), nested configs (``trees.py``) and the
targets a config read from a file may build (``trust.py``). Pure Python and PyTorch."""
