"""Register: a checkpoint or SavedModel becomes a validated, published version.

checkpoints and savedmodels (the sources), export (stage, publish, record), validate (contract,
round trip, parity, warmup), tasks and metrics (how a version is judged), evalsets, probe, watch,
and pipeline (the whole ``mlc register`` flow: pre-flight, then one source's export).
"""
