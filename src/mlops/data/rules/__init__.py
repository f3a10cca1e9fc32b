"""The data rules, written once and imported by both engines (``mlops.data.engines``).

A rule says what a data stage does, whatever holds the table: which file formats a source may
have and when a table is empty (``sources``); how a value is normalised and a column coerced,
one row at a time (``rows``); which checks failed, on which rows, and how that is reported
(``validation``); where outliers begin, what fills a gap, and in which order the clean steps run
and are counted (``cleaning``); what a label is as text (``labels``). The pandas engine applies
them to a DataFrame; the Spark engine runs the row-at-a-time rules on batches of rows
(``mapInPandas``) and gives the table-wide ones Spark's statistics. Nothing here imports Spark.
"""
