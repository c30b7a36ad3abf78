"""PolicyTransform: a policy as a per-sample transform for PIL images and CHW tensors."""

from __future__ import annotations

import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from augment import Policy, PolicyTransform, load_policy, save_policy


def _pil(image: torch.Tensor) -> PIL.Image.Image:
    return TF.to_pil_image(image.cpu())


class TestPolicyTransform:
    def test_pil_in_pil_out(self, batch, make_generator):
        transform = PolicyTransform("cifar10", generator=make_generator(0))
        for image in batch[:4]:
            out = transform(_pil(image))
            assert isinstance(out, PIL.Image.Image)
            assert (out.mode, out.size) == ("RGB", (image.shape[2], image.shape[1]))

    def test_pil_matches_policy_apply(self, batch, make_generator):
        policy = load_policy("cifar10")
        image = batch[0].cpu()
        out = PolicyTransform(policy, generator=torch.Generator().manual_seed(4))(_pil(image))
        expected = policy.apply(image[None], torch.Generator().manual_seed(4))[0]
        assert torch.equal(TF.pil_to_tensor(out), expected)

    def test_grayscale_pil(self, make_batch):
        image = _pil(make_batch(channels=1)[0])
        out = PolicyTransform("cifar10")(image)
        assert (out.mode, out.size) == ("L", image.size)

    def test_tensor_in_tensor_out(self, batch, make_generator):
        policy = load_policy("cifar10")
        out = PolicyTransform(policy, generator=make_generator(4))(batch[0])
        expected = policy.apply(batch[:1], make_generator(4))[0]
        assert type(out) is torch.Tensor and out.device == batch.device
        assert torch.equal(out, expected)

    def test_tv_tensor_image_stays_an_image(self, batch):
        out = PolicyTransform("cifar10")(tv_tensors.Image(batch[0]))
        assert isinstance(out, tv_tensors.Image) and out.shape == batch[0].shape

    def test_without_generator_follows_torch_manual_seed(self, batch):
        transform = PolicyTransform(Policy([[("Invert", 0.5, 0), ("Rotate", 0.5, 9)]]))
        torch.manual_seed(0)
        first = [transform(img) for img in batch]
        torch.manual_seed(0)
        again = [transform(img) for img in batch]
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
        assert len({tuple(o.flatten().tolist()) for o in first}) > 1

    def test_loads_a_json_path(self, tmp_path):
        path = tmp_path / "p.json"
        save_policy(load_policy("cifar10"), path)
        assert PolicyTransform(path).policy == load_policy("cifar10")

    def test_in_a_torchvision_pipeline_and_dataloader(self, batch):
        pipeline = v2.Compose(
            [
                v2.RandomCrop(tuple(batch.shape[-2:]), padding=4),
                v2.RandomHorizontalFlip(),
                PolicyTransform("cifar10"),
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

        class Images(Dataset):
            def __len__(self) -> int:
                return 8

            def __getitem__(self, i: int):
                return pipeline(_pil(batch[i])), i

        images, _ = next(iter(DataLoader(Images(), batch_size=8)))
        assert images.shape == (8, 3, *batch.shape[-2:]) and images.dtype == torch.float32

    def test_errors(self, batch):
        transform = PolicyTransform("cifar10")
        with pytest.raises(TypeError, match="PIL image or a torch.Tensor"):
            transform(batch[0].cpu().numpy())
        with pytest.raises(ValueError, match=r"\(C, H, W\)"):
            transform(batch)
        with pytest.raises(TypeError, match="mode RGB or L"):
            transform(_pil(batch[0]).convert("RGBA"))
        with pytest.raises(TypeError, match="uint8"):
            transform(batch[0].float())
