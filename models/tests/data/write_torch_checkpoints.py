"""Writes PyTorch checkpoints for models/tests/import_torch.rs, with real PyTorch.

    python write_torch_checkpoints.py OUTDIR

ResNet-20 and LeNet-5 in the layout and names `snl-model import` reads (SNL's BasicBlock
spelling and LearnableAlpha-style `alphas` of shape [1, C, H, W]), random weights, batch-norm
statistics and alphas, one SGD step so that the checkpoint also carries optimizer state.
Each network's eval-mode logits on a fixed input use the alphas binarized by SNL's rule
(kept where alpha > threshold), which is what the importer turns them into. Also writes
variants in other dtypes, with views, and broken ones, and SNL's reference ResNet18 and
WideResNet-22-8 layouts with random weights. Prints nothing; writes meta.json.
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = sys.argv[1]
THRESHOLD = 1e-2
torch.manual_seed(20240611)
torch.set_num_threads(1)


class Alpha(nn.Module):
    """A ReLU site: relu where alpha > THRESHOLD, identity elsewhere."""

    def __init__(self, *shape):
        super().__init__()
        self.alphas = nn.Parameter(torch.rand(1, *shape) * 1.1 - 0.1)

    def forward(self, x):
        keep = (self.alphas > THRESHOLD).to(x.dtype)
        return F.relu(x) * keep + (1 - keep) * x


class Block(nn.Module):
    def __init__(self, cin, cout, stride, side):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.alpha1 = Alpha(cout, side, side)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.alpha2 = Alpha(cout, side, side)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.alpha1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.alpha2(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.alpha1 = Alpha(16, 32, 32)
        cin, side, layers = 16, 32, []
        for i, width in enumerate([16, 32, 64]):
            blocks = []
            for j in range(3):
                stride = 2 if i > 0 and j == 0 else 1
                side //= stride
                blocks.append(Block(cin, width, stride, side))
                cin = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        out = self.alpha1(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.shape[-1])
        return self.linear(out.flatten(1))


class LeNet5(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.alpha1 = Alpha(6, 28, 28)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.alpha2 = Alpha(16, 10, 10)
        self.fc1 = nn.Linear(400, 120)
        self.alpha3 = Alpha(120)
        self.fc2 = nn.Linear(120, 84)
        self.alpha4 = Alpha(84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.avg_pool2d(self.alpha1(self.conv1(x)), 2)
        x = F.avg_pool2d(self.alpha2(self.conv2(x)), 2).flatten(1)
        x = self.alpha3(self.fc1(x))
        return self.fc3(self.alpha4(self.fc2(x)))


def randomize(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


def trained(net, x):
    """One SGD step (train mode), so the optimizer has momentum buffers; then eval mode."""
    randomize(net)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    net.train()
    net(x).square().mean().backward()
    opt.step()
    net.eval()
    return opt


def save_safetensors(tensors, path):
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    try:
        import safetensors
        from safetensors.torch import save_file

        save_file(tensors, path)
        return "safetensors " + safetensors.__version__
    except ImportError:  # no safetensors (or no numpy): a minimal writer of the format
        names = {torch.float32: "F32", torch.int64: "I64"}
        header, blobs, off = {}, [], 0
        for k, v in tensors.items():
            b = bytes(v.reshape(-1).view(torch.uint8).tolist())
            header[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        with open(path, "wb") as f:
            f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
        return "minimal writer"


def kept(net, threshold):
    return int(sum((p > threshold).sum() for n, p in net.named_parameters() if n.endswith("alphas")))


meta = {"torch": torch.__version__, "threshold": THRESHOLD}

# ResNet-20: a checkpoint dict as SNL's scripts write it, and the same state dict as safetensors.
r20 = ResNet20()
x = torch.randn(2, 3, 32, 32)
opt = trained(r20, x)
with torch.no_grad():
    logits = r20(x)
sd = r20.state_dict()
torch.save({"arch": "resnet20", "epoch": 3, "state_dict": sd, "optimizer": opt.state_dict()},
           os.path.join(OUT, "resnet20.pth.tar"))
meta["safetensors_writer"] = save_safetensors(sd, os.path.join(OUT, "resnet20.safetensors"))
meta["resnet20"] = {"x": x.flatten().tolist(), "logits": logits.flatten().tolist(),
                    "kept": kept(r20, THRESHOLD), "kept_05": kept(r20, 0.5)}

# LeNet-5 through DataParallel (module. prefix) under "net", with a strided view and a view
# at an offset into a larger storage.
lenet = LeNet5()
x = torch.randn(3, 1, 28, 28)
trained(lenet, x)
with torch.no_grad():
    logits = lenet(x)
sd = nn.DataParallel(lenet).state_dict()
w = sd["module.fc1.weight"]
sd["module.fc1.weight"] = w.t().contiguous().t()
assert not sd["module.fc1.weight"].is_contiguous()
big = torch.zeros(100)
big[7:91] = sd["module.fc2.bias"]
sd["module.fc2.bias"] = big[7:91]
torch.save({"net": sd, "acc": 0.5}, os.path.join(OUT, "lenet5-dp.pt"))
meta["lenet5"] = {"x": x.flatten().tolist(), "logits": logits.flatten().tolist(),
                  "kept": kept(lenet, THRESHOLD)}

# The same weights in float16 / bfloat16 / float64, and what they are in float32.
sd = lenet.state_dict()
mixed = {}
for k, v in sd.items():
    if k.startswith("conv"):
        v = v.half()
    elif k.startswith("fc1"):
        v = v.bfloat16()
    elif k.startswith("fc2"):
        v = v.double()
    mixed[k] = v
torch.save(mixed, os.path.join(OUT, "lenet5-mixed.pt"))
save_safetensors({k: v.float() for k, v in mixed.items()}, os.path.join(OUT, "lenet5-mixed-f32.safetensors"))

# Broken ones.
bad = dict(sd)
bad["fc2.weight"] = torch.randn(84, 100)
torch.save(bad, os.path.join(OUT, "lenet5-wrong-shape.pt"))
bad = dict(sd)
del bad["conv2.bias"]
torch.save(bad, os.path.join(OUT, "lenet5-missing.pt"))
bad = dict(sd)
bad["fc4.weight"] = torch.randn(3, 3)
torch.save(bad, os.path.join(OUT, "lenet5-unexpected.pt"))
torch.save({"model": {"conv1.weight": torch.zeros(6, 1, 5, 5, dtype=torch.int32)}}, os.path.join(OUT, "int.pt"))


# SNL's reference layouts (archs_unstructured/cifar_resnet.py): resnet18_in and
# wide_resnet_22_8, same module names, LearnableAlpha shapes and forward passes.
class BlockIn(Block):
    """BasicBlock_IN: the block above, sites after bn1 and after the residual sum."""


class ResNet18In(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, side, layers = 64, 32, []
        for i, width in enumerate([64, 128, 256, 512]):
            blocks = []
            for j in range(2):
                stride = 2 if i > 0 and j == 0 else 1
                side //= stride
                blocks.append(BlockIn(cin, width, stride, side))
                cin = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, classes)

    def forward(self, x):
        out = self.bn1(self.conv1(x))  # no stem ReLU in resnet18_in
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


class WideBlock(nn.Module):
    def __init__(self, cin, cout, stride, side):
        super().__init__()
        self.equal = cin == cout
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)  # kept for the module names; unused
        in_side = 2 * side if not self.equal and stride != 1 else side
        self.alpha1 = Alpha(cin, in_side, in_side)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.alpha2 = Alpha(cout, side, side)
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        a = self.alpha1(self.bn1(x))
        out = self.conv2(self.alpha2(self.bn2(self.conv1(a))))
        return (x if self.equal else self.convShortcut(a)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n, cin, cout, stride, side):
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, side)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet22x8(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(3, 16, 128, 1, 32)
        self.block2 = NetworkBlock(3, 128, 256, 2, 16)
        self.block3 = NetworkBlock(3, 256, 512, 2, 8)
        self.bn1 = nn.BatchNorm2d(512)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.avg_pool2d(self.bn1(out), 8)  # no ReLU before the pool
        return self.fc(out.flatten(1))


for name, net, arch in [("resnet18", ResNet18In(), "resnet18_in"), ("wrn22_8", WideResNet22x8(), "wide_resnet_22_8")]:
    randomize(net)
    net.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits = net(x)
    torch.save({"arch": arch, "state_dict": net.state_dict()}, os.path.join(OUT, f"snl-{name}.pth.tar"))
    meta[name] = {"x": x.flatten().tolist(), "logits": logits.flatten().tolist(),
                  "kept": kept(net, THRESHOLD), "keys": len(net.state_dict())}

with open(os.path.join(OUT, "meta.json"), "w") as f:
    json.dump(meta, f)
