"""Networks in pure PyTorch: the DDPM U-Net, the VAE's MLP encoder/decoder, EMA."""
from .ema import ema_decay, ema_update
from .mlp import MLPDecoder, MLPEncoder
from .unet import UNet

__all__ = ["UNet", "MLPEncoder", "MLPDecoder", "ema_update", "ema_decay"]
