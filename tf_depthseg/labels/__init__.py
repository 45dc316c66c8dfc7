"""Offline labels, computed once over converted records: weak ordinal depth pairs from
semantic masks (`weak_labels`, the SUW rules) and instance masks aligned across t-1, t, t+1
(`object_alignment`), each with a `*_records` module that rewrites every record of a set of
shards with them (what `tools/generate_weak_labels.py` and `tools/align_object_masks.py` run).
"""
