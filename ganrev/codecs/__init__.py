"""Every compression scheme ganrev measures, its own included, behind one interface.

- :mod:`ganrev.codecs.base`: :class:`~ganrev.codecs.base.ImageCodec` (encode -> bytes, decode -> image) and
  ``bits_per_pixel``;
- :mod:`ganrev.codecs.gan`: GAN reversal (:class:`~ganrev.codecs.gan.GanCodec`) and its residual and modulation
  layers' coding;
- :mod:`ganrev.codecs.classical`: PNG, JPEG, WebP (lossy, lossless, downscaled), AVIF and k-means palette PNG;
- :mod:`ganrev.codecs.learned`: the seeds' learned baselines, JPEG + AR-CNN/ASPP restoration and ComCNN/RecCNN;
- :mod:`ganrev.codecs.specs`: any of them by name (``"jpeg:10"``, ``"arcnn:10"``), and the table's default set.

The spec parser imports the codecs, never the other way round (GAN reversal's residual layers reach it only
when a file is decoded).
"""
