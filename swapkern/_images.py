"""The per-image (transform) path of FeatureSwap: one image tensor, a PIL image, a NumPy array (as PIL, OpenCV and
albumentations hold images), or torchvision's transform hook; each a swapped copy drawn at the next DataLoader-path
step. Also what FeatureSwap is built on where torchvision is installed (a transforms.v2 transform)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import _backend
from ._featureplan import BoundCall

try:  # PIL images are converted, swapped and returned as PIL images where Pillow is installed
    from PIL import Image as _PILImage
except ImportError:
    _PILImage = None

try:  # FeatureSwap is a torchvision transforms.v2 transform where torchvision is installed
    from torchvision import tv_tensors as _tv_tensors
    from torchvision.transforms import v2 as _v2

    _Base = _v2.Transform
except ImportError:  # torchvision is optional
    _tv_tensors, _Base = None, nn.Module


def _is_plain_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and not (_tv_tensors is not None and isinstance(x, _tv_tensors.TVTensor))


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) and x.ndim >= 2


def _is_pil(x) -> bool:
    return _PILImage is not None and isinstance(x, _PILImage.Image)


class ImagePath:
    """FeatureSwap's per-image methods (a base class of FeatureSwap; they use its draw state: _swap_, _next_step,
    _slots, check, seed, p)."""

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        """A swapped copy of one plain (C, H, W) image tensor, drawn at the next DataLoader-path step."""
        out = x.clone()
        if out.requires_grad or out.is_inference() or out.numel() == 0:  # the general path: its rules in full
            self._swap_(out.unsqueeze(0), None, self._next_step())
        else:
            self._image_view(out.unsqueeze(0))
        return out

    def _array(self, a: np.ndarray) -> np.ndarray:
        """A swapped copy of a NumPy image (H, W) or (..., H, W, C), as PIL, OpenCV and albumentations hold them."""
        if a.ndim < 2:
            raise ValueError(f"feature swaps need a NumPy image (H, W) or (..., H, W, C), got shape {a.shape}")
        out = np.array(a, order="C", copy=True)
        try:
            t = torch.from_numpy(out)
        except TypeError as e:
            raise TypeError(f"feature swaps cannot take a NumPy array of dtype {a.dtype}: {e}") from None
        if a.ndim <= 3 and out.size > 0:  # one image: its (1, C, H, W) view in one call
            h, w = a.shape[:2]
            c = a.shape[2] if a.ndim == 3 else 1
            self._image_view(t.as_strided((1, c, h, w), (h * w * c, 1, w * c, c)))
            return out
        if a.ndim == 2:
            t = t.unsqueeze(-1)
        batch = t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2)  # (N, C, H, W) view of the HWC copy
        self._swap_(batch, None, self._next_step())
        return out

    def _image_view(self, batch):
        """Swaps a (1, C, H, W) view of a fresh copy in place at the next DataLoader-path step."""
        step = self._next_step()
        key = (batch.shape, batch.device)
        slot = self._slots.get(key)
        st = slot.stepped if slot is not None else None
        if st is not None and st.serves(self):
            st.call(batch, step)
            self._slots.move_to_end(key)
            return
        self._swap_(batch, None, step)
        slot = self._slots.get((batch.shape, batch.device))
        if slot is not None and not slot.buf.is_inference():
            # the backends with a per-image binding (the compiled ops) bind the op for this slot once
            bind = getattr(_backend.impl(batch), "bound_stepped_feature_swap", None)
            if bind is not None:
                call = bind(slot.buf, self.protocol, self.swaps, self._args()[2], self._threshold())
                slot.stepped = BoundCall(self.seed, self.p, _backend.selected, call)

    def _pil(self, img):
        """A swapped copy of a PIL image, of the same mode (and palette)."""
        a = np.asarray(img)
        out = self._array(a)
        if img.mode == "1":
            return _PILImage.fromarray(out)
        result = img.copy()
        result.frombytes(out.tobytes())
        return result

    def transform(self, inpt, params):
        """The transform path (torchvision's v2 hook): a swapped copy of an image (C, H, W), a batch or a video
        (..., C, H, W), keeping a tv_tensor's type; PIL images and NumPy arrays as fs(x) takes them."""
        if isinstance(inpt, np.ndarray):
            return self._array(inpt)
        if _is_pil(inpt):
            return self._pil(inpt)
        if not isinstance(inpt, torch.Tensor):
            raise TypeError(f"feature swaps take a tensor, a PIL image or a NumPy array, got {type(inpt).__name__}")
        x = inpt.as_subclass(torch.Tensor) if type(inpt) is not torch.Tensor else inpt
        if x.dim() < 3:
            raise ValueError(f"feature swaps need an image (C, H, W) or a batch of them, got shape {tuple(x.shape)}")
        self.check((1, *x.shape[-3:]))
        batch = x.reshape(-1, *x.shape[-3:]).clone(memory_format=torch.contiguous_format)
        self._swap_(batch, None, self._next_step())
        out = batch.view(x.shape)
        if _tv_tensors is not None and isinstance(inpt, _tv_tensors.TVTensor):
            return _tv_tensors.wrap(out, like=inpt)
        return out
