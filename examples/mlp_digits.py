"""Train an MLP on scikit-learn's 8x8 digits with graphc (the README's main demo)."""
from _common import digits, parse_args, train

from graphc import nn


def main():
    args = parse_args(__doc__, epochs=30, lr=2e-3)
    train_set, test_set = digits((64,), args.seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    train(model, train_set, test_set, args, "mlp")


if __name__ == "__main__":
    main()
