#!/usr/bin/python3
"""make_unet_fixtures.py: PyTorch reference fixtures for diffuse's U-Net (tests/test_unet_torch.c).

What it is: a plain-PyTorch re-implementation of diffusers' UNet2DModel (positional time embedding,
DownBlock2D / AttnDownBlock2D, UNetMidBlock2D, UpBlock2D / AttnUpBlock2D, Downsample2D with
padding 0, Upsample2D nearest+conv, AttnProcessor2_0 semantics), written from
docs/unet.md so that state_dict() keys and shapes equal diffusers' exactly. It checks itself
against the published ddpm-cifar10 layout (35,746,307 parameters in 328 tensors), then writes one
safetensors file per tiny config with the input, output, loss, every parameter and every gradient.

What it is not: a copy of diffusers (not installed here, and not needed by the C tests). The C test
suite reads the committed fixtures and never needs torch. Re-run this script only when the network
definition or the fixture set changes:

    /usr/bin/python3 tools/make_unet_fixtures.py [OUTDIR]     (default tests/fixtures)

Numerics: weights, inputs and targets are drawn in float32 (so every stored value is exact in
float32); the forward and backward passes are then computed in float64 from those float32 values,
and the results rounded to float32 when written. The stored out/loss/grads are thus the exact answer
for the stored float32 inputs up to one float32 rounding, and a float32 C implementation should be
compared against them with a tolerance for its own rounding only. The script also runs the same
network in float32 and prints the float32-vs-float64 difference as a guide for that tolerance.

File layout (safetensors, written by the small writer below; no safetensors package):
  x (B,Cin,H,W), t (B) integer timesteps stored as float32, target (B,Cout,H,W), out (B,Cout,H,W),
  loss (1) = mean((out - target)^2), param/<diffusers name>, grad/<diffusers name> (d loss / d param),
  act/<stage> (intermediate activations to help localise a mismatch: t_proj, temb, conv_in,
  down_blocks.<i>, mid_block, up_blocks.<i>), __metadata__ {config, generator, torch_version, ...}.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GENERATOR = "tools/make_unet_fixtures.py"

# ----------------------------------------------------------------------------- config


def unet_config(**over):
    """A diffusers-style UNet2DModel config (keys as in the published unet/config.json)."""
    cfg = {
        "_class_name": "UNet2DModel",
        "act_fn": "silu",
        "add_attention": True,
        "attention_head_dim": None,
        "block_out_channels": [128, 256, 256, 256],
        "center_input_sample": False,
        "class_embed_type": None,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "downsample_padding": 0,
        "dropout": 0.0,
        "flip_sin_to_cos": False,
        "freq_shift": 1,
        "in_channels": 3,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-06,
        "norm_num_groups": 32,
        "num_class_embeds": None,
        "out_channels": 3,
        "resnet_time_scale_shift": "default",
        "sample_size": 32,
        "time_embedding_type": "positional",
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    }
    for k, v in over.items():
        assert k in cfg, k
        cfg[k] = v
    return cfg


# ----------------------------------------------------------------------------- network
# Module attribute names are diffusers' names: they become the state_dict keys.


def timestep_embedding(t, dim, flip_sin_to_cos, freq_shift, max_period=10000):
    """diffusers get_timestep_embedding: exponent_i = -ln(max_period) i / (half - freq_shift), [sin, cos].
    diffusers builds the frequencies in float32; we do the same, then cast to the network dtype."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / (half - freq_shift)
    freqs = torch.exp(exponent)
    arg = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_ch, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_ch, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb_ch, groups, eps, dropout, out_scale=1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.time_emb_proj = nn.Linear(temb_ch, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(cin, cout, 1, 1, 0, bias=True) if cin != cout else None
        self.out_scale = out_scale

    def forward(self, x, temb):
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.out_scale


class Attention(nn.Module):
    """diffusers Attention(C, heads=C//head_dim, dim_head=head_dim, residual_connection=True, bias=True,
    _from_deprecated_attn_block=True) run by AttnProcessor2_0 (softmax scale 1/sqrt(head_dim))."""

    def __init__(self, ch, head_dim, groups, eps):
        super().__init__()
        assert ch % head_dim == 0
        self.heads = ch // head_dim
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps, affine=True)
        self.to_q = nn.Linear(ch, ch, bias=True)
        self.to_k = nn.Linear(ch, ch, bias=True)
        self.to_v = nn.Linear(ch, ch, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch, bias=True), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, hh, ww = x.shape
        residual = x
        h = self.group_norm(x).view(b, c, hh * ww).transpose(1, 2)            # (B, HW, C)
        d = c // self.heads

        def split(z):                                                          # (B, heads, HW, d)
            return z.view(b, hh * ww, self.heads, d).transpose(1, 2)

        q, k, v = split(self.to_q(h)), split(self.to_k(h)), split(self.to_v(h))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)     # (B, heads, HW, HW)
        h = (w @ v).transpose(1, 2).reshape(b, hh * ww, c)
        h = self.to_out[1](self.to_out[0](h))
        h = h.transpose(1, 2).reshape(b, c, hh, ww)
        return h + residual


class Downsample2D(nn.Module):
    """use_conv=True, padding=0: pad (left 0, right 1, top 0, bottom 1), then 3x3 stride-2 conv."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample2D(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """DownBlock2D (attn=False) or AttnDownBlock2D (attn=True)."""

    def __init__(self, cin, cout, temb_ch, layers, attn, head_dim, groups, eps, dropout, add_down):
        super().__init__()
        if attn:
            self.attentions = nn.ModuleList([Attention(cout, head_dim, groups, eps) for _ in range(layers)])
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, temb_ch, groups, eps, dropout) for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if add_down else None
        self.attn = attn

    def forward(self, h, temb):
        skips = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, temb)
            if self.attn:
                h = self.attentions[i](h)
            skips.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h)
            skips.append(h)
        return h, skips


class UpBlock(nn.Module):
    """UpBlock2D / AttnUpBlock2D with num_layers = layers_per_block + 1; each resnet takes cat([h, skip])."""

    def __init__(self, cin, prev_out, cout, temb_ch, layers, attn, head_dim, groups, eps, dropout, add_up):
        super().__init__()
        resnets = []
        for i in range(layers):
            res_skip = cin if i == layers - 1 else cout
            res_in = prev_out if i == 0 else cout
            resnets.append(ResnetBlock2D(res_in + res_skip, cout, temb_ch, groups, eps, dropout))
        if attn:
            self.attentions = nn.ModuleList([Attention(cout, head_dim, groups, eps) for _ in range(layers)])
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_up else None
        self.attn = attn

    def forward(self, h, skips, temb):
        for i, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), temb)
            if self.attn:
                h = self.attentions[i](h)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h)
        return h


class UNetMidBlock2D(nn.Module):
    def __init__(self, ch, temb_ch, head_dim, groups, eps, dropout, out_scale):
        super().__init__()
        self.attentions = nn.ModuleList([Attention(ch, head_dim, groups, eps)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, temb_ch, groups, eps, dropout, out_scale)
                                      for _ in range(2)])

    def forward(self, h, temb):
        h = self.resnets[0](h, temb)
        h = self.attentions[0](h)
        return self.resnets[1](h, temb)


class UNet2DModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        # Only the options diffuse supports; anything else must stay at the DDPM default.
        assert cfg["act_fn"] == "silu" and cfg["time_embedding_type"] == "positional"
        assert cfg["resnet_time_scale_shift"] == "default" and cfg["downsample_padding"] == 0
        # class conditioning as diffusers with class_embed_type None: an embedding of num_class_embeds
        # rows added to the time embedding
        assert cfg["class_embed_type"] is None
        assert not cfg["center_input_sample"] and cfg["add_attention"]
        boc = cfg["block_out_channels"]
        n_lvl = len(boc)
        assert len(cfg["down_block_types"]) == n_lvl and len(cfg["up_block_types"]) == n_lvl
        groups, eps, dropout = cfg["norm_num_groups"], cfg["norm_eps"], cfg["dropout"]
        layers, ahd = cfg["layers_per_block"], cfg["attention_head_dim"]
        self.cfg = cfg
        temb_ch = boc[0] * 4
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, 1, 1)
        self.time_embedding = TimestepEmbedding(boc[0], temb_ch)
        if cfg["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(cfg["num_class_embeds"], temb_ch)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            assert kind in ("DownBlock2D", "AttnDownBlock2D"), kind
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock(cin, cout, temb_ch, layers, kind == "AttnDownBlock2D",
                                              ahd if ahd is not None else cout, groups, eps, dropout,
                                              add_down=i != n_lvl - 1))
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(boc))
        cout = rev[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            assert kind in ("UpBlock2D", "AttnUpBlock2D"), kind
            prev_out, cout = cout, rev[i]
            cin = rev[min(i + 1, n_lvl - 1)]
            self.up_blocks.append(UpBlock(cin, prev_out, cout, temb_ch, layers + 1, kind == "AttnUpBlock2D",
                                          ahd if ahd is not None else cout, groups, eps, dropout,
                                          add_up=i != n_lvl - 1))
        self.mid_block = UNetMidBlock2D(boc[-1], temb_ch, ahd if ahd is not None else boc[-1], groups, eps,
                                        dropout, cfg["mid_block_scale_factor"])
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=eps, affine=True)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, 1, 1)

    def forward(self, x, t, acts=None, labels=None):
        """x (B,Cin,H,W), t (B) integer timesteps, labels (B) class indices of a conditional model; acts, if a
        dict, receives intermediate activations."""
        rec = (lambda k, v: acts.__setitem__(k, v)) if acts is not None else (lambda k, v: None)
        t_proj = timestep_embedding(t, self.cfg["block_out_channels"][0], self.cfg["flip_sin_to_cos"],
                                    self.cfg["freq_shift"]).to(x.dtype)
        temb = self.time_embedding(t_proj)
        if labels is not None:
            temb = temb + self.class_embedding(labels).to(x.dtype)
        rec("t_proj", t_proj)
        rec("temb", temb)
        h = self.conv_in(x)
        rec("conv_in", h)
        skips = [h]
        for i, blk in enumerate(self.down_blocks):
            h, s = blk(h, temb)
            skips += s
            rec("down_blocks.%d" % i, h)
        h = self.mid_block(h, temb)
        rec("mid_block", h)
        for i, blk in enumerate(self.up_blocks):
            h = blk(h, skips, temb)
            rec("up_blocks.%d" % i, h)
        assert not skips
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


# ----------------------------------------------------------------------------- safetensors


def safetensors_write(path, tensors, metadata):
    """tensors: list of (name, float32 numpy array). Header: u64 LE length, JSON, spaces to a multiple of 8."""
    header, offset, blobs = {}, 0, []
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr, dtype="<f4")
        nbytes = arr.size * 4
        assert name not in header, name
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + nbytes]}
        blobs.append(arr.tobytes())
        offset += nbytes
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def safetensors_read(path):
    """Independent reader used to check the writer: returns ({name: array}, metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0 and data[8:9] == b"{"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    buf = data[8 + n:]
    out, covered = {}, 0
    for name, info in header.items():
        b, e = info["data_offsets"]
        assert info["dtype"] == "F32"
        out[name] = np.frombuffer(buf[b:e], dtype="<f4").reshape(info["shape"])
        covered += e - b
    assert covered == len(buf)
    return out, meta


# ----------------------------------------------------------------------------- fixtures


def randomise_(model, gen):
    """Every parameter random (diffusers zero-inits nothing here, but DDPM's zero-init convs must not hide
    bugs either): conv/linear weights U(-sqrt(3/fan_in), +) so activations keep unit variance, norm scales
    1 + 0.2 N(0,1), all biases 0.2 N(0,1). Drawn in float32 so the stored values are exact."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p.shape[1] * int(np.prod(p.shape[2:]))
                a = math.sqrt(3.0 / fan_in)
                p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float32) * 2 - 1) * a)
            elif "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float32))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float32))


def run(model, x, t, target, dtype, labels=None):
    model = model.to(dtype)
    model.zero_grad(set_to_none=True)
    acts = {}
    out = model(x.to(dtype), t, acts, labels)
    loss = torch.mean((out - target.to(dtype)) ** 2)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return out.detach(), loss.detach(), grads, {k: v.detach() for k, v in acts.items()}


def max_abs_diff(a, b):
    return float((a.double() - b.double()).abs().max())


def make_fixture(outdir, name, cfg, batch, timesteps, seed, labels=None):
    gen = torch.Generator().manual_seed(seed)
    model = UNet2DModel(cfg)
    randomise_(model, gen)
    s = cfg["sample_size"]
    x = torch.randn((batch, cfg["in_channels"], s, s), generator=gen, dtype=torch.float32)
    target = torch.randn((batch, cfg["out_channels"], s, s), generator=gen, dtype=torch.float32)
    t = torch.tensor(timesteps, dtype=torch.int64)
    assert len(timesteps) == batch
    lab = torch.tensor(labels, dtype=torch.int64) if labels is not None else None
    assert (labels is None) == (cfg["num_class_embeds"] is None) and (lab is None or len(labels) == batch)

    # float32 run first (a guide for tolerances), then the float64 reference that is stored.
    params32 = {k: v.clone() for k, v in model.state_dict().items()}
    out32, loss32, grads32, _ = run(model, x, t, target, torch.float32, lab)
    out, loss, grads, acts = run(model, x, t, target, torch.float64, lab)
    for k, v in model.state_dict().items():  # the float64 run started from the same float32 values
        assert torch.equal(v.float(), params32[k])

    tensors = [("x", x.numpy()), ("t", t.float().numpy()), ("target", target.numpy()),
               ("out", out.float().numpy()), ("loss", loss.float().reshape(1).numpy())]
    if lab is not None:
        tensors.append(("labels", lab.float().numpy()))
    names = [n for n, _ in model.named_parameters()]
    tensors += [("param/" + n, params32[n].numpy()) for n in names]
    tensors += [("grad/" + n, grads[n].float().numpy()) for n in names]
    tensors += [("act/" + k, v.float().numpy()) for k, v in acts.items()]
    meta = {
        "config": json.dumps(cfg),
        "generator": GENERATOR,
        "torch_version": torch.__version__,
        "seed": str(seed),
        "fixture": name,
        "loss": "mean((out - target)^2) over all elements",
        "precision": "inputs/params float32; out, loss, grad, act computed in float64 then rounded to float32",
    }
    path = os.path.join(outdir, "unet_%s.safetensors" % name)
    safetensors_write(path, tensors, meta)

    # Read back with the independent reader and compare.
    back, meta_back = safetensors_read(path)
    assert meta_back == meta and json.loads(meta_back["config"]) == cfg
    for k, v in tensors:
        assert back[k].shape == tuple(v.shape) and np.array_equal(back[k], v), k

    # Some gradients are exactly zero in exact arithmetic (to_k.bias: softmax ignores a per-row shift;
    # a per-channel bias right before a GroupNorm of one channel per group), so compare gradients with
    # an absolute tolerance scaled by the largest gradient of the fixture, not per tensor.
    gmax = max(float(g.abs().max()) for g in grads.values())
    gworst = max(names, key=lambda n: float(grads[n].abs().max()))
    err_out = max_abs_diff(out32, out)
    err_grad = max(max_abs_diff(grads32[n], grads[n]) for n in names)
    n_params = sum(p.numel() for p in model.parameters())
    print("%s: %s (%d bytes)" % (name, path, os.path.getsize(path)))
    print("  params %d in %d tensors; x %s; t %s; loss %.9g" %
          (n_params, len(names), tuple(x.shape), timesteps, float(loss)))
    print("  max|x| %.4g  max|out| %.4g  max|grad| %.4g (%s)  min over tensors of max|grad| %.4g" %
          (float(x.abs().max()), float(out.abs().max()), gmax, gworst,
           min(float(g.abs().max()) for g in grads.values())))
    print("  float32 torch vs float64 reference: out %.3g, loss %.3g, grad abs %.3g (%.3g of max|grad|)" %
          (err_out, abs(float(loss32) - float(loss)), err_grad, err_grad / gmax))
    print("  config: %s" % json.dumps(cfg))
    return path


def check_ddpm_cifar10_layout():
    """The published google/ddpm-cifar10-32 layout: 35,746,307 parameters in 328 tensors (docs/unet.md)."""
    model = UNet2DModel(unet_config())
    sd = model.state_dict()
    n = sum(v.numel() for v in sd.values())
    assert len(sd) == 328, len(sd)
    assert n == 35746307, n
    # A few names and shapes from the table in docs/unet.md.
    expect = {
        "conv_in.weight": (128, 3, 3, 3),
        "time_embedding.linear_1.weight": (512, 128),
        "down_blocks.1.resnets.0.conv_shortcut.weight": (256, 128, 1, 1),
        "down_blocks.1.attentions.0.to_q.weight": (256, 256),
        "down_blocks.1.attentions.1.to_out.0.bias": (256,),
        "down_blocks.2.downsamplers.0.conv.weight": (256, 256, 3, 3),
        "mid_block.attentions.0.group_norm.weight": (256,),
        "mid_block.resnets.1.time_emb_proj.weight": (256, 512),
        "up_blocks.0.resnets.0.conv1.weight": (256, 512, 3, 3),
        "up_blocks.2.resnets.2.conv_shortcut.weight": (256, 384, 1, 1),
        "up_blocks.2.attentions.2.to_v.weight": (256, 256),
        "up_blocks.2.upsamplers.0.conv.weight": (256, 256, 3, 3),
        "up_blocks.3.resnets.0.norm1.weight": (384,),
        "up_blocks.3.resnets.1.conv1.weight": (128, 256, 3, 3),
        "conv_norm_out.weight": (128,),
        "conv_out.weight": (3, 128, 3, 3),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, (k, tuple(sd[k].shape), shape)
    assert "up_blocks.3.upsamplers.0.conv.weight" not in sd and "down_blocks.3.downsamplers.0.conv.weight" not in sd
    print("ddpm-cifar10 layout: %d parameters in %d tensors (matches diffusers)" % (n, len(sd)))


FIXTURES = [
    # (name, config overrides, batch, timesteps, seed)
    ("tiny_noattn",
     dict(in_channels=1, out_channels=1, sample_size=8, block_out_channels=[8, 16], layers_per_block=1,
          down_block_types=["DownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "UpBlock2D"],
          norm_num_groups=4, attention_head_dim=None),
     2, [0, 999], 1001),
    ("tiny_attn_odd",
     dict(in_channels=3, out_channels=3, sample_size=14, block_out_channels=[8, 16], layers_per_block=2,
          down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
          norm_num_groups=4, attention_head_dim=None),
     2, [500, 37], 1002),
    ("tiny_multihead",
     dict(in_channels=1, out_channels=1, sample_size=8, block_out_channels=[8, 16, 16], layers_per_block=1,
          down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
          up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
          norm_num_groups=8, attention_head_dim=4),
     3, [0, 500, 999], 1003),
    # class-conditional: 3 classes and the null class (index 3), labels with the null one among them
    ("tiny_cond",
     dict(in_channels=1, out_channels=1, sample_size=8, block_out_channels=[8, 16], layers_per_block=1,
          down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
          norm_num_groups=4, attention_head_dim=None, num_class_embeds=4),
     3, [10, 500, 999], 1004, [2, 0, 3]),
]


def main():
    torch.set_num_threads(1)  # deterministic reductions; the nets are tiny
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo, "tests", "fixtures")
    os.makedirs(outdir, exist_ok=True)
    check_ddpm_cifar10_layout()
    for name, over, batch, ts, seed, *labels in FIXTURES:
        path = make_fixture(outdir, name, unet_config(**over), batch, ts, seed, labels[0] if labels else None)
        assert os.path.getsize(path) < 1_000_000, path


if __name__ == "__main__":
    main()
