"""The three landmark slice classifiers and the graph that runs them together (PyTorch).

Each landmark (apex, carina, diaphragm) has its own binary classifier, "this slice vs the
rest", as in the research. :class:`LandmarkNet` holds the three and returns three
logits per slice, ``apex``, ``carina`` and ``diaphragm`` ``(N, 1)``, so that the node runs
one ONNX graph.

Each classifier looks at the 128x128 input through a *view* (part of the architecture,
recorded in ``model.json``): ``downsample`` (2x2 average pooling to 64x64: the whole
chest, enough to tell whether lung or the diaphragm dome is present), ``centre`` (the
central 64x64 pixels at full resolution: the mediastinum, where the trachea divides),
``airway`` (the ``centre`` pixels mapped to air, ``clamp((0.3 - x) / 0.3, 0, 1)``: 1 at
-1000 HU falling to 0 at -640 HU and above, so that soft tissue, vessels and contrast
medium vanish and only the air shapes remain, airway lumens and lung; a wall between two
lumens that partial volume has lightened to -640 HU or more still shows as a wall) or
``full`` (the 128x128 input as is), or ``trachea`` (not the 128x128 input but the second
input ``airway``, the 80 mm square around the trachea at 1.25 mm per pixel, as is; a graph
with a ``trachea`` view has the two inputs ``image`` and ``airway``). The ``small``
architecture uses
:data:`SMALL_VIEWS` (a quarter of the computation of full views, which matters on a CPU);
the timm architectures use ``full``.

Architectures (``arch``):

* ``small`` (default, plain PyTorch, CPU-friendly): five strided / plain 3x3
  convolution-BN-ReLU stages 16-32-64-64 channels after a 5x5 stride-2 stem, global
  average and max pooling, dropout and a linear layer; about 0.2 M parameters each.
* ``efficientnet_b4``, ``densenet169``, ``resnet50``, ``inception_v3``: the research's
  architectures from ``timm`` (imported only when asked for), random initialisation or
  a user-supplied state dict (``pretrained``), one output logit, ``in_chans`` = 3.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from models.chest_ct_landmarks.findings import LANDMARKS

__all__ = ["ARCHITECTURES", "SEPARATE_INPUT_VIEWS", "SMALL_VIEWS", "VIEWS", "TIMM_ARCHITECTURES", "LandmarkNet", "SmallSliceNet", "build_classifier", "build_network", "default_views"]

TIMM_ARCHITECTURES: tuple[str, ...] = ("efficientnet_b4", "densenet169", "resnet50", "inception_v3")
ARCHITECTURES: tuple[str, ...] = ("small", *TIMM_ARCHITECTURES)
VIEWS: tuple[str, ...] = ("full", "downsample", "centre", "airway", "trachea")
SEPARATE_INPUT_VIEWS: frozenset[str] = frozenset({"trachea"})
"""Views that read the second input ``airway`` instead of ``image``."""
_AIR_LEVEL = 0.3
"""Windowed value (0 = -1000 HU, 1 = 200 HU) at and above which the ``airway`` view is 0."""
SMALL_VIEWS: dict[str, str] = {"apex": "downsample", "carina": "centre", "diaphragm": "downsample"}

TIMM_INSTALL_HINT = (
    "the {arch!r} architecture needs timm, which does not import beside torch 2.13.0 "
    "(its torchvision dependency fails); install the training stack with "
    "`pip install torch==2.14.1 torchvision==0.29.1 timm` in a separate environment, "
    "or use --arch small"
)


def _cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallSliceNet(nn.Module):
    """Small binary slice classifier: ``(N, C, H, W)`` -> ``(N, 1)`` logit.

    Parameters
    ----------
    in_channels:
        Input channels (3: slice below, slice, slice above).
    width:
        Channels of the first stage; later stages have 2x and 4x.
    """

    def __init__(self, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _cbr(in_channels, w, 2, 5),
            _cbr(w, 2 * w, 2),
            _cbr(2 * w, 2 * w),
            _cbr(2 * w, 4 * w, 2),
            _cbr(4 * w, 4 * w),
            _cbr(4 * w, 4 * w, 2),
            _cbr(4 * w, 4 * w),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(8 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


def build_classifier(arch: str, in_channels: int = 3, width: int = 16, pretrained: Path | None = None) -> nn.Module:
    """One binary slice classifier of architecture ``arch``.

    Parameters
    ----------
    arch:
        One of :data:`ARCHITECTURES`.
    in_channels:
        Input channels.
    width:
        Width of the ``small`` architecture (ignored by the timm ones).
    pretrained:
        A state dict (``torch.save``) to start from; keys that do not fit (e.g. an
        ImageNet classifier head) are left at their initial values.

    Raises
    ------
    ValueError
        For an unknown architecture.
    RuntimeError
        When a timm architecture is asked for and timm cannot be imported.
    """
    if arch == "small":
        model: nn.Module = SmallSliceNet(in_channels, width)
    elif arch in TIMM_ARCHITECTURES:
        try:
            import timm  # noqa: PLC0415 - optional, heavy
        except Exception as exc:  # ImportError, or torchvision's operator error
            raise RuntimeError(TIMM_INSTALL_HINT.format(arch=arch) + f" ({type(exc).__name__}: {exc})") from exc
        model = timm.create_model(arch, pretrained=False, num_classes=1, in_chans=in_channels)
    else:
        raise ValueError(f"unknown architecture {arch!r} (choose from {', '.join(ARCHITECTURES)})")
    if pretrained is not None:
        _load_matching(model, torch.load(Path(pretrained), map_location="cpu", weights_only=True))
    return model


def _load_matching(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Load the entries of ``state`` whose name and shape match ``model``."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise ValueError("the pretrained state dict shares no parameter with the architecture")
    model.load_state_dict(usable, strict=False)


class _View(nn.Module):
    """What part of the input a classifier sees (see module docs)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in VIEWS:
            raise ValueError(f"unknown view {kind!r} (choose from {', '.join(VIEWS)})")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "downsample":
            return nn.functional.avg_pool2d(x, 2)
        if self.kind in ("centre", "airway"):
            h, w = x.shape[-2] // 4, x.shape[-1] // 4
            x = x[..., h:3 * h, w:3 * w]
            if self.kind == "airway":
                x = ((_AIR_LEVEL - x) / _AIR_LEVEL).clamp(0.0, 1.0)
        return x


def default_views(arch: str) -> dict[str, str]:
    """The views of ``arch``: :data:`SMALL_VIEWS` for ``small``, ``full`` otherwise."""
    return dict(SMALL_VIEWS) if arch == "small" else {name: "full" for name in LANDMARKS}


class LandmarkNet(nn.Module):
    """Three independent binary classifiers in one graph.

    ``forward(image)`` returns ``(apex, carina, diaphragm)``, each ``(N, 1)`` logits.

    Parameters
    ----------
    arch, in_channels, width, pretrained:
        As for :func:`build_classifier`, shared by the three classifiers.
    views:
        Landmark → view; :func:`default_views` of ``arch`` when omitted.
    """

    def __init__(
        self,
        arch: str = "small",
        in_channels: int = 3,
        width: int = 16,
        pretrained: Path | None = None,
        views: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.views = dict(views or default_views(arch))
        self.classifiers = nn.ModuleDict(
            {name: nn.Sequential(_View(self.views[name]), build_classifier(arch, in_channels, width, pretrained))
             for name in LANDMARKS}
        )

    @property
    def uses_airway(self) -> bool:
        """Whether a classifier reads the second input ``airway``."""
        return any(v in SEPARATE_INPUT_VIEWS for v in self.views.values())

    def forward(self, image: torch.Tensor, airway: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.uses_airway and airway is None:
            raise ValueError("this network's views need the airway input")
        return tuple(self.classifiers[name](airway if self.views[name] in SEPARATE_INPUT_VIEWS else image)
                     for name in LANDMARKS)  # type: ignore[return-value]


def build_network(meta: Mapping[str, Any]) -> LandmarkNet:
    """Rebuild the exact architecture described by ``model.json`` (weights not loaded)."""
    shape = meta.get("input", {}).get("shape", ["N", 3, 128, 128])
    arch = str(meta.get("arch", "small"))
    return LandmarkNet(
        arch=arch, in_channels=int(shape[1]), width=int(meta.get("width", 16)),
        views=meta.get("views") or default_views(arch),
    )
