"""Networks in pure PyTorch: the DDPM U-Net, the VAE's MLP and convolutional encoders/decoders, EMA."""

from .conv import ConvDecoder, ConvEncoder, SpatialConvDecoder, SpatialConvEncoder
from .ema import ema_decay, ema_update
from .mlp import MLPDecoder, MLPEncoder
from .unet import UNet
