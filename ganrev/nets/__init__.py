"""The networks: the DCGAN generator, discriminator and encoder, and the seeds' learned baselines'.

- :mod:`ganrev.nets.dcgan`: the DCGAN generator (with its optional modulation), discriminator and encoder,
  whose checkpoints are :mod:`ganrev.models`';
- :mod:`ganrev.nets.arcnn`: AR-CNN with an ASPP block, removing JPEG artefacts (seed 004);
- :mod:`ganrev.nets.comcnn`: ComCNN (compact image) and RecCNN (restoration) of Jiang et al. (seed 003);
- :mod:`ganrev.nets.checkpoint`: their safetensors checkpoints, fingerprinted like the generator's.
"""
