"""Training: every network ganrev ships is trained here, with checkpoints each epoch and ``--resume``.

- :mod:`ganrev.training.generator`: ``fit_generator`` (``ganrev fit-generator``), the DCGAN generator and its
  encoder under the ``aegan`` or ``gan`` objective;
- :mod:`ganrev.training.baselines`: ``fit_baseline`` (``ganrev fit-baseline``), the seeds' AR-CNN and
  ComCNN/RecCNN on real JPEG outputs;
- :mod:`ganrev.training.common`: what the trainers share: the device, sample grids, state files and the epoch
  loop's bookkeeping (resume, per-epoch records and log lines, the best epoch).
"""
