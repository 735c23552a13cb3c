"""The pure core, no Spark: the input's listing rules and reading (:mod:`.inputs`), decoding
(:mod:`.images`), the feature recipe (:mod:`.recipe`), backbones and their weights
(:mod:`.backbones`), inference on a batch (:mod:`.inference`, :mod:`.runtimes`), cluttered
copies (:mod:`.augment`), the recognizer's arrays (:mod:`.arrays`) and ``predict`` for photos
(:mod:`.predict`), the run report's common fields (:mod:`.report`)."""
