"""The PyTorch eager reference: the same networks, weights and updates, if torch is installed."""

from __future__ import annotations

from typing import Any


def available() -> str | None:
    """``None`` when torch imports, else why not."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return f"torch is not installed ({exc}); pip install '.[bench]' in nnx's clone"
    return None


class TorchMLP:
    """``torch.nn.Sequential`` built from nnx-layout host weights (``W`` of shape ``(in, out)``)."""

    def __init__(self, weights, biases, hidden: str, loss: str, lr: float, momentum: float, device: str):
        import torch

        self.torch, self.device, self.loss = torch, device, loss
        layers: list[Any] = []
        act = torch.nn.ReLU if hidden == "relu" else torch.nn.Sigmoid
        for i, w in enumerate(weights):
            lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=biases is not None)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(w.T, dtype=torch.float32))
                if biases is not None:
                    lin.bias.copy_(torch.as_tensor(biases[i], dtype=torch.float32))
            layers.append(lin)
            if i < len(weights) - 1 or loss == "half_sse":
                layers.append(act())
        self.model = torch.nn.Sequential(*layers).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)
        self.ce = torch.nn.CrossEntropyLoss()

    def tensor(self, a, dtype=None):
        return self.torch.as_tensor(a, dtype=dtype).to(self.device)

    def step(self, x, t) -> None:
        self.opt.zero_grad(set_to_none=True)
        out = self.model(x)
        if self.loss == "sce":
            value = self.ce(out, t)
        else:
            value = 0.5 * ((out - t) ** 2).sum()
        value.backward()
        self.opt.step()

    def predict(self, x):
        with self.torch.no_grad():
            return self.model(x)

    def params_nnx_layout(self) -> list:
        """Weights (transposed back to ``(in, out)``) then biases, as host arrays."""
        lins = [m for m in self.model if isinstance(m, self.torch.nn.Linear)]
        ws = [m.weight.detach().cpu().numpy().T for m in lins]
        bs = [m.bias.detach().cpu().numpy() for m in lins if m.bias is not None]
        return ws + bs

    def sync(self) -> None:
        if self.device != "cpu":
            self.torch.cuda.synchronize()
