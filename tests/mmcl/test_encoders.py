"""mmcl.encoders: shapes, padding masks, heads, errors (seed 003 Table A.2b architectures)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcl.encoders import (
    ConvImageBackbone,
    Encoder,
    GaussianHead,
    Posterior,
    ResNet18Backbone,
    TextConvNetBackbone,
    image_encoder,
    text_encoder,
)

VOCAB, MAX_LEN = 40, 33


def ids(batch: int, lengths: list[int], max_len: int = MAX_LEN, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(batch, max_len, dtype=torch.int64)
    for i, n in enumerate(lengths):
        out[i, :n] = torch.randint(3, VOCAB, (n,), generator=g)
    return out


def test_image_encoder_is_resnet18_100_leakyrelu_linear():
    torch.manual_seed(0)
    enc = image_encoder(encoding_size=5)
    assert isinstance(enc.backbone, ResNet18Backbone) and enc.backbone.out_features == 100
    assert enc.backbone.net.fc.out_features == 100
    assert isinstance(enc.head.activation, nn.LeakyReLU) and enc.head.linear.out_features == 5
    n_params = sum(p.numel() for p in enc.backbone.parameters())
    assert n_params == 11_689_512 - (512 * 1000 + 1000) + (
        512 * 100 + 100
    )  # torchvision resnet18, fc 1000 -> 100
    z = enc(torch.randn(4, 3, 32, 32))
    assert z.shape == (4, 5)
    assert torch.allclose(enc.head(enc.features(torch.zeros(2, 3, 32, 32))), enc(torch.zeros(2, 3, 32, 32)))


def test_image_encoder_channels_last_matches_contiguous():
    torch.manual_seed(0)
    a = image_encoder(3).eval()
    b = image_encoder(3, channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(a(x), b(x), atol=1e-5)


def test_convnet_image_encoder_halves_to_7x7_then_linear():
    torch.manual_seed(0)
    enc = image_encoder(6, hidden_size=50, backbone="convnet", resolution=64, base_channels=8)
    assert isinstance(enc.backbone, ConvImageBackbone) and enc.backbone.out_features == 50
    convs = [m for m in enc.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64]  # 64 -> 32 -> 16 -> 8 -> 4
    assert enc.backbone.linear.in_features == 64 * 4 * 4
    assert enc(torch.randn(3, 3, 64, 64)).shape == (3, 6)
    with pytest.raises(ValueError, match=r"expects \(batch, 3, 64, 64\) images"):
        enc(torch.randn(3, 3, 32, 32))
    with pytest.raises(ValueError, match="needs the image resolution"):
        image_encoder(6, backbone="convnet")
    with pytest.raises(ValueError, match="'resnet18' or 'convnet'"):
        image_encoder(6, backbone="vgg")


def test_convnet_global_max_pool_features_do_not_depend_on_where_the_object_is():
    torch.manual_seed(0)
    enc = image_encoder(
        6, hidden_size=50, backbone="convnet", resolution=64, base_channels=8, global_max_pool=True
    )
    bb = enc.backbone.eval()
    assert bb.linear.in_features == 64 * 4 * 4 + 64  # flattened map + one maximum per channel
    # the same object at two places 16 pixels (one cell of the 4x4 map) apart, away from the border
    obj = torch.rand(3, 12, 12)
    a, b = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    a[..., 18:30, 18:30] = obj
    b[..., 34:46, 18:30] = obj
    with torch.no_grad():
        ha, hb = bb.convnet(a), bb.convnet(b)
        assert not torch.allclose(ha.flatten(1), hb.flatten(1))  # the map knows where
        assert torch.allclose(ha.amax(dim=(2, 3)), hb.amax(dim=(2, 3)), atol=1e-6)  # the maxima do not
        # with the flattened part's weights zeroed, the features are those of the maxima alone
        bb.linear.weight[:, : 64 * 4 * 4] = 0
        assert torch.allclose(bb(a), bb(b), atol=1e-5)
    with pytest.raises(ValueError, match="option of the convnet image backbone"):
        image_encoder(6, backbone="resnet18", global_max_pool=True)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_encoding_size_must_be_positive(bad):
    with pytest.raises(ValueError, match="encoding_size must be a positive integer"):
        image_encoder(bad)
    with pytest.raises(ValueError, match="encoding_size must be a positive integer"):
        text_encoder(VOCAB, MAX_LEN, bad)


def test_text_convnet_is_four_layers_and_masks_padding():
    torch.manual_seed(0)
    enc = text_encoder(VOCAB, MAX_LEN, encoding_size=4).eval()
    convs = [m for m in enc.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and isinstance(enc.head.linear, nn.Linear)  # 3 conv + 1 linear
    x = ids(3, [5, 17, 33])
    z = enc(x)
    assert z.shape == (3, 4)
    # shorter padding (trailing pads trimmed) and embedding of pad = 0: the same encoding
    assert torch.allclose(enc(x[:2, :17]), z[:2], atol=1e-6)
    assert torch.allclose(enc(x[:1, :5]), z[:1], atol=1e-6)
    assert enc.backbone.embedding.weight[0].abs().sum() == 0
    # changing a pad token's id (to a real word) changes the output: padding is what is masked
    y = x.clone()
    y[0, 10] = 7
    assert not torch.allclose(enc(y)[0], z[0])


def test_text_convnet_pad_embedding_gets_no_gradient():
    enc = text_encoder(VOCAB, MAX_LEN, 4)
    enc(ids(4, [3, 9, 20, 33])).sum().backward()
    grad = enc.backbone.embedding.weight.grad
    assert grad[0].abs().sum() == 0 and grad[3:].abs().sum() > 0


def test_text_longer_than_max_length_is_an_error():
    enc = text_encoder(VOCAB, MAX_LEN, 4)
    with pytest.raises(ValueError, match="35 tokens; this encoder accepts at most max_length=33"):
        enc(torch.ones(1, 35, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer token ids"):
        enc(torch.ones(1, 10))


def test_transformer_text_encoder_from_config_without_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    cfg = {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    enc = text_encoder(VOCAB, MAX_LEN, 6, backbone="transformer", transformer_config=cfg).eval()
    assert enc.backbone.out_features == 32
    x = ids(2, [4, 30])
    z = enc(x)
    assert z.shape == (2, 6)
    # attention mask + masked mean: trimming trailing padding changes nothing
    assert torch.allclose(enc(x[:1, :4]), z[:1], atol=1e-5)
    with pytest.raises(ValueError, match="text transformer config"):
        text_encoder(
            VOCAB, MAX_LEN, 6, backbone="transformer", transformer_config={"model_type": "no-such-model"}
        )


def test_gaussian_head_reuses_the_backbone():
    torch.manual_seed(0)
    enc = image_encoder(3, head="gaussian")
    post = enc(torch.randn(2, 3, 32, 32))
    assert isinstance(post, Posterior) and post.mean.shape == post.logvar.shape == (2, 3)
    txt = text_encoder(VOCAB, MAX_LEN, 3, head="gaussian")
    assert isinstance(txt.head, GaussianHead) and txt(ids(2, [3, 4])).logvar.shape == (2, 3)
    # a backbone plus any head composes
    both = Encoder(
        TextConvNetBackbone(VOCAB, MAX_LEN), GaussianHead(txt.backbone.out_features, 2, activation=False)
    )
    assert both(ids(1, [5])).mean.shape == (1, 2)
    with pytest.raises(ValueError, match="head must be"):
        image_encoder(3, head="mixture")


def test_conv_stacks_run_channels_last_and_agree_with_nchw():
    """The ConvNets' and the DMVAE decoder's convolutions get channels-last inputs (1.3x faster
    on an AVX2 CPU for the image ConvNet and the decoder, docs/bench/demo_cpu.json) and compute
    what the NCHW layout computes."""
    from mmcl.dmvae.networks import ImageDecoder
    from mmcl.encoders import image_encoder, text_encoder

    torch.manual_seed(0)
    image = image_encoder(16, backbone="convnet", resolution=32, base_channels=8, global_max_pool=True)
    text = text_encoder(20, 16, 16)
    decoder = ImageDecoder(8, 32, 8)
    layouts = []

    def record(module, inputs):
        layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last))

    for net in (image.backbone.convnet, text.backbone.convnet, decoder.deconv):
        net[0].register_forward_pre_hook(record)
    x, ids, z = torch.rand(4, 3, 32, 32), torch.randint(1, 20, (4, 16)), torch.randn(4, 8)
    out_image, out_text, out_decoder = image(x), text(ids), decoder(z)
    assert layouts == [True, True, True]
    h = image.backbone.convnet(x.contiguous())  # NCHW all the way
    nchw = image.head(image.backbone.linear(torch.cat([h.flatten(1), h.amax(dim=(2, 3))], 1)))
    torch.testing.assert_close(out_image, nchw, rtol=1e-4, atol=1e-5)
    h = decoder.linear(z).view(-1, decoder.c0, decoder.s0, decoder.s0)
    torch.testing.assert_close(out_decoder, torch.sigmoid(decoder.deconv(h)), rtol=1e-4, atol=1e-5)
    assert out_text.shape == (4, 16)


def test_text_convnet_holds_channels_last_weights_and_loads_default_layout_checkpoints():
    """Its one-channel input cannot pick the channels-last kernels, so its weights do (1.2-1.3x
    on an AVX2 CPU, docs/bench/demo_cpu_layout.json); the values are those of the default layout,
    and a state dict saved in the default layout (older checkpoints) loads into it."""
    import copy

    from mmcl.encoders import text_encoder

    torch.manual_seed(0)
    text = text_encoder(20, 16, 16).eval()
    convs = [m for m in text.backbone.convnet if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    default = copy.deepcopy(text).to(memory_format=torch.contiguous_format)
    second = 3  # the first convolution's weight has one input channel: both layouts at once
    assert not default.backbone.convnet[second].weight.is_contiguous(memory_format=torch.channels_last)
    ids = torch.randint(1, 20, (4, 16))
    torch.testing.assert_close(text(ids), default(ids), rtol=1e-4, atol=1e-5)

    torch.manual_seed(1)
    fresh = text_encoder(20, 16, 16).eval()
    fresh.load_state_dict(default.state_dict())
    assert fresh.backbone.convnet[second].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fresh(ids), default(ids), rtol=1e-4, atol=1e-5)
