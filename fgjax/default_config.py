"""The fields every run config has, with their defaults. Config files under `configs/` start
from `base_config()` and set what their experiment changes."""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
  """All config fields fgjax reads. Seeds stay apart from tuned hyperparameters."""
  config = ml_collections.ConfigDict()
  # What is trained, and how the gradient is obtained.
  config.model = "mlp"  # a name in fgjax.models.MODELS: "mlp", "cnn", "vgg"
  # "forward" (weight perturbation, jax.jvp), "activity" (activity perturbation), "local_activity"
  # (activity perturbation with local losses), "backprop" (jax.grad) or "local_backprop" (jax.grad
  # of the local losses: greedy local learning); see fgjax.estimators.
  config.estimator = "backprop"
  config.num_directions = 1  # forward gradient: tangents averaged per step
  config.combine = "mean"  # K tangents' estimates: "mean", or "projection" onto their span
  # Activity estimators: a derivative per group of units (features or channels), G groups.
  config.unit_groups = 1
  # Activity estimators: the heads (each loss's last layer) take their loss's exact gradient.
  config.exact_heads = False
  # local_activity, local_backprop: a linear classifier after every block but the last, each
  # block trained on its own loss (models.LocalHeads).
  config.local_heads = ml_collections.ConfigDict()
  # S > 1: each of S equal slices of a block's units gets a loss of its own, all derivatives
  # from one jvp; blocks of one layer only. S = 0: a slice per unit a local head reads.
  config.local_heads.slices = 1
  # Whose loss a slice takes: "separate" (S classifiers, each reading its own slice) or "shared"
  # (one classifier of all the block's units, each slice's loss moved by that slice alone).
  config.local_heads.slice_head = "separate"
  # A local loss per "block" of the model, or per "layer" with parameters (the CNNs' blocks hold
  # two conv layers, the MLP's one).
  config.local_heads.loss_per = "block"
  # Conv nets: a conv block's head reads its output averaged over each of P x P equal patches
  # (1: the whole map; 0: a patch per position of the map it reads, which it then reads whole);
  # its slices are then (patch, channel) slices.
  config.local_heads.patches = 1
  config.tangent = "normal"  # forward gradient: tangent law, a name in fgjax.tangents.SAMPLERS
  config.init = "flax"  # parameter initialisation: "flax" (lecun normal, zero bias) or "torch"
  config.loss = "cross_entropy"  # or "clamped_cross_entropy": probabilities clamped to [eps, 1-eps]
  config.jvp_clip = config_dict.placeholder(float)  # clip <grad f, v> to [-c, c]; None: off
  # Optimizer: optax chain of clipping, sgd | nesterov | adam, and gamma * exp(-decay * t).
  config.optimizer = "sgd"
  config.learning_rate = 0.1
  config.decay = 0.0
  config.momentum = 0.0  # nesterov only
  # nesterov only: evaluate the model at the parameters as held, the look-ahead point where the
  # gradients are taken ("lookahead"), or at theta = parameters - momentum x velocity ("base",
  # the paper's forward-gradient code); see fgjax.optimizers.
  config.nesterov_evaluate = "lookahead"
  config.b1 = 0.9  # adam only
  config.b2 = 0.999  # adam only
  config.eps = 1e-8  # adam only: added to sqrt(v)
  config.eps_root = 0.0  # adam only: added to v inside the square root
  config.grad_clip_norm = config_dict.placeholder(float)  # clip_by_global_norm; None: off
  # Schedule.
  config.batch_size = 64
  config.num_epochs = 1
  config.seed = 0  # parameter init, data order and tangents; never tuned
  config.num_seeds = 1  # train seeds seed, ..., seed + num_seeds - 1 together (one trial each)
  # Trials (seeds, sweep settings) vmapped into one compiled call; the rest in further calls, one
  # after another. None: all of them, except one at a time for convolutional models on CPU and for
  # data-parallel runs.
  config.trials_per_call = config_dict.placeholder(int)
  config.on_nonfinite = "stop"  # "stop" the run, or "skip" the step, on a non-finite loss/grad
  # Divergence a clip keeps finite: a step whose loss exceeds this many times the first loss
  # ends the run as diverged under either policy. None: off.
  config.max_loss_ratio = config_dict.FieldReference(10.0, field_type=float)
  # Output.
  config.log_every_steps = 50  # one metrics row (mean train loss) per this many steps
  # A row of gradient-estimate quality (fgjax.diagnostics) per this many steps; None: off.
  config.diagnostics_every_steps = config_dict.placeholder(int)
  config.eval_batch_size = 1000
  # Checkpoints in <workdir>/checkpoints: saved at the first chunk end (every `log_every_steps`
  # steps and at each epoch's end) at or past each multiple of this, and when the run ends.
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3  # the newest ones kept; older ones are deleted
  # Data.
  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"
  config.data.source = "tfds"  # "tfds", "npz" or "embedded"
  config.data.path = ""  # the .npz file when source="npz"
  config.data.tfds_data_dir = config_dict.placeholder(str)  # None: tfds's default
  config.data.download = False  # tfds: download and prepare when missing (needs TensorFlow)
  config.data.num_classes = config_dict.placeholder(int)  # None: from the data's labels or info
  config.data.validation_size = 10000  # carved from the training split
  config.data.split_seed = 0  # which training examples form the validation split
  config.data.normalization = "unit"  # "unit": pixels / 255; "standardize": train mean / std
  # Devices (fgjax.sharding): each batch split over a mesh of devices, parameters replicated.
  config.sharding = ml_collections.ConfigDict()
  config.sharding.data_parallel = False  # batch_size must be a multiple of the device count
  config.sharding.num_devices = config_dict.placeholder(int)  # None: every device, all hosts
  return config


# Fields renamed since runs were saved: old dotted name -> new one.
RENAMED = {"local_groups": "local_heads.slices", "local_group_head": "local_heads.slice_head",
           "local_loss_per": "local_heads.loss_per", "local_head_patches": "local_heads.patches"}


def renamed(flat: dict) -> dict:
  """A saved run's flat config dict (dotted names) with every field under its current name."""
  return {RENAMED.get(name, name): value for name, value in flat.items()}
