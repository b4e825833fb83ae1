"""The LightningDataModule and the data set sources it serves."""

from .datamodule import ImageDataModule
from .sources import ImageTensorDataset, Splits
