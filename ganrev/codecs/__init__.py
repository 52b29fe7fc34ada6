"""The codecs ganrev measures beside its own, each behind :class:`ganrev.codec.ImageCodec` (encode -> bytes,
decode -> image).

- :mod:`ganrev.codecs.classical`: PNG, JPEG, WebP (lossy, lossless, downscaled), AVIF and k-means palette PNG;
- :mod:`ganrev.codecs.learned`: the seeds' learned baselines, JPEG + AR-CNN/ASPP restoration and ComCNN/RecCNN;
- :mod:`ganrev.codecs.specs`: any of them by name (``"jpeg:10"``, ``"arcnn:10"``), and the table's default set.
"""
