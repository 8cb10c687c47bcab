"""An inference-only copy of a BAS model: the same function up to float rounding, in fewer operations.

The pipeline builds it once and runs it instead of the model it was given, which stays untouched:

- every BatchNorm whose only input is a convolution's output is folded into that convolution's weight
  and bias (eval-mode BatchNorm is an affine map per channel), found on a torch.fx graph of f1 / f2, so
  a conv output that is read anywhere else (a residual, a second branch) keeps its BatchNorm;
- on CPU, the wide 3 x 3 stride-1 convolutions of f1 / f2 / the extractor run as Winograd
  F(2x2, 3x3) (Lavin & Gray, CVPR 2016): 16 multiplies per 2 x 2 output tile and channel pair instead
  of 36. PyTorch's CPU convolutions compute these layers directly and already fast (65-88 GFLOP/s a
  layer on one core here), so fewer multiplies is the one large saving left (the extractor's two
  3 x 3 convs alone are a third of bas_resnet50's multiplies).

The copy snapshots the weights at construction: a model changed afterwards needs a new copy.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, Conv2dSame
from torch import fx, nn

__all__ = ["WinogradConv2d", "fold_batchnorm", "inference_copy"]

# Convolutions whose forward is conv2d(x, weight, bias) (Conv2dSame pads first): a per-channel affine
# map after them folds into weight and bias. Exact types: a subclass may transform its weight.
_FOLDABLE_CONVS = (nn.Conv2d, Conv2dSame)
# BatchNorms with a known forward: nn.BatchNorm2d, and timm's BatchNormAct2d (BatchNorm, drop, act).
_FOLDABLE_NORMS = (nn.BatchNorm2d, BatchNormAct2d)
# Winograd pays when the GEMM work per transformed element, Cin * Cout / (Cin + Cout), outweighs the
# memory-bound tile transforms. Measured on one CPU core at batch 8: 1.2-1.3x at 256 -> 256 channels
# (width 128), 1.7-2.5x at 512 and more (more at batch 1), none at 128 -> 128 (64), slower below.
WINOGRAD_MIN_WIDTH = 128

# Winograd F(2x2, 3x3)'s weight transform G (4 x 3); G g G^T of a 3 x 3 filter g is kron(G, G) @ vec(g).
_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
_GG = torch.kron(_G, _G)  # (16, 9)


class WinogradConv2d(nn.Module):
    """A 3 x 3, stride-1, padding-1 convolution computed as Winograd F(2x2, 3x3).

    The padded input is cut into overlapping 4 x 4 tiles (stride 2), each transformed as B^T d B, then
    the 16 tile positions are 16 batched GEMMs over the channels with the pre-transformed weights
    G g G^T, and each result is transformed back as A^T m A into a 2 x 2 output tile. The transforms'
    coefficients are 0, +-1 and +-1/2, so the result is the direct convolution's up to float rounding.
    Channels last throughout: the GEMMs read channels contiguously, and the output is channels_last.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_winograd_conv(conv):
            raise ValueError(f"Not a 3x3, stride-1, padding-1, dense convolution: {conv}.")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        weight = conv.weight.detach()
        # G g G^T in float64, stored (tile position, Cout, Cin): the GEMMs read it transposed, for free.
        u = weight.double().flatten(2) @ _GG.to(weight.device).T  # (Cout, Cin, 16)
        self.register_buffer("u", u.to(weight.dtype).permute(2, 0, 1).contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        th, tw = (h + 1) // 2, (w + 1) // 2  # output tiles; an odd side is padded to whole tiles
        # NHWC, zero-padded by 1 (the convolution's padding) plus the tile remainder: (B, 2 th + 2, 2 tw + 2, C).
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 2 * tw + 1 - w, 1, 2 * th + 1 - h))
        # B^T d over the 4 rows of every tile (stride-2 row views), then d B over the 4 columns.
        r = [xp[:, i : i + 2 * th : 2] for i in range(4)]
        rows = (r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3])
        v = x.new_empty(4, 4, b, th, tw, c)
        for i, row in enumerate(rows):
            d = [row[:, :, j : j + 2 * tw : 2] for j in range(4)]
            torch.sub(d[0], d[2], out=v[i, 0])
            torch.add(d[1], d[2], out=v[i, 1])
            torch.sub(d[2], d[1], out=v[i, 2])
            torch.sub(d[1], d[3], out=v[i, 3])
        m = torch.bmm(v.view(16, b * th * tw, c), self.u.transpose(1, 2))
        m = m.view(4, 4, b, th, tw, self.out_channels)
        if self.bias is not None:
            m[1, 1] += self.bias  # A^T e_11 A is all ones: the bias reaches each output of the tile once
        # A^T m over rows, then m A over columns, straight into the output tiles.
        t = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
        y = x.new_empty(b, th, 2, tw, 2, self.out_channels)
        for i, s in enumerate(t):
            torch.add(s[0] + s[1], s[2], out=y[:, :, i, :, 0])
            torch.sub(s[1] - s[2], s[3], out=y[:, :, i, :, 1])
        y = y.view(b, 2 * th, 2 * tw, self.out_channels)[:, :h, :w]
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), F(2x2, 3x3)"


def is_winograd_conv(conv: nn.Module) -> bool:
    """A plain 3 x 3, stride-1, padding-1, ungrouped, undilated, zero-padded convolution."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _winograd_pays(conv: nn.Conv2d) -> bool:
    cin, cout = conv.in_channels, conv.out_channels
    return cin * cout >= WINOGRAD_MIN_WIDTH * (cin + cout)


class _Tracer(fx.Tracer):
    """Keeps convolutions and BatchNorms as graph nodes (timm's BatchNormAct2d would be traced into)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.modules.batchnorm._BatchNorm)) or super().is_leaf_module(
            m, module_qualified_name
        )


def _conv_norm_pairs(root: nn.Module, prefix: str = "") -> tuple[list[tuple[str, str]], list[str]]:
    """(conv, norm) names under ``root`` where the norm's one input is the conv's output and nothing
    else reads that output, plus the untraceable modules whose own BatchNorms stay unfolded (a module
    torch.fx cannot trace is skipped, and each of its children tried on its own)."""
    try:
        graph = _Tracer().trace(root)
    except Exception as err:  # arbitrary model code: any failure only means "look one level down"
        pairs, untraced = [], []
        if any(type(child) in _FOLDABLE_NORMS for child in root.children()):
            reason = (str(err).splitlines() or [""])[0][:200]
            untraced.append(f"{prefix.rstrip('.') or type(root).__name__} ({type(err).__name__}: {reason})")
        for name, child in root.named_children():
            p, u = _conv_norm_pairs(child, f"{prefix}{name}.")
            pairs += p
            untraced += u
        return pairs, untraced
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(root.get_submodule(node.target)) not in _FOLDABLE_NORMS:
            continue
        src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and type(root.get_submodule(src.target)) in _FOLDABLE_CONVS
            and len(src.users) == 1
            and calls[src.target] == calls[node.target] == 1
        ):
            pairs.append((prefix + src.target, prefix + node.target))
    return pairs, []


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> tuple[int, list[str]]:
    """Fold the eval-mode BatchNorms of f1 / f2 into the convolutions before them, in place (call it on
    a copy). Returns the number folded and the untraceable modules whose BatchNorms stay as they are.
    A module registered twice (shared weights) is never folded.
    """
    seen = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    folded, untraced = 0, []
    for part in ("f1", "f2"):
        root = getattr(model, part, None)
        if root is None:
            continue
        pairs, failed = _conv_norm_pairs(root, f"{part}.")
        untraced += failed
        for conv_name, norm_name in pairs:
            conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
            if seen[id(conv)] > 1 or seen[id(norm)] > 1 or norm.running_mean is None:
                continue
            var, mean = norm.running_var.double(), norm.running_mean.double()
            scale = torch.rsqrt(var + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight.double()
            bias = -mean * scale
            if norm.bias is not None:
                bias = bias + norm.bias.double()
            if conv.bias is not None:
                bias = bias + conv.bias.double() * scale
            weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
            conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
            conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
            # BatchNormAct2d is BatchNorm -> drop -> act: keep the last two.
            rest = nn.Sequential(norm.drop, norm.act) if isinstance(norm, BatchNormAct2d) else nn.Identity()
            model.set_submodule(norm_name, rest)
            folded += 1
    return folded, untraced


def inference_copy(model: nn.Module, winograd: bool | None = None) -> tuple[nn.Module, list[str]]:
    """An eval-mode, gradient-free copy of a BAS model with BatchNorm folded and, when ``winograd``
    (default: on CPU in float32), the wide 3 x 3 convolutions of f1 / f2 / the extractor as
    :class:`WinogradConv2d`. Returns the copy and a line per change made or skipped.

    The generator and classifier stay plain convolutions: ``class_maps`` reads the generator's weight.
    Hooks registered on the model are not carried over (they would run on the copy's tensors).
    """
    net = copy.deepcopy(model).eval().requires_grad_(False)
    for m in net.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    folded, untraced = fold_batchnorm(net)
    notes = [f"folded {folded} BatchNorm layers into their convolutions"]
    if untraced:
        notes.append("BatchNorm not folded in (torch.fx cannot trace them): " + "; ".join(untraced))
        warnings.warn(notes[-1], stacklevel=2)
    param = next(net.parameters())
    if winograd is None:
        winograd = param.device.type == "cpu" and param.dtype == torch.float32
    if winograd:
        names = [
            f"{part}.{name}"
            for part in ("f1", "f2", "extractor")
            if isinstance(getattr(net, part, None), nn.Module)
            for name, m in getattr(net, part).named_modules()
            if is_winograd_conv(m) and _winograd_pays(m)
        ]
        for name in names:
            net.set_submodule(name, WinogradConv2d(net.get_submodule(name)))
        notes.append(f"{len(names)} wide 3x3 convolutions as Winograd F(2x2, 3x3)")
    return net, notes
