"""Convert PyTorch weights (.pth / .pt, as torch.save writes them) to .safetensors for fastdet.

    python scripts/convert_weights.py resnet34-b627a593.pth models/resnet34.safetensors

fastdet reads .safetensors with `Tensor::read_safetensors`; libtorch's reader behind tch's
`Tensor::loadz_multi` cannot read a torch.save'd `state_dict()` (an OrderedDict: "Expected
GenericDict but got None") nor the legacy non-zip format, which torchvision's downloads use.
Accepts a state dict, or a checkpoint dict holding one under "state_dict" or "model"; every
tensor is kept under its name (num_batches_tracked included: fastdet ignores what it lacks),
made contiguous and detached. Needs torch and safetensors (environment.yml).
"""
import argparse
import collections

import torch
from safetensors.torch import save_file


def state_dict_of(obj):
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return state_dict_of(obj[key])
        return obj
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    raise SystemExit(f"not a state dict: {type(obj).__name__}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help=".pth / .pt file written by torch.save")
    ap.add_argument("dst", help="output .safetensors file")
    a = ap.parse_args()
    obj = torch.load(a.src, map_location="cpu", weights_only=True)
    sd = state_dict_of(obj)
    tensors = collections.OrderedDict()
    skipped = []
    for name, v in sd.items():
        if isinstance(v, torch.Tensor):
            tensors[name] = v.detach().contiguous().clone()
        else:
            skipped.append(name)
    if not tensors:
        raise SystemExit(f"{a.src}: no tensors found")
    save_file(tensors, a.dst)
    n = sum(t.numel() for t in tensors.values())
    print(f"{a.src} -> {a.dst}: {len(tensors)} tensors, {n:,} values" + (f"; skipped non-tensors {skipped}" if skipped else ""))


if __name__ == "__main__":
    main()
