"""Experiments, models and data loaders (optional extra ``pathattr[bench]``)."""
