#!/usr/bin/env python3
"""A small training loop with only the standard library: fits y = 3x + 1 by gradient descent and prints
its metrics the way training scripts do. Try: cml-run -- python3 examples/train.py --lr 0.05 --epochs 5"""
import argparse
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

random.seed(args.seed)
data = [(x, 3 * x + 1 + random.gauss(0, 0.1)) for x in (random.uniform(-1, 1) for _ in range(256))]
w, b = 0.0, 0.0
for epoch in range(1, args.epochs + 1):
    random.shuffle(data)
    total = 0.0
    for x, y in data:
        error = w * x + b - y
        total += error * error
        w -= args.lr * 2 * error * x
        b -= args.lr * 2 * error
    loss = total / len(data)
    accuracy = sum(abs(w * x + b - y) < 0.2 for x, y in data) / len(data)
    print(f"epoch={epoch} loss={loss:.5f} acc={accuracy:.3f}")
print(f"done: w: {w:.3f} b: {b:.3f}")
