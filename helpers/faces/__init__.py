"""What people call: the command line (:mod:`.cli`) and the notebooks' glue
(:mod:`.notebooks`, :mod:`.showcase`)."""
