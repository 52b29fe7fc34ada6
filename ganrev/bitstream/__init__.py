"""The ``.grv`` bitstream: the container's header and layers (:mod:`.container`), the latent's grid and range
coding (:mod:`.quantize`), the image layers' bare bitstreams (:mod:`.layers`), the generator modulation layer
(:mod:`.modulation`), rate control choosing among candidate files (:mod:`.ratecontrol`), and a file's fields read
without a generator (:mod:`.fileinfo`). Nothing is imported here, so that importing one module does not import
the rest (``.layers`` imports :mod:`ganrev.codecs`, which imports ``.container``)."""
