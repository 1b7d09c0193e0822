"""Jobs on Spark, for stores too large for one machine (:mod:`pipelines.spark.rollup`)."""
