"""ganrev: GAN-inversion image compression.

Pipeline: data -> models (nets) -> training -> invert (batched latent search) -> codec (quantize + bitstream)
-> codecs (classical and learned baselines) -> evaluate (table) -> cli.
"""

from ganrev.errors import GanrevError

__version__ = "0.1.0"

__all__ = ["GanrevError", "__version__"]
