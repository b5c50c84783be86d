# %% [markdown]
# # 03 · Training a small OverFeat
#
# Section 3 of the OverFeat paper trains the fast and the accurate network on ImageNet with a
# plain recipe: images resized so their smaller side is 256, random 231x231 crops (221 for the
# accurate model) and their mirror images, mini-batches of 128, SGD with momentum 0.6 and L2
# weight decay 1e-5, a learning rate of 5e-2 halved after epochs 30, 50, 60, 70 and 80, dropout
# 0.5 on the hidden full layers, and weights drawn from N(0, 1e-2).
#
# That takes days on a GPU. This lesson keeps the recipe and shrinks everything else: a network
# with the fast model's *shape* but about 1/800 of its weights, trained on synthetic shapes that
# the package draws itself, for about a minute on a laptop CPU. On the way it counts the real
# models' sizes (Table 4), explains the one place where the recipe has to change for a small
# net, and shows that a run stopped halfway and resumed ends with exactly the same weights.

# %%
import matplotlib.pyplot as plt
import numpy as np

from overfeat_np.accounting import count_connections, count_parameters, describe, format_description
from overfeat_np.data import DataLoader, SyntheticShapes
from overfeat_np.losses import softmax_cross_entropy
from overfeat_np.models import accurate_config, fast_config
from overfeat_np.train import TrainConfig, build_model, default_transforms, train
from overfeat_np.viz import plot_filters, plot_history, plot_predictions

# %% [markdown]
# ## 1. The networks, counted
#
# Table 4 of the paper gives the size of both models: 145 M weights and 2.81 G multiply-adds per
# 231x231 image for the fast one, 144 M and 5.37 G for the accurate one (biases not counted).
# `count_parameters` and `count_connections` walk the layers of a config without building it;
# the weights come out exact, the multiply-adds within half a percent of the paper's rounding.

# %%
table4 = {"fast": (fast_config(), 145_909_792, 2.80e9), "accurate": (accurate_config(), 144_643_872, 5.36e9)}
for name, (cfg, weights, macs) in table4.items():
    p, c = count_parameters(cfg), count_connections(cfg)
    print(f"{name:9s} {p:,} weights, {c / 1e9:.2f} G multiply-adds for a {cfg.input_size}x{cfg.input_size} input")
    assert p == weights
    assert abs(c - macs) / macs < 0.005

# %% [markdown]
# The small model keeps the fast model's layout, conv+pool, conv+pool, three 3x3 convs, a last
# pool and three full layers, with 16 to 64 maps instead of 96 to 1024 and a 64x64 input. Its
# total stride is 16 (the fast model's is 32), so the last pooled map is 3x3 where the fast
# model's is 6x6. `describe` lists every layer's output shape by shape inference alone.

# %%
small = build_model(TrainConfig(model="small"), num_classes=6)
print(format_description(describe(small)))
ratio = count_parameters(fast_config()) / count_parameters(small)
print(f"the fast model has {ratio:.0f}x more weights")
assert count_parameters(small) < 200_000

# %% [markdown]
# ## 2. The data: synthetic shapes, random crops and flips
#
# `SyntheticShapes` draws each image from `(seed, index)`: one object of six classes (shape and
# colour, with colours sometimes swapped so shape matters) on a cluttered background. Images are
# drawn at 72x72 and the training transform takes random 64x64 crops and mirrors half of them:
# the same 256 -> 231 crop augmentation as the paper, at this scale (`resize=None`, the images
# already have the right size). Evaluation takes the centre crop.

# %%
train_set = SyntheticShapes(2400, image_size=72, seed=0, cache=True)
val_set = SyntheticShapes(300, image_size=72, seed=1, cache=True)
train_tf, eval_tf = default_transforms(64, resize=None)
print(train_set.classes)

fig, axes = plt.subplots(2, 6, figsize=(11, 4))
for ax, i in zip(axes[0], range(6)):
    s = train_set[i]
    ax.imshow(s["image"])
    ax.set_title(train_set.classes[s["label"]], fontsize=9)
rng = np.random.default_rng(0)
for ax in axes[1]:
    x, _, _ = train_tf(train_set[0], rng)  # normalised CHW float32; undo the scaling to show it
    ax.imshow(np.clip((x.transpose(1, 2, 0) * train_tf.std + train_tf.mean) / 255, 0, 1))
    ax.set_title("random crop/flip", fontsize=8)
for ax in axes.flat:
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Initialisation: where a small net needs a different recipe
#
# N(0, 1e-2) suits the paper's layers. A unit of a conv layer sums `fan_in` products, so the
# layer multiplies the size of the signal by about `0.01 * sqrt(fan_in)` (times 1/sqrt(2) for the
# ReLU). For the fast model's first layer (fan-in 11*11*3 = 363) that is 0.13; for the small
# model's layers (fan-in 75 to 576) it is 0.06 to 0.17, eight times in a row. The scores that
# come out are a million times smaller than the input and so are the gradients that go back:
# training with the paper's learning rate does not move. He et al.'s N(0, 2 / fan_in) keeps the
# size constant instead. `TrainConfig(init="auto")` uses it for the small model's hidden layers
# (the output layer keeps N(0, 1e-2), so the first scores are near zero and the first loss is
# ln 6). Let us measure the signal through both.

# %%
def signal_sizes(model, x):
    """Standard deviation of the activations after each conv and full layer."""
    sizes = []
    h = x
    for layer in [*model.features.layers, model.pool, *model.classifier.layers]:
        h, _ = layer.forward(h)
        if "W" in layer.params:
            sizes.append(float(h.std()))
    return sizes


x = np.stack([eval_tf(train_set[i])[0] for i in range(64)])
paper = signal_sizes(build_model(TrainConfig(model="small", init="paper"), 6), x)
he = signal_sizes(build_model(TrainConfig(model="small", init="he"), 6), x)
layers = [r.name for r in describe(small) if r.kind != "pool"]
plt.figure(figsize=(7, 3))
plt.semilogy(layers, paper, "o-", label="paper: N(0, 1e-2)")
plt.semilogy(layers, he, "s-", label="He: N(0, 2/fan_in), output layer N(0, 1e-2)")
plt.ylabel("activation std")
plt.title(f"input std {x.std():.2f}")
plt.legend()
plt.grid(alpha=0.3)
plt.show()
assert paper[-2] < 1e-4 * he[-2]  # the last hidden layer: the paper's init has all but vanished

# %% [markdown]
# ## 4. Training
#
# `train` runs the loop: for each mini-batch, forward in training mode (dropout on), softmax
# cross-entropy, backward, one SGD step with the rate the `StepSchedule` gives for this epoch.
# After each epoch it evaluates top-1/top-5 on the validation set, appends a record to
# `log.jsonl` and writes a checkpoint. Batches of 32 (the paper's 128 would be 4x fewer steps on
# a small data set) and the paper's lr 5e-2, momentum 0.6 and weight decay 1e-5; the rate is
# halved after epochs 4 and 5 instead of 30, 50, ... About a minute on a laptop CPU.

# %%
config = TrainConfig(model="small", epochs=6, batch_size=32, lr=5e-2, milestones=(4, 5),
                     out_dir="run03", progress=False, log_every=10)
history = train(config, train_set, val_set, transforms=(train_tf, eval_tf))
for r in history.epochs:
    print(f"epoch {r['epoch'] + 1}: lr {r['lr']:.4f}  train loss {r['train_loss']:.3f}  "
          f"val top-1 {r['val_top1']:.3f}  top-5 {r['val_top5']:.3f}")
final = history.final
assert final["val_top1"] >= 0.85, final  # chance is 1/6
assert final["train_loss"] < 0.6 * history.epochs[0]["train_loss"]

# %%
plot_history("run03/log.jsonl")
plt.show()

# %% [markdown]
# ## 5. What the first layer learned (the paper's Figure 2)
#
# Figure 2 of the paper shows the 96 first-layer filters of the fast model: smooth oriented
# edges and colour blobs, after about 90 epochs over 1.2 million images. Ours saw 450 steps of
# flat-coloured shapes, and it shows: they are still mostly the noise they started from, tilted
# towards colour preferences (which is all this data set needs). Each filter is stretched to its
# own [0, 1] range for display, as in the paper. Exercise 6 asks how to make them smoother.

# %%
plot_filters(history.model, title="small model, layer 1 (16 filters, 5x5x3)")
plt.show()

# %% [markdown]
# And the network at work on held-out images: predicted class and its probability, green when
# right, red when wrong.

# %%
n = 18
images = np.stack([val_set[i]["image"] for i in range(n)])
labels = np.array([val_set[i]["label"] for i in range(n)])
logits, _ = history.model.forward(np.stack([eval_tf(val_set[i])[0] for i in range(n)]))
probs = np.exp(logits - logits.max(1, keepdims=True))
probs /= probs.sum(1, keepdims=True)
plot_predictions(images, labels, probs, val_set.classes)
plt.show()
print(f"{(probs.argmax(1) == labels).mean():.0%} of these {n} are right")

# %% [markdown]
# ## 6. Stopping and resuming, exactly
#
# A long run will be interrupted. A checkpoint (`latest.npz`) holds the weights, the optimizer's
# velocities, the schedule, the epoch and the step within it, and the state of every dropout
# layer's random generator; the loader needs no state, because its order and augmentation are
# functions of (seed, epoch, image index). So resuming replays exactly the steps an uninterrupted
# run would take. Here a run is stopped after 25 of its 40 steps (`max_steps` stands in for a
# crash) and resumed; its weights end bit-for-bit equal to a run that never stopped.

# %%
small_data = SyntheticShapes(320, image_size=72, seed=0, cache=True)


def tiny(out, **kw):
    return TrainConfig(model="small", width=0.5, epochs=4, batch_size=32, milestones=(3,), out_dir=out,
                       progress=False, **kw)


straight = train(tiny("run03_straight"), small_data, transforms=(train_tf, eval_tf))
stopped = train(tiny("run03_resumed", max_steps=25), small_data, transforms=(train_tf, eval_tf))
resumed = train(tiny("run03_resumed"), small_data, transforms=(train_tf, eval_tf), resume=True)
print(f"stopped at step {stopped.global_step}, resumed to step {resumed.global_step}")
same = all(np.array_equal(straight.model.params[k], resumed.model.params[k]) for k in straight.model.params)
print("bit-identical weights:", same)
assert same and resumed.global_step == straight.global_step == 40

# %% [markdown]
# ## 7. More than one process: data parallelism
#
# The fast model needs about 1.9e18 floating-point operations for 90 ImageNet epochs: weeks on a
# CPU, a day or more on one GPU. Data parallelism spreads each step over N processes ("ranks"),
# each holding the whole model: rank r computes the gradient on its 1/N of the global batch, the
# N gradients are averaged (one *allreduce*, by MPI or NCCL), and every rank applies the same SGD
# update, so the weights stay identical without ever being sent. Why this is the same step as one
# process on the whole batch: the loss is a mean over the batch, so its gradient is the mean of
# the per-example gradients, and the mean of N equal-sized shards' means is the mean of all.
#
# Below, the two "ranks" are two calls in this notebook, each on its share of a batch as
# `DataLoader(shard=(rank, 2))` hands it out; the averaged gradient matches the whole batch's.

# %%
net = build_model(tiny(None), 6)
whole_idx = DataLoader(small_data, 16, eval_tf, seed=1).batch_indices(0)[0]
shard_idx = [DataLoader(small_data, 16, eval_tf, seed=1, shard=(r, 2)).batch_indices(0)[0] for r in (0, 1)]
print("global batch:", whole_idx, "\nrank 0:", shard_idx[0], "\nrank 1:", shard_idx[1])


def gradient(indices):
    x = np.stack([eval_tf(small_data[int(i)], None)[0] for i in indices])
    y = np.array([small_data[int(i)]["label"] for i in indices])
    logits, cache = net.forward(x, train=False)  # train=False: no dropout, so the comparison is exact maths
    _, d = softmax_cross_entropy(logits, y)
    return net.backward(d, cache)[1]


g_whole = gradient(whole_idx)
g_ranks = [gradient(i) for i in shard_idx]
worst = max(float(np.abs((g_ranks[0][k] + g_ranks[1][k]) / 2 - g_whole[k]).max() / (np.abs(g_whole[k]).max() + 1e-12))
            for k in g_whole)
print(f"largest difference, averaged rank gradients vs the whole batch's: {worst:.1e} of the gradient's size")
assert worst < 1e-4  # the same numbers up to float32 summation order

# %% [markdown]
# On real processes it is one flag; rank 0 writes the log and checkpoints:
#
# ```bash
# pip install -e ".[mpi]"
# mpiexec -n 2 overfeat-np train --synthetic 2000 --batch-size 64 --distributed --out runs/dp
# ```
#
# `tests/test_distributed.py` runs exactly that comparison over MPI: two ranks against one process
# with the whole batch, after several steps.

# %% [markdown]
# ## Summary
#
# - Section 3's recipe is SGD with momentum 0.6, weight decay 1e-5, lr 5e-2 halved on a schedule,
#   dropout 0.5 on the hidden full layers, random crops and flips; `train` implements it and
#   `TrainConfig` holds every setting.
# - The full models have 145.9 M (fast) and 144.6 M (accurate) weights and 2.80 G / 5.36 G
#   multiply-adds per image, Table 4; the small model has the same layout with 0.19 M weights.
# - N(0, 1e-2) makes the signal vanish through eight narrow layers; scaling by fan-in (He) makes
#   the small model train in a few hundred steps, reaching about 90% on six classes where chance
#   is 17%.
# - A checkpoint that holds every piece of state, written atomically, makes an interrupted run
#   resumable with bit-identical results; the command line does the same with
#   `overfeat-np train ... --resume`.
# - Data parallelism averages the gradients of N shards of one batch: the same step as one
#   process on the whole batch, on N processes (`--distributed` under `mpiexec`).
#
# ## Exercises
#
# 1. Train with `init="paper"` (and then with a 10x larger learning rate). How many steps until
#    the validation accuracy leaves chance, if it does?
# 2. Remove the flips and random crops (`TrainTransform(crop=64, resize=None, flip=False)` and
#    images drawn at 64x64). Compare the gap between training and validation accuracy.
# 3. Halve and double `width`. Plot final top-1 against `count_parameters` and against
#    `count_connections`: which predicts accuracy better here?
# 4. Set `dropout` to 0 (build an `OverFeatConfig` with `dropout=0.0`): does the resumed-run
#    check still need the dropout generators' states? Delete them from a checkpoint and see.
# 5. Increase `SyntheticShapes(..., num_classes=10)`. Which classes does the model confuse?
#    Draw the confusion matrix.
# 6. Train 5x longer, or with 100x the weight decay. Do the first-layer filters get smoother?
#    What does weight decay do to a filter's noise that the data never pushes back against?
