"""`PolicyTransform`: a policy as an ordinary per-sample torchvision transform."""

from __future__ import annotations

import os

import PIL.Image
import torch
from torch import nn

from ._policy import POLICY_TYPES, AugmentPolicy, describe_policy, load_policy


class PolicyTransform(nn.Module):
    """Apply a policy (AutoAugment sub-policies, RandAugment or TrivialAugmentWide; an object,
    a built-in name such as "randaugment:2,9", or a JSON path) to one PIL image or (C, H, W)
    uint8 tensor; returns the same type."""

    def __init__(
        self,
        policy: AugmentPolicy | str | os.PathLike[str] = "cifar10",
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if isinstance(policy, POLICY_TYPES):
            self.policy: AugmentPolicy = policy
        else:
            self.policy = load_policy(policy)
        self.generator = generator

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        # A per-call seed from torch's global RNG, as torchvision's random transforms draw from
        # it: DataLoader workers (seeded differently by torch) then draw different augmentations,
        # and torch.manual_seed reproduces them. Pass `generator` for an explicit stream.
        seed = int(torch.randint(0, 2**62, (1,)))
        return torch.Generator(device=device).manual_seed(seed)

    def forward(self, img: PIL.Image.Image | torch.Tensor) -> PIL.Image.Image | torch.Tensor:
        """Return `img` augmented by one draw of the policy."""
        # Imported here, not above: torchvision takes as long to import as torch itself, and
        # everything that imports `training` (every trial worker, every command) pays for it
        # while only this per-image transform needs it.
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        if isinstance(img, PIL.Image.Image):
            if img.mode not in ("RGB", "L"):
                raise TypeError(f"PIL images must have mode RGB or L, got {img.mode!r}")
            batch = TF.pil_to_tensor(img).unsqueeze(0)
            out = self.policy.apply(batch, self._generator(batch.device))
            return TF.to_pil_image(out[0], mode=img.mode)
        if isinstance(img, torch.Tensor):
            if img.ndim != 3:
                raise ValueError(f"expected a (C, H, W) image tensor, got shape {tuple(img.shape)}")
            plain = img.as_subclass(torch.Tensor)
            out = self.policy.apply(plain.unsqueeze(0), self._generator(plain.device))[0]
            return tv_tensors.wrap(out, like=img) if isinstance(img, tv_tensors.TVTensor) else out
        raise TypeError(f"expected a PIL image or a torch.Tensor, got {type(img).__name__}")

    def extra_repr(self) -> str:
        return describe_policy(self.policy)
