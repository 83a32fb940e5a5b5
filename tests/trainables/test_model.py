import pytest
import torch

from trainables.model import ModelConfig, create_model


def test_shapes_and_paper_architecture():
    torch.manual_seed(0)
    m = create_model(ModelConfig(), token_dim=36, num_classes=7)
    x, mask = torch.randn(3, 11, 36), torch.ones(3, 11, dtype=torch.bool)
    assert m(x, mask).shape == (3, 7)
    assert len(m.layers) == 5
    attn = m.layers[0][0]
    assert attn.qkv.out_features == 3 * 8 * 64 and attn.out.in_features == 8 * 64
    assert m.layers[0][1].net[1].out_features == 64
    assert m.embed[0].in_features == 36 and m.embed[0].out_features == 64
    assert isinstance(m.embed[1], torch.nn.LayerNorm)
    assert m.cls.shape == (1, 1, 64)


def test_padding_does_not_change_a_clips_output():
    torch.manual_seed(0)
    m = create_model(ModelConfig(), token_dim=20, num_classes=5).eval()
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
