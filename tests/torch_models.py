"""Small models for the torch tests (importable by spawned worker processes)."""

from __future__ import annotations

import os

import torch
from torch import nn


def small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 12),
        nn.ReLU(),
        nn.Linear(12, 3),
    )


def image_batches(n_batches: int = 6, batch: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 1, 8, 8, generator=g), torch.zeros(batch)) for _ in range(n_batches)]


def transformer_block(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=24, dropout=0.1, batch_first=True)


def token_batches(n_batches: int = 5, batch: int = 32, tokens: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, tokens, 16, generator=g) for _ in range(n_batches)]


def distributed_worker(
    rank: int, world: int, init_file: str, out_dir: str, split: str = "deal", groups: int | None = None
) -> None:
    """One rank of a two-process test: compare on this rank's shard, save the result. With
    split="deal" the batches are dealt round-robin; with "empty" rank 0 gets them all and the
    other ranks none. ``groups``: jackknife groups of the comparison."""
    import numpy as np

    import nsm.torch

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        data = image_batches(8)
        shard = data[rank::world] if split == "deal" else (data if rank == 0 else [])
        c = nsm.torch.compare(
            small_cnn(1), small_cnn(2), shard, ["1", "3"], progress=False, precision="float64", groups=groups
        )
        np.save(os.path.join(out_dir, f"gram{rank}.npy"), c["3"].gram.matrix)
        c.save(os.path.join(out_dir, f"result{rank}.json"))
    finally:
        torch.distributed.destroy_process_group()


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: in-place ReLUs, one ReLU module called twice, and
    `out += identity` on the second norm's output."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (BasicBlock, [2, 2, 2, 2]), narrower by `width`."""

    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        cin = width
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(seed: int, width: int = 8) -> nn.Module:
    """A ResNet-18 replica with random weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    model = ResNet18(width)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise conv, permute to channels-last, LayerNorm, Linear-GELU-Linear
    on (N, H, W, C), permute back, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


def convnext(seed: int, dim: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, dim, 2, stride=2), ConvNeXtBlock(dim), nn.ReLU()).eval()


def conv1d_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(6, 5, 3),
        nn.GELU(),
        nn.Dropout(0.1),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.ReLU(),
    ).eval()


class TokenEncoder(nn.Module):
    """A Hugging Face-style encoder: keyword inputs, an attention mask (1 = real token)."""

    def __init__(self, seed: int, d: int = 16, ffn: int = 24, layers: int = 2) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(50, d)
        layer = nn.TransformerEncoderLayer(
            d_model=d, nhead=2, dim_feedforward=ffn, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 7)

    def forward(self, input_ids, attention_mask=None):
        pad = None if attention_mask is None else attention_mask == 0
        h = self.encoder(self.embed(input_ids), src_key_padding_mask=pad)
        return self.head(h)


def padded_batches(n_batches: int = 4, batch: int = 8, length: int = 9, side: str = "right", seed: int = 3):
    """Dict batches with padding on one side: at least one real token per input."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1, 50, (batch, length), generator=g)
        real = torch.randint(1, length + 1, (batch,), generator=g)
        pos = torch.arange(length)
        mask = pos[None, :] < real[:, None] if side == "right" else pos[None, :] >= (length - real)[:, None]
        out.append({"input_ids": ids.masked_fill(~mask, 0), "attention_mask": mask.long()})
    return out


class HalvesInput(nn.Module):
    """A model that writes into its input (``x /= 2``) before a Linear and an in-place ReLU
    (whose overwrite of the Linear's output makes nsm re-run the forward)."""

    def __init__(self, seed: int, d_in: int = 6, d: int = 10) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(d_in, d)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x /= 2
        return self.relu(self.lin(x))


class RoutedExperts(nn.Module):
    """A capacity-routed mixture of experts: each expert runs on the ``capacity`` inputs its
    router scores highest, and their outputs are scattered back into the batch."""

    def __init__(self, seed: int, d: int = 8, experts: int = 2, capacity: int = 4) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.router = nn.Linear(d, experts)
        self.experts = nn.ModuleList(nn.Linear(d, d) for _ in range(experts))
        self.capacity = capacity

    def forward(self, x):
        scores = self.router(x)
        out = torch.zeros_like(x)
        for k, expert in enumerate(self.experts):
            chosen = scores[:, k].topk(min(self.capacity, len(x))).indices
            out[chosen] += expert(x[chosen])
        return out


class BufferedLinear(nn.Module):
    """A Linear that returns a preallocated buffer of its own, overwritten by the next call."""

    def __init__(self, seed: int, d_in: int = 6, d: int = 5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(d_in, d)
        self.out: torch.Tensor | None = None

    def forward(self, x):
        y = self.lin(x)
        if self.out is None or self.out.shape != y.shape:
            self.out = torch.empty_like(y)
        return self.out.copy_(y)


class SequenceFirstEncoder(nn.Module):
    """Token ids (N, L) embedded, turned sequence-first and run through an
    ``nn.LSTM(batch_first=False)`` and a Linear + ReLU on its (L, N, C) output."""

    def __init__(self, seed: int, d: int = 12, hidden: int = 10) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(50, d)
        self.lstm = nn.LSTM(d, hidden)
        self.head = nn.Linear(hidden, 8)
        self.act = nn.ReLU()

    def forward(self, input_ids, attention_mask=None):
        out, _ = self.lstm(self.embed(input_ids).transpose(0, 1))
        return self.act(self.head(out))


class EncoderDecoder(nn.Module):
    """A Hugging Face-style encoder-decoder: keyword inputs with an encoder and a decoder mask,
    an embedding shared by both (called twice), and a head after the decoder."""

    def __init__(self, seed: int, d: int = 12) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(50, d)
        self.encoder = nn.Sequential(nn.Linear(d, d), nn.Tanh())
        self.decoder = nn.ModuleDict({"lin": nn.Linear(d, d), "act": nn.Tanh()})
        self.lm_head = nn.Linear(d, 9)

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask=None):
        memory = self.encoder(self.embed(input_ids)) * attention_mask[..., None]
        context = memory.sum(dim=1, keepdim=True) / attention_mask.sum(dim=1)[:, None, None]
        h = self.decoder["act"](self.decoder["lin"](self.embed(decoder_input_ids)) + context)
        return self.lm_head(h)


def seq2seq_batches(n_batches: int = 8, batch: int = 8, length: int = 9):
    """Encoder inputs padded on the right, decoder inputs padded on the left: the same padded
    length, different real tokens."""
    enc = padded_batches(n_batches, batch, length, "right", seed=5)
    dec = padded_batches(n_batches, batch, length, "left", seed=6)
    return [
        {**e, "decoder_input_ids": d["input_ids"], "decoder_attention_mask": d["attention_mask"]}
        for e, d in zip(enc, dec)
    ]
