"""Search spaces from YAML: domains by name, every error naming the path and the reason."""

import pytest

from orchestrator.search_space import load_space, parse_space


def test_domains_are_built_from_yaml(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("train.lr: {loguniform: [0.0005, 0.01]}\ntrain.weight_decay: {uniform: [0.0, 0.001]}\n"
                 "train.class_weight: {choice: [none, balanced]}\nmodel.depth: {grid: [2, 5]}\n"
                 "model.heads: {randint: [2, 9]}\nmodel.dropout: 0.1\n")
    space = load_space(p)
    assert space["model.depth"] == {"grid_search": [2, 5]}
    assert space["model.dropout"] == 0.1
    assert 0.0005 <= space["train.lr"].sample() <= 0.01
    assert space["train.class_weight"].sample() in ("none", "balanced")
    assert 2 <= space["model.heads"].sample() < 9


@pytest.mark.parametrize("space,message", [
    ({"train.momentum": 0.9}, "train has no field 'momentum'"),
    ({"optimizer.lr": 0.1}, "expected SECTION.FIELD"),
    ({"data.store": "/x"}, "fixed by the experiment"),
    ({"train.lr": {"loguniform": [0, 1]}}, "loguniform needs low > 0"),
    ({"train.lr": {"uniform": [1, 0.1]}}, r"takes \[low, high\] with low < high"),
    ({"model.depth": {"grid": ["two"]}}, "model.depth: expected int, got 'two'"),
    ({"train.lr": {"normal": [0, 1]}}, "unknown domain 'normal'"),
    ({"train.lr": {"randint": [1, 5]}}, "randint is for integer fields"),
    ({"model.depth": {"uniform": [1, 5]}}, "uniform draws real numbers; for an integer field use randint"),
    ({"train.epochs": {"grid": [4, 8]}}, "fixed by the experiment"),
    ({}, "expected a mapping"),
])
def test_bad_spaces_name_the_path_and_reason(space, message):
    with pytest.raises(ValueError, match=message):
        parse_space(space, "space.yaml")
