"""Evaluation families of the IG2 paper: each module exposes ``load_family(...) -> Family`` (see ``base``)."""
