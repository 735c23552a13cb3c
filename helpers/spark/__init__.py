"""Spark building blocks, used by both steps: the session (:mod:`.session`), its logging
(:mod:`.logconf`) and job names (:mod:`.jobs`); the input spread over Spark (:mod:`.ingest`),
features in batches (:mod:`.featurize`), cluttered copies featurized (:mod:`.clutter`),
standardize + PCA (:mod:`.reduce`), a dataset's inventory (:mod:`.inventory`), classifiers
(:mod:`.classify`), clusters (:mod:`.clustering`) and maps (:mod:`.maps`)."""
