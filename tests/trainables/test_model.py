import pytest
import torch

from trainables.model import ModelConfig, create_model


def test_shapes_and_paper_architecture():
    torch.manual_seed(0)
    m = create_model(ModelConfig(max_frames=256), token_dim=36, num_classes=7)
    x, mask = torch.randn(3, 11, 36), torch.ones(3, 11, dtype=torch.bool)
    assert m(x, mask).shape == (3, 7)
    assert len(m.layers) == 5
    attn = m.layers[0][0]
    assert attn.qkv.out_features == 3 * 8 * 64 and attn.out.in_features == 8 * 64
    assert m.layers[0][1].net[1].out_features == 64
    assert m.embed[0].in_features == 36 and m.embed[0].out_features == 64
    assert isinstance(m.embed[1], torch.nn.LayerNorm)
    assert m.cls.shape == (1, 1, 64)


@pytest.mark.parametrize("cfg", [ModelConfig(max_frames=256), ModelConfig(positions="normalized_time")],
                         ids=["learned", "normalized_time"])
def test_padding_does_not_change_a_clips_output(cfg):
    torch.manual_seed(0)
    m = create_model(cfg, token_dim=20, num_classes=5).eval()
    short = torch.randn(1, 6, 20)
    alone = m(short, torch.ones(1, 6, dtype=torch.bool))
    padded = torch.cat([short, torch.randn(1, 9, 20) * 50], dim=1)  # garbage in the padding
    mask = torch.zeros(1, 15, dtype=torch.bool)
    mask[:, :6] = True
    other = torch.randn(1, 15, 20)
    batch = m(torch.cat([padded, other]), torch.cat([mask, torch.ones(1, 15, dtype=torch.bool)]))
    assert torch.allclose(alone, batch[:1], atol=1e-5)
    # and the mask matters: without it the garbage changes the output
    assert not torch.allclose(alone, m(padded, torch.ones(1, 15, dtype=torch.bool)), atol=1e-3)


def test_unknown_model_name_and_too_long_clip():
    with pytest.raises(ValueError, match="model.name"):
        create_model(ModelConfig(name="resnet"), 4, 2)
    m = create_model(ModelConfig(max_frames=8), 4, 2)
    with pytest.raises(ValueError, match="max_frames=8"):
        m(torch.randn(1, 9, 4), torch.ones(1, 9, dtype=torch.bool))


def test_learned_positions_need_a_resolved_max_frames():
    with pytest.raises(ValueError, match=r"model.max_frames=0.*store's longest"):
        create_model(ModelConfig(), 4, 2)
    with pytest.raises(ValueError, match="model.positions"):
        create_model(ModelConfig(max_frames=8, positions="sinusoidal"), 4, 2)


def test_normalized_time_positions_span_every_clip_by_its_own_length():
    torch.manual_seed(0)
    m = create_model(ModelConfig(positions="normalized_time", time_points=5), 4, 2)
    table = m.pos[0, 1:]
    assert table.shape[0] == 5
    for length in (2, 5, 9, 300):  # any length fits, however many entries the table has
        mask = torch.zeros(1, 300, dtype=torch.bool)
        mask[0, :length] = True
        pos = m._positions(300, mask)[0]
        assert torch.equal(pos[0], m.pos[0, 0])  # the CLS token's
        assert torch.allclose(pos[1], table[0]) and torch.allclose(pos[length], table[-1], atol=1e-6)
        if (length - 1) % 4 == 0:  # frames that land on entries take them exactly
            step = (length - 1) // 4
            assert torch.allclose(pos[1:length + 1:step], table, atol=1e-6)
    mask = torch.ones(1, 3, dtype=torch.bool)  # frame 1 of 3 sits midway between entries 1 and 2 of 4
    m3 = create_model(ModelConfig(positions="normalized_time", time_points=4), 4, 2)
    assert torch.allclose(m3._positions(3, mask)[0, 2], m3.pos[0, 1:][1:3].mean(0), atol=1e-6)
    m(torch.randn(2, 300, 4), torch.ones(2, 300, dtype=torch.bool))  # no max_frames limit


@pytest.mark.parametrize("cfg", [ModelConfig(max_frames=16), ModelConfig(positions="normalized_time", depth=2)],
                         ids=["learned", "normalized_time"])
def test_the_last_layer_computing_cls_alone_is_the_whole_models_function(cfg):
    """Only CLS queries in the last layer: the logits and every gradient are those of the
    last layer over every token (the model before the shortcut)."""
    torch.manual_seed(0)
    m = create_model(cfg, token_dim=12, num_classes=4)
    tokens, mask = torch.randn(5, 9, 12), torch.ones(5, 9, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 1:] = False
    logits, reference = m(tokens, mask), m(tokens, mask, every_token=True)
    assert torch.allclose(logits, reference, atol=1e-5)
    params = list(m.parameters())
    grads = torch.autograd.grad(logits.square().sum(), params)
    expected = torch.autograd.grad(reference.square().sum(), params)
    for (name, _), g, e in zip(m.named_parameters(), grads, expected):
        assert torch.allclose(g, e, atol=1e-5, rtol=1e-4), name
