"""spark-submit entry point on EMR: the `helpers` command line, from the installed wheel.

    spark-submit s3://bucket/prefix/code/run_pipeline.py run --input s3://... --output s3://...
"""

from helpers.faces.cli import main

raise SystemExit(main())
