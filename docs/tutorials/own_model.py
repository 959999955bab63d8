"""Tutorial: explain your own model with IG, Guided IG and IG2, then evaluate the attributions.

Runs in about a minute on a laptop CPU (executed by the test suite: tests/test_viz_tutorial.py). The data are
scikit-learn's 8x8 handwritten digits; the model is a small CNN trained here.

    python docs/tutorials/own_model.py [output folder]
"""

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import pathattr
import pathattr.metrics as pm
from pathattr.viz import plot_explanations

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/tutorial")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

# 1. Data and model: [N, 1, 8, 8] images in [0, 1], 10 classes.
digits = load_digits()
x_all = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
y_all = torch.tensor(digits.target)
model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.Softplus(), nn.Conv2d(16, 16, 3, padding=1), nn.Softplus(),
    nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.Softplus(), nn.Linear(32, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for _epoch in range(15):
    for i in range(0, 1500, 64):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_all[i:i + 64]), y_all[i:i + 64]).backward()
        opt.step()
model.eval()
with torch.no_grad():
    accuracy = (model(x_all[1500:]).argmax(1) == y_all[1500:]).float().mean().item()
print(f"held-out accuracy: {accuracy:.3f}")

# 2. Explain four held-out digits with three methods. `explain` returns attributions, the completeness gap and
#    the cost; the target defaults to the predicted class.
x = x_all[1500:1504]
ig = pathattr.IntegratedGradients(model).explain(x, baselines="zeros", n_steps=64)
gig = pathattr.GuidedIntegratedGradients(model).explain(x, baselines="zeros", n_steps=64)
# IG2 needs references of another class (here: from the training images) and the representation layer
# (the input of the last linear layer).
refs = pathattr.references.other_class(model, x, x_all[:300], n_references=3, generator=0)
ig2 = pathattr.IG2(model, model[-1]).explain(x, refs, n_steps=16, bounds=(0.0, 1.0), segment_rule="trapezoid",
                                              adaptive=0.05)
results = {"IG": ig, "Guided IG": gig, "IG2": ig2}
for name, e in results.items():
    print(f"{name:10s} relative completeness gap {e.relative_delta.max().item():.3g}, "
          f"{e.cost.backward_rows} gradient rows, {e.cost.wall_seconds:.2f} s")

# 3. Evaluate: deletion (lower is better) and insertion (higher is better) with the model's probabilities.
for name, e in results.items():
    d = pm.deletion(model, x, e.attributions, n_steps=16)
    ins = pm.insertion(model, x, e.attributions, n_steps=16)
    print(f"{name:10s} deletion AUC {d.scores.mean().item():.3f}  insertion AUC {ins.scores.mean().item():.3f}")

# 4. Pictures: signed maps over the digit, with a shared colour bar and the clipping in the caption.
image = x[0].repeat(3, 1, 1)
predicted, label = int(ig.target[0]), int(y_all[1500])
plot_explanations(image, {name: e.attributions[0] for name, e in results.items()}, reduce="signed",
                  title=f"predicted {predicted} (label {label})", path=out / "own_model.png")
print(f"wrote {out / 'own_model.png'}")
