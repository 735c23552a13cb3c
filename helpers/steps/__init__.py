"""The two steps, each a whole Spark job over the building blocks and neither calling the
other: extraction (:mod:`.extraction`: images -> features -> PCA -> Parquet) and recognition
(:mod:`.recognition`: features -> recognizer, clusters, maps)."""
