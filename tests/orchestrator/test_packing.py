"""The dry run's per-node plan: trials at once from CPUs and (fractional) GPUs."""

from orchestrator.packing import Node, plan_lines, trials_at_once


def test_fractional_gpus_pack_onto_one_gpu():
    node = Node("n", cpus=16, gpus=2)
    assert trials_at_once(node, 1, 0.25) == 8  # four per GPU, two GPUs; CPUs would allow 16
    assert trials_at_once(node, 4, 0.25) == 4  # now the CPUs limit it
    assert trials_at_once(node, 1, 0.1) == 16
    assert trials_at_once(node, 1, 1) == 2 and trials_at_once(node, 1, 2) == 1
    assert trials_at_once(Node("n", 16, 1.5), 1, 0.5) == 2  # a fraction never spans two GPUs
    assert trials_at_once(Node("cpu", 8, 0), 1, 0.25) == 0


def test_plan_lines_per_node_and_total():
    lines = plan_lines([Node("a", 4, 1), Node("b", 2, 0)], 1, 0.25, n_trials=10)
    assert lines[0] == "  a: 4 CPU, 1 GPU -> 4 trials at once (4 per GPU)"
    assert lines[1] == "  b: 2 CPU -> 0 trials at once (too small for one trial)"
    assert lines[2] == "  in all 4 trials at once: 10 trials in 3 rounds"
    cpu_only = plan_lines([Node("this machine", 2, 0)], 1, 0, n_trials=3)
    assert cpu_only == ["  this machine: 2 CPU -> 2 trials at once", "  in all 2 trials at once: 3 trials in 2 rounds"]
