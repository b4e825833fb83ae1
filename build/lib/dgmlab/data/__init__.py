"""The LightningDataModule and the data set sources it serves."""

from .datamodule import ImageDataModule, to_pixel_range, to_uint8
from .sources import ImageTensorDataset, Splits

__all__ = ["ImageDataModule", "ImageTensorDataset", "Splits", "to_pixel_range", "to_uint8"]
