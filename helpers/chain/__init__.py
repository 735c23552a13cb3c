"""The image chain: list the input (:mod:`.inputs`), spread it over Spark (:mod:`.ingest`),
decode (:mod:`.images`), featurize with a pretrained CNN (:mod:`.models`, :mod:`.inference`,
:mod:`.featurize`), standardize and reduce (:mod:`.reduce`), write Parquet and the run report
(:mod:`.pipeline`, :mod:`.report`); :mod:`.inventory` describes a dataset."""
