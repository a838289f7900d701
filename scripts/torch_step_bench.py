"""Training-step throughput of the same networks in Python PyTorch, for comparison with
`snl-train bench` (same torch wheel, same thread count, same batch).

Usage: python scripts/torch_step_bench.py ARCH BATCH STEPS THREADS [WARMUP]
    runs WARMUP untimed and STEPS timed steps and prints one JSON line.
       python scripts/torch_step_bench.py --serve ARCH BATCH THREADS WARMUP
    builds the network, runs WARMUP untimed steps and prints a JSON line ({"ready": ...});
    then, for every line N read from stdin, runs N timed steps and prints a JSON line with
    their seconds; exits at the end of stdin. `snl-train bench` uses this to alternate
    rounds of its own steps and these, so that load from other processes hits both alike.
The network definitions mirror models::arch (resnet20, resnet18, lenet5) layer for layer.
A step is the ordinary PyTorch training step: zero_grad, forward, cross-entropy, backward,
torch.optim.SGD (momentum 0.9, weight decay 5e-4) step, in train mode.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y)) + self.shortcut(x)
        return F.relu(y)


class ResNet(nn.Module):
    def __init__(self, widths, blocks, stem_relu, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.stem_relu = stem_relu
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(Block(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        if self.stem_relu:
            x = F.relu(x)
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.linear(x)


class LeNet5(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def build(arch):
    if arch == "resnet20":
        return ResNet([16, 32, 64], [3, 3, 3], True), (3, 32, 32)
    if arch == "resnet18":
        return ResNet([64, 128, 256, 512], [2, 2, 2, 2], False), (3, 32, 32)
    if arch == "lenet5":
        return LeNet5(), (1, 28, 28)
    raise SystemExit(f"unknown arch {arch}")


class Bench:
    def __init__(self, arch, batch, threads):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.net, shape = build(arch)
        self.net.train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.x = torch.randn(batch, *shape)
        self.y = torch.randint(0, 10, (batch,))

    def run(self, steps):
        """Runs `steps` training steps; returns their seconds."""
        net, opt, x, y = self.net, self.opt, self.x, self.y
        start = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        return time.perf_counter() - start


def serve(arch, batch, threads, warmup):
    bench = Bench(arch, batch, threads)
    bench.run(warmup)
    print(json.dumps({"ready": True, "impl": "pytorch", "torch": torch.__version__, "arch": arch,
                      "batch": batch, "threads": threads}), flush=True)
    for line in sys.stdin:
        steps = int(line)
        secs = bench.run(steps)
        print(json.dumps({"steps": steps, "seconds": secs}), flush=True)


def main():
    if sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    arch, batch, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    bench = Bench(arch, batch, threads)
    bench.run(warmup)
    secs = bench.run(steps)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "arch": arch, "batch": batch,
                      "steps": steps, "threads": threads, "seconds": secs,
                      "images_per_second": batch * steps / secs}))


if __name__ == "__main__":
    main()
