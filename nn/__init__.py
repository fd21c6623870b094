"""nn — a small, readable neural-network library on NumPy (CPU) or CuPy (GPU).

    from nn import backend, layers, losses, optim, Sequential
    backend.set_backend("cupy")      # or --backend cupy / NN_BACKEND=cupy on any command

Read `nn/layers/*.py` to see how each layer computes its forward and backward pass.
"""
from nn import backend, init, layers, losses, optim
from nn.model import Sequential
from nn.gradcheck import gradcheck, gradcheck_loss

__all__ = ["backend", "init", "layers", "losses", "optim", "Sequential", "gradcheck", "gradcheck_loss"]
