"""Codecs behind :class:`ganrev.codec.ImageCodec` beyond the classical ones of :mod:`ganrev.baselines`.

- :mod:`ganrev.codecs.learned`: the seeds' learned baselines, JPEG + AR-CNN/ASPP restoration and ComCNN/RecCNN.
"""
