"""What every part of dgmlab uses: the user errors and small validators (``errors.py``), per-image
seeds (``seeding.py``), pixels and image files (``images.py``), precision from the hardware
(``precision.py``) and progress bars outside training (``progress.py``). Pure Python and PyTorch."""
