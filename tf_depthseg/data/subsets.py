"""Labelled subsets of a training split, by source id (Hoyer et al.: 50/100/367 CamVid labels).

A subset is a set of records' source ids (`common.SOURCE_ID`, stable across conversions),
given either

* as a count and a seed (`random_subset`): the ids of the split, sorted, permuted by
  `numpy.random.RandomState(seed)`, the first `count` taken. The same records and seed give the
  same subset on every machine and worker, whatever the file order, and a smaller count with
  the same seed gives a subset of a larger one (50 of the 100);
* or as a text file of ids (`read_ids_file`), one per line, as the data-selection tool writes
  them; `#` comments and blank lines are skipped, every id must be in the split
  (`check_known_ids` names the file and line of an unknown one).

`make_dataset(..., source_ids=...)` (data/pipeline.py) then reads only those records.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg.data import records


def read_source_ids(files: Sequence[str]) -> List[str]:
    """The source id of every record of `files`, in file order (reads every record once).

    Raises:
      errors.BadInputError: a record without a source id (naming the file and its index), or
        a corrupt file.
    """
    ids = []
    for path in files:
        for index, serialized in enumerate(records.iterate_records(path)):
            feature = tf.train.Example.FromString(serialized).features.feature
            values = (feature[common.KEY_SOURCE_ID].bytes_list.value
                      if common.KEY_SOURCE_ID in feature else [])
            if not values or not values[0]:
                raise errors.BadInputError(
                    f"{path}: record {index} has no '{common.KEY_SOURCE_ID}', so it cannot be "
                    "chosen for a labelled subset; reconvert the split with this version's "
                    "converter.")
            ids.append(values[0].decode())
    return ids


def random_subset(source_ids: Sequence[str], count: int, seed: int,
                  what: str = "the training records") -> List[str]:
    """`count` distinct ids of `source_ids` drawn reproducibly with `seed`, sorted.

    Raises:
      errors.ConfigError: `count` is larger than the number of distinct ids.
    """
    unique = sorted(set(source_ids))
    if count > len(unique):
        raise errors.ConfigError(
            f"seg.labeled_count={count} but {what} hold {len(unique)} distinct source ids; "
            f"set seg.labeled_count to at most {len(unique)} (0 = all).")
    order = np.random.RandomState(seed).permutation(len(unique))
    return sorted(unique[i] for i in order[:count])


def read_ids_file(path: str) -> List[Tuple[int, str]]:
    """(line number, source id) of every id line of a subset file.

    Raises:
      errors.BadInputError: the file cannot be read, holds no id, or lists an id twice (naming
        both lines).
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise errors.BadInputError(f"{path}: cannot read the labelled-ids file ({error}); "
                                   "pass a text file with one source id per line.") from None
    entries, seen = [], {}
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if text in seen:
            raise errors.BadInputError(f"{path}:{number}: source id {text!r} is listed again "
                                       f"(first on line {seen[text]}); list each id once.")
        seen[text] = number
        entries.append((number, text))
    if not entries:
        raise errors.BadInputError(f"{path}: the labelled-ids file lists no source id; write "
                                   "one id per line (the records' image/source_id).")
    return entries


def check_known_ids(entries: Sequence[Tuple[int, str]], source_ids: Sequence[str], path: str,
                    where: str) -> List[str]:
    """The ids of `entries` (`read_ids_file`), sorted, after checking each is in `source_ids`.

    Raises:
      errors.BadInputError: naming the file, the line and the id of the first unknown id,
        with a few ids that do exist.
    """
    known = set(source_ids)
    for number, source_id in entries:
        if source_id not in known:
            examples = ", ".join(repr(s) for s in sorted(known)[:3])
            raise errors.BadInputError(
                f"{path}:{number}: source id {source_id!r} is not in {where} "
                f"({len(known)} records, e.g. {examples}); list ids of those records, or "
                "point data.train_pattern at the split the file was written for.")
    return sorted(source_id for _, source_id in entries)


def labelled_source_ids(pattern, count: int, seed: int, ids_file: str,
                        allow_incomplete: bool = False) -> Optional[List[str]]:
    """The labelled subset of the records of `pattern`: None (all of them) when `count` is 0
    and `ids_file` is empty, else the sorted ids (`random_subset` or the file's)."""
    if not count and not ids_file:
        return None
    files = records.list_checked_shards(pattern, allow_incomplete,
                                        "--set data.allow_incomplete=true")
    source_ids = read_source_ids(files)
    where = f"the records of {pattern}"
    if ids_file:
        if not os.path.isfile(ids_file):
            raise errors.BadInputError(f"{ids_file}: no such labelled-ids file; check "
                                       "seg.labeled_ids_file.")
        return check_known_ids(read_ids_file(ids_file), source_ids, ids_file, where)
    return random_subset(source_ids, count, seed, where)
