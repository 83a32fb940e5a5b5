"""Label maps and selections: the CAS(ME)^3 3-class grouping, clips left out by a task,
unlabelled clips, selection by split and subject."""

from pathlib import Path

import numpy as np
import pytest

from storage.selection import LEFT_OUT, Roles, Selection, label_map
from storage.sources import casme3
from storage.store import UNLABELLED, Clip, FrameStore, StoreWriter

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "casme3-partA-annotations"
SHEET = casme3.find_file(REAL, casme3.LABEL_FILE) if REAL.is_dir() else None


def _store(path, rows, labels=casme3.EMOTIONS_7):
    """A store of tiny blank clips: (clip_id, subject, split, label) per row."""
    with StoreWriter(path, labels=list(labels), frame_shape=(4, 4)) as w:
        for clip_id, subject, split, label in rows:
            w.add(Clip(clip_id, "t", subject, split, label, 30.0, np.zeros((3, 4, 4), np.uint8)))
    return FrameStore(path)


def test_casme3_three_class_grouping(tmp_path):
    emotions = ["anger", "disgust", "fear", "sad", "happy", "surprise", "others"]
    store = _store(tmp_path / "s", [(f"c{i}", "s1", "all", e) for i, e in enumerate(emotions)] + [("u", "s1", "all", None)])
    three = label_map("casme3-3", store)
    assert three.classes == ("negative", "positive", "surprise") and three.mapping["others"] is None
    got = three.class_indices(store)
    neg, pos, sur = 0, 1, 2
    assert got.tolist() == [neg, neg, neg, neg, pos, sur, LEFT_OUT, UNLABELLED]
    seven = label_map("casme3-7", store).class_indices(store)
    assert [casme3.EMOTIONS_7[k] for k in seven[:7]] == emotions and seven[7] == UNLABELLED
    # others is in no role of the 3-class task
    assert Selection().rows(store, got).tolist() == [0, 1, 2, 3, 4, 5, 7]


@pytest.mark.skipif(SHEET is None, reason="the real CAS(ME)^3 annotations are not beside the repository")
def test_three_class_counts_of_the_real_sheet_through_a_store(tmp_path):
    """The real sheet's usable rows as a store: the 3-class label map gives the grouping
    the annotations give (and the dataset's README: 457 / 55 / 187 over all rows)."""
    ann = casme3.read_annotations(SHEET)
    rows = [(f"r{r.index}", r.subject, "all", r.emotion) for r in ann.usable]
    store = _store(tmp_path / "s", rows)
    classes = label_map("casme3-3", store).class_indices(store)
    want = ann.class_counts("3", usable_only=True)
    got = {name: int((classes == k).sum()) for k, name in enumerate(casme3.CLASSES_3)}
    assert got == dict(want)
    assert int((classes == LEFT_OUT).sum()) == sum(1 for r in ann.usable if r.emotion == "others")


def test_a_label_the_map_does_not_know_is_named(tmp_path):
    store = _store(tmp_path / "s", [("c", "s1", "all", "contempt")], labels=["contempt"])
    with pytest.raises(ValueError, match=r"'casme3-3' does not know the label\(s\) \['contempt'\]"):
        label_map("casme3-3", store).class_indices(store)
    with pytest.raises(ValueError, match="unknown label map 'nope'"):
        label_map("nope", store)


def test_selection_by_split_and_subject_and_sample_ids(tmp_path):
    rows = [("a1", "s1", "train", "happy"), ("a2", "s2", "train", "sad"), ("b1", "s3", "test", "fear"),
            ("a3", "s1", "train", "others")]
    store = _store(tmp_path / "s", rows)
    classes = label_map("casme3-3", store).class_indices(store)
    assert Selection(("train",)).rows(store, classes).tolist() == [0, 1]  # others left out
    assert Selection(("train",), ("s2",)).rows(store, classes).tolist() == [1]
    assert Selection((), ("s1", "s3")).rows(store, classes).tolist() == [0, 2]
    roles = Roles(Selection(("train",), ("s1",)), Selection(("train",), ("s2",)), {"test": Selection(("test",))})
    assert Roles.from_dict(roles.to_dict()) == roles
    assert roles.sample_ids(store, classes) == {"train": ["a1"], "validation": ["a2"], "tests": {"test": ["b1"]}}
