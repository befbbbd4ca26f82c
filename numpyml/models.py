"""Reference models for small images, built by name from a registry."""

from numpyml import nn


def mlp(input_shape, num_classes, hidden=128):
    """Flatten, then Linear(hidden) + ReLU twice, then Linear(num_classes)."""
    features = 1
    for size in input_shape:
        features *= size
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


class CNN(nn.Module):
    """Conv 3x3 (C -> 32) and (32 -> 64) with padding 1, each followed by ReLU and a 2x2 max
    pool, then Linear(128) + ReLU and Linear(num_classes). An 8x8 image becomes 64x2x2."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        channels, height, width = input_shape
        if height % 4 or width % 4:
            raise ValueError(
                f"cnn: image height and width must be multiples of 4 for two 2x2 pools; "
                f"got {height}x{width}"
            )
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (height // 4) * (width // 4), 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


MODELS = {"mlp": mlp, "cnn": CNN}


def build(name, input_shape, num_classes):
    """Return a new model ``name`` for images of ``input_shape`` (C, H, W)."""
    if name not in MODELS:
        raise KeyError(f"models.build: unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](tuple(input_shape), num_classes)
