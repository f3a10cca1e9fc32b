"""The data stages: ingest, validate, clean, label, split (and ``synth``, ``schema``).

The stages are command-line shells; ingest, validate and clean run on an engine (``engines``:
pandas, or Spark), which applies the rules both engines share (``rules``).

pandera imports ``pyspark.pandas`` whenever pyspark is installed (the ``spark`` extra), only to
register type hints. That import costs up to a second per stage, prints pyspark's warning about
pandas 3 three times, and patches pandas' classes; nothing here uses pandas-on-Spark (the Spark
engine validates with the pandas schema in ``mapInPandas``), so the module is marked absent before
pandera can be imported, which makes that import fail quietly as it does without pyspark.
"""

import sys

sys.modules.setdefault("pyspark.pandas", None)  # type: ignore[arg-type]
