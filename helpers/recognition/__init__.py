"""The recognition engine, on a run's features: train and evaluate a classifier
(:mod:`.classify`, :mod:`.engine`), clusters and maps (:mod:`.clustering`, :mod:`.maps`), and
``predict`` for photos without Spark (:mod:`.recognize` over :mod:`.arrays`)."""
