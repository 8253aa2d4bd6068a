"""Helpers of the validation report (``benchmarks/validate.py``) and the virtual theranostic
trial benchmark (``benchmarks/vtt.py``): statistics, the published clinical anchors and an
independent numpy interpretation of a model graph."""
