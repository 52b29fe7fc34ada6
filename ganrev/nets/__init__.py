"""Networks of the seeds' learned baselines (the DCGAN generator and encoder live in :mod:`ganrev.models`).

- :mod:`ganrev.nets.arcnn`: AR-CNN with an ASPP block, removing JPEG artefacts (seed 004);
- :mod:`ganrev.nets.comcnn`: ComCNN (compact image) and RecCNN (restoration) of Jiang et al. (seed 003);
- :mod:`ganrev.nets.checkpoint`: their safetensors checkpoints, fingerprinted like the generator's.
"""
